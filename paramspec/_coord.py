"""The coordinate check, made quantitative (reference/theory.md §9).

microsoft/mup's coordinate check plots activation sizes against width and asks a person
to judge whether the curves are flat. Here the judgement is a number: for each layer,
the fitted slope of `log rms(x_t - x_0)` against `log width` after `steps` optimizer
steps on one fixed batch, compared with the theory's prediction `-r` for the layer's
role (the first steps are fully aligned, so the prediction uses alignment `full` unless
told otherwise).

The model must expose `features(x) -> {name: array}` (every layer's output) and
`feature_roles() -> {name: role}`; the reference models in `paramspec.models` do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ._compile import compile as compile_spec
from ._errors import SpecError
from ._ir import Spec

__all__ = ["CoordCheck", "LayerSlope", "coord_check"]


@dataclass(frozen=True)
class LayerSlope:
    """One layer: measured sizes per width, the fitted slope, the prediction."""

    name: str
    role: str
    widths: tuple[int, ...]
    deltas: tuple[float, ...]  # rms(x_t - x_0), averaged over seeds
    sizes: tuple[float, ...]  # mean |x_0|, averaged over seeds
    slope: float
    predicted: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return abs(self.slope - self.predicted) <= self.tolerance


@dataclass(frozen=True)
class CoordCheck:
    spec: str
    optimizer: str
    alignment: Fraction
    steps: int
    learning_rate: float
    layers: tuple[LayerSlope, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(layer.passed for layer in self.layers)

    def layer(self, name: str) -> LayerSlope:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec, "optimizer": self.optimizer, "alignment": str(self.alignment),
            "steps": self.steps, "learning_rate": self.learning_rate, "passed": self.passed,
            "layers": {
                layer.name: {
                    "role": layer.role, "slope": round(layer.slope, 4),
                    "predicted": layer.predicted, "tolerance": layer.tolerance,
                    "passed": layer.passed, "widths": list(layer.widths),
                    "delta_rms": [float(f"{d:.6g}") for d in layer.deltas],
                    "mean_abs": [float(f"{s:.6g}") for s in layer.sizes],
                } for layer in self.layers
            },
        }


def _slope(widths: Sequence[int], values: Sequence[float]) -> float:
    """Least-squares slope of log(values) against log(widths)."""
    xs = [math.log(w) for w in widths]
    ys = [math.log(max(v, 1e-30)) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _predictions(spec: Spec | str, optimizer: str | None, alignment: Any,
                 base_width: int | None) -> tuple[dict[str, float], str, Fraction]:
    c = compile_spec(spec, width=max(base_width or 1, 1), base_width=base_width,
                     optimizer=optimizer, alignment=alignment)
    by_role: dict[str, Fraction] = {}
    for layer in c.theory.layers.values():
        if layer.r is None:
            continue
        role = "input" if layer.role == "vector" else layer.role
        by_role[role] = min(by_role.get(role, layer.r), layer.r)
    return {role: float(-r) for role, r in by_role.items()}, c.optimizer_name, c.alignment


def coord_check(
    spec: Spec | str,
    make_model: Callable[[int, Any], Any],
    inputs: Any,
    loss: Callable[[Any, Any], Any],
    *,
    widths: Sequence[int] = (64, 128, 256, 512),
    steps: int = 1,
    seeds: Sequence[int] = (0, 1),
    learning_rate: float = 1e-2,
    base_width: int | None = None,
    optimizer: str | None = None,
    alignment: Any = "full",
    tolerance: float = 0.1,
    eps: float = 1e-8,
) -> CoordCheck:
    """Train `steps` steps at every width and fit each layer's activation-change slope.

    - `inputs`: one fixed batch, passed to `loss(model, inputs)` and (vmapped over the
      first axis) to `model.features`.
    - `loss(model, inputs) -> scalar`.
    - The prediction for a layer is `-r` of its role (theory.md §4; vector blocks count
      as input) for the spec, optimizer and `alignment` (default `full`: the first steps
      are fully aligned). `passed` when |slope - prediction| <= `tolerance`.
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    if len(widths) < 2 or len(set(widths)) != len(widths):
        raise SpecError("a coordinate check needs at least two different widths",
                        hint="e.g. widths=(64, 128, 256, 512)")
    if steps < 1:
        raise SpecError(f"steps must be at least 1, got {steps}")
    predicted, opt_name, align = _predictions(spec, optimizer, alignment, base_width)
    spec_name = spec.name if isinstance(spec, Spec) else str(spec)

    deltas: dict[str, list[list[float]]] = {}
    sizes: dict[str, list[list[float]]] = {}
    roles: dict[str, str] = {}
    for width in widths:
        c = compile_spec(spec, width=width, base_width=base_width, optimizer=optimizer,
                         alignment=alignment)
        per_seed_delta: dict[str, list[float]] = {}
        per_seed_size: dict[str, list[float]] = {}
        for seed in seeds:
            model = c.init(make_model, jax.random.key(seed))
            if not hasattr(model, "features") or not hasattr(model, "feature_roles"):
                raise SpecError(
                    f"{type(model).__name__} has no `features`/`feature_roles` methods",
                    hint="give the model `features(x) -> {name: array}` and "
                    "`feature_roles() -> {name: role}` (see paramspec.models)")
            roles = model.feature_roles()
            opt = c.optimizer(model, learning_rate=learning_rate, eps=eps)
            params = eqx.filter(model, eqx.is_inexact_array)
            state = opt.init(params)

            @eqx.filter_jit
            def step(model: Any, state: Any) -> tuple[Any, Any]:
                grads = eqx.filter_grad(loss)(model, inputs)
                updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
                return eqx.apply_updates(model, updates), state

            features = eqx.filter_jit(lambda m: jax.vmap(m.features)(inputs[0] if isinstance(inputs, tuple) else inputs))
            before = features(model)
            for _ in range(steps):
                model, state = step(model, state)
            after = features(model)
            for name in roles:
                d = after[name] - before[name]
                per_seed_delta.setdefault(name, []).append(float(jnp.sqrt(jnp.mean(d * d))))
                per_seed_size.setdefault(name, []).append(float(jnp.mean(jnp.abs(before[name]))))
        for name in roles:
            deltas.setdefault(name, []).append(per_seed_delta[name])
            sizes.setdefault(name, []).append(per_seed_size[name])

    layers = []
    for name, role in roles.items():
        mean_delta = tuple(sum(v) / len(v) for v in deltas[name])
        mean_size = tuple(sum(v) / len(v) for v in sizes[name])
        if role not in predicted:
            raise SpecError(f"the spec has no block of role `{role}` to predict layer {name}")
        layers.append(LayerSlope(name, role, tuple(widths), mean_delta, mean_size,
                                 _slope(widths, mean_delta), predicted[role], tolerance))
    return CoordCheck(spec_name, opt_name, align, steps, learning_rate, tuple(layers))
