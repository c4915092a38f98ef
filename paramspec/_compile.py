"""A spec compiled for one width: exact exponents, the numbers, and the backends.

`compile(spec, width=...)` resolves `extends`, checks stability at init, and runs the
theory for the chosen optimizer and alignment. The result, `Compiled`, answers every
per-layer question in numbers (`table()`, `value()`), and builds the Equinox model
(`init`, `apply`) and the Optax optimizer (`optimizer`) -- those import JAX lazily, so
`import paramspec; paramspec.compile(...)` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

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
) -> Compiled:
    """Compile `spec` (a `Spec`, a built-in name or a path) for one width.

    Unset arguments come from the spec (`optimizer`, `alignment`, `base_width`), then
    from the defaults adam, full alignment and base width 1 (Everett's absolute form).

    Warns (`paramspec.UnstableSpecWarning`) when the spec is unstable for the optimizer
    and alignment it is compiled for, naming each unstable block and the fix, unless
    the spec says the instability is deliberate with a top-level `unstable "reason"`.
    """
    compiled = compile_quiet(spec, width=width, base_width=base_width, alignment=alignment,
                             optimizer=optimizer)
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
    return Compiled(spec=spec, width=width, base_width=base, alignment=align, optimizer_name=opt,
                    theory=theory)


@dataclass(frozen=True)
class Compiled:
    """A spec at one width: exact exponents (`theory`) and per-parameter numbers."""

    spec: Spec
    width: int
    base_width: int
    alignment: Fraction
    optimizer_name: str  # adam | adam_atan2 | sgd | adafactor | muon (`optimizer()` builds it)
    theory: Theory = field(repr=False)

    @property
    def n(self) -> float:
        """The width multiplier n = width / base_width."""
        return self.width / self.base_width

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
              fan_out: int | None = None) -> float | None:
        """The number for `quantity` of block `name`, for a parameter with these fans.

        multiplier / init (std) / lr (factor on the global learning rate) / eps (factor on
        the base epsilon) / wd (factor on the base weight decay). Fans default to the
        nominal shapes. `init keep` gives None (keep the module's own values).
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
            return float(expr.constant) * self.n ** float(-exponent)
        result = float(expr.constant)
        symbols = {"n": self.n, "fan_in": fan_in or nominal_in, "fan_out": fan_out or nominal_out}
        for p in expr.powers:
            result *= float(symbols[p.symbol]) ** float(p.exponent.at(self.alignment))
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
        return {
            "spec": self.spec.name,
            "optimizer": self.optimizer_name,
            "alignment": str(self.alignment),
            "width": self.width,
            "base_width": self.base_width,
            "layers": layers,
        }

    # ------------------------------------------------------------------ backends (JAX)

    def init(self, make_model: Callable[[int, Any], Any], key: Any, *,
             other_width: int | None = None, roles: Mapping[str, str] | None = None,
             layouts: Mapping[str, Any] | None = None, form: str = "multiplier",
             init_from: str = "spec", tied: Mapping[str, str] | None = None) -> Any:
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
        """
        from ._equinox._build import init

        return init(self, make_model, key, other_width=other_width, roles=roles,
                    layouts=layouts, form=form, init_from=init_from,  # type: ignore[arg-type]
                    tied=tied)

    def apply(self, model: Any, key: Any, *, roles: Mapping[str, str] | None = None,
              layouts: Mapping[str, Any] | None = None, form: str = "multiplier",
              init_from: str = "spec", base_model: Any = None,
              tied: Mapping[str, str] | None = None,
              attention: Mapping[str, str] | str | None = None) -> Any:
        """`init` for a model that is already built: one width cannot tell roles, so every
        parameter must be selected by a `match` line of the spec or by `roles=`, a
        mapping from selectors (`"module=LayerNorm, field=weight"`, `"path=head.*"` or a
        bare path glob) to a role (`"hidden"`, ...) or a block name. `init_from="model"`
        keeps the model's own init as in `init`; away from the base width it needs
        `base_model=`, the same model built at the base width. `attention`:
        `"head_size"` or `"heads"` (or a mapping from attention-module path to either),
        what grows with width, where the spec's logit scale depends on it."""
        from ._equinox._build import apply

        return apply(self, model, key, roles=roles, layouts=layouts, form=form,  # type: ignore[arg-type]
                     init_from=init_from, base_model=base_model, tied=tied,
                     attention=attention)

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

        return optimizer(self, model, learning_rate=learning_rate, eps=eps,
                         weight_decay=weight_decay, b1=b1, b2=b2, momentum=momentum,
                         atan2_a=atan2_a, atan2_b=atan2_b, adafactor_kwargs=adafactor_kwargs,
                         muon_scale=muon_scale)
