"""`check` in depth: do the L residual blocks move the residual stream by Theta(1)?

The model is the one `paramspec._depth` resolves `auto` with (docs/theory.md §12), read
backwards: a pre-norm residual network computes `x_(l+1) = x_l + m^(-beta) F_l(x_l)`
with `m = L / L_base` (`beta` from `residual { branch ... }`, 0 without it). A block
inside the repeated blocks (`depth repeated`) has effective weight `m^(-a) w`, init
`w ~ m^(-b)`, learning rate `m^(-c)`, epsilon `m^(-e)` (depth exponents, `m^(-x)`
convention), and is the one depth-scaled layer of its branch (the branch's other layers
are Theta(1) in depth, as `auto` assumes). Then, all in exact rationals:

- gradient of `w`: `g = beta + a` (0 + a outside the repeated blocks, for beta >= 1/2);
- one entry of `w`'s update, `m^(-s)`: `s = c` (adam, adam_atan2, muon), `b + c`
  (adafactor), `c + g` (sgd) -- the width theory's `c~` with `m` in place of `n`;
- the branch's own output moves by `m^(-q)`, `q = a + s` (q = 0: the block learns
  features at every depth; q > 0: the block is lazy, Depth-muP at alpha < 1; q < 0: it
  blows up inside);
- the stream moves by `m^(-(beta + q))` per block and, the m blocks' updates adding up
  coherently (they follow one loss gradient), by `m^(-r)` in all, `r = beta + q - 1`:
  r < 0 unstable in depth, r = 0 Theta(1) (what `auto` solves for), r > 0 the update
  vanishes with depth (lazy/trivial);
- at init the m branches are independent, so together they add `m^(1/2 - beta - B)` to
  the stream, `B` the sum of `a + b` over the repeated blocks (each taken to be one layer
  of every branch's path; GPT-2's `0.02/sqrt(2L)` projection init is `b = 1/2` on the
  projections alone): the stream stays O(1) at init exactly when `beta + B >= 1/2`.

A block outside the repeated blocks (embedding, final norm, readout) exists once: its
depth exponents must leave it depth-independent, `a + s = 0` (and `a + b = 0` for a
random init). The depth sum is over blocks, not over a matrix's fan-in, so the width
alignment does not enter: the depth verdicts are the same at every alignment.

Which blocks are repeated: the spec's `depth repeated|fixed` lines (unset: fixed); a
depth-blind spec that has no `depth` line at all (`mup`) is read as a transformer is
built: hidden and vector blocks inside the repeated blocks, the rest outside, and the
report says it assumed so.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .._depth import DepthTheory, resolve_depth, uses_depth
from .._ir import Block, Exponent, Expr, Spec, render_exponent
from .._resources import specs_dir

__all__ = ["DepthCheck", "DepthLayerCheck", "check_depth", "depth_step", "mpow",
           "needed_lr_power", "placement"]

HALF = Fraction(1, 2)
ZERO = Fraction(0)
WITH_EPS = ("adam", "adafactor", "muon")
REPEATED_ROLES = ("hidden", "vector")


def mpow(x: Fraction) -> str:
    """Text of `m^(-x)`: `m^(-1/2)`, `m`, `1` for x = 0."""
    if x == 0:
        return "1"
    if x == -1:
        return "m"
    return f"m^({-x})"


def placement(spec: Spec) -> tuple[dict[str, bool], bool]:
    """Which blocks sit inside the repeated blocks, and whether that was assumed.

    Declared by `depth repeated|fixed` (unset: fixed); a spec with no `depth` line at all
    is read by role: hidden and vector blocks repeated (assumed).
    """
    if any(b.depth is not None for b in spec.blocks):
        return {b.name: b.depth == "repeated" for b in spec.blocks}, False
    return {b.name: (b.role in REPEATED_ROLES) for b in spec.blocks}, True


def depth_step(optimizer: str, b: Fraction, c: Fraction, g: Fraction) -> Fraction:
    """s: one entry of the stored weight's update is m^(-s) (module docstring)."""
    if optimizer == "sgd":
        return c + g
    if optimizer == "adafactor":
        return b + c
    return c


_STEP_WORDS = {
    "sgd": "s = c + g (SGD: lr times the gradient)",
    "adafactor": "s = b + c (Adafactor: normalised step times RMS(w))",
}


def step_words(optimizer: str) -> str:
    return _STEP_WORDS.get(optimizer, f"s = c ({optimizer} normalises the gradient)")


def _m_exponent(expr: Expr | None) -> Exponent:
    """The power of m in `expr` as an Exponent (affine in alpha); 0 for auto/keep."""
    if expr is None or expr.kind != "value":
        return Exponent()
    return expr.exponent_of("m")


