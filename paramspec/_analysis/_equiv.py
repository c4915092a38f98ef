"""`equivalent`: do two specs train identically, up to the symmetry of theory.md §3?

The symmetry. Store a layer's weight as `w' = n^(theta) w` and shrink its multiplier by
the same factor: `W = n^(-a) w = n^(-(a+theta)) w'`, so the function is unchanged at
init when `(a, b) -> (a + theta, b - theta)`. The gradient of `w'` is `n^(-theta)`
times that of `w` (`g' = g + theta`). The training trajectory of `W` is unchanged when
the update of `w'` is `n^(theta)` times that of `w`:

    optimizer     update of w                         c'            e'
    sgd           lr * grad                           c - 2 theta   (no eps)
    adam          lr * m / (sqrt(v) + eps)            c - theta     e + theta
    adam_atan2    lr * a atan2(m, b sqrt(v))          c - theta     (no eps)
    adafactor     lr * RMS(w) * g / sqrt(v + eps^2)   c             e + theta

Adam's and Adafactor's epsilon lives in gradient units, so it must move with the
gradient (`e' = e + theta`); a fixed epsilon breaks the symmetry. theory.md §3 writes
"Adam-atan2: c' = c" and "e' = e - theta": both are slips. atan2 is invariant to the
gradient's scale exactly like Adam, so `c' = c - theta`; and the gradient of `w'`
shrinks by `n^(-theta)`, so `e' = e + theta` (the tables of §5/§6 agree with this).

Weight decay is decoupled (`w -= lr * lr_scale * (u + wd * w)`, the PyTorch-AdamW
convention of the compiled optimizer): it is linear in `w`, so `W` decays by the factor
`1 - lr * wd` per step in either coordinates. The symmetry keeps the decay when the
product `lr * wd` is kept: `wd' = wd + (c - c')`, i.e. `c + wd` is invariant.

Canonical form: shift every layer to `a = 0` (theta = -a). Two specs are equivalent
under an optimizer exactly when their canonical forms agree:

    a + b          the effective init scale of W
    c + k a        the effective step (k = 2 sgd, 1 adam / adam_atan2, 0 adafactor)
    e - a          the epsilon relative to W's gradient (adam, adafactor)
    c + wd         the decay per step (compared with `weight_decay=True`)

and the same init kind (random, zero, keep). Constants: the exponents fix how a value
scales; the constants fix the value at the base width. With `constants=True` the
folded numbers (`effective_values`, the absorbed form of `_absorb`) must agree too:
`|m| s` (init std of W), `lr |m|^k`, `eps / |m|` and `lr * wd`, at one width with the
nominal fans; equal exponents make their ratio width-independent, so one width decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .._compile import Compiled, parse_alignment
from .._compile import compile_quiet as compile_spec
from .._errors import SpecError
from .._ir import OPTIMIZERS, Spec
from .._theory import LayerTheory
from ._check import alignment_label, as_spec

__all__ = [
    "EPS_MOVES",
    "SHIFT_C",
    "EquivReport",
    "canonical",
    "effective_values",
    "equivalent",
    "init_kind",
    "render_equiv",
    "shift",
]

# c' = c - SHIFT_C[optimizer] * theta (module docstring).
SHIFT_C: dict[str, int] = {"sgd": 2, "adam": 1, "adam_atan2": 1, "adafactor": 0, "muon": 1}
# Optimizers whose epsilon must move with the gradient: e' = e + theta.
# Muon: its Adam leaves as Adam; its orthogonalised update is invariant to the gradient's
# scale once its eps (the guard of ||m||_F + eps) scales with it (docs/theory.md).
EPS_MOVES = ("adam", "adafactor", "muon")
DEFAULT_WIDTH = 1024


def _check_optimizer(optimizer: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise SpecError(
            f"unknown optimizer `{optimizer}`", hint=f"choose one of {', '.join(OPTIMIZERS)}"
        )


def shift(exponents: dict[str, Fraction], theta: Fraction, optimizer: str) -> dict[str, Fraction]:
    """Apply the symmetry to a layer's exponents `{a, b, c, e, wd}`."""
    _check_optimizer(optimizer)
    k = SHIFT_C[optimizer]
    out = dict(exponents)
    out["a"] = exponents["a"] + theta
    out["b"] = exponents["b"] - theta
    out["c"] = exponents["c"] - k * theta
    if optimizer in EPS_MOVES:
        out["e"] = exponents["e"] + theta
    out["wd"] = exponents["wd"] + k * theta
    return out


