"""Depth scaling (reference/theory.md §10; docs/theory.md "Depth"), in exact rationals.

With `L` residual blocks and the depth multiplier `m = L / L_base`, a pre-norm residual
network computes `x_(l+1) = x_l + m^(-beta) F_l(x_l)`: `beta` is the depth exponent of the
spec's `residual { branch ... }` (`m^(-alpha)`: beta = alpha; alpha = 1 CompleteP,
alpha = 1/2 Depth-muP). This module gives every layer block its *depth* exponents, in
the `m^(-x)` convention, beside the width ones of `_theory`:

    a  multiplier   b  init std   c  learning rate   e  epsilon   wd  weight decay

Explicit powers of `m` are read off the spec (at the compiled alpha). `auto` resolves
from one requirement: the L blocks' updates together move the residual stream by
Theta(1), so one block's contribution is Theta(1/m) (CompleteP's "every block learns",
theory.md §10). A block with `depth repeated` whose effective weight is `m^(-a) w` sits
behind the branch multiplier `m^(-beta)`, so its gradient carries `m^(-(beta + a))`
(g = beta + a) and a per-entry update `m^(-s)` moves the stream by `m^(-(beta + a + s))`;
`beta + a + s = 1` gives

    adam, adam_atan2, muon   s = c            c = 1 - beta - a        (theory.md §10's table)
    adafactor                s = b + c        c = 1 - beta - a - b
    sgd                      s = c + g        c = 1 - 2 (beta + a)

`eps auto` tracks the gradient, e = g (0 without an epsilon: sgd, adam_atan2); `wd auto`
is -c (per-step decay lr * wd depth-invariant, as in width). Blocks outside the repeated
blocks (`depth fixed` or unset: embedding, final norm, readout) get no depth factor: the
stream's gradient is Theta(1) in depth for beta >= 1/2. Only Adam's rows are sourced
(CompleteP's reference implementation); the others are derived here and unmeasured.

Nothing here imports JAX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from ._errors import SpecError
from ._ir import Block, Expr, Spec

__all__ = ["DepthLayer", "DepthTheory", "depth_factors_are_one", "model_form", "parse_depth_alpha",
           "require_depth_one", "resolve_depth", "set_branch_multipliers", "uses_depth"]

ZERO = Fraction(0)
HALF = Fraction(1, 2)
WITH_EPS = ("adam", "adafactor", "muon")


def parse_depth_alpha(value: str | int | float | Fraction) -> Fraction:
    """`1`, `1/2`, 0.75 or Fraction(3, 4) -> a Fraction in [1/2, 1], checked."""
    hint = "depth_alpha is a rational in [1/2, 1]: 1 (CompleteP) or 1/2 (Depth-muP)"
    if isinstance(value, str):
        try:
            a = Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise SpecError(f"unknown depth_alpha `{value}`", hint=hint) from None
    elif isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise SpecError(f"depth_alpha must be a string or a number, got "
                        f"{type(value).__name__}", hint=hint)
    else:
        a = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    if not HALF <= a <= 1:
        raise SpecError(f"depth_alpha {a} is outside [1/2, 1]", hint=hint)
    return a


def depth_power(expr: Expr | None, alpha: Fraction) -> Fraction:
    """The exponent p of `expr ∝ m^p` at the depth exponent alpha (0 for auto/keep)."""
    if expr is None or expr.kind != "value":
        return ZERO
    return expr.exponent_of("m").at_alpha(alpha)


def uses_depth(spec: Spec) -> bool:
    """Whether the spec says anything about depth (a setting, `m`, `depth`, `residual`)."""
    if spec.residual is not None or spec.base_depth is not None or spec.depth_alpha is not None:
        return True
    for block in spec.blocks:
        if block.depth is not None:
            return True
        for q in ("multiplier", "init", "lr", "eps", "wd"):
            expr = block.quantity(q)
            if expr is not None and not expr.exponent_of("m").is_zero:
                return True
    return False


@dataclass
class DepthLayer:
    """The depth exponents of one block (m^(-x) convention) and how they were found."""

    name: str
    repeated: bool
    a: Fraction = ZERO
    b: Fraction = ZERO
    c: Fraction = ZERO
    e: Fraction = ZERO
    wd: Fraction = ZERO
    g: Fraction = ZERO  # gradient exponent of the stored weight, in depth
    steps: list[str] = field(default_factory=list)

    def exponents(self) -> dict[str, Fraction]:
        return {"a": self.a, "b": self.b, "c": self.c, "e": self.e, "wd": self.wd}


@dataclass
class DepthTheory:
    alpha: Fraction
    branch: Fraction  # beta: the residual branch's output is multiplied by m^(-beta)
    branch_constant: Fraction
    layers: dict[str, DepthLayer]
    # The `depth repeated` blocks' exponents for a parameter of theirs that sits outside
    # the repeated blocks (learned from two depths: `_equinox/_depth_learn.py`).
    outside: dict[str, DepthLayer] = field(default_factory=dict)

    def layer(self, name: str, place: str | None = None) -> DepthLayer:
        """Block `name`'s exponents; `place="fixed"`: for a parameter of a `depth repeated`
        block that was found outside the repeated blocks (no depth factor from lr/eps/wd
        `auto`; explicit powers of `m` still apply)."""
        if place == "fixed" and name in self.outside:
            return self.outside[name]
        return self.layers[name]

    @property
    def trivial(self) -> bool:
        """True when every depth exponent is 0 and the branch multiplier is 1."""
        return self.branch == 0 and self.branch_constant == 1 and all(
            x == 0 for layer in self.layers.values() for x in layer.exponents().values())


def resolve_depth(spec: Spec, optimizer: str, alpha: Fraction) -> DepthTheory:
    """Every block's depth exponents, for a resolved spec, optimizer and alpha."""
    branch_expr = spec.residual.branch if spec.residual is not None else None
    beta = -depth_power(branch_expr, alpha)
    branch_constant = branch_expr.constant if branch_expr is not None else Fraction(1)
    layers = {b.name: _layer(b, b.depth == "repeated", optimizer, beta, alpha)
              for b in spec.blocks}
    outside = {b.name: _layer(b, False, optimizer, beta, alpha)
               for b in spec.blocks if b.depth == "repeated"}
    return DepthTheory(alpha, beta, branch_constant, layers, outside)


