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

import numpy as np

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
    "first_step_terms",
    "judgement",
    "linear_loss",
    "perturbative_learning_rate",
    "theory_exponents",
    "vocabulary_correction",
]


@dataclass(frozen=True)
class LayerSlope:
    """One layer: measured sizes per width, the fitted slope, the prediction, the verdict.

    `tolerance` is `(below, above)`: the slope passes when
    `predicted - below <= slope <= predicted + above` (see `judgement`). A layer whose
    change exceeded its own size (`relative > 1` at some width) is not judged: its
    verdict is `"flagged"` (outside the perturbative regime the first-step prediction
    does not apply; lower the learning rate).
    """

    name: str
    role: str
    widths: tuple[int, ...]
    deltas: tuple[float, ...]  # rms(x_t - x_0), averaged over seeds
    sizes: tuple[float, ...]  # mean |x_0|, averaged over seeds
    slope: float
    predicted: float
    tolerance: tuple[float, float]
    relative: float | None = 0.0  # largest rms(x_t - x_0) / rms(x_0) over widths (seed mean)
    note: str = ""

    @property
    def flagged(self) -> bool:
        return self.relative is not None and self.relative > 1.0

    @property
    def verdict(self) -> str:
        if self.flagged:
            return "flagged"
        below, above = self.tolerance
        return "pass" if -below <= self.slope - self.predicted <= above else "fail"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


