"""`check`: is a spec stable, does it learn features, will its epsilon underflow?

Everything comes from the theory core (`resolve_theory`, reference/theory.md §1-§6); this
module only reads its exponents and turns them into verdicts, reasons and warnings.

Per layer (exponents in the `n^(-x)` convention):

- `a+b`: the effective init scale; stable at init when the role's condition holds (§1).
- `c~` (`step`): the exponent of one entry of the stored weight's update. Adam and
  Adam-atan2 normalise the gradient, so `c~ = c`; Adafactor scales that by the weight's
  RMS, `c~ = b + c`; SGD multiplies the gradient (exponent `g`) by the learning rate,
  `c~ = c + g` (`c + a` for a readout, whose gradient exponent is `a`).
- `r`: the exponent of the layer's output change, the minimum of the terms of §4.
  `r < 0`: unstable in training; `r = 0`: feature learning (maximal update for a
  readout); `r > 0`: the change vanishes with width (kernel / lazy).

The epsilon warning uses a nominal gradient model, made explicit here: the RMS of a
gradient entry is `grad_scale` (default 1e-5) at `grad_width` (default 1024) and scales
like `n^(-g)`; the epsilon underflows once `eps >= ratio * sqrt(v)` (default ratio
0.1, where Adam's step is cut by at least 9%).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .._compile import Compiled, parse_alignment
from .._compile import compile_quiet as compile_spec
from .._errors import SpecError
from .._ir import OPTIMIZERS, Expr, Spec
from .._library import load, resolve, validate
from .._muon_rule import MUON
from .._theory import (
    INPUT_LIKE,
    LayerTheory,
    Theory,
    entry_step,
    resolve_theory,
    stability_condition,
)
from ._depthcheck import DepthCheck, check_depth, depth_wanted, mpow
from ._logits import LogitCheck, check_logits

__all__ = [
    "CaseCheck",
    "CheckReport",
    "EpsUnderflow",
    "LayerCheck",
    "Term",
    "UpdateTerms",
    "alignment_label",
    "as_spec",
    "check",
    "render_check",
    "to_text",
    "update_terms",
]

FULL = Fraction(1)
NONE = Fraction(1, 2)
HALF = Fraction(1, 2)
OPTIMIZERS_WITH_EPS = ("adam", "adafactor", "muon")

# The nominal gradient model of the epsilon-underflow warning (module docstring).
DEFAULT_EPS = 1e-8  # Adam's usual epsilon (optax, PyTorch)
GRAD_SCALE = 1e-5  # RMS of one gradient entry at GRAD_WIDTH: ~0.3 norm over ~1e9 entries
GRAD_WIDTH = 1024
UNDERFLOW_RATIO = 0.1  # eps >= 0.1 sqrt(v): the step m / (sqrt(v) + eps) loses >= 9%
DEFAULT_CHECK_WIDTH = 16384  # the largest width of Everett et al.'s sweeps

VERDICTS = (
    "unstable at init",
    "unstable in training",
    "feature learning",
    "maximal update",
    "kernel/lazy",
    "no width scaling",
)


def as_spec(spec: Spec | str | Path) -> Spec:
    """A resolved, validated `Spec` from a `Spec`, a built-in name or a path."""
    if isinstance(spec, Spec):
        return validate(resolve(spec))
    if not isinstance(spec, str | Path):
        raise SpecError(
            f"expected a Spec, a built-in name or a path, got {type(spec).__name__}",
            hint="e.g. check('mup') or check(paramspec.parse(text))",
        )
    return load(spec)


def alignment_label(alignment: Fraction) -> str:
    """`full`, `none`, or the rational as text."""
    return {FULL: "full", NONE: "none"}.get(alignment, str(alignment))


# ------------------------------------------------------------------ update terms


@dataclass(frozen=True)
class Term:
    """One term of the minimum that gives `r` (theory.md §4)."""

    name: str  # which product: "dW z", "W dz", "dW dz" or "init"
    formula: str  # in words of exponents, e.g. "a + c~ - alpha"
    value: Fraction
    upstream: bool  # depends on the earlier layers' r


@dataclass(frozen=True)
class UpdateTerms:
    """How a layer's `r` is made: the per-entry update exponent and the §4 terms."""

    step: Fraction  # c~: the exponent of one entry of the stored weight's update
    step_formula: str
    r_prev: Fraction | None  # the r this layer receives from the layers before it
    terms: tuple[Term, ...]

    @property
    def r(self) -> Fraction:
        return min(t.value for t in self.terms)

    @property
    def own(self) -> Fraction | None:
        """The smallest term that does not depend on earlier layers."""
        values = [t.value for t in self.terms if not t.upstream]
        return min(values) if values else None


