"""The Spec IR: frozen pydantic models, exact `Fraction` exponents, JSON-schema exportable.

    text --(Lark)--> tree --(_parse)--> Spec (this module) --(_theory)--> exponents

The IR is the *written* spec: `auto` stays `auto`, `fan_in` stays `fan_in`, `extends`
stays a name. Folding by role and resolving `auto` is the theory's job. Constructors
canonicalise (powers sorted and merged, zero exponents dropped), so two specs that mean
the same thing compare equal, and `parse(render(spec)) == spec`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Literal, Self

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
    "Residual",
    "Spec",
]

Role = Literal["input", "hidden", "output", "vector", "constant"]
Optimizer = Literal["adam", "adam_atan2", "sgd", "adafactor", "muon"]
Symbol = Literal["n", "fan_in", "fan_out", "head_dim", "head_n", "m"]
Quantity = Literal["multiplier", "init", "lr", "eps", "wd"]
SelectorKey = Literal["module", "field", "path"]
Allowance = Literal["unstable_init"]

ROLES: tuple[str, ...] = ("input", "hidden", "output", "vector", "constant")
OPTIMIZERS: tuple[str, ...] = ("adam", "adam_atan2", "sgd", "adafactor", "muon")
SYMBOLS: tuple[str, ...] = ("n", "fan_in", "fan_out")
# The symbols of the `attention` block's `logits` (and only there): the head size d and
# the head-size multiplier d / d_base (1 where the head count grows instead).
ATTENTION_SYMBOLS: tuple[str, ...] = ("head_dim", "head_n")
# The depth multiplier m = depth / base_depth (number of residual blocks), usable in every
# quantity and in the `residual` block's `branch`; its exponents are affine in `alpha`.
DEPTH_SYMBOLS: tuple[str, ...] = ("m",)
# Where a block's parameters sit: inside the repeated residual blocks, or outside them.
DEPTH_PLACES: tuple[str, ...] = ("repeated", "fixed")
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
    # `defer_build`: pydantic builds a model's validator on its first validation, not at
    # import. The parser checks everything itself and builds the IR with `_trusted`, so
    # `paramspec compile` never builds one (building them all was most of the time that
    # importing paramspec itself took).
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True,
                              defer_build=True)

    @classmethod
    def _trusted(cls, **values: object) -> Self:
        """`cls(**values)` for values already of the fields' types (the parser's, which
        reports every user error itself): the same canonical form and the same checks as
        validation (`_canonical`), without pydantic's validator."""
        unknown = set(values) - set(cls.model_fields)
        if unknown:  # model_construct would drop them silently
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        return cls.model_construct(**cls._canonical(values))

    @classmethod
    def _canonical(cls, values: dict[str, object]) -> dict[str, object]:
        """The field and model validators' work on raw values (raises ValueError)."""
        return values


class Exponent(_Frozen):
    """An exponent affine in the alignment (width symbols) or in the depth exponent
    (the depth symbol `m`): `const + align * A` or `const + alpha * α`."""

    const: Fraction = Fraction(0)
    align: Fraction = Fraction(0)
    alpha: Fraction = Fraction(0)

    def at(self, alignment: Fraction) -> Fraction:
        """The exact exponent at a given alignment in [1/2, 1]."""
        return self.const + self.align * alignment

    def at_alpha(self, alpha: Fraction) -> Fraction:
        """The exact exponent of a depth power at a depth exponent α in [1/2, 1]."""
        return self.const + self.alpha * alpha

    @property
    def is_zero(self) -> bool:
        return self.const == 0 and self.align == 0 and self.alpha == 0

    def __add__(self, other: Exponent) -> Exponent:
        return Exponent._trusted(const=self.const + other.const, align=self.align + other.align,
                                 alpha=self.alpha + other.alpha)

    def __neg__(self) -> Exponent:
        return Exponent._trusted(const=-self.const, align=-self.align, alpha=-self.alpha)

    def __sub__(self, other: Exponent) -> Exponent:
        return self + (-other)

    def __str__(self) -> str:
        return render_exponent(self)