def init_kind(compiled: Compiled, name: str) -> str:
    """`normal` (random with a std), `zero`, or `keep` (the module's own values)."""
    layer = compiled.theory.layers[name]
    init = compiled.block(name).init
    if layer.zero_init:
        return "zero"
    if init is not None and init.kind == "keep":
        return "keep"
    return "normal"


def canonical(compiled: Compiled, name: str) -> dict[str, str]:
    """A layer shifted to `a = 0`: the invariants of the symmetry, as exact strings."""
    t: LayerTheory = compiled.theory.layers[name]
    moved = shift({"a": t.a, "b": t.b, "c": t.c, "e": t.e, "wd": t.wd}, -t.a, compiled.optimizer_name)
    out = {"role": t.role, "init": init_kind(compiled, name), "a": str(moved["a"])}
    if out["init"] != "zero":
        out["b"] = str(moved["b"])  # a + b
    out["c"] = str(moved["c"])  # c + k a
    if compiled.optimizer_name in EPS_MOVES:
        out["e"] = str(moved["e"])  # e - a
    out["decay"] = str(t.c + t.wd)  # per-step decay lr * wd: invariant by construction
    return out


def effective_values(
    compiled: Compiled, name: str, *, fan_in: int | None = None, fan_out: int | None = None
) -> dict[str, float | None]:
    """The layer's numbers with its multiplier folded in (the absorbed form, multiplier 1).

    `W = m w`, `w ~ N(0, s^2)`, learning-rate factor `l`, epsilon factor `eps`, decay
    factor `wd`; the absorbed weight is `w' = m w` and trains identically with

    - `init_std = |m| s` (`init_scale = m` multiplies the stored values: the route for
      `init keep`, whose `init_std` is None),
    - `lr_scale = l |m|^k` (k = 2 sgd: the gradient of w' is grad_w / m and W moves
      m times w's step; 1 adam / adam_atan2: the step is scale-free; 0 adafactor: the
      step already scales with RMS(w') = |m| RMS(w)),
    - `eps_scale = eps / |m|` (adam, adafactor: the gradient of w' is grad_w / m),
    - `wd_scale = wd l / l'`, keeping the per-step decay `lr * wd` of W.
    """
    _check_optimizer(compiled.optimizer_name)
    fans = {"fan_in": fan_in, "fan_out": fan_out}
    m = compiled.value(name, "multiplier", **fans)
    s = compiled.value(name, "init", **fans)
    lr = compiled.value(name, "lr", **fans)
    eps = compiled.value(name, "eps", **fans)
    wd = compiled.value(name, "wd", **fans)
    assert m is not None and lr is not None and eps is not None and wd is not None
    if m == 0:
        raise SpecError(
            f"block `{name}` has multiplier 0: W = 0 whatever the stored weight is, so "
            "there is nothing to fold",
            hint="give the block a non-zero multiplier (use `init 0` for a zero start)",
        )
    k = SHIFT_C[compiled.optimizer_name]
    am = abs(m)
    lr_new = lr * am**k
    return {
        "multiplier": 1.0,
        "init_scale": m,
        "init_std": None if s is None else am * s,
        "lr_scale": lr_new,
        "eps_scale": eps / am if compiled.optimizer_name in EPS_MOVES else eps,
        "wd_scale": wd * lr / lr_new if lr_new != 0 else wd,
    }