def needed_lr_power(spec: Spec, block: Block, optimizer: str, repeated: bool) -> Exponent:
    """The power p of `lr ∝ m^p` that makes `block` Theta(1) in depth (r = 0, or a + s = 0
    outside the repeated blocks), symbolic in alpha when the spec's exponents are."""
    a = -_m_exponent(block.multiplier)
    b = -_m_exponent(block.init)
    one = Exponent(const=Fraction(1))
    if repeated:
        beta = -_m_exponent(spec.residual.branch if spec.residual is not None else None)
        target = one - beta - a  # a + s = 1 - beta
        g = beta + a
    else:
        target = -a  # a + s = 0
        g = a
    if optimizer == "sgd":
        c = target - g
    elif optimizer == "adafactor":
        c = target - b
    else:
        c = target
    return -c


def _lr_fix(p: Exponent) -> str:
    return "no depth factor" if p.is_zero else f"m^({render_exponent(p)})"


def _lr_words(p: Exponent, alpha: Fraction) -> str:
    if p.is_zero:
        return "an lr with no depth factor"
    text = f"lr ∝ m^({render_exponent(p)})"
    if p.alpha != 0:
        value = p.at_alpha(alpha)
        text += f" (= {mpow(-value)} at alpha {alpha})"
    return text


def _user_span(node: Block | Expr | None) -> str | None:
    span = None if node is None else node.span
    if span is None or span.file in (None, "<string>") or Path(span.file).parent == specs_dir():
        return None  # a built-in is named, not located (no machine paths in outputs)
    return f"{span.file}:{span.line}:{span.column}"


def where(block: Block, expr: Expr | None = None) -> str:
    """`block `x`` plus `(file:line:col)` of `expr` (else of the block) in a user's file."""
    at = _user_span(expr) or _user_span(block)
    return f"block `{block.name}`" + (f" ({at})" if at else "")