def _layer(block: Block, repeated: bool, optimizer: str, beta: Fraction,
           alpha: Fraction) -> DepthLayer:
    d = DepthLayer(block.name, repeated)
    d.a = -depth_power(block.multiplier, alpha)
    d.b = -depth_power(block.init, alpha)
    if repeated:
        d.g = beta + d.a
        d.steps.append(f"inside the repeated blocks, behind the branch multiplier "
                       f"m^(-{beta}): gradient exponent g = beta + a = {d.g}")
    else:
        d.steps.append("outside the repeated blocks: no depth factor on its gradient")
    _lr(block.lr, d, optimizer, beta, alpha)
    if block.eps is not None and block.eps.kind == "auto":
        d.e = d.g if optimizer in WITH_EPS else ZERO
        d.steps.append(f"eps auto: e = g = {d.e}" if optimizer in WITH_EPS
                       else f"eps auto: {optimizer} has no epsilon, e = 0")
    else:
        d.e = -depth_power(block.eps, alpha)
    if block.wd is not None and block.wd.kind == "auto":
        d.wd = -d.c
        d.steps.append(f"wd auto: wd = -c = {-d.c} keeps lr * wd per step depth-invariant "
                       "[open: unmeasured]")
    else:
        d.wd = -depth_power(block.wd, alpha)
    return d


def _lr(expr: Expr | None, d: DepthLayer, optimizer: str, beta: Fraction,
        alpha: Fraction) -> None:
    if expr is None or expr.kind != "auto":
        d.c = -depth_power(expr, alpha)
        return
    if not d.repeated:
        d.c = ZERO
        d.steps.append("lr auto: outside the repeated blocks, c = 0")
        return
    # The m blocks' updates move the stream by Theta(1): beta + a + (per-entry step) = 1.
    target = 1 - beta - d.a
    if optimizer == "sgd":
        d.c = target - d.g
        d.steps.append(f"lr auto (sgd, step = c + g): c = 1 - beta - a - g = {d.c}")
    elif optimizer == "adafactor":
        d.c = target - d.b
        d.steps.append(f"lr auto (adafactor, step = b + c): c = 1 - beta - a - b = {d.c}")
    else:
        d.c = target
        d.steps.append(f"lr auto ({optimizer}, step = c): c = 1 - beta - a = {d.c}")