@dataclass(frozen=True)
class EquivReport:
    """`equivalent`'s answer. `theta[layer]` takes spec `a`'s layer to spec `b`'s."""

    equivalent: bool
    theta: dict[str, Fraction]
    canonical_a: dict[str, dict[str, Any]]
    canonical_b: dict[str, dict[str, Any]]
    reasons: tuple[str, ...]
    spec_a: str
    spec_b: str
    optimizer: str
    alignment_a: Fraction
    alignment_b: Fraction
    exponents_equivalent: bool
    constants_equivalent: bool | None  # None when constants were not compared
    weight_decay_equivalent: bool
    notes: tuple[str, ...] = ()
    depth: dict[str, Any] | None = None  # the depth comparison, when a spec uses depth

    def to_dict(self) -> dict[str, Any]:
        out = self._width_dict()
        if self.depth is not None:
            out["depth"] = self.depth
        return out

    def _width_dict(self) -> dict[str, Any]:
        return {
            "equivalent": self.equivalent,
            "theta": {k: str(v) for k, v in self.theta.items()},
            "a": self.spec_a,
            "b": self.spec_b,
            "optimizer": self.optimizer,
            "alignment": {"a": str(self.alignment_a), "b": str(self.alignment_b)},
            "exponents_equivalent": self.exponents_equivalent,
            "constants_equivalent": self.constants_equivalent,
            "weight_decay_equivalent": self.weight_decay_equivalent,
            "canonical": {"a": self.canonical_a, "b": self.canonical_b},
            "reasons": list(self.reasons),
            "notes": list(self.notes),
        }


_INVARIANT_WORDS = {
    "role": "role",
    "init": "init kind",
    "b": "a+b (the effective init scale of W)",
    "c": "the effective step exponent",
    "e": "e - a (epsilon relative to W's gradient)",
    "decay": "c + wd (weight decay per step)",
}
_VALUE_WORDS = {
    "init_scale": "multiplier (folded into the init)",
    "init_std": "|multiplier| * init std (W's init std)",
    "lr_scale": "the effective learning-rate factor",
    "eps_scale": "epsilon / |multiplier| (the effective epsilon)",
    "wd_scale": "the effective weight-decay factor",
}


def _compile(
    spec: Spec, optimizer: str | None, alignment: Any, width: int, base_width: int | None,
    depth_alpha: Any = None,
) -> Compiled:
    return compile_spec(
        spec, width=width, base_width=base_width, optimizer=optimizer, alignment=alignment,
        depth_alpha=depth_alpha,
    )


def _close(x: float | None, y: float | None, rel_tol: float) -> bool:
    if x is None or y is None:
        return x is y
    return math.isclose(x, y, rel_tol=rel_tol, abs_tol=0.0)