def _step(layer: LayerTheory, optimizer: str, alignment: Fraction) -> tuple[Fraction, str]:
    """The theory's per-entry update exponent, with the words that explain it."""
    if MUON.applies(optimizer, layer.role):
        words = ("c + alignment (Muon: an orthogonalised update, ||dW||_* ~ lr; per entry "
                 "n^-1 for a low-rank aligned step, n^-1/2 for a full-rank one)")
    elif optimizer == "sgd":
        if layer.role == "output":
            words = "c + a (SGD: lr times the readout's gradient, g = a)"
        else:
            words = "c + g (SGD: lr times the gradient)"
    elif optimizer == "adafactor":
        words = "b + c (Adafactor: normalised step times RMS(w) ~ n^-b)"
    else:
        words = f"c ({optimizer} normalises the gradient: each entry moves ~ lr)"
    return entry_step(layer, optimizer, alignment), words


def update_terms(spec: Spec, theory: Theory) -> dict[str, UpdateTerms | None]:
    """The §4 terms of every block, in the order and chaining of the theory core.

    Input-like blocks start the chain; hidden blocks form one chain in written order
    (each receives the smallest r so far); readouts receive the smallest r of all.
    `None` for the constant role (nothing grows with width).
    """
    alpha = u = theory.alignment
    omega = HALF
    out: dict[str, UpdateTerms | None] = {}
    chain: list[Fraction] = []
    for block in spec.blocks:
        layer = theory.layers[block.name]
        if layer.role in INPUT_LIKE:
            step, formula = _step(layer, theory.optimizer, theory.alignment)
            term = Term("dW z", "a + c~ (the fan-in does not grow: no sum)", layer.a + step, False)
            out[block.name] = UpdateTerms(step, formula, None, (term,))
            chain.append(term.value)
    r_prev = min(chain) if chain else Fraction(0)
    for block in spec.blocks:
        layer = theory.layers[block.name]
        if layer.role != "hidden":
            continue
        step, formula = _step(layer, theory.optimizer, theory.alignment)
        x = layer.a + step
        terms = (
            Term("dW z", "a + c~ - alpha", x - alpha, False),
            Term("dW dz", "a + c~ + r_prev - u", x + r_prev - u, True),
            Term("W dz", "1/2 + r_prev - omega", HALF + r_prev - omega, True),
        )
        out[block.name] = UpdateTerms(step, formula, r_prev, terms)
        r_prev = min(r_prev, min(t.value for t in terms))
    for block in spec.blocks:
        layer = theory.layers[block.name]
        if layer.role != "output":
            continue
        step, formula = _step(layer, theory.optimizer, theory.alignment)
        x = layer.a + step
        terms = [
            Term("dW z", "a + c~ - alpha", x - alpha, False),
            Term("dW dz", "a + c~ + r_prev - u", x + r_prev - u, True),
        ]
        if not layer.zero_init:
            terms.append(Term("W dz", "a + b + r_prev - omega", layer.ab + r_prev - omega, True))
        out[block.name] = UpdateTerms(step, formula, r_prev, tuple(terms))
    for block in spec.blocks:
        if theory.layers[block.name].role == "constant":
            out[block.name] = None
    return out


# ------------------------------------------------------------------ reports