@dataclass(frozen=True)
class CoordCheck:
    spec: str
    optimizer: str
    alignment: Fraction
    steps: int
    learning_rate: float
    layers: tuple[LayerSlope, ...] = field(default_factory=tuple)
    prediction: str = "first_step"
    learning_rate_source: str = "given"  # "given" | "perturbative" (calibrated, see below)
    model: str = ""

    @property
    def passed(self) -> bool:
        """No judged layer fails, and at least one is judged (flagged ones are not)."""
        verdicts = [layer.verdict for layer in self.layers]
        return "fail" not in verdicts and "pass" in verdicts

    @property
    def flagged(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if layer.flagged)

    def layer(self, name: str) -> LayerSlope:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "model": self.model,
            "optimizer": self.optimizer,
            "alignment": str(self.alignment),
            "steps": self.steps,
            "learning_rate": float(f"{self.learning_rate:.6g}"),
            "learning_rate_source": self.learning_rate_source,
            "passed": self.passed,
            "flagged": list(self.flagged),
            "prediction": self.prediction,
            "layers": {
                layer.name: {
                    "role": layer.role,
                    "slope": round(layer.slope, 4),
                    "predicted": layer.predicted,
                    "tolerance": [round(t, 4) for t in layer.tolerance],
                    "verdict": layer.verdict,
                    "passed": layer.passed,
                    "widths": list(layer.widths),
                    "relative": None if layer.relative is None
                    else float(f"{layer.relative:.6g}"),
                    "note": layer.note,
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


def first_step_terms(
    theory: Theory, roles: Mapping[str, str], blocks: Collection[str] | None = None
) -> dict[str, tuple[Fraction, ...]]:
    """The exponents of the first-order terms of each feature's first-step change (its
    `r` is their minimum; `first_step_exponents`). Rules in docs/coord-check.md:

    `roles` maps each feature, in forward order, to its role. `blocks`, when given, are
    the blocks the model has parameters in (`coord_check` passes them); the others take
    no part. Every exponent is exact: x = a + (per-entry update exponent of w), as in
    `_theory._update_exponents`, with the first step's gradient.

    - input: x of the input (and vector) blocks;
    - hidden: `x - 1` (dW z, alpha = 1) and `a+b + r_prev - 1/2` (W dz, omega = 1/2),
      plus the biases' own change;
    - output: `x - 1` (dW z) and `a+b + r_prev - omega` (W dz), where omega = 1 for the
      model's readout (the last output feature: the backward signal that moved z came
      through its own rows) and omega = 1/2 for an earlier one (a router, an auxiliary
      head: z moved along the readout's rows, not along its own);
    - vector, constant (a norm, a buffer's module) after the input: their own change,
      and what they pass through (`r_prev`).

    Hidden features compound in forward order (`r_prev` is the running minimum).
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
    own = {"vector": smallest("vector"), "constant": smallest("constant")}
    hidden = [h for h in layers if h.role == "hidden"]
    readout = next((n for n in reversed(list(roles)) if roles[n] == "output"), None)
    out: dict[str, tuple[Fraction, ...]] = {}
    r_prev = r_in
    seen_input = False
    for name, role in roles.items():
        if role == "input" or (role == "vector" and not seen_input):
            out[name] = (r_in,) if r_in is not None else need("input", name)
            seen_input = True
            continue
        if r_prev is None:
            need("input", name)
        if role in ("vector", "constant"):
            terms = [t for t in (own[role], r_prev) if t is not None]
        elif role == "hidden":
            if not hidden:
                need("hidden", name)
            terms = [x(h) - 1 for h in hidden]
            terms += [h.ab + r_prev - Fraction(1, 2) for h in hidden]
            terms += [own["vector"]] if own["vector"] is not None else []
        elif role == "output":
            if not outputs:
                need("output", name)
            omega = 1 if name == readout else Fraction(1, 2)
            terms = [x(o) - 1 for o in outputs]  # alpha = 1
            terms += [o.ab + r_prev - omega for o in outputs if not o.zero_init]
            terms += [own["constant"]] if own["constant"] is not None else []
        else:
            raise SpecError(
                f"layer {name} has role `{role}`, which a coordinate check cannot predict",
                hint="use input, vector, hidden, output or constant",
            )
        out[name] = tuple(sorted(set(terms)))
        if role != "output":
            r_prev = min(r_prev, min(terms))
    return out


def first_step_exponents(
    theory: Theory, roles: Mapping[str, str], blocks: Collection[str] | None = None
) -> dict[str, Fraction]:
    """`prediction="first_step"`: r per feature after one step, the smallest exponent
    of its first-order terms (`first_step_terms`)."""
    return {name: min(terms) for name, terms in first_step_terms(theory, roles, blocks).items()}


# ----------------------------------------------------------------------------- judgement

# The one rule by which `coord_check`, `paramspec coord-check` and the tests judge a
# slope (docs/coord-check.md). NOISE: seed-to-seed spread of a slope fitted over one
# octave range of widths (e.g. 64..512) with 2 seeds (SGD: 4), both sides, every role.
NOISE = 0.15
# An output feature whose first-order terms have different exponents (sp's readout:
# W dz ~ n^(1/2) and dW z ~ n^0) converges to the leading one from below: measured 0.15
# short (Adam) and 0.11 (SGD) on sp's MLP readout at widths 64..512 (docs/properties.md).
SUBLEADING = 0.2


def vocabulary_correction(outputs: int, widths: Sequence[int]) -> float:
    """The finite-size part of a readout's slope when its output count V is not small
    against the width n (V logits, or experts of a router): the readout's W dz term is
    `W W^T delta`, and a V x n Gaussian W has `|W W^T delta| = n sigma^2 |delta|
    sqrt(1 + V/n)` (Marchenko-Pastur second moment), so the slope fitted over `widths`
    is lowered by the slope of `log sqrt(1 + V/n)`: 0.18 for V = 100 at widths 64..512,
    0.05 at 512..2048, 0.025 for V = 8. Returned as a non-negative number."""
    return max(0.0, -_slope(widths, [math.sqrt(1 + outputs / w) for w in widths]))


def judgement(
    role: str,
    terms: Sequence[Fraction],
    widths: Sequence[int],
    *,
    outputs: int | None = None,
    readout: bool = True,
) -> tuple[tuple[float, float], str]:
    """`((below, above), note)`: the band around the prediction `-min(terms)` in which a
    measured slope passes, and why it is wider than `NOISE` where it is."""
    below, notes = NOISE, []
    # depth's stream and blocks (paramspec._coord_depth) sum terms as a readout does
    if role in ("output", "stream", "block") and len(set(terms)) > 1:
        gap = float(max(terms) - min(terms))
        extra = SUBLEADING if readout else gap  # an inner readout (router): W dz leads
        below += min(extra, gap)
        notes.append(f"subleading term n^{float(-max(terms)):+g} (-{min(extra, gap):.2f})")
    if role == "output" and readout and outputs:
        corr = vocabulary_correction(outputs, widths)
        if corr >= 0.005:
            below += corr
            notes.append(f"{outputs} outputs against width: sqrt(1 + V/n) (-{corr:.2f})")
    return (below, NOISE), "; ".join(notes)


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

    from ._equinox._jit import local_jit

    def step(model: Any, state: Any) -> tuple[Any, Any]:
        grads = eqx.filter_grad(loss)(model, inputs)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state

    # Each width and seed has its own optimizer (static per-leaf floats), so a jitted step
    # compiles once per run: for a few steps, running eagerly is several times faster.
    # `local_jit`, not `eqx.filter_jit`: the step is made per run, and its program must be
    # freed with it (paramspec/_equinox/_jit.py).
    return local_jit(step) if jit else step


ROOT = "(output)"  # the name of the model's own output among recorded features


def _user_class(model: Any) -> str:
    from ._equinox._multiply import unwrap

    return type(unwrap(model)).__name__


class _Features:
    """Where a model's features come from, decided once on the first model built:

    - the model's own `features(x) -> {name: array}` and `feature_roles()` (the reference
      models), called on `inputs[0]` (or `inputs`), vmapped over the first axis; or
    - recorded during `loss(model, inputs)` (`_equinox._record`): every parameterized
      module's output by path, with the role of its parameters, and the model's own
      output as `(output)` (dropped when it equals the last recorded feature).
    """

    def __init__(self, model: Any, compiled: Any, inputs: Any, loss: Callable) -> None:
        from ._equinox._record import module_roles

        self.inputs, self.loss, self.cls = inputs, loss, _user_class(model)
        self.own = hasattr(model, "features") and hasattr(model, "feature_roles")
        if self.own:
            self.paths: dict[str, str] = {}
        else:
            block_roles = {b.name: b.role for b in compiled.blocks}
            self.paths = module_roles(model, block_roles)
        first = self._call(model, validate=True)
        if self.own:
            self.roles = dict(model.feature_roles())
            missing = [n for n in self.roles if n not in first]
            if missing:
                raise SpecError(
                    f"{self.cls}.feature_roles() names {', '.join(missing)}, which "
                    f"{self.cls}.features(x) does not return",
                    hint="return one array per name of feature_roles()",
                )
        else:
            self.roles = {name: self.paths.get(name, "output") for name in first}
            names = list(first)
            if len(names) >= 2 and names[-1] == ROOT:
                last = first[names[-2]]
                if last.shape == first[ROOT].shape and np.array_equal(last, first[ROOT]):
                    self.roles.pop(ROOT)  # the readout module's output is the model's
            if not any(role == "output" for role in self.roles.values()):
                self.roles[ROOT] = "output"
        self.shapes = {name: self._shapes[name] for name in self.roles}

    def _call(self, model: Any, validate: bool = False) -> dict[str, Any]:
        import jax

        from ._equinox._record import record, recording

        if self.own:
            x = self.inputs[0] if isinstance(self.inputs, tuple) else self.inputs
            try:
                out = jax.vmap(model.features)(x)
            except SpecError:
                raise
            except Exception as e:
                if not validate:
                    raise
                raise SpecError(
                    f"{self.cls}.features failed on the inputs: {type(e).__name__}: {e}",
                    hint="inputs (or its first element) is a batch: features is vmapped "
                    "over its first axis") from None
            self._shapes = {name: np.shape(v)[1:] for name, v in out.items()}
            return {name: np.asarray(v, dtype=np.float64) for name, v in out.items()}
        rec = recording(model, self.paths, ROOT)
        try:
            value, feats, self._shapes = record(lambda: self.loss(rec, self.inputs))
        except SpecError:
            raise
        except Exception as e:
            if not validate:
                raise
            raise SpecError(
                f"the loss failed on {self.cls} with the given inputs: "
                f"{type(e).__name__}: {e}",
                hint="coord_check calls loss(model, inputs); on the command line "
                "loss(model, x, y) with (x, y) = make_batch(key) (docs/coord-check.md)",
            ) from None
        if validate:
            _check_scalar(value, self.cls)
            if not feats:
                raise SpecError(
                    f"no layer of {self.cls} was called while computing the loss",
                    hint="the loss must call the model it is given")
        return feats

    def __call__(self, model: Any) -> dict[str, np.ndarray]:
        feats = self._call(model)
        missing = [n for n in self.roles if n not in feats]
        if missing:  # e.g. a branch the loss skipped this time
            raise SpecError(f"{self.cls}: layer(s) {', '.join(missing)} produced no output",
                            hint="the loss must call the same layers at every width")
        return {name: np.ravel(feats[name]) for name in self.roles}


def _check_scalar(value: Any, cls: str) -> None:
    shape = np.shape(value)
    if shape != ():
        raise SpecError(f"the loss of {cls} returned an array of shape {shape}, not a scalar",
                        hint="return the mean loss over the batch")
    if not np.isfinite(float(value)):
        raise SpecError(f"the loss of {cls} at initialisation is {float(value)}",
                        hint="check the inputs and the model's output")


def _one_step(c: Any, make_model: Callable, key: Any, features: _Features, inputs: Any,
              loss: Callable, lr: float, eps: float, steps: int, init_kwargs: dict,
              model: Any = None) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Train `steps` steps; per feature: rms of the change, mean |x_0|, relative change."""
    import equinox as eqx

    if model is None:
        model = c.init(make_model, key, **init_kwargs)
    opt = c.optimizer(model, learning_rate=lr, eps=eps)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    step = _make_step(opt, loss, inputs, jit=steps > 3)
    before = features(model)
    for _ in range(steps):
        model, state = step(model, state)
    after = features(model)
    if not features.own:  # a recorded query projection outputs f q: judge q (docs/attention.md)
        from ._equinox._attention import attention_factors

        for name, f in attention_factors(c, model).items():
            if name in before:
                before[name], after[name] = before[name] / f, after[name] / f
    delta, size, rel = {}, {}, {}
    for name in features.roles:
        d = after[name] - before[name]
        delta[name] = float(np.sqrt(np.mean(d * d)))
        size[name] = float(np.mean(np.abs(before[name])))
        rms0 = float(np.sqrt(np.mean(before[name] ** 2)))
        rel[name] = delta[name] / rms0 if rms0 > 0 else math.nan
    return delta, size, rel


def _calibrate(probe: Callable[[float], dict[str, float]], lr: float, target: float) -> float:
    """The learning rate at which the largest relative change is about `target`.

    First-order changes are proportional to the learning rate, so one probe fixes it;
    a probe far outside the perturbative regime (largest change above its feature's
    size) is not linear, so it is repeated at the corrected rate (at most 4 probes)."""
    for _ in range(4):
        rel = [r for r in probe(lr).values() if math.isfinite(r) and r > 0]
        if not rel:
            return lr
        largest = max(rel)
        new = lr * target / largest
        if largest <= 1.0:
            return new
        lr = new
    return lr


def coord_check(
    spec: Spec | str,
    make_model: Callable[[int, Any], Any],
    inputs: Any,
    loss: Callable[[Any, Any], Any],
    *,
    widths: Sequence[int] | None = None,
    steps: int = 1,
    seeds: Sequence[int] = (0, 1),
    learning_rate: float | None = None,
    base_width: int | None = None,
    optimizer: str | None = None,
    alignment: Any = "full",
    tolerance: float | None = None,
    eps: float = 1e-8,
    prediction: str = "first_step",
    layouts: Mapping[str, Any] | None = None,
    roles: Mapping[str, str] | None = None,
    tied: Mapping[str, str] | None = None,
    target_change: float = 1e-2,
    depths: Sequence[int] | None = None,
    width: int = 64,
    base_depth: int | None = None,
    depth_alpha: Any = None,
    branches: Sequence[str] | None = None,
) -> CoordCheck:
    """Train `steps` steps at every width and fit each layer's activation-change slope.

    `widths` default to (64, 128, 256, 512). With `depths=` instead, the check runs
    across depth at one `width` (`paramspec._coord_depth.coord_check_depth`: the residual
    stream, the blocks' contributions and the logits; `make_model(width, key, depth=L)`).

    - `make_model(width, key)`: the user's model (built with `c.init(make_model, key,
      layouts=layouts, roles=roles, tied=tied, branches=branches)` at each width;
      `branches` names the residual branches' output projections for a depth spec).
    - `inputs`: one fixed batch, passed to `loss(model, inputs) -> scalar`.
    - Features: the model's own `features(x)`/`feature_roles()` when it has them (the
      reference models; called on `inputs[0]` vmapped), otherwise recorded while the
      loss runs: the output of every parameterized module, by path, with its
      parameters' role, and the model's output as `(output)` unless a readout module's
      output is the same array (docs/coord-check.md).
    - `learning_rate`: `None` (default) calibrates a perturbative one: probe steps at
      the smallest and the largest width, scaled so that the largest relative change
      `rms(x_t - x_0) / rms(x_0)` of any feature is about `target_change`. A layer whose
      change still exceeds its own size is flagged, not judged.
    - `prediction`: `"first_step"` (default; `first_step_exponents`) or `"theory"`.
    - `tolerance`: `None` for the library's rule (`judgement`: per role, with the
      readout's known finite-size corrections), or a number for a symmetric band.

    Everything is validated on the first model, before any training: the spec's roles
    against the model, the inputs and the loss, the features and their predictions.
    """
    import jax

    from ._equinox._build import parameter_blocks

    if depths is not None:
        from ._coord_depth import coord_check_depth

        if widths is not None or prediction != "first_step":
            raise SpecError("a coordinate check across depth takes depths= and one width=, "
                            "not widths= (and the first-step prediction only)",
                            hint="e.g. depths=(2, 4, 8, 16), width=64")
        return coord_check_depth(
            spec, make_model, inputs, loss, depths=depths, width=width, base_depth=base_depth,
            base_width=base_width, depth_alpha=depth_alpha, steps=steps, seeds=seeds,
            learning_rate=learning_rate, optimizer=optimizer, tolerance=tolerance, eps=eps,
            target_change=target_change, layouts=layouts, roles=roles, tied=tied,
            branches=branches)
    widths = (64, 128, 256, 512) if widths is None else widths
    if len(widths) < 2 or len(set(widths)) != len(widths):
        raise SpecError(
            "a coordinate check needs at least two different widths",
            hint="e.g. widths=(64, 128, 256, 512)",
        )
    if steps < 1:
        raise SpecError(f"steps must be at least 1, got {steps}")
    if not seeds:
        raise SpecError("a coordinate check needs at least one seed")
    if prediction not in PREDICTIONS:
        raise SpecError(
            f"unknown prediction `{prediction}`", hint=f"use one of {', '.join(PREDICTIONS)}"
        )
    if learning_rate is not None and not learning_rate > 0:
        raise SpecError(f"the learning rate must be positive, got {learning_rate}")
    widths = tuple(widths)
    base = _compiled_theory(spec, optimizer, alignment, base_width)
    spec_name = spec.name if isinstance(spec, Spec) else str(spec)
    init_kwargs = {k: v for k, v in (("layouts", layouts), ("roles", roles), ("tied", tied),
                                     ("branches", branches)) if v is not None}

    def compiled(width: int) -> Any:
        return compile_spec(
            spec, width=width, base_width=base_width, optimizer=optimizer, alignment=alignment
        )

    # Validation, before any training: the model at the smallest width, its features,
    # their roles and predictions.
    first = compiled(min(widths)).init(make_model, jax.random.key(seeds[0]), **init_kwargs)
    features = _Features(first, compiled(min(widths)), inputs, loss)
    used = set(parameter_blocks(first).values())
    if prediction == "first_step":
        terms = first_step_terms(base.theory, features.roles, used or None)
    else:
        terms = {n: (r,) for n, r in
                 theory_exponents(base.theory, features.roles, used or None).items()}

    source = "given"
    if learning_rate is None:
        source = "perturbative"
        start = perturbative_learning_rate(base.theory, features.roles, max(widths) / min(widths),
                                           blocks=used or None)

        def probe(lr: float) -> dict[str, float]:
            out: dict[str, float] = {}
            for width in (min(widths), max(widths)):
                rel = _one_step(compiled(width), make_model, jax.random.key(seeds[0]),
                                features, inputs, loss, lr, eps, steps, init_kwargs)[2]
                for name, r in rel.items():
                    out[name] = max(out.get(name, -math.inf), r) if math.isfinite(r) else r
            return out

        learning_rate = _calibrate(probe, start, target_change)

    deltas: dict[str, list[float]] = {n: [] for n in features.roles}
    sizes: dict[str, list[float]] = {n: [] for n in features.roles}
    relative: dict[str, float | None] = {n: None for n in features.roles}
    for width in widths:
        c = compiled(width)
        per_seed = [
            _one_step(c, make_model, jax.random.key(seed), features, inputs, loss,
                      learning_rate, eps, steps, init_kwargs,
                      model=first if (width, seed) == (min(widths), seeds[0]) else None)
            for seed in seeds
        ]
        for name in features.roles:
            deltas[name].append(sum(p[0][name] for p in per_seed) / len(per_seed))
            sizes[name].append(sum(p[1][name] for p in per_seed) / len(per_seed))
            rel = [p[2][name] for p in per_seed]
            if all(math.isfinite(r) for r in rel):
                mean = sum(rel) / len(rel)
                relative[name] = max(relative[name] or 0.0, mean)

    readout = next((n for n in reversed(list(features.roles))
                    if features.roles[n] == "output"), None)
    layers = []
    for name, role in features.roles.items():
        shape = features.shapes[name]
        band, note = judgement(role, terms[name], widths,
                               outputs=int(shape[-1]) if shape else None,
                               readout=name == readout)
        if tolerance is not None:
            band, note = (tolerance, tolerance), ""
        layer = LayerSlope(name, role, widths, tuple(deltas[name]), tuple(sizes[name]),
                           _slope(widths, deltas[name]), float(-min(terms[name])), band,
                           relative[name], note)
        if layer.flagged:
            layer = LayerSlope(**{**layer.__dict__, "note": (
                f"changed by {layer.relative:.2g}x its own size: outside the perturbative "
                "regime, not judged (lower the learning rate)")})
        layers.append(layer)
    return CoordCheck(
        spec_name,
        base.optimizer_name,
        base.alignment,
        steps,
        learning_rate,
        tuple(layers),
        prediction,
        source,
        features.cls,
    )


def perturbative_learning_rate(
    theory: Theory, roles: Mapping[str, str], n_max: float, *, scale: float = 1e-2,
    blocks: Collection[str] | None = None,
) -> float:
    """A learning rate that keeps the first step perturbative up to width multiplier n_max.

    Every feature changes by about `learning_rate * n^(-r)` (first-step exponents), so
    `scale * n_max^(-G)` with G = max(0, -r) bounds the largest change near `scale` at
    the largest width: the second-order (dW dz) terms stay a fraction `scale` of the
    first-order ones and no activation pattern flips, while every width still moves.
    The constants (fan-ins, batch) are not in it: `coord_check` starts from it and
    calibrates on the model (`learning_rate=None`).
    """
    exponents = first_step_exponents(theory, roles, blocks)
    growth = max([Fraction(0)] + [-r for r in exponents.values()])
    return scale * float(n_max) ** float(-growth)