@dataclass(frozen=True)
class DepthLayerCheck:
    """One block in depth, under one optimizer (exponents in the m^(-x) convention)."""

    name: str
    role: str
    repeated: bool
    a: Fraction
    b: Fraction
    c: Fraction
    e: Fraction
    g: Fraction
    step: Fraction  # s
    q: Fraction  # the block's own output change m^(-q) (a + s)
    r: Fraction  # the stream's change from this block: m^(-r) (all m blocks together)
    init: Fraction | None  # a + b outside the repeated blocks (None: keep or zero init)
    prescribed: Exponent  # the lr power m^p that makes it Theta(1) in depth
    verdict: str
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def stable(self) -> bool:
        return self.r >= 0 and self.q >= 0 and (self.init is None or self.init >= 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repeated": self.repeated,
            "exponents": {"a": str(self.a), "b": str(self.b), "c": str(self.c),
                          "e": str(self.e), "g": str(self.g), "s": str(self.step),
                          "q": str(self.q), "r": str(self.r)},
            "init": None if self.init is None else str(self.init),
            "needed_lr_power": render_exponent(self.prescribed),  # lr ∝ m^(this)
            "stable": self.stable,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class DepthCheck:
    """The depth axis of one case: the stream at init and each block's update."""

    optimizer: str
    alpha: Fraction
    beta: Fraction  # the branch multiplier is m^(-beta)
    depth: int
    base_depth: int
    assumed: bool  # placement by role (a spec with no `depth` line)
    init: Fraction  # the branches together add m^(-init) to the stream at init
    layers: dict[str, DepthLayerCheck]
    verdict: str
    reasons: tuple[str, ...]

    @property
    def m(self) -> float:
        return self.depth / self.base_depth

    @property
    def stable(self) -> bool:
        return self.init >= 0 and all(x.stable for x in self.layers.values())

    @property
    def unstable_layers(self) -> list[str]:
        return [n for n, x in self.layers.items() if not x.stable]

    @property
    def warnings(self) -> list[str]:
        return [w for x in self.layers.values() for w in x.warnings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "base_depth": self.base_depth,
            "depth_alpha": str(self.alpha),
            "branch": str(self.beta),
            "placement_assumed": self.assumed,
            "init": str(self.init),
            "stable": self.stable,
            "verdict": self.verdict,
            "unstable_layers": self.unstable_layers,
            "reasons": list(self.reasons),
            "layers": {n: x.to_dict() for n, x in self.layers.items()},
        }


def _layer_verdict(repeated: bool, r: Fraction, q: Fraction, init: Fraction | None) -> str:
    if r < 0 or q < 0 or (init is not None and init < 0):
        return "unstable in depth"
    if r > 0:
        return "vanishing in depth"
    if not repeated:
        return "depth-independent"
    return "every block learns" if q == 0 else "lazy blocks"


def check_depth(spec: Spec, optimizer: str, alpha: Fraction, depth: int,
                base_depth: int, theory: DepthTheory | None = None) -> DepthCheck:
    """The depth verdicts of `spec` under `optimizer` at the depth exponent `alpha`."""
    dt = theory if theory is not None else resolve_depth(spec, optimizer, alpha)
    beta = dt.branch
    inside, assumed = placement(spec)
    reasons: list[str] = []
    layers: dict[str, DepthLayerCheck] = {}
    total_ab = ZERO
    for block in spec.blocks:
        d = dt.layers[block.name]
        repeated = inside[block.name]
        g = beta + d.a if repeated else d.a
        s = depth_step(optimizer, d.b, d.c, g)
        q = d.a + s
        zero_or_keep = block.init is not None and (
            block.init.kind == "keep" or block.init.constant == 0)
        if repeated:
            total_ab += d.a + d.b
            r = beta + q - 1
            init = None
        else:
            r = q
            init = None if zero_or_keep else d.a + d.b
        need = needed_lr_power(spec, block, optimizer, repeated)
        label = where(block, block.lr)
        why: list[str] = []
        if repeated and r < 0:
            why.append(
                f"the m repeated blocks' updates move the residual stream by "
                f"{mpow(r)} (r = beta + a + s - 1 = {beta} + {d.a} + {s} - 1 = {r}): unstable "
                f"in depth. Fix: {_lr_words(need, alpha)} in {label} (`lr auto` with "
                "`depth repeated` derives it)" + (
                    "" if spec.residual is not None
                    else ", or a `residual { branch m^(-alpha) }` block"))
        elif repeated and r > 0:
            why.append(
                f"the repeated blocks' updates together move the residual stream by only "
                f"{mpow(r)} (r = {r}): it vanishes with depth (lazy). Fix: "
                f"{_lr_words(need, alpha)} in {label}")
        if repeated and q < 0:
            why.append(f"the block's own output (before the branch multiplier) changes by "
                       f"{mpow(q)} per step (q = a + s = {q}): it grows inside the block")
        if not repeated and r != 0:
            grows = "grows" if r < 0 else "vanishes"
            why.append(f"outside the repeated blocks its update {grows} like {mpow(r)} "
                       f"(a + s = {r}); fix: {_lr_words(need, alpha)} in {label}")
        if init is not None and init != 0:
            grows = "grows" if init < 0 else "vanishes"
            why.append(f"outside the repeated blocks its init {grows} like {mpow(init)} "
                       f"(a + b = {init}); drop the depth factor of its init/multiplier in "
                       f"{where(block, block.init)}")
        warnings: list[str] = []
        if optimizer in WITH_EPS and g > d.e and block.eps is not None:
            warnings.append(
                f"{where(block, block.eps)}: the gradient shrinks like {mpow(g)} in depth but eps "
                f"like {mpow(d.e)}: eps/sqrt(v) grows like {mpow(d.e - g)} and swamps the step at "
                "large depth. Use `eps auto` with the block's `depth` line")
        layers[block.name] = DepthLayerCheck(
            block.name, block.role or "", repeated, d.a, d.b, d.c, d.e, g, s, q, r, init,
            need, _layer_verdict(repeated, r, q, init), tuple(why), tuple(warnings))
    any_repeated = any(inside.values())
    init_exp = beta + total_ab - HALF if any_repeated else ZERO
    if init_exp < 0:
        fix = ("add `residual { branch m^(-alpha) }`" if spec.residual is None
               else "a branch multiplier m^(-beta) with beta >= 1/2, e.g. `branch m^(-alpha)`")
        reasons.append(
            f"at init the m independent branches add {mpow(init_exp)} to the residual stream "
            f"(1/2 - beta - B = 1/2 - {beta} - {total_ab} = {-init_exp}, B the sum of a + b over "
            f"the repeated blocks): it grows with depth. Fix: {fix}")
    if assumed and any_repeated:
        inner = ", ".join(f"`{n}`" for n, v in inside.items() if v)
        reasons.append(f"the spec says nothing about depth placement (no `depth` line): "
                       f"{inner} taken to sit inside the repeated blocks")
    if not any_repeated:
        reasons.append("no block sits inside the repeated blocks (`depth repeated`): only "
                       "the blocks outside are checked")
    verdict = _case_verdict(init_exp, layers)
    return DepthCheck(optimizer, alpha, beta, depth, base_depth, assumed, init_exp, layers,
                      verdict, tuple(reasons))


def _case_verdict(init: Fraction, layers: dict[str, DepthLayerCheck]) -> str:
    if init < 0:
        return "unstable at init in depth"
    if any(not x.stable for x in layers.values()):
        return "unstable in depth"
    rep = [x for x in layers.values() if x.repeated]
    if any(x.r > 0 for x in layers.values()):
        return "vanishing in depth"
    if not rep:
        return "depth-independent"
    return "every block learns" if all(x.q == 0 for x in rep) else "stable, lazy blocks"


def depth_wanted(spec: Spec, depth: int | None, base_depth: int | None,
                 depth_alpha: object) -> bool:
    """Whether `check` looks at depth: the spec uses it, or a depth argument was given."""
    return uses_depth(spec) or depth is not None or base_depth is not None or (
        depth_alpha is not None)
