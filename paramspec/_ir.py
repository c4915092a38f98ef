"""The Spec IR: frozen pydantic models, exact `Fraction` exponents, JSON-schema exportable.

    text --(Lark)--> tree --(_parse)--> Spec (this module) --(_theory)--> exponents

The IR is the *written* spec: `auto` stays `auto`, `fan_in` stays `fan_in`, `extends`
stays a name. Folding by role and resolving `auto` is the theory's job. Constructors
canonicalise (powers sorted and merged, zero exponents dropped), so two specs that mean
the same thing compare equal, and `parse(render(spec)) == spec`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from ._errors import Span

__all__ = [
    "QUANTITIES",
    "ROLES",
    "OPTIMIZERS",
    "SYMBOLS",
    "Exponent",
    "Power",
    "Expr",
    "Selector",
    "Block",
    "Attention",
    "Spec",
]

Role = Literal["input", "hidden", "output", "vector", "constant"]
Optimizer = Literal["adam", "adam_atan2", "sgd", "adafactor", "muon"]
Symbol = Literal["n", "fan_in", "fan_out", "head_dim", "head_n"]
Quantity = Literal["multiplier", "init", "lr", "eps", "wd"]
SelectorKey = Literal["module", "field", "path"]
Allowance = Literal["unstable_init"]

ROLES: tuple[str, ...] = ("input", "hidden", "output", "vector", "constant")
OPTIMIZERS: tuple[str, ...] = ("adam", "adam_atan2", "sgd", "adafactor", "muon")
SYMBOLS: tuple[str, ...] = ("n", "fan_in", "fan_out")
# The symbols of the `attention` block's `logits` (and only there): the head size d and
# the head-size multiplier d / d_base (1 where the head count grows instead).
ATTENTION_SYMBOLS: tuple[str, ...] = ("head_dim", "head_n")
QUANTITIES: tuple[str, ...] = ("multiplier", "init", "lr", "eps", "wd")
ALLOWANCES: tuple[str, ...] = ("unstable_init",)
# Block names that imply their role (DESIGN.md: "block name = role").
ROLE_BLOCKS: dict[str, str] = {"embedding": "input", "hidden": "hidden", "readout": "output"}
# Exponent coefficients the theory reasons about; the built-in tables live in [-3/2, 1].
MAX_EXPONENT = Fraction(4)

SpanField = Annotated[
    SkipJsonSchema[Span | None], Field(default=None, exclude=True, repr=False)
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Exponent(_Frozen):
    """An exponent affine in the alignment: `const + align * align_value`."""

    const: Fraction = Fraction(0)
    align: Fraction = Fraction(0)

    def at(self, alignment: Fraction) -> Fraction:
        """The exact exponent at a given alignment in [1/2, 1]."""
        return self.const + self.align * alignment

    @property
    def is_zero(self) -> bool:
        return self.const == 0 and self.align == 0

    def __add__(self, other: Exponent) -> Exponent:
        return Exponent(const=self.const + other.const, align=self.align + other.align)

    def __neg__(self) -> Exponent:
        return Exponent(const=-self.const, align=-self.align)

    def __sub__(self, other: Exponent) -> Exponent:
        return self + (-other)

    def __str__(self) -> str:
        return render_exponent(self)


def _fraction_text(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def render_exponent(e: Exponent) -> str:
    """Canonical text of an exponent: `-1/2`, `align`, `1 - align`, `1/2*align`."""
    parts: list[str] = []
    if e.const != 0 or e.align == 0:
        parts.append(_fraction_text(e.const))
    if e.align != 0:
        mag = abs(e.align)
        term = "align" if mag == 1 else f"{_fraction_text(mag)}*align"
        if not parts:
            parts.append(term if e.align > 0 else f"-{term}")
        else:
            parts.append(("+ " if e.align > 0 else "- ") + term)
    return " ".join(parts)


class Power(_Frozen):
    """`symbol^exponent`, one factor of an expression."""

    symbol: Symbol
    exponent: Exponent


class Expr(_Frozen):
    """The value of a quantity: `[constant *] n^p * fan_in^q * fan_out^r`, or `auto`/`keep`.

    - `kind="value"`: constant times the powers.
    - `kind="auto"` (lr, eps, wd only): constant times the theory's width factor.
    - `kind="keep"` (init only): keep the module's own initial values (norm gains = 1).
    """

    kind: Literal["value", "auto", "keep"] = "value"
    constant: Fraction = Fraction(1)
    powers: tuple[Power, ...] = ()
    span: SpanField

    @field_validator("powers")
    @classmethod
    def _canonical_powers(cls, powers: tuple[Power, ...]) -> tuple[Power, ...]:
        merged: dict[str, Exponent] = {}
        for p in powers:
            merged[p.symbol] = merged.get(p.symbol, Exponent()) + p.exponent
        return tuple(
            Power(symbol=s, exponent=merged[s])  # type: ignore[arg-type]
            for s in (*SYMBOLS, *ATTENTION_SYMBOLS)
            if s in merged and not merged[s].is_zero
        )

    @model_validator(mode="after")
    def _check_kind(self) -> Expr:
        if self.kind != "value" and self.powers:
            raise ValueError(f"`{self.kind}` cannot be combined with powers of symbols")
        if self.kind == "keep" and self.constant != 1:
            raise ValueError("`keep` cannot have a constant")
        return self

    def exponent_of(self, symbol: str) -> Exponent:
        for p in self.powers:
            if p.symbol == symbol:
                return p.exponent
        return Exponent()


class Selector(_Frozen):
    """One `match` line: every given condition must hold (module type, field, path glob)."""

    module: str | None = None
    field: str | None = None
    path: str | None = None
    span: SpanField

    @model_validator(mode="after")
    def _not_empty(self) -> Selector:
        if self.module is None and self.field is None and self.path is None:
            raise ValueError("a selector needs at least one of module, field, path")
        return self


class Block(_Frozen):
    """A layer block: a role and up to five quantities (unset means 1)."""

    name: str
    # None only in a spec that `extends` another: the role comes from the parent's block.
    role: Role | None = None
    doc: str | None = None
    match: tuple[Selector, ...] = ()
    multiplier: Expr | None = None
    init: Expr | None = None
    lr: Expr | None = None
    eps: Expr | None = None
    wd: Expr | None = None
    allow: tuple[Allowance, ...] = ()
    span: SpanField

    @field_validator("allow")
    @classmethod
    def _sorted_allow(cls, allow: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(allow)))

    def quantity(self, name: str) -> Expr | None:
        return getattr(self, name)


class Attention(_Frozen):
    """The `attention` block: the scale of the attention logits, `logits = s * q.k`.

    `logits` is `[constant *] head_dim^p * head_n^q` (unset: the standard
    `head_dim^(-1/2)`). It covers no parameter; the backend applies it to every
    attention module it recognises (docs/attention.md).
    """

    doc: str | None = None
    logits: Expr | None = None
    span: SpanField


class Spec(_Frozen):
    """A parameterization: a name, settings, and layer blocks in written order."""

    name: str
    doc: str | None = None
    extends: str | None = None
    optimizer: Optimizer | None = None
    alignment: Fraction | None = None
    base_width: int | None = Field(default=None, gt=0)
    # `unstable "why"`: the spec is unstable for its optimizer on purpose (a sweep
    # baseline), so `compile` does not warn. Not inherited through `extends`.
    unstable: str | None = None
    blocks: tuple[Block, ...] = ()
    attention: Attention | None = None
    # Where the spec was written (its `file` is the path, for `extends` and errors).
    span: SpanField

    @field_validator("unstable")
    @classmethod
    def _reason(cls, unstable: str | None) -> str | None:
        if unstable is not None and not unstable.strip():
            raise ValueError("`unstable` needs a reason (why the instability is deliberate)")
        return unstable

    @model_validator(mode="after")
    def _unique_blocks(self) -> Spec:
        names = [b.name for b in self.blocks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"block names must be unique, repeated: {', '.join(dupes)}")
        return self

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(name)