def equivalent(
    a: Spec | str | Path,
    b: Spec | str | Path,
    *,
    optimizer: str | None = None,
    alignment: str | float | Fraction | None = None,
    width: int = DEFAULT_WIDTH,
    base_width: int | None = None,
    constants: bool = True,
    weight_decay: bool = False,
    rel_tol: float = 1e-9,
    depth_alpha: str | float | Fraction | None = None,
) -> EquivReport:
    """Decide whether specs `a` and `b` train identically under `optimizer`.

    Both are compiled under `optimizer` and `alignment` when given; otherwise each
    under its own setting (so `auto` resolves as it would for that spec), falling back
    to adam and full alignment as `compile` does. Layers are matched by block name and
    must have the same role. Equivalent when every matched layer has the same canonical
    form (module docstring), plus, with `constants=True`, the same folded numbers at
    `width` (with each spec's own base width unless `base_width` is given) and, with
    `weight_decay=True`, the same per-step decay `c + wd` (off by default: it only
    matters when the optimizer's weight decay is > 0, and is reported in `notes`).

    Depth (`_equivextra`): when either spec uses depth, also the same residual branch
    exponent and every block's canonical depth form under the depth analogue of the
    symmetry, each spec at its own `depth_alpha` unless `depth_alpha` is given. Attention:
    the same logit scale (exponents under both growths; its value with `constants`).

    Example:
        >>> from paramspec._analysis._equiv import equivalent
        >>> report = equivalent("sp", "ntk", optimizer="adam")
        >>> report.equivalent, str(report.theta["hidden"]), str(report.theta["readout"])
        (True, '1/2', '1/2')
    """
    if optimizer is not None:
        _check_optimizer(optimizer)
    if alignment is not None:
        alignment = parse_alignment(alignment)
    spec_a, spec_b = as_spec(a), as_spec(b)
    from ._equivextra import attention_reasons, depth_compare

    ca = _compile(spec_a, optimizer, alignment, width, base_width, depth_alpha)
    cb = _compile(spec_b, optimizer, alignment, width, base_width, depth_alpha)
    reasons: list[str] = []
    notes: list[str] = []
    if ca.optimizer_name != cb.optimizer_name:
        reasons.append(
            f"`{spec_a.name}` trains with {ca.optimizer_name}, `{spec_b.name}` with "
            f"{cb.optimizer_name}; pass optimizer= to compare both under one"
        )
    if ca.alignment != cb.alignment:
        notes.append(
            f"`{spec_a.name}` assumes alignment {alignment_label(ca.alignment)}, "
            f"`{spec_b.name}` {alignment_label(cb.alignment)}: their `auto` values "
            "are resolved for those; pass alignment= to use one for both"
        )
    names_a = [blk.name for blk in spec_a.blocks]
    names_b = [blk.name for blk in spec_b.blocks]
    for name in names_a:
        if name not in names_b:
            reasons.append(f"block `{name}` is only in `{spec_a.name}`")
    for name in names_b:
        if name not in names_a:
            reasons.append(f"block `{name}` is only in `{spec_b.name}`")
    shared = [n for n in names_a if n in names_b]
    theta: dict[str, Fraction] = {}
    canon_a: dict[str, dict[str, Any]] = {}
    canon_b: dict[str, dict[str, Any]] = {}
    exponents_ok = not reasons
    values_ok: bool | None = True if constants else None
    decay_ok = True
    opt = ca.optimizer_name
    for name in shared:
        ta, tb = ca.theory.layers[name], cb.theory.layers[name]
        theta[name] = tb.a - ta.a
        xa, xb = canonical(ca, name), canonical(cb, name)
        canon_a[name], canon_b[name] = xa, xb
        for key, words in _INVARIANT_WORDS.items():
            if key not in xa and key not in xb:
                continue
            if xa.get(key) == xb.get(key):
                continue
            text = (
                f"`{name}`: {words} is {xa.get(key, '-')} in `{spec_a.name}` but "
                f"{xb.get(key, '-')} in `{spec_b.name}`"
            )
            if key == "decay":
                decay_ok = False
                notes.append(text + " (matters only with weight decay > 0)")
                if weight_decay:
                    reasons.append(text)
                    exponents_ok = False
            else:
                reasons.append(text)
                exponents_ok = False
        if constants and ca.optimizer_name == cb.optimizer_name:
            va, vb = effective_values(ca, name), effective_values(cb, name)
            canon_a[name]["values"], canon_b[name]["values"] = va, vb
            # A value whose exponent already differs is not reported twice.
            keys = {"init_scale" if xa["init"] == "keep" else "init_std": "b", "lr_scale": "c"}
            if opt in EPS_MOVES:
                keys["eps_scale"] = "e"
            for key, exponent in keys.items():
                if not _close(va[key], vb[key], rel_tol):
                    if xa.get(exponent) != xb.get(exponent):
                        values_ok = False
                        continue
                    values_ok = False
                    reasons.append(
                        f"`{name}`: {_VALUE_WORDS[key]} at width {width} is "
                        f"{va[key]:.6g} in `{spec_a.name}` but {vb[key]:.6g} "
                        f"in `{spec_b.name}`"
                    )
            decay_a = va["lr_scale"] * va["wd_scale"]  # type: ignore[operator]
            decay_b = vb["lr_scale"] * vb["wd_scale"]  # type: ignore[operator]
            if not _close(decay_a, decay_b, rel_tol):
                decay_ok = False
                text = (
                    f"`{name}`: lr * wd factor at width {width} is {decay_a:.6g} in "
                    f"`{spec_a.name}` but {decay_b:.6g} in `{spec_b.name}`"
                )
                if weight_decay:
                    values_ok = False
                    reasons.append(text)
                elif not any(n.startswith(f"`{name}`: c + wd") for n in notes):
                    notes.append(text + " (matters only with weight decay > 0)")
    logits = attention_reasons(ca, cb, constants)
    reasons += logits
    exponents_ok = exponents_ok and not any("grows the scale" in r for r in logits)
    if logits and values_ok is not None and exponents_ok:
        values_ok = False
    depth_part, depth_reasons, depth_notes = depth_compare(ca, cb, shared, constants,
                                                           weight_decay)
    reasons += depth_reasons
    notes += depth_notes
    if depth_reasons:
        exponents_ok = False
    ok = exponents_ok and (values_ok is not False) and (decay_ok or not weight_decay)
    return EquivReport(
        equivalent=ok,
        theta=theta,
        canonical_a=canon_a,
        canonical_b=canon_b,
        reasons=tuple(reasons),
        spec_a=spec_a.name,
        spec_b=spec_b.name,
        optimizer=opt,
        alignment_a=ca.alignment,
        alignment_b=cb.alignment,
        exponents_equivalent=exponents_ok,
        constants_equivalent=values_ok,
        weight_decay_equivalent=decay_ok,
        notes=tuple(notes),
        depth=depth_part,
    )


