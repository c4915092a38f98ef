"""The attention logit scale: its value, and what the theory says about the logits.

A spec's `attention { logits EXPR }` gives the scale `s` of the attention logits,
`logits = s * q.k`, as `[constant *] head_dim^p * head_n^q`: `head_dim` is the head
size d (of queries and keys), `head_n = d / d_base` the head-size multiplier, which is
`n` where the head size grows with width (a fixed head count) and 1 where the head
count grows (a fixed head size). Unset, the scale is the standard `head_dim^(-1/2)`.

The exponents, in the `n^(-x)` convention of reference/theory.md (docs/theory.md §9
derives them): with `delta` = 1 where the head size grows and 0 where it is fixed,

- the scale is `n^(-t)`, `t = -delta * (p + q)`;
- the logits at init are `n^(-(t - delta/2))` (q and k are independent at init, so
  `q.k` sums d independent terms);
- their change after training is `n^(-r)`,
  `r = min(t + r_q - delta*alpha, t + r_k - delta*alpha, t + r_q + r_k - delta*u)`
  (`Δq.k`, `q.Δk`, `Δq.Δk`: `Δq` lines up with `k`, whose gradient it is);
  under SGD the scale also multiplies the query/key gradients, so `r_q` and `r_k`
  gain the init exponent `t - delta/2`.

Nothing here imports JAX.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from ._errors import SpecError
from ._ir import Attention, Exponent, Expr, Power, Spec
from ._theory import Theory

if TYPE_CHECKING:
    from ._compile import Compiled

__all__ = [
    "GROWTHS",
    "STANDARD_LOGITS",
    "LogitTheory",
    "attention_scale",
    "logit_exponent",
    "logit_scale",
    "logit_theory",
    "module_factor",
    "needs_growth",
]

HALF = Fraction(1, 2)
# What grows with width in an attention layer: the head count, or the head size.
GROWTHS: tuple[str, ...] = ("heads", "head_size")
# The module's own scale, 1/sqrt(d): what a spec without an `attention` block gets.
STANDARD_LOGITS = Expr(powers=(Power(symbol="head_dim", exponent=Exponent(const=-HALF)),))


def _logits(attention: Attention | None) -> Expr:
    if attention is None or attention.logits is None:
        return STANDARD_LOGITS
    return attention.logits


def _check_growth(growth: str) -> None:
    if growth not in GROWTHS:
        raise SpecError(f"unknown attention growth {growth!r}",
                        hint=f"use one of {', '.join(GROWTHS)}")


def logit_scale(attention: Attention | None, *, head_dim: int, head_n: float,
                alignment: Fraction = Fraction(1)) -> float:
    """The number s of `logits = s * q.k` for a head of size `head_dim` and head-size
    multiplier `head_n` (d / d_base; 1 where the head count grows)."""
    expr = _logits(attention)
    value = float(expr.constant)
    symbols = {"head_dim": float(head_dim), "head_n": float(head_n)}
    for p in expr.powers:
        value *= symbols[p.symbol] ** float(p.exponent.at(alignment))
    return value


def needs_growth(attention: Attention | None) -> bool:
    """Whether the scale depends on what grows (it does through `head_n` only)."""
    return not _logits(attention).exponent_of("head_n").is_zero


def module_factor(attention: Attention | None, *, head_dim: int, head_n: float,
                  alignment: Fraction = Fraction(1), own: Fraction = -HALF) -> float:
    """`s / head_dim^own`: the factor to put on the queries of a module that already
    scales its logits by `head_dim^own` (`eqx.nn.MultiheadAttention`: 1/sqrt(d)).

    Computed on the exponents, so the standard scale gives exactly 1.0 (no rounding)
    and so does any scale at `head_n == 1` whose `head_dim` exponent is `own`.
    """
    expr = _logits(attention)
    value = float(expr.constant)
    for p in expr.powers:
        e = p.exponent.at(alignment) - (own if p.symbol == "head_dim" else 0)
        if e != 0:
            value *= float(head_dim if p.symbol == "head_dim" else head_n) ** float(e)
    if expr.exponent_of("head_dim").is_zero and own != 0:
        value *= float(head_dim) ** float(-own)
    return value


def attention_scale(compiled: Compiled, *, head_dim: int, growth: str) -> float:
    """The logit scale s of `compiled`'s spec for a head of size `head_dim`, where
    `growth` ("heads" or "head_size") grows with width: for attention modules that
    paramspec does not recognise (multiply your logits, or your queries, by it).

    !!! Example

        ```python
        import paramspec as ps

        c = ps.compile("mup", width=256, base_width=64)   # 4 heads: d = 64, d_base = 16
        assert ps.attention_scale(c, head_dim=64, growth="head_size") == 4 / 64
        assert ps.attention_scale(c, head_dim=64, growth="heads") == 1 / 8
        ```
    """
    _check_growth(growth)
    head_n = compiled.n if growth == "head_size" else 1.0
    return logit_scale(compiled.spec.attention, head_dim=head_dim, head_n=head_n,
                       alignment=compiled.alignment)


def logit_exponent(attention: Attention | None, growth: str,
                   alignment: Fraction = Fraction(1)) -> Fraction:
    """t of the scale `s ∝ n^(-t)`: 0 where the head count grows (d is fixed)."""
    _check_growth(growth)
    if growth == "heads":
        return Fraction(0)
    expr = _logits(attention)
    return -(expr.exponent_of("head_dim").at(alignment) + expr.exponent_of("head_n").at(alignment))


@dataclass(frozen=True)
class LogitTheory:
    """The attention logits of one spec, optimizer, alignment and growth.

    `init`: logits at init are `n^(-init)` (None: zero-initialised queries, logits 0);
    `r`: their change is `n^(-r)`. Stable: `init >= 0` (0: Θ(1) logits; > 0: they vanish
    and attention tends to a uniform average) and `r >= 0`; feature learning: `r == 0`.
    """

    growth: str
    t: Fraction
    init: Fraction | None
    r: Fraction
    steps: tuple[str, ...]

    @property
    def stable(self) -> bool:
        return (self.init is None or self.init >= 0) and self.r >= 0


def _block_r(theory: Theory, name: str | None, what: str) -> tuple[Fraction, bool]:
    if name is None:
        hidden = [x for x in theory.layers.values() if x.role == "hidden" and x.r is not None]
        if not hidden:
            raise SpecError(f"the spec has no hidden block to give the {what}' change",
                            hint="queries and keys are hidden-role projections")
        layer = min(hidden, key=lambda x: x.r)  # type: ignore[arg-type, return-value]
    else:
        if name not in theory.layers:
            raise SpecError(f"the spec has no block `{name}` for the {what}",
                            hint=f"its blocks are: {', '.join(theory.layers)}")
        layer = theory.layers[name]
    if layer.r is None:
        raise SpecError(f"block `{layer.name}` has role {layer.role}: its change is not "
                        f"defined, so it cannot hold the {what}")
    return layer.r, layer.zero_init


def logit_theory(spec: Spec, theory: Theory, growth: str, *, query_block: str | None = None,
                 key_block: str | None = None) -> LogitTheory:
    """The exponents of the attention logits (module docstring) for `spec`'s scale.

    `query_block` / `key_block`: the spec blocks of the query and key projections
    (default: the hidden block with the smallest r); a zero-initialised query block
    makes the logits 0 at init.
    """
    _check_growth(growth)
    a = theory.alignment
    delta = Fraction(1) if growth == "head_size" else Fraction(0)
    t = logit_exponent(spec.attention, growth, a)
    r_q, q_zero = _block_r(theory, query_block, "queries")
    r_k, _ = _block_r(theory, key_block, "keys")
    steps = [f"{growth} grow: head size d ∝ n^{delta}; scale s ∝ n^(-t), t = {t}"]
    init_exp = t - delta * HALF
    if theory.optimizer == "sgd":
        r_q, r_k = r_q + init_exp, r_k + init_exp
        steps.append(f"SGD: the scale also multiplies the query/key gradients (by "
                     f"s * d^(1/2) ∝ n^(-{init_exp})): r_q = {r_q}, r_k = {r_k}")
    if q_zero:
        init: Fraction | None = None
        steps.append("zero-initialised queries: the logits are 0 at init")
    else:
        init = init_exp
        steps.append(f"init: q.k sums d independent terms (d^(1/2)), logits ∝ n^(-{init})")
    terms = [t + r_q - delta * a, t + r_k - delta * a, t + r_q + r_k - delta * a]
    r = min(terms)
    steps.append(f"change: min(t + r_q - delta*A, t + r_k - delta*A, t + r_q + r_k - delta*A) "
                 f"= min({', '.join(str(x) for x in terms)}) = {r} (A = {a})")
    return LogitTheory(growth, t, init, r, tuple(steps))