@dataclass(frozen=True)
class EpsUnderflow:
    """The epsilon against the nominal sqrt(v) of one layer (module docstring)."""

    layer: str
    g: Fraction
    e: Fraction
    width: int
    eps: float  # the absolute epsilon at `width`
    sqrt_v: float  # the nominal RMS gradient entry at `width`
    ratio: float
    underflow: bool  # eps >= ratio * sqrt_v at `width`
    underflow_width: int | None  # first width where it underflows, when g > e

    @property
    def message(self) -> str:
        grows = self.g - self.e
        where = (
            f"; it reaches {self.ratio:g} sqrt(v) from width ~{self.underflow_width}"
            if self.underflow_width is not None
            else ""
        )
        head = (
            f"layer `{self.layer}`: epsilon {self.eps:.3g} "
            f"{'>=' if self.underflow else '<'} {self.ratio:g} * sqrt(v) "
            f"(nominal sqrt(v) = {self.sqrt_v:.3g}) at width {self.width}"
        )
        if grows > 0:
            return (
                head + f": the gradient shrinks like n^(-{self.g}) but eps like n^(-{self.e}), "
                f"so eps/sqrt(v) grows like n^({grows}){where}. Use `eps auto` "
                "(eps ~ n^(-g)), a much smaller eps, or adam_atan2"
            )
        if grows == 0:
            return head + ": eps dominates sqrt(v) at every width. Use a smaller eps"
        return head + ": eps dominates sqrt(v) here (less so at larger widths). Use a smaller eps"

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "g": str(self.g),
            "e": str(self.e),
            "width": self.width,
            "eps": self.eps,
            "sqrt_v": self.sqrt_v,
            "underflow": self.underflow,
            "underflow_width": self.underflow_width,
            "message": self.message,
        }


@dataclass(frozen=True)
class LayerCheck:
    """One layer under one optimizer and alignment."""

    name: str
    role: str
    a: Fraction
    b: Fraction
    c: Fraction
    e: Fraction
    g: Fraction
    r: Fraction | None
    step: Fraction | None
    stable_init: bool
    stable_training: bool
    feature_learning: bool
    verdict: str
    prescribed_c: Fraction  # the theory's largest stable learning rate (every lr `auto`)
    reasons: tuple[str, ...]
    eps: EpsUnderflow | None = None

    @property
    def ab(self) -> Fraction:
        return self.a + self.b

    @property
    def stable(self) -> bool:
        return self.stable_init and self.stable_training

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "exponents": {
                "a": str(self.a),
                "b": str(self.b),
                "a+b": str(self.ab),
                "c": str(self.c),
                "e": str(self.e),
                "g": str(self.g),
                "r": None if self.r is None else str(self.r),
            },
            "prescribed_c": str(self.prescribed_c),
            "stable": self.stable,
            "feature_learning": self.feature_learning,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "eps": None if self.eps is None else self.eps.to_dict(),
        }


@dataclass(frozen=True)
class CaseCheck:
    """The whole spec under one optimizer and alignment."""

    optimizer: str
    alignment: Fraction
    layers: dict[str, LayerCheck]
    stable: bool
    feature_learning: bool
    verdict: str
    r_last_hidden: Fraction | None
    depth: DepthCheck | None = None  # the depth axis, when checked (_depthcheck)
    attention: tuple[LogitCheck, ...] = ()  # the attention logits (_logits)
    show_attention: bool = False  # the spec has an `attention` block or a growth was given

    @property
    def name(self) -> str:
        return f"{self.optimizer}/{alignment_label(self.alignment)}"

    @property
    def unstable_layers(self) -> list[str]:
        return [n for n, layer in self.layers.items() if not layer.stable]

    @property
    def warnings(self) -> list[str]:
        out = [
            x.eps.message for x in self.layers.values() if x.eps is not None and x.eps.underflow
        ]
        out += [x.message for x in self.attention if not x.stable and not x.counted]
        if self.depth is not None:
            out += self.depth.warnings
        return out

    def to_dict(self) -> dict[str, Any]:
        out = self._width_dict()
        if self.show_attention:
            out["attention"] = [x.to_dict() for x in self.attention]
        if self.depth is not None:
            out["depth"] = self.depth.to_dict()
        return out

    def _width_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "alignment": str(self.alignment),
            "stable": self.stable,
            "feature_learning": self.feature_learning,
            "verdict": self.verdict,
            "r_last_hidden": None if self.r_last_hidden is None else str(self.r_last_hidden),
            "unstable_layers": self.unstable_layers,
            "warnings": self.warnings,
            "layers": {n: layer.to_dict() for n, layer in self.layers.items()},
        }