def depth_factors_are_one(compiled: object) -> bool:
    """Whether every depth factor (and the branch multiplier) is 1 at the compiled depth."""
    dt: DepthTheory | None = compiled.depth_theory  # type: ignore[attr-defined]
    if dt is None:
        return True
    if compiled.m == 1:  # type: ignore[attr-defined]
        return dt.branch_constant == 1
    return dt.trivial


def require_depth_one(compiled: object, what: str, *, form: str = "multiplier",
                      init_from: str = "spec") -> None:
    """Raise where a backend route would silently ignore depth factors that are not 1.

    The multiplier form applies them (values carry the m factors; `set_branch_multipliers`
    sets the residual branches); folding (`form="absorbed"`), `init_from="model"` and
    Adafactor's parameter-scale floor do not know depth yet.
    """
    if depth_factors_are_one(compiled):
        return
    dt: DepthTheory = compiled.depth_theory  # type: ignore[attr-defined]
    pending = []
    if form == "absorbed":
        pending.append("form='absorbed' (folding the multipliers does not know depth)")
    if init_from == "model":
        pending.append("init_from='model' (the model's own init at the base depth needs a "
                       "make_model that takes a `depth` keyword and a compiled depth: "
                       "docs/models.md, \"Depth\")")
    if compiled.optimizer_name == "adafactor" and any(  # type: ignore[attr-defined]
            d.b != 0 for d in dt.layers.values()):
        pending.append("Adafactor's parameter-scale floor of blocks whose init has a depth "
                       "factor")
    if pending:
        raise SpecError(
            f"depth scaling is compiled but not yet applied to models by this route: {what} "
            f"would ignore the depth factors at depth {compiled.depth} "  # type: ignore[attr-defined]
            f"(m = {compiled.m:g}) with {'; '.join(pending)}",  # type: ignore[attr-defined]
            hint="use form='multiplier' and init_from='spec', or compile at depth == "
            "base_depth (every depth factor 1)")


def model_form(model: object) -> str:
    """`absorbed` if a model built by `init`/`apply` folded its multipliers, else
    `multiplier` (for `c.optimizer`'s check)."""
    from ._equinox._build import _ABSORBED, block_labels

    labels = block_labels(model).values()
    return "absorbed" if any(label.startswith(_ABSORBED) for label in labels) else "multiplier"


def _is_branch(x: object) -> bool:
    import dataclasses

    import equinox as eqx

    return isinstance(x, eqx.Module) and any(
        f.name == "branch_multiplier" for f in dataclasses.fields(x))


def set_branch_multipliers(compiled: object, model: object, *, folded: bool = False) -> object:
    """Set `branch_multiplier` on every residual-branch module (any Equinox module with
    that field, e.g. `paramspec.models.Block`) to the spec's branch multiplier at the
    compiled depth. A multiplier that is not 1 with no such module is an error: it would
    otherwise be ignored. `folded`: `branches=` named the branches' output projections and
    the multiplier is folded into them (`_equinox/_depth_learn.py`); nothing to set."""
    import copy

    import jax

    if folded:
        return model
    value = compiled.branch_multiplier()  # type: ignore[attr-defined]
    found = []

    def set_one(x: object) -> object:
        if not _is_branch(x):
            return x
        found.append(x)
        new = copy.copy(x)
        object.__setattr__(new, "branch_multiplier", value)  # a static field: a new module
        return new

    model = jax.tree_util.tree_map(set_one, model, is_leaf=_is_branch)
    if value != 1.0 and not found:
        raise SpecError(
            f"the spec multiplies each residual branch by {value:g} at depth "
            f"{compiled.depth}, but the model has no residual-branch module",  # type: ignore[attr-defined]
            hint="name each residual branch's output projection (the last linear map "
            "before the residual add), e.g. c.init(make_model, key, branches=["
            "'blocks[*].attn.c_proj', 'blocks[*].mlp.c_proj']) (docs/models.md, \"Depth\"); "
            "or give the module of each residual block a static field "
            "`branch_multiplier: float = eqx.field(static=True, default=1.0)` and multiply "
            "each branch's output by it before the residual add (paramspec.models.Block "
            "does); or compile at depth == base_depth")
    return model