def render_equiv(report: EquivReport) -> Any:
    """A rich renderable: the verdict, theta and the canonical exponents per layer."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    verdict = "EQUIVALENT" if report.equivalent else "NOT equivalent"
    head = Text(f"{report.spec_a} vs {report.spec_b} under {report.optimizer}: {verdict}")
    table = Table(
        show_edge=False,
        pad_edge=False,
        title="canonical form (every layer shifted to a = 0)",
        title_justify="left",
    )
    for column in ("layer", "theta", "a+b", "c+ka", "e-a", "c+wd"):
        table.add_column(column, justify="left" if column == "layer" else "right")

    def pair(key: str, name: str) -> str:
        x = report.canonical_a[name].get(key, "-")
        y = report.canonical_b[name].get(key, "-")
        return x if x == y else f"{x} | {y}"

    for name, th in report.theta.items():
        table.add_row(
            name, str(th), pair("b", name), pair("c", name), pair("e", name), pair("decay", name)
        )
    parts: list[Any] = [head, table]
    if report.depth is not None:
        parts.append(_depth_table(report))
    parts += [Text(f"  reason: {r}") for r in report.reasons]
    parts += [Text(f"  note: {n}") for n in report.notes]
    return Group(*parts)


def _depth_table(report: EquivReport) -> Any:
    """The depth canonical forms (docs/analysis.md "Depth")."""
    from rich.table import Table

    d = report.depth
    assert d is not None

    def pair(x: str, y: str) -> str:
        return x if x == y else f"{x} | {y}"

    table = Table(
        show_edge=False,
        pad_edge=False,
        title=(f"in depth (alpha {pair(d['alpha']['a'], d['alpha']['b'])}, branch m^(-beta), "
               f"beta {pair(d['branch']['a'], d['branch']['b'])}; every layer shifted to "
               "a_m = 0)"),
        title_justify="left",
    )
    for column in ("layer", "theta_m", "a_m+b_m", "c_m+ka_m", "e_m-a_m", "c_m+wd_m"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    ca, cb = d["canonical"]["a"], d["canonical"]["b"]
    for name, th in d["theta_m"].items():
        table.add_row(name, th, *(pair(ca[name].get(k, "-"), cb[name].get(k, "-"))
                                  for k in ("b", "c", "e", "decay")))
    return table