@dataclass(frozen=True)
class CheckReport:
    """`check`'s answer: one `CaseCheck` per optimizer x alignment looked at."""

    spec: str
    width: int
    base_width: int
    eps: float
    cases: tuple[CaseCheck, ...] = field(default_factory=tuple)
    depth_checked: bool = False  # every case carries a `depth` (docs/analysis.md)

    @property
    def stable(self) -> bool:
        return all(case.stable for case in self.cases)

    @property
    def feature_learning(self) -> bool:
        return all(case.feature_learning for case in self.cases)

    @property
    def warnings(self) -> list[str]:
        return [f"{case.name}: {w}" for case in self.cases for w in case.warnings]

    def case(self, optimizer: str, alignment: str | Fraction = "full") -> CaseCheck:
        align = parse_alignment(alignment)
        for case in self.cases:
            if case.optimizer == optimizer and case.alignment == align:
                return case
        have = ", ".join(case.name for case in self.cases)
        raise SpecError(
            f"no case {optimizer}/{alignment_label(align)} in this report", hint=f"it has: {have}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: exponents as exact rational strings, deterministic order."""
        return {
            "spec": self.spec,
            "stable": self.stable,
            "feature_learning": self.feature_learning,
            "width": self.width,
            "base_width": self.base_width,
            "eps": self.eps,
            "nominal_gradient": {
                "grad_scale": GRAD_SCALE,
                "grad_width": GRAD_WIDTH,
                "ratio": UNDERFLOW_RATIO,
            },
            "cases": [case.to_dict() for case in self.cases],
        }


# ------------------------------------------------------------------ check


def _cases(
    spec: Spec, optimizer: str | None, alignment: str | float | Fraction | None
) -> list[tuple[str, Fraction]]:
    if optimizer is None:
        optimizers = [spec.optimizer] if spec.optimizer is not None else list(OPTIMIZERS)
    elif optimizer == "all":
        optimizers = list(OPTIMIZERS)
    elif optimizer in OPTIMIZERS:
        optimizers = [optimizer]
    else:
        raise SpecError(
            f"unknown optimizer `{optimizer}`",
            hint=f"choose one of {', '.join(OPTIMIZERS)}, or `all`",
        )
    if alignment is None:
        alignments = [spec.alignment] if spec.alignment is not None else [FULL, NONE]
    elif alignment == "all":
        alignments = [FULL, NONE]
    else:
        alignments = [parse_alignment(alignment)]
    return [(o, a) for o in optimizers for a in alignments]


def _all_auto(spec: Spec) -> Spec:
    """The same spec with every learning rate `auto` (keeping its constant)."""
    blocks = tuple(
        b.model_copy(
            update={"lr": Expr(kind="auto", constant=b.lr.constant if b.lr is not None else 1)}
        )
        for b in spec.blocks
    )
    return spec.model_copy(update={"blocks": blocks})


def _eps_check(
    compiled: Compiled,
    layer: LayerTheory,
    eps: float,
    grad_scale: float,
    grad_width: int,
    ratio: float,
) -> EpsUnderflow | None:
    if compiled.optimizer_name not in OPTIMIZERS_WITH_EPS:
        return None
    scale = compiled.value(layer.name, "eps")
    assert scale is not None
    width = compiled.width
    eps_w = eps * scale
    g = layer.g
    sqrt_v = grad_scale * (width / grad_width) ** float(-g)
    if MUON.applies(compiled.optimizer_name, layer.role):
        # Muon's eps guards ||G||_F, about width * (RMS entry) for a hidden matrix
        g = MUON.eps_exponent(layer.g)
        sqrt_v *= width
    underflow = eps_w >= ratio * sqrt_v
    grows = g - layer.e
    crossing = None
    if grows > 0 and eps_w > 0:
        # eps/sqrt(v) ~ width^(g - e): it reaches `ratio` at this width.
        exact = width * (ratio * sqrt_v / eps_w) ** (1 / float(grows))
        crossing = math.ceil(exact * (1 - 1e-12))  # not one more for a rounding error
    if not underflow and crossing is None:
        return None
    return EpsUnderflow(
        layer.name, g, layer.e, width, eps_w, sqrt_v, ratio, underflow, crossing
    )


def _reasons(
    layer: LayerTheory, terms: UpdateTerms | None, prescribed: Fraction, unstable_before: list[str]
) -> list[str]:
    reasons = []
    need = stability_condition(layer.role, layer.ab)
    if need is not None and not layer.zero_init:
        reasons.append(
            f"unstable at init: a+b = {layer.ab}, but a {layer.role} layer needs {need} "
            "(the spec allows it with `allow unstable_init`)"
        )
    if terms is None or terms.r >= 0:
        return reasons
    own = terms.own
    if own is not None and own < 0:
        reasons.append(
            f"its own update is too large: r = {terms.r} < 0, so its output change grows like "
            f"n^({-terms.r}); the learning-rate exponent is c = {layer.c} but needs "
            f"c >= {layer.c - own} (the theory's largest stable learning rate here is "
            f"c = {prescribed}, lr ~ n^({-prescribed}))"
        )
    if terms.r_prev is not None and terms.r_prev < 0:
        before = ", ".join(f"`{n}`" for n in unstable_before) or "the earlier layers"
        reasons.append(
            f"it receives a change growing like n^({-terms.r_prev}) from {before} "
            f"(r_prev = {terms.r_prev})"
        )
    return reasons


def _verdict(layer: LayerTheory, r: Fraction | None, stable_init: bool) -> str:
    if not stable_init:
        return "unstable at init"
    if r is None:
        return "no width scaling"
    if r < 0:
        return "unstable in training"
    if r == 0:
        return "maximal update" if layer.role == "output" else "feature learning"
    return "kernel/lazy"


def _check_case(
    spec: Spec,
    optimizer: str,
    alignment: Fraction,
    width: int,
    base_width: int | None,
    eps: float,
    grad_scale: float,
    grad_width: int,
    ratio: float,
    depth: dict[str, Any] | None = None,
    growth: str | None = None,
) -> CaseCheck:
    """One case; `depth` (the `depth`, `base_depth`, `depth_alpha` arguments of compile)
    adds the depth axis, `growth` counts the attention logits in the verdict."""
    compiled = compile_spec(
        spec, width=width, base_width=base_width, optimizer=optimizer, alignment=alignment,
        **(depth or {}),
    )
    theory = compiled.theory
    prescribed = resolve_theory(_all_auto(spec), optimizer, alignment)
    terms = update_terms(spec, theory)
    layers: dict[str, LayerCheck] = {}
    unstable_so_far: list[str] = []
    # Readouts last, as in the chain of §4, so "receives from" names the right layers.
    order = sorted(spec.blocks, key=lambda b: {"output": 2, "hidden": 1}.get(b.role or "", 0))
    for block in order:
        layer = theory.layers[block.name]
        t = terms[block.name]
        stable_training = layer.r is None or layer.r >= 0
        stable_init = layer.stable_init
        reasons = _reasons(layer, t, prescribed.layers[block.name].c, list(unstable_so_far))
        verdict = _verdict(layer, layer.r, stable_init)
        layers[block.name] = LayerCheck(
            name=block.name,
            role=layer.role,
            a=layer.a,
            b=layer.b,
            c=layer.c,
            e=layer.e,
            g=layer.g,
            r=layer.r,
            step=None if t is None else t.step,
            stable_init=stable_init,
            stable_training=stable_training,
            feature_learning=stable_init and stable_training and layer.r == 0,
            verdict=verdict,
            prescribed_c=prescribed.layers[block.name].c,
            reasons=tuple(reasons),
            eps=_eps_check(compiled, layer, eps, grad_scale, grad_width, ratio),
        )
        if not (stable_init and stable_training):
            unstable_so_far.append(block.name)
    layers = {b.name: layers[b.name] for b in spec.blocks}  # written order
    if not theory.stable_init:
        verdict = "unstable at init"
    elif not theory.stable_training:
        verdict = "unstable in training"
    elif theory.feature_learning:
        verdict = "feature learning"
    else:
        verdict = "kernel/lazy"
    deep = None
    if depth is not None:
        deep = check_depth(spec, optimizer, compiled.depth_alpha, compiled.depth,
                           compiled.base_depth, compiled.depth_theory)
    logits = check_logits(spec, theory, growth)
    stable = (theory.stable and (deep is None or deep.stable)
              and all(x.stable for x in logits if x.counted))
    return CaseCheck(
        optimizer,
        alignment,
        layers,
        stable,
        theory.feature_learning,
        verdict,
        theory.r_last_hidden,
        deep,
        logits,
        spec.attention is not None or growth is not None,
    )


def check(
    spec: Spec | str | Path,
    *,
    optimizer: str | None = None,
    alignment: str | float | Fraction | None = None,
    width: int | None = None,
    base_width: int | None = None,
    eps: float = DEFAULT_EPS,
    grad_scale: float = GRAD_SCALE,
    grad_width: int = GRAD_WIDTH,
    ratio: float = UNDERFLOW_RATIO,
    depth: int | None = None,
    base_depth: int | None = None,
    depth_alpha: str | float | Fraction | None = None,
    attention: str | None = None,
) -> CheckReport:
    """Check a spec against the theory: stability, feature learning, epsilon underflow.

    Which cases: `optimizer` and `alignment` given -> that one; not given -> the spec's
    own setting when it has one, otherwise every optimizer (adam, adam_atan2, sgd,
    adafactor) and both ends of alignment (full, none); `"all"` -> every one. So
    `check("mup")` checks adam/full (mup's own settings) and passes, and
    `check("sp-global")` fails under adam/full naming `hidden` and `readout`.

    `width` (default 16384) and `base_width` (default: the spec's, else 1) only matter
    for the epsilon warning: the absolute epsilon is `eps * eps_scale(width)`, the nominal
    RMS gradient entry `grad_scale * (width / grad_width)^(-g)`, and a layer underflows
    when `eps >= ratio * sqrt(v)`.

    Depth (`_depthcheck`, docs/analysis.md "Depth"): checked when the spec uses depth
    (`m`, `depth`, `residual`, `base_depth`, `depth_alpha`) or when `depth`, `base_depth`
    or `depth_alpha` is given (so `check("mup", depth=16)` asks a depth-blind spec about
    depth: unstable, its residual stream's update grows like m). Each case then carries a
    `DepthCheck` and is stable only when it is stable in depth too. The verdicts depend
    on the exponents only; `depth` and `base_depth` set the m shown.

    Attention (`_logits`): the logits under both growths (head count, head size) are
    reported, a growth under which they grow as a warning; `attention="head_size"` or
    `"heads"` says which the model has and counts them in the verdict.

    Example:
        >>> from paramspec._analysis._check import check
        >>> check("mup").stable
        True
        >>> check("sp-global").case("adam", "full").unstable_layers
        ['hidden', 'readout']
    """
    resolved = as_spec(spec)
    defaults = {"eps": DEFAULT_EPS, "grad_scale": GRAD_SCALE, "ratio": UNDERFLOW_RATIO}
    for name, value in (("eps", eps), ("grad_scale", grad_scale), ("ratio", ratio)):
        bad = isinstance(value, bool) or not isinstance(value, int | float)
        if bad or not math.isfinite(value) or value < 0 or (value == 0 and name != "eps"):
            raise SpecError(
                f"{name} must be a finite number > 0, got {value!r}",
                hint=f"e.g. {name}={defaults[name]:g}",
            )
    check_width = DEFAULT_CHECK_WIDTH if width is None else width
    deep = None
    if depth_wanted(resolved, depth, base_depth, depth_alpha):
        deep = {"depth": depth, "base_depth": base_depth, "depth_alpha": depth_alpha}
    cases = tuple(
        _check_case(resolved, o, a, check_width, base_width, eps, grad_scale, grad_width, ratio,
                    deep, attention)
        for o, a in _cases(resolved, optimizer, alignment)
    )
    base = base_width if base_width is not None else resolved.base_width or 1
    return CheckReport(resolved.name, check_width, base, float(eps), cases, deep is not None)


# ------------------------------------------------------------------ rendering


def to_text(renderable: Any, *, width: int = 110) -> str:
    """Plain text of a rich renderable (no colour, fixed width: deterministic), wider than
    `width` where a table needs it to show every cell in full (paramspec._fullwidth)."""
    from rich.console import Console

    from .._fullwidth import natural_width

    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=max(width, natural_width(renderable)),
        color_system=None,
        force_terminal=False,
        legacy_windows=False,
        soft_wrap=False,
    )
    console.print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def render_check(report: CheckReport) -> Any:
    """A rich renderable: one table per case, then reasons and warnings."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    overall = "stable" if report.stable else "UNSTABLE"
    axes = [word for word, bad in (
        ("width", any(c.unstable_layers for c in report.cases)),
        ("depth", any(c.depth is not None and not c.depth.stable for c in report.cases)),
        ("attention logits", any(not x.stable for c in report.cases for x in c.attention
                                 if x.counted))) if bad]
    if axes and axes != ["width"]:  # width alone: the words of a width-only check
        overall += " in " + " and ".join(axes)
    fl = "feature learning" if report.feature_learning else "not feature learning everywhere"
    parts.append(Text(f"{report.spec}: {overall}, {fl}"))
    for case in report.cases:
        table = Table(
            title=f"{report.spec} under {case.name}: {case.verdict}",
            title_justify="left",
            show_edge=False,
            pad_edge=False,
        )
        for column in ("layer", "role", "a+b", "c", "g", "r", "verdict"):
            table.add_column(
                column, justify="left" if column in ("layer", "role", "verdict") else "right"
            )
        for name, layer in case.layers.items():
            table.add_row(
                name,
                layer.role,
                str(layer.ab),
                str(layer.c),
                str(layer.g),
                "-" if layer.r is None else str(layer.r),
                layer.verdict,
            )
        parts.append(Text(""))
        parts.append(table)
        for name, layer in case.layers.items():
            for reason in layer.reasons:
                parts.append(Text(f"  {name}: {reason}"))
            if layer.eps is not None:
                tag = "warning" if layer.eps.underflow else "note"
                parts.append(Text(f"  {tag}: {layer.eps.message}"))
        for logit in case.attention:
            if logit.counted:
                tag = "attention" if logit.stable else "UNSTABLE"
                parts.append(Text(f"  {tag}: {logit.message}"))
            elif not logit.stable:
                parts.append(Text(f"  warning: {logit.message}"))
        if case.depth is not None:
            parts += _render_depth(report.spec, case)
    return Group(*parts)


def _render_depth(spec: str, case: CaseCheck) -> list[Any]:
    """The depth table of one case (docs/analysis.md "Depth")."""
    from rich.table import Table
    from rich.text import Text

    d = case.depth
    assert d is not None
    table = Table(
        title=(f"{spec} in depth under {case.optimizer} (m = depth / base depth = "
               f"{d.depth}/{d.base_depth}, alpha {d.alpha}, branch {mpow(d.beta)}; branches at "
               f"init ~ {mpow(d.init)}): {d.verdict}"),
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    for column in ("layer", "blocks", "a_m", "b_m", "c_m", "g_m", "s", "q", "r_m", "verdict"):
        table.add_column(column, justify="left" if column in ("layer", "blocks", "verdict")
                         else "right")
    for name, x in d.layers.items():
        table.add_row(name, "repeated" if x.repeated else "fixed", str(x.a), str(x.b), str(x.c),
                      str(x.g), str(x.step), str(x.q), str(x.r), x.verdict)
    parts: list[Any] = [Text(""), table]
    parts += [Text(f"  depth: {r}") for r in d.reasons]
    for name, x in d.layers.items():
        parts += [Text(f"  {name}: {r}") for r in x.reasons]
        parts += [Text(f"  warning: {w}") for w in x.warnings]
    return parts
