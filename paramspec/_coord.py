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
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ._compile import compile as compile_spec
from ._errors import SpecError
from ._ir import Spec
from ._muon_rule import MUON
from ._theory import Theory

__all__ = [
    "CoordCheck",
    "LayerSlope",
    "coord_check",
    "first_step_exponents",
    "linear_loss",
    "perturbative_learning_rate",
    "theory_exponents",
]


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
    relative: float = 0.0  # rms(x_t - x_0) / rms(x_0) at the largest width, seed mean

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
    prediction: str = "first_step"

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
            "spec": self.spec,
            "optimizer": self.optimizer,
            "alignment": str(self.alignment),
            "steps": self.steps,
            "learning_rate": self.learning_rate,
            "passed": self.passed,
            "prediction": self.prediction,
            "layers": {
                layer.name: {
                    "role": layer.role,
                    "slope": round(layer.slope, 4),
                    "predicted": layer.predicted,
                    "tolerance": layer.tolerance,
                    "passed": layer.passed,
                    "widths": list(layer.widths),
                    "relative": float(f"{layer.relative:.6g}"),
                    "delta_rms": [float(f"{d:.6g}") for d in layer.deltas],
                    "mean_abs": [float(f"{s:.6g}") for s in layer.sizes],
                }
                for layer in self.layers
            },
        }


