"""A spec compiled for one width: exact exponents, the numbers, and the backends.

`compile(spec, width=...)` resolves `extends`, checks stability at init, and runs the
theory for the chosen optimizer and alignment. The result, `Compiled`, answers every
per-layer question in numbers (`table()`, `value()`), and builds the Equinox model
(`init`, `apply`) and the Optax optimizer (`optimizer`) -- those import JAX lazily, so
`import paramspec; paramspec.compile(...)` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ._depth import (
    DepthTheory,
    model_form,
    parse_depth_alpha,
    require_depth_one,
    resolve_depth,
    set_branch_multipliers,
    uses_depth,
)
from ._errors import SpecError
from ._ir import OPTIMIZERS, Block, Expr, Spec
from ._library import load, resolve, validate
from ._theory import FANS, Theory, resolve_theory

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Compiled", "compile", "compile_quiet", "parse_alignment"]

QUANTITY_KEYS = {
    "multiplier": "multiplier",
    "init": "init_std",
    "lr": "lr_scale",
    "eps": "eps_scale",
    "wd": "wd_scale",
}


def parse_alignment(value: str | int | float | Fraction) -> Fraction:
    """`full` -> 1, `none` -> 1/2, `3/4`, 0.75 or Fraction(3, 4) -> Fraction, checked."""
    hint = "alignment is `full` (1), `none` (1/2), or a rational in [1/2, 1] such as `3/4`"
    if isinstance(value, str):
        word = value.strip()
        if word == "full":
            return Fraction(1)
        if word == "none":
            return Fraction(1, 2)
        try:
            a = Fraction(word)
        except (ValueError, ZeroDivisionError):
            raise SpecError(f"unknown alignment `{value}`", hint=hint) from None
    elif isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise SpecError(f"alignment must be a string or a number, got {type(value).__name__}",
                        hint=hint)
    else:
        a = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    if not Fraction(1, 2) <= a <= 1:
        raise SpecError(f"alignment {a} is outside [1/2, 1]", hint=hint)
    return a


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"{name} must be a positive integer, got {value!r}",
                        hint=f"e.g. {name}=1024")
    return value


def compile(  # noqa: A001 - the verb users expect: paramspec.compile
    spec: Spec | str | Path,
    *,
    width: int,
    base_width: int | None = None,
    alignment: str | float | Fraction | None = None,
    optimizer: str | None = None,
    depth: int | None = None,
    base_depth: int | None = None,
    depth_alpha: str | float | Fraction | None = None,
) -> Compiled:
    """Compile `spec` (a `Spec`, a built-in name or a path) for one width (and depth).

    Unset arguments come from the spec (`optimizer`, `alignment`, `base_width`), then
    from the defaults adam, full alignment and base width 1 (Everett's absolute form).

    Warns (`paramspec.UnstableSpecWarning`) when the spec is unstable for the optimizer
    and alignment it is compiled for, naming each unstable block and the fix, unless
    the spec says the instability is deliberate with a top-level `unstable "reason"`.
    """
    compiled = compile_quiet(spec, width=width, base_width=base_width, alignment=alignment,
                             optimizer=optimizer, depth=depth, base_depth=base_depth,
                             depth_alpha=depth_alpha)
    # Free for a stable spec (the theory is already solved); the message, which needs
    # the analysis layer, is built only for an unstable one.
    if compiled.spec.unstable is None and not compiled.theory.stable:
        from ._analysis._warn import warn_unstable

        warn_unstable(compiled, stacklevel=2)
    return compiled


def compile_quiet(
    spec: Spec | str | Path,
    *,
    width: int,
    base_width: int | None = None,
    alignment: str | float | Fraction | None = None,
    optimizer: str | None = None,
    depth: int | None = None,
    base_depth: int | None = None,
    depth_alpha: str | float | Fraction | None = None,
) -> Compiled:
    """`compile` without the stability warning, for the analysis layer (which reports
    instability itself) and code that compiles a spec under every optimizer."""
    if isinstance(spec, Spec):
        spec = validate(resolve(spec))
    else:
        spec = load(spec)
    width = _positive_int("width", width)
    base = _positive_int("base_width", base_width if base_width is not None
                         else spec.base_width or 1)
    opt = optimizer if optimizer is not None else spec.optimizer or "adam"
    if opt not in OPTIMIZERS:
        raise SpecError(f"unknown optimizer `{opt}`",
                        hint=f"choose one of {', '.join(OPTIMIZERS)}")
    align = parse_alignment(alignment) if alignment is not None else (
        spec.alignment if spec.alignment is not None else Fraction(1))
    theory = resolve_theory(spec, opt, align)
    # Depth (docs/theory.md "Depth"): m = depth / base_depth, 1 unless asked for.
    bdepth = _positive_int("base_depth", base_depth if base_depth is not None
                           else spec.base_depth or 1)
    dep = _positive_int("depth", depth) if depth is not None else bdepth
    alpha = parse_depth_alpha(depth_alpha) if depth_alpha is not None else (
        spec.depth_alpha if spec.depth_alpha is not None else Fraction(1))
    return Compiled(spec=spec, width=width, base_width=base, alignment=align, optimizer_name=opt,
                    theory=theory, depth=dep, base_depth=bdepth, depth_alpha=alpha,
                    depth_theory=resolve_depth(spec, opt, alpha),
                    depth_shown=uses_depth(spec) or depth is not None or base_depth is not None,
                    depth_given=depth is not None or base_depth is not None
                    or spec.base_depth is not None)


@dataclass(frozen=True)
class Compiled:
    """A spec at one width: exact exponents (`theory`) and per-parameter numbers."""

    spec: Spec
    width: int
    base_width: int
    alignment: Fraction
    optimizer_name: str  # adam | adam_atan2 | sgd | adafactor | muon (`optimizer()` builds it)
    theory: Theory = field(repr=False)
    depth: int = 1
    base_depth: int = 1
    depth_alpha: Fraction = Fraction(1)
    depth_theory: DepthTheory | None = field(default=None, repr=False)
    depth_shown: bool = False  # the table carries the depth keys (docs/cli.md)
    # A depth was asked for (depth=, base_depth= or the spec's base_depth): `init` builds
    # a make_model that takes `depth` at this depth (docs/models.md, "Depth").
    depth_given: bool = False

    @property
    def n(self) -> float:
        """The width multiplier n = width / base_width."""
        return self.width / self.base_width

    @property
    def m(self) -> float:
        """The depth multiplier m = depth / base_depth."""
        return self.depth / self.base_depth

    def branch_multiplier(self) -> float:
        """Each residual branch's output multiplier at this depth (1 without `residual`)."""
        dt = self.depth_theory
        return 1.0 if dt is None else float(dt.branch_constant) * self.m ** float(-dt.branch)

    @property
    def blocks(self) -> tuple[Block, ...]:
        return self.spec.blocks

    def block(self, name: str) -> Block:
        try:
            return self.spec.block(name)
        except KeyError:
            names = ", ".join(b.name for b in self.spec.blocks)
            raise SpecError(f"spec `{self.spec.name}` has no block `{name}`",
                            hint=f"its blocks are: {names}") from None

    # ------------------------------------------------------------------ numbers

    def nominal_fans(self, role: str) -> tuple[int, int]:
        """(fan_in, fan_out) of a nominal parameter of `role`: width if it grows, else 1."""
        grows_in, grows_out = FANS[role]
        return (self.width if grows_in else 1, self.width if grows_out else 1)

    def value(self, name: str, quantity: str, *, fan_in: int | None = None,
              fan_out: int | None = None, depth_place: str | None = None) -> float | None:
        """The number for `quantity` of block `name`, for a parameter with these fans.

        multiplier / init (std) / lr (factor on the global learning rate) / eps (factor on
        the base epsilon) / wd (factor on the base weight decay). Fans default to the
        nominal shapes. `init keep` gives None (keep the module's own values).
        `depth_place="fixed"`: a parameter of a `depth repeated` block found outside the
        repeated blocks (no depth factor on its `auto` lr/eps/wd).
        """
        if quantity not in QUANTITY_KEYS:
            raise SpecError(f"unknown quantity `{quantity}`",
                            hint=f"one of {', '.join(QUANTITY_KEYS)}")
        block = self.block(name)
        assert block.role is not None
        nominal_in, nominal_out = self.nominal_fans(block.role)
        expr: Expr | None = block.quantity(quantity)
        if expr is None:
            return 1.0
        if expr.kind == "keep":
            return None
        layer = self.theory.layers[name]
        if expr.kind == "auto":
            exponent = {"lr": layer.c, "eps": layer.e, "wd": layer.wd}[quantity]
            depth = (self.depth_theory.layer(name, depth_place)
                     if self.depth_theory is not None else None)
            d_exp = getattr(depth, {"lr": "c", "eps": "e", "wd": "wd"}[quantity]) if depth else 0
            return float(expr.constant) * self.n ** float(-exponent) * self.m ** float(-d_exp)
        result = float(expr.constant)
        symbols = {"n": self.n, "fan_in": fan_in or nominal_in, "fan_out": fan_out or nominal_out,
                   "m": self.m}
        for p in expr.powers:
            x = (p.exponent.at_alpha(self.depth_alpha) if p.symbol == "m"
                 else p.exponent.at(self.alignment))
            result *= float(symbols[p.symbol]) ** float(x)
        return result

    def multiplier(self, name: str, **fans: int) -> float:
        """The forward multiplier of block `name` (for tied weights and custom modules)."""
        value = self.value(name, "multiplier", **fans)
        assert value is not None
        return value

    def init_std(self, name: str, **fans: int) -> float | None:
        return self.value(name, "init", **fans)

    def table(self) -> dict[str, Any]:
        """Resolved per-block exponents and values: the CLI's JSON, as a dict."""
        layers = {}
        for block in self.spec.blocks:
            t = self.theory.layers[block.name]
            exps = {"a": t.a, "b": t.b, "c": t.c, "e": t.e, "wd": t.wd}
            layers[block.name] = {
                "role": block.role,
                "exponents": {k: str(v) for k, v in exps.items()},
                "values": {key: self.value(block.name, q) for q, key in QUANTITY_KEYS.items()},
            }
            if self.depth_shown and self.depth_theory is not None:
                d = self.depth_theory.layers[block.name].exponents()
                layers[block.name]["depth_exponents"] = {k: str(v) for k, v in d.items()}
        out = {
            "spec": self.spec.name,
            "optimizer": self.optimizer_name,
            "alignment": str(self.alignment),
            "width": self.width,
            "base_width": self.base_width,
            "layers": layers,
        }
        if self.depth_shown and self.depth_theory is not None:
            out["depth"] = self.depth
            out["base_depth"] = self.base_depth
            out["depth_alpha"] = str(self.depth_alpha)
            out["residual"] = {"branch": str(self.depth_theory.branch),
                               "value": self.branch_multiplier()}
        return out

    # ------------------------------------------------------------------ backends (JAX)

    def init(self, make_model: Callable[[int, Any], Any], key: Any, *,
             other_width: int | None = None, roles: Mapping[str, str] | None = None,
             layouts: Mapping[str, Any] | None = None, form: str = "multiplier",
             init_from: str = "spec", tied: Mapping[str, str] | None = None,
             branches: Sequence[str] | None = None, other_depth: int | None = None) -> Any:
        """Build `make_model(width, key)` at this width, parameterized by the spec.

        Each parameter's role comes from how its shape changes between `width` and
        `other_width` (default 2 * width; traced with `eqx.filter_eval_shape`, so no memory
        is used); its block from the spec's `match` lines and roles (`roles=` overrides,
        see `apply`). Every parameter is re-drawn from N(0, init_std^2) (`init keep` keeps
        the module's values) and the model computes with `W = multiplier * w`.
        `form="absorbed"` folds the multipliers into init, learning rate and eps instead
        (exact for sgd, adam_atan2, and adam with eps auto; an error where it is not).
        `init_from="model"` keeps the model's own init instead: its values at the base
        width (built there with the same key), scaled per parameter by the spec's
        init_std(width) / init_std(base_width) (GPT-2's 0.02 stays 0.02 at the base width).
        `tied={"wte.weight": "readout"}` declares a tied weight whose direct reads
        (`x @ self.wte.weight.T`) are the readout's use (docs/models.md, "Tied weights").
        Roles, blocks, explicit layouts and ties are recorded on the returned model.
        Depth (docs/models.md, "Depth"): when a depth was asked for and `make_model` takes
        a `depth` keyword, the model is built at `depth` and the parameters inside the
        repeated blocks are learned from a second depth (`other_depth`, default 2 * depth);
        `branches=["blocks[*].mlp.c_proj", ...]` names each residual branch's output
        projection, into which the branch multiplier is folded.
        """
        from ._equinox._build import init

        # init_from="model" under depth needs the depth route: _build.init checks it
        require_depth_one(self, "c.init", form=form)
        return set_branch_multipliers(self, init(
            self, make_model, key, other_width=other_width, roles=roles, layouts=layouts,
            form=form, init_from=init_from, tied=tied, branches=branches,  # type: ignore[arg-type]
            other_depth=other_depth), folded=bool(branches))

    def apply(self, model: Any, key: Any, *, roles: Mapping[str, str] | None = None,
              layouts: Mapping[str, Any] | None = None, form: str = "multiplier",
              init_from: str = "spec", base_model: Any = None,
              tied: Mapping[str, str] | None = None,
              attention: Mapping[str, str] | str | None = None,
              branches: Sequence[str] | None = None) -> Any:
        """`init` for a model that is already built: one width cannot tell roles, so every
        parameter must be selected by a `match` line of the spec or by `roles=`, a
        mapping from selectors (`"module=LayerNorm, field=weight"`, `"path=head.*"` or a
        bare path glob) to a role (`"hidden"`, ...) or a block name. `init_from="model"`
        keeps the model's own init as in `init`; away from the base width it needs
        `base_model=`, the same model built at the base width. `attention`:
        `"head_size"` or `"heads"` (or a mapping from attention-module path to either),
        what grows with width, where the spec's logit scale depends on it. `branches`: as
        in `init` (one depth cannot tell the repeated blocks: the spec's `depth` lines)."""
        from ._equinox._build import apply

        require_depth_one(self, "c.apply", form=form, init_from=init_from)
        return set_branch_multipliers(self, apply(
            self, model, key, roles=roles, layouts=layouts, form=form,  # type: ignore[arg-type]
            init_from=init_from, base_model=base_model, tied=tied, attention=attention,
            branches=branches), folded=bool(branches))

    def describe(self, model: Any) -> list[dict[str, Any]]:
        """One row per parameter of a model built by `init`/`apply`: path, block, role,
        fans and its numbers (multiplier, init_std, lr/eps/wd scales, tie)."""
        from ._equinox._describe import describe

        return describe(self, model)

    def optimizer(self, model: Any, *, learning_rate: Any, eps: float = 1e-8,
                  weight_decay: float = 0.0, b1: float = 0.9, b2: float = 0.999,
                  momentum: float | None = 0.9, atan2_a: float = 1.27, atan2_b: float = 1.0,
                  adafactor_kwargs: Mapping[str, Any] | None = None,
                  muon_scale: str = "spectral") -> Any:
        """The Optax optimizer for a model built by `init`/`apply`.

        A standard `optax.GradientTransformation` (an `optax.named_chain`: core ->
        lr_scale -> weight_decay -> learning_rate) for the spec's optimizer, with each
        parameter's learning-rate factor, epsilon (`eps` times its factor) and decoupled
        weight decay (`weight_decay` times its factor; per-step decay learning_rate *
        lr factor * wd) baked in as static floats. `learning_rate` may be a float or an
        Optax schedule. Initialise it with `eqx.filter(model, eqx.is_inexact_array)`.
        Under `muon`, hidden matrices take `optax.contrib.scale_by_muon` times a static
        shape factor, `muon_scale` = `"spectral"` (`sqrt(fan_out/fan_in)`), `"jordan"`
        (Optax's default) or `"moonlight"` (AdamW-matched RMS at the base width); see
        docs/theory.md.
        """
        from ._equinox._build import optimizer

        require_depth_one(self, "c.optimizer", form=model_form(model))
        return optimizer(self, model, learning_rate=learning_rate, eps=eps,
                         weight_decay=weight_decay, b1=b1, b2=b2, momentum=momentum,
                         atan2_a=atan2_a, atan2_b=atan2_b, adafactor_kwargs=adafactor_kwargs,
                         muon_scale=muon_scale)