def _fraction_text(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def render_exponent(e: Exponent) -> str:
    """Canonical text of an exponent: `-1/2`, `align`, `1 - align`, `1/2*align`."""
    parts: list[str] = []
    if e.const != 0 or (e.align == 0 and e.alpha == 0):
        parts.append(_fraction_text(e.const))
    for name, coef in (("align", e.align), ("alpha", e.alpha)):
        if coef == 0:
            continue
        mag = abs(coef)
        term = name if mag == 1 else f"{_fraction_text(mag)}*{name}"
        if not parts:
            parts.append(term if coef > 0 else f"-{term}")
        else:
            parts.append(("+ " if coef > 0 else "- ") + term)
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
            merged[p.symbol] = merged.get(p.symbol, Exponent._trusted()) + p.exponent
        return tuple(
            Power._trusted(symbol=s, exponent=merged[s])
            for s in (*SYMBOLS, *ATTENTION_SYMBOLS, *DEPTH_SYMBOLS)
            if s in merged and not merged[s].is_zero
        )

    @model_validator(mode="after")
    def _check_kind(self) -> Expr:
        _check_expr_kind(self.kind, self.constant, self.powers)
        return self

    @classmethod
    def _canonical(cls, values: dict[str, object]) -> dict[str, object]:
        if "powers" in values:
            values["powers"] = cls._canonical_powers(values["powers"])  # type: ignore[arg-type]
        _check_expr_kind(values.get("kind", "value"), values.get("constant", 1),
                         values.get("powers", ()))
        return values

    def exponent_of(self, symbol: str) -> Exponent:
        for p in self.powers:
            if p.symbol == symbol:
                return p.exponent
        return Exponent._trusted()


def _check_expr_kind(kind: object, constant: object, powers: object) -> None:
    if kind != "value" and powers:
        raise ValueError(f"`{kind}` cannot be combined with powers of symbols")
    if kind == "keep" and constant != 1:
        raise ValueError("`keep` cannot have a constant")


class Selector(_Frozen):
    """One `match` line: every given condition must hold (module type, field, path glob)."""

    module: str | None = None
    field: str | None = None
    path: str | None = None
    span: SpanField

    @model_validator(mode="after")
    def _not_empty(self) -> Selector:
        self._canonical(dict(self))
        return self

    @classmethod
    def _canonical(cls, values: dict[str, object]) -> dict[str, object]:
        if all(values.get(k) is None for k in ("module", "field", "path")):
            raise ValueError("a selector needs at least one of module, field, path")
        return values


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
    # `depth repeated`: the block's parameters sit inside the repeated residual blocks
    # (their `auto` lr/eps/wd get depth factors); `fixed` or unset: outside them.
    depth: Literal["repeated", "fixed"] | None = None
    span: SpanField

    @field_validator("allow")
    @classmethod
    def _sorted_allow(cls, allow: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(allow)))

    @classmethod
    def _canonical(cls, values: dict[str, object]) -> dict[str, object]:
        if "allow" in values:
            values["allow"] = cls._sorted_allow(values["allow"])  # type: ignore[arg-type]
        return values

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


class Residual(_Frozen):
    """The `residual` block: each residual branch's output is multiplied by `branch`,
    `x + branch * F(x)`, e.g. `m^(-alpha)` (CompleteP / Depth-muP, theory.md §10).

    `branch` is `[constant *] m^p` (unset: 1). It covers no parameter.
    """

    doc: str | None = None
    branch: Expr | None = None
    span: SpanField


class Spec(_Frozen):
    """A parameterization: a name, settings, and layer blocks in written order."""

    name: str
    doc: str | None = None
    extends: str | None = None
    optimizer: Optimizer | None = None
    alignment: Fraction | None = None
    base_width: int | None = Field(default=None, gt=0)
    # Depth: the number of residual blocks the constants were tuned at, and the depth
    # exponent α in [1/2, 1] that `alpha` stands for in depth exponents.
    base_depth: int | None = Field(default=None, gt=0)
    depth_alpha: Fraction | None = None
    # `unstable "why"`: the spec is unstable for its optimizer on purpose (a sweep
    # baseline), so `compile` does not warn. Not inherited through `extends`.
    unstable: str | None = None
    blocks: tuple[Block, ...] = ()
    attention: Attention | None = None
    residual: Residual | None = None
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
        _check_unique_blocks(self.blocks)
        return self

    @classmethod
    def _canonical(cls, values: dict[str, object]) -> dict[str, object]:
        cls._reason(values.get("unstable"))  # type: ignore[arg-type]
        for key in ("base_width", "base_depth"):
            if values.get(key) is not None and values[key] <= 0:  # type: ignore[operator]
                raise ValueError(f"{key} must be positive")
        _check_unique_blocks(values.get("blocks", ()))  # type: ignore[arg-type]
        return values

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(name)


def _check_unique_blocks(blocks: tuple[Block, ...]) -> None:
    names = [b.name for b in blocks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"block names must be unique, repeated: {', '.join(dupes)}")
