"""`equivalent` in depth and for the attention logits (docs/analysis.md).

**Depth.** The width symmetry of theory.md §3 has an exact depth analogue for every
block: store `w' = m^(theta) w` and shrink the multiplier by the same factor, so
`(a_m, b_m) -> (a_m + theta, b_m - theta)`; the gradient of `w'` carries `m^(-theta)`
more, so the update of `w'` must be `m^(theta)` times larger: `c_m -> c_m - k theta`
(k = 2 sgd, 1 adam / adam_atan2 / muon, 0 adafactor) and `e_m -> e_m + theta` where the
epsilon lives in gradient units; `c_m + wd_m` keeps the decay per step. The argument is
the width one with `m` in place of `n`: it uses nothing about what `m` counts. The
canonical depth form of a block is therefore `(a_m + b_m, c_m + k a_m, e_m - a_m,
c_m + wd_m)`.

The residual branch multiplier `m^(-beta)` has no such trade with the blocks: in
`x + m^(-beta) W_out phi(W_in norm(x))` it could move into the multiplier of the
branch's *last* layer alone (`W_out`), but a spec block covers parameters by role and
path (one `hidden` block holds `W_in` and `W_out` alike), so the trade is not expressible
and two specs with different branch exponents are not equivalent: `beta` (and, with
constants, the branch multiplier's constant) must agree. Both specs are compared at
their own depth exponent alpha (`depth_alpha` in the spec, else 1) unless one is given.

**Attention.** `logits = s q.k` with `s = C head_dim^p head_n^q` (theory.md §9) is not a
parameter: no reparameterization moves it, so the two scales must agree: their exponents
`t` under both growths (head count, head size) and, with constants, the value at a
nominal head size.
"""

from __future__ import annotations

from typing import Any

from .._attention import GROWTHS, logit_exponent, logit_scale
from .._compile import Compiled
from .._depth import uses_depth
from .._render import render_expr
from ._depthcheck import mpow
from ._equiv import EPS_MOVES, SHIFT_C

__all__ = ["attention_reasons", "depth_canonical", "depth_compare", "NOMINAL_HEAD_DIM"]

NOMINAL_HEAD_DIM = 64
_WORDS = {
    "b": "a_m+b_m (the init scale of W in depth)",
    "c": "c_m + k a_m (the effective step in depth)",
    "e": "e_m - a_m (epsilon relative to W's gradient, in depth)",
    "decay": "c_m + wd_m (weight decay per step, in depth)",
}


def depth_canonical(compiled: Compiled, name: str) -> dict[str, str]:
    """A block's depth exponents shifted to a_m = 0: the invariants of the depth symmetry."""
    assert compiled.depth_theory is not None
    d = compiled.depth_theory.layers[name]
    k = SHIFT_C[compiled.optimizer_name]
    out = {"b": str(d.a + d.b), "c": str(d.c + k * d.a)}
    if compiled.optimizer_name in EPS_MOVES:
        out["e"] = str(d.e - d.a)
    out["decay"] = str(d.c + d.wd)
    return out


def depth_compare(ca: Compiled, cb: Compiled, shared: list[str], constants: bool,
                  weight_decay: bool) -> tuple[dict[str, Any] | None, list[str], list[str]]:
    """(the depth part of the report, reasons, notes); None when neither spec uses depth."""
    if not (uses_depth(ca.spec) or uses_depth(cb.spec)):
        return None, [], []
    da, db = ca.depth_theory, cb.depth_theory
    assert da is not None and db is not None
    na, nb = ca.spec.name, cb.spec.name
    reasons: list[str] = []
    notes: list[str] = []
    if da.branch != db.branch:
        reasons.append(
            f"the residual branch multiplier is {mpow(da.branch)} in `{na}` but "
            f"{mpow(db.branch)} in `{nb}` (no reparameterization trades it with the blocks' "
            "exponents)")
    elif constants and da.branch_constant != db.branch_constant:
        reasons.append(f"the residual branch multiplier's constant is {da.branch_constant} in "
                       f"`{na}` but {db.branch_constant} in `{nb}`")
    theta: dict[str, str] = {}
    canon: dict[str, dict[str, dict[str, str]]] = {"a": {}, "b": {}}
    for name in shared:
        theta[name] = str(db.layers[name].a - da.layers[name].a)
        xa, xb = depth_canonical(ca, name), depth_canonical(cb, name)
        canon["a"][name], canon["b"][name] = xa, xb
        for key, words in _WORDS.items():
            if key not in xa or xa.get(key) == xb.get(key):
                continue
            text = f"`{name}`: {words} is {xa[key]} in `{na}` but {xb.get(key, '-')} in `{nb}`"
            if key == "decay" and not weight_decay:
                notes.append(text + " (matters only with weight decay > 0)")
            else:
                reasons.append(text)
    part = {"alpha": {"a": str(ca.depth_alpha), "b": str(cb.depth_alpha)},
            "branch": {"a": str(da.branch), "b": str(db.branch)},
            "theta_m": theta, "canonical": canon}
    return part, reasons, notes


def _logits_text(compiled: Compiled) -> str:
    att = compiled.spec.attention
    return "head_dim^(-1/2)" if att is None or att.logits is None else render_expr(att.logits)


def attention_reasons(ca: Compiled, cb: Compiled, constants: bool) -> list[str]:
    """Why the two specs' attention logits differ (empty when they agree)."""
    na, nb = ca.spec.name, cb.spec.name
    out = []
    for growth in GROWTHS:
        ta = logit_exponent(ca.spec.attention, growth, ca.alignment)
        tb = logit_exponent(cb.spec.attention, growth, cb.alignment)
        if ta != tb:
            where = "the head size" if growth == "head_size" else "the head count"
            out.append(f"attention logits: where {where} grows the scale is ∝ n^({-ta}) in "
                       f"`{na}` (`{_logits_text(ca)}`) but n^({-tb}) in `{nb}` "
                       f"(`{_logits_text(cb)}`)")
    if not out and constants:
        sa = logit_scale(ca.spec.attention, head_dim=NOMINAL_HEAD_DIM, head_n=1.0,
                         alignment=ca.alignment)
        sb = logit_scale(cb.spec.attention, head_dim=NOMINAL_HEAD_DIM, head_n=1.0,
                         alignment=cb.alignment)
        if abs(sa - sb) > 1e-12 * max(abs(sa), abs(sb)):
            out.append(f"attention logits: the scale at head size {NOMINAL_HEAD_DIM} (base "
                       f"width) is {sa:.6g} in `{na}` (`{_logits_text(ca)}`) but {sb:.6g} in "
                       f"`{nb}` (`{_logits_text(cb)}`)")
    return out
