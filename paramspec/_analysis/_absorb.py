"""The absorbed form: every multiplier folded into init, learning rate and epsilon.

A compiled spec stores `w` and computes `W = m w`. The absorbed form stores `w' = m w`
itself (multiplier 1) and trains it so that `W` follows the same trajectory: the
symmetry of theory.md §3 with `theta = -a` (see `_equiv`), applied to the numbers at
one width (`effective_values`):

    init std    |m| s            (or: multiply the module's own values by m, `init keep`)
    lr factor   l |m|^k          k = 2 sgd, 1 adam / adam_atan2, 0 adafactor
    eps factor  eps / |m|        adam, adafactor (the gradient of w' is grad_w / m)
    wd factor   wd l / l'        the per-step decay lr * wd of W is kept

When this is exact (in exact arithmetic; floats agree to rounding):

- sgd (with or without momentum) and adam_atan2: always (m != 0). atan2 is invariant
  to the gradient's scale; SGD is linear.
- adam: only with the epsilon shifted, `eps' = eps / |m|` (`shift_eps=True`, the
  default). Keeping the written epsilon (`shift_eps=False`) changes the training of
  every block with `|m| != 1` once eps is not negligible against sqrt(v): that is a
  `SpecError`.
- adafactor (`multiply_by_parameter_scale=True`, optax's default): with the epsilon
  shifted, as long as the parameter-scale floor is not hit. Optax scales the update
  by `max(RMS(w), min_scale)` with `min_scale = 1e-3`; the floor is a constant in
  units of `w`, so it breaks the symmetry. A `SpecError` when it is hit at init: a
  zero-initialised block with `|m| != 1`, or an init std (before or after folding)
  below `min_scale` (for `init keep` the kept values are taken to have RMS 1, as norm
  gains do). It can still be hit later if a weight's RMS decays below 1e-3.

A multiplier of 0 cannot be absorbed (`W = 0` whatever `w` is): a `SpecError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .._compile import Compiled
from .._errors import SpecError
from ._equiv import EPS_MOVES, effective_values, init_kind, shift

__all__ = ["ADAFACTOR_MIN_SCALE", "AbsorbedLayer", "absorb", "absorb_layer", "render_absorbed"]

# optax.scale_by_param_block_rms's default `min_scale`, used by `optax.adafactor`.
ADAFACTOR_MIN_SCALE = 1e-3


@dataclass(frozen=True)
class AbsorbedLayer:
    """One block in the absorbed form, at the compiled width.

    `init_scale` is the factor that turns the multiplier form's stored weight into the
    absorbed one (`w' = init_scale * w`); a fresh absorbed weight can instead be drawn
    from N(0, init_std^2). `exponents` are the absorbed form's, `a = 0`.
    """

    name: str
    role: str
    theta: Fraction  # the shift applied, -a
    multiplier: float  # always 1.0
    init_scale: float  # m
    init_std: float | None  # |m| s; None for `init keep` (scale the kept values by m)
    lr_scale: float
    eps_scale: float
    wd_scale: float
    exponents: dict[str, Fraction]

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "theta": str(self.theta),
            "exponents": {k: str(v) for k, v in self.exponents.items()},
            "values": {
                "multiplier": self.multiplier,
                "init_scale": self.init_scale,
                "init_std": self.init_std,
                "lr_scale": self.lr_scale,
                "eps_scale": self.eps_scale,
                "wd_scale": self.wd_scale,
            },
        }


def absorb_layer(
    compiled: Compiled,
    name: str,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    shift_eps: bool = True,
    min_scale: float = ADAFACTOR_MIN_SCALE,
) -> AbsorbedLayer:
    """The absorbed form of block `name` for one parameter shape (default: nominal fans).

    Raises `SpecError` where folding is not exact (module docstring).
    """
    compiled.block(name)  # an unknown name is a SpecError that lists the blocks
    t = compiled.theory.layers[name]
    opt = compiled.optimizer_name
    values = effective_values(compiled, name, fan_in=fan_in, fan_out=fan_out)
    m = values["init_scale"]
    assert m is not None
    kind = init_kind(compiled, name)
    if opt in EPS_MOVES and not shift_eps and abs(m) != 1.0:
        raise SpecError(
            f"block `{name}` cannot be absorbed with its epsilon kept: under {opt} the "
            f"epsilon sits in gradient units and the gradient of w' = m w is grad_w / m "
            f"(m = {m:.6g}), so the training changes unless eps becomes eps / |m|",
            hint="use shift_eps=True (eps_scale becomes eps_scale / |m|), or an optimizer "
            "without an epsilon (adam_atan2, sgd)",
        )
    if opt == "adafactor" and abs(m) != 1.0:
        before = (
            0.0
            if kind == "zero"
            else (
                1.0
                if kind == "keep"
                else compiled.value(name, "init", fan_in=fan_in, fan_out=fan_out)
            )
        )
        assert before is not None
        after = abs(m) * before
        if min(before, after) < min_scale:
            what = (
                "it starts at zero"
                if kind == "zero"
                else f"its init std is {before:.3g} before folding and {after:.3g} after"
            )
            raise SpecError(
                f"block `{name}` cannot be absorbed exactly under adafactor: {what}, below "
                f"Adafactor's parameter-scale floor {min_scale:g} (the update is scaled by "
                "max(RMS(w), floor), and the floor does not move with the multiplier)",
                hint="keep the multiplier form for this block, or use adam/adam_atan2/sgd",
            )
    exps = {"a": t.a, "b": t.b, "c": t.c, "e": t.e, "wd": t.wd}
    moved = shift(exps, -t.a, opt)
    eps_scale = (
        values["eps_scale"]
        if (shift_eps or opt not in EPS_MOVES)
        else (compiled.value(name, "eps", fan_in=fan_in, fan_out=fan_out))
    )
    assert eps_scale is not None and values["lr_scale"] is not None
    assert values["wd_scale"] is not None
    return AbsorbedLayer(
        name=name,
        role=t.role,
        theta=-t.a,
        multiplier=1.0,
        init_scale=m,
        init_std=values["init_std"],
        lr_scale=values["lr_scale"],
        eps_scale=eps_scale,
        wd_scale=values["wd_scale"],
        exponents=moved,
    )


def absorb(
    compiled: Compiled, *, shift_eps: bool = True, min_scale: float = ADAFACTOR_MIN_SCALE
) -> dict[str, AbsorbedLayer]:
    """Every block of `compiled` in the absorbed form, for nominal shapes.

    Example:
        >>> import paramspec as ps
        >>> from paramspec._analysis._absorb import absorb
        >>> layer = absorb(ps.compile("mup", width=1024, base_width=256))["embedding"]
        >>> layer.multiplier, layer.init_std, layer.lr_scale, layer.eps_scale
        (1.0, 1.0, 1.0, 0.25)
    """
    return {
        b.name: absorb_layer(compiled, b.name, shift_eps=shift_eps, min_scale=min_scale)
        for b in compiled.blocks
    }


def render_absorbed(compiled: Compiled, absorbed: dict[str, AbsorbedLayer]) -> Any:
    """A rich table of the absorbed form."""
    from rich.table import Table

    table = Table(
        title=f"{compiled.spec.name} absorbed ({compiled.optimizer_name}, width "
        f"{compiled.width}, base width {compiled.base_width}): multiplier 1",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    for column in (
        "layer",
        "theta",
        "b",
        "c",
        "e",
        "wd",
        "init x",
        "init std",
        "lr x",
        "eps x",
        "wd x",
    ):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for name, x in absorbed.items():
        e = x.exponents
        table.add_row(
            name,
            str(x.theta),
            str(e["b"]),
            str(e["c"]),
            str(e["e"]),
            str(e["wd"]),
            f"{x.init_scale:.6g}",
            "keep" if x.init_std is None else f"{x.init_std:.6g}",
            f"{x.lr_scale:.6g}",
            f"{x.eps_scale:.6g}",
            f"{x.wd_scale:.6g}",
        )
    return table