def _slope(widths: Sequence[int], values: Sequence[float]) -> float:
    """Least-squares slope of log(values) against log(widths)."""
    xs = [math.log(w) for w in widths]
    ys = [math.log(max(v, 1e-30)) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _compiled_theory(
    spec: Spec | str, optimizer: str | None, alignment: Any, base_width: int | None
) -> Any:
    return compile_spec(
        spec,
        width=max(base_width or 1, 1),
        base_width=base_width,
        optimizer=optimizer,
        alignment=alignment,
    )


def _layers(theory: Theory, blocks: Collection[str] | None) -> list[Any]:
    """The theory's layers, only those of `blocks` (the blocks the model has parameters
    in) when given: a spec's `vectors` block says nothing about a model without biases."""
    return [layer for name, layer in theory.layers.items() if blocks is None or name in blocks]


def theory_exponents(
    theory: Theory, roles: Mapping[str, str], blocks: Collection[str] | None = None
) -> dict[str, Fraction]:
    """`prediction="theory"`: r per feature = the smallest r of the blocks of its role
    (vector blocks count as input), theory.md §4; only `blocks` when given."""
    by_role: dict[str, Fraction] = {}
    for layer in _layers(theory, blocks):
        if layer.r is None:
            continue
        role = "input" if layer.role == "vector" else layer.role
        by_role[role] = min(by_role.get(role, layer.r), layer.r)
    out = {}
    for name, role in roles.items():
        role = "input" if role == "vector" else role
        if role not in by_role:
            raise SpecError(f"the spec has no block of role `{role}` to predict layer {name}")
        out[name] = by_role[role]
    return out


def first_step_exponents(
    theory: Theory, roles: Mapping[str, str], blocks: Collection[str] | None = None
) -> dict[str, Fraction]:
    """`prediction="first_step"`: r per feature after one step (module docstring).

    `roles` maps each feature, in forward order, to its role; hidden features form one
    chain in that order. `blocks`, when given, are the blocks the model has parameters
    in (`coord_check` passes them); the others take no part. Every exponent is exact:
    x = a + (per-entry update exponent of w), as in `_theory._update_exponents`, with
    the first step's gradient.
    """
    layers = _layers(theory, blocks)
    outputs = [o for o in layers if o.role == "output"]
    live = [o.ab for o in outputs if not o.zero_init]
    if outputs and not live:
        raise SpecError(
            "every readout is zero-initialised, so the first step sends no gradient to "
            "earlier layers and their changes cannot be fitted",
            hint='use steps >= 2 with prediction="theory"',
        )
    m1 = min(live) if live else Fraction(0)  # the readout's effective entries at init

    def x(layer: Any) -> Fraction:
        if theory.optimizer == "sgd":
            g1 = layer.a if layer.role in ("output", "constant") else layer.a + m1
            step = layer.c + g1
        elif theory.optimizer == "adafactor":
            step = layer.b + layer.c
        elif MUON.applies(theory.optimizer, layer.role):
            # one batch: a rank-k orthogonalised step aligned with its inputs, c~ = c + 1
            step = MUON.entry_step(layer.c, Fraction(1))
        else:  # adam's and adam_atan2's first step is lr * sign(gradient)
            step = layer.c
        return layer.a + step

    def smallest(*role_names: str) -> Fraction | None:
        xs = [x(layer) for layer in layers if layer.role in role_names]
        return min(xs) if xs else None

    def need(role: str, name: str) -> Any:
        raise SpecError(f"the spec has no block of role `{role}` to predict layer {name}")

    r_in = smallest("input", "vector")
    r_vec = smallest("vector")  # biases add their own change to every layer
    r_const = smallest("constant")
    hidden = [h for h in layers if h.role == "hidden"]
    out: dict[str, Fraction] = {}
    r_prev = r_in
    for name, role in roles.items():
        if role in ("input", "vector"):
            out[name] = r_in if r_in is not None else need("input", name)
            continue
        if r_prev is None:
            need("input", name)
        extra = [r for r in (r_vec if role == "hidden" else r_const,) if r is not None]
        if role == "hidden":
            if not hidden:
                need("hidden", name)
            # alpha = 1: dW z; omega = 1/2: W dz (a+b of a hidden weight is 1/2)
            r = min([min(x(h) - 1, h.ab + r_prev - Fraction(1, 2)) for h in hidden] + extra)
            out[name] = r
            r_prev = r
        elif role == "output":
            if not outputs:
                need("output", name)
            terms = [x(o) - 1 for o in outputs]  # alpha = 1
            terms += [o.ab + r_prev - 1 for o in outputs if not o.zero_init]  # omega = 1
            out[name] = min(terms + extra)
        else:
            raise SpecError(
                f"layer {name} has role `{role}`, which a coordinate check cannot predict",
                hint="use input, vector, hidden or output",
            )
    return out


PREDICTIONS = {"first_step": first_step_exponents, "theory": theory_exponents}


def linear_loss(model: Any, batch: tuple[Any, Any]) -> Any:
    """`mean(model(x) * y)` over a batch `(x, y)`: the loss for a first-step check.

    Its gradient with respect to the outputs is `y / size`, the same vector at every
    width, so the first step's gradients are exact powers of the width. A squared error's
    output gradient `2 (f(x) - y)` also carries the model's output at init, whose size
    changes with width (muP's shrinks like `n^(-1/2)`); under SGD, whose step is
    proportional to the gradient, that moved muP's measured slopes by up to -0.22 at
    widths 64..512 (-0.05 with this loss). Adam-like steps only see the gradient's
    sign and are barely affected either way. See docs/properties.md.
    """
    import jax
    import jax.numpy as jnp

    x, y = batch
    return jnp.mean(jax.vmap(model)(x) * y)


def _make_step(opt: Any, loss: Callable[[Any, Any], Any], inputs: Any, jit: bool) -> Callable:
    import equinox as eqx

    def step(model: Any, state: Any) -> tuple[Any, Any]:
        grads = eqx.filter_grad(loss)(model, inputs)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state

    # Each width and seed has its own optimizer (static per-leaf floats), so a jitted step
    # compiles once per run: for a few steps, running eagerly is several times faster.
    return eqx.filter_jit(step) if jit else step


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
    prediction: str = "first_step",
) -> CoordCheck:
    """Train `steps` steps at every width and fit each layer's activation-change slope.

    - `inputs`: one fixed batch, passed to `loss(model, inputs)` and (its first element
      when it is a tuple, vmapped over the first axis) to `model.features`.
    - `loss(model, inputs) -> scalar`; with `prediction="first_step"` use a loss whose
      gradient does not depend on the model's output, such as `linear_loss`.
    - `prediction`: `"first_step"` (default; exact for `steps=1` with a learning rate
      small enough that every `relative` change stays small) or `"theory"` (`-r` of the
      layer's role, theory.md §4, for the spec, optimizer and `alignment`). See the
      module docstring. `passed` when |slope - prediction| <= `tolerance`.
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from ._equinox._build import parameter_blocks

    if len(widths) < 2 or len(set(widths)) != len(widths):
        raise SpecError(
            "a coordinate check needs at least two different widths",
            hint="e.g. widths=(64, 128, 256, 512)",
        )
    if steps < 1:
        raise SpecError(f"steps must be at least 1, got {steps}")
    if prediction not in PREDICTIONS:
        raise SpecError(
            f"unknown prediction `{prediction}`", hint=f"use one of {', '.join(PREDICTIONS)}"
        )
    base = _compiled_theory(spec, optimizer, alignment, base_width)
    spec_name = spec.name if isinstance(spec, Spec) else str(spec)
    x = inputs[0] if isinstance(inputs, tuple) else inputs

    deltas: dict[str, list[list[float]]] = {}
    sizes: dict[str, list[list[float]]] = {}
    relative: dict[str, list[float]] = {}
    roles: dict[str, str] = {}
    used: set[str] = set()  # the blocks the model has parameters in
    for width in widths:
        c = compile_spec(
            spec, width=width, base_width=base_width, optimizer=optimizer, alignment=alignment
        )
        per_seed_delta: dict[str, list[float]] = {}
        per_seed_size: dict[str, list[float]] = {}
        per_seed_rel: dict[str, list[float]] = {}
        for seed in seeds:
            model = c.init(make_model, jax.random.key(seed))
            if not hasattr(model, "features") or not hasattr(model, "feature_roles"):
                raise SpecError(
                    f"{type(model).__name__} has no `features`/`feature_roles` methods",
                    hint="give the model `features(x) -> {name: array}` and "
                    "`feature_roles() -> {name: role}` (see paramspec.models)",
                )
            roles = model.feature_roles()
            used |= set(parameter_blocks(model).values())
            opt = c.optimizer(model, learning_rate=learning_rate, eps=eps)
            state = opt.init(eqx.filter(model, eqx.is_inexact_array))
            step = _make_step(opt, loss, inputs, jit=steps > 3)
            features = lambda m: jax.vmap(m.features)(x)  # noqa: E731 - eager, see _make_step
            before = features(model)
            for _ in range(steps):
                model, state = step(model, state)
            after = features(model)
            for name in roles:
                d = after[name] - before[name]
                rms_d = float(jnp.sqrt(jnp.mean(d * d)))
                rms_0 = float(jnp.sqrt(jnp.mean(before[name] ** 2)))
                per_seed_delta.setdefault(name, []).append(rms_d)
                per_seed_size.setdefault(name, []).append(float(jnp.mean(jnp.abs(before[name]))))
                per_seed_rel.setdefault(name, []).append(rms_d / max(rms_0, 1e-30))
        for name in roles:
            deltas.setdefault(name, []).append(per_seed_delta[name])
            sizes.setdefault(name, []).append(per_seed_size[name])
            if width == max(widths):
                relative[name] = per_seed_rel[name]

    exponents = PREDICTIONS[prediction](base.theory, roles, used or None)
    layers = []
    for name, role in roles.items():
        mean_delta = tuple(sum(v) / len(v) for v in deltas[name])
        mean_size = tuple(sum(v) / len(v) for v in sizes[name])
        layers.append(
            LayerSlope(
                name,
                role,
                tuple(widths),
                mean_delta,
                mean_size,
                _slope(widths, mean_delta),
                float(-exponents[name]),
                tolerance,
                sum(relative[name]) / len(relative[name]),
            )
        )
    return CoordCheck(
        spec_name,
        base.optimizer_name,
        base.alignment,
        steps,
        learning_rate,
        tuple(layers),
        prediction,
    )


def perturbative_learning_rate(
    theory: Theory, roles: Mapping[str, str], n_max: float, *, scale: float = 1e-2
) -> float:
    """A learning rate that keeps the first step perturbative up to width multiplier n_max.

    Every feature changes by about `learning_rate * n^(-r)` (first-step exponents), so
    `scale * n_max^(-G)` with G = max(0, -r) bounds the largest change near `scale` at
    the largest width: the second-order (dW dz) terms stay a fraction `scale` of the
    first-order ones and no activation pattern flips, while every width still moves.
    """
    growth = max([Fraction(0)] + [-r for r in first_step_exponents(theory, roles).values()])
    return scale * float(n_max) ** float(-growth)
