"""A compiled spec meets a model: `Compiled.init`, `Compiled.apply`, `Compiled.optimizer`.

    leaves (path, module, field, fans, role)  --_select-->  block per parameter
    block + fans  --Compiled.value-->  init std, multiplier, lr / eps / wd factors

The block of every parameter is recorded in the returned model as static metadata on
its `Multiplied` wrapper, so `c.optimizer(model)` (and a model rebuilt from a checkpoint
with `eqx.tree_deserialise_leaves(path, c.init(...))`) knows which rule each parameter
follows without being told again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import jax

from .._attention import needs_growth
from .._errors import SpecError
from .._select import assign_blocks
from ._attention import attention_growth, scale_attention
from ._multiply import block_labels, multiply
from ._reinit import reinit
from ._roles import LeafInfo, describe_leaves, infer_leaves, map_parameters

if TYPE_CHECKING:
    from .._compile import Compiled
    from ._fans import Layout

__all__ = ["apply", "init", "optimizer", "parameter_blocks", "per_leaf_values"]

Form = Literal["multiplier", "absorbed"]
# The label recorded on each parameter: its block's name, prefixed in the absorbed form.
_ABSORBED = "absorbed:"


def _split_label(label: str) -> tuple[Form, str]:
    """(form, block) of a label recorded by `init`/`apply`."""
    if label.startswith(_ABSORBED):
        return "absorbed", label.removeprefix(_ABSORBED)
    return "multiplier", label


def parameter_blocks(model: Any) -> dict[str, str]:
    """The spec block of every parameter of a model built by `init`/`apply`, by path."""
    return {path: _split_label(label)[1] for path, label in block_labels(model).items()}


def _check_form(form: str) -> None:
    if form not in ("multiplier", "absorbed"):
        raise SpecError(
            f"unknown form {form!r}",
            hint='form="multiplier" (W = m * w) or form="absorbed" (m folded into '
            "init, learning rate and eps)",
        )


def _values(compiled: Compiled, block: str, info: LeafInfo, form: Form) -> dict[str, Any]:
    fans = {"fan_in": info.fan_in, "fan_out": info.fan_out}
    if form == "absorbed":
        from .._analysis import absorb_layer

        folded = absorb_layer(compiled, block, **fans)
        return {
            "multiplier": 1.0,
            "init": folded.init_std,
            "lr": folded.lr_scale,
            "eps": folded.eps_scale,
            "wd": folded.wd_scale,
        }
    return {q: compiled.value(block, q, **fans) for q in ("multiplier", "init", "lr", "eps", "wd")}


def _parameterize(
    compiled: Compiled,
    model: Any,
    key: Any,
    leaves: list[LeafInfo],
    roles: Mapping[str, str] | None,
    form: Form,
    growth: Mapping[str, str] | str | None = None,
) -> Any:
    blocks = assign_blocks(compiled.blocks, leaves, roles)
    values = {info.path: _values(compiled, blocks[info.path], info, form) for info in leaves}
    model = reinit(model, key, lambda info: values[info.path]["init"], leaves=leaves)
    label = _ABSORBED if form == "absorbed" else ""
    model = multiply(
        model,
        lambda info: values[info.path]["multiplier"],
        leaves=leaves,
        label_for=lambda info: label + blocks[info.path],
    )
    # the spec's attention logit scale, on the query projections (see _attention.py)
    return scale_attention(compiled, model, leaves, growth)


def init(
    compiled: Compiled,
    make_model: Callable[[int, Any], Any],
    key: Any,
    *,
    other_width: int | None = None,
    roles: Mapping[str, str] | None = None,
    layouts: Mapping[str, Layout] | None = None,
    form: Form = "multiplier",
) -> Any:
    _check_form(form)
    if not callable(make_model):
        raise SpecError(
            f"make_model must be callable as make_model(width, key), got "
            f"{type(make_model).__name__}",
            hint="for a model you already built, use c.apply(model, key, roles=...)",
        )
    other = other_width if other_width is not None else 2 * compiled.width
    model_key, init_key = jax.random.split(key)
    leaves = infer_leaves(make_model, compiled.width, other, key=model_key, layouts=layouts)
    model = make_model(compiled.width, model_key)
    growth = None
    if needs_growth(compiled.spec.attention):
        growth = attention_growth(make_model, compiled.width, other, model_key, model)
    return _parameterize(compiled, model, init_key, leaves, roles, form, growth)


def apply(
    compiled: Compiled,
    model: Any,
    key: Any,
    *,
    roles: Mapping[str, str] | None = None,
    layouts: Mapping[str, Layout] | None = None,
    form: Form = "multiplier",
    attention: Mapping[str, str] | str | None = None,
) -> Any:
    _check_form(form)
    leaves = describe_leaves(model, layouts=layouts)
    return _parameterize(compiled, model, key, leaves, roles, form, attention)


def per_leaf_values(compiled: Compiled, model: Any) -> Any:
    """A tree shaped like `model`: at each parameter, its resolved numbers (a dict of
    multiplier, init, lr, eps, wd), from the blocks recorded by `init`/`apply`."""
    labels = block_labels(model)
    infos = describe_leaves(model)
    missing = [info.path for info in infos if info.path not in labels]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                           else "")
        raise SpecError(
            f"{len(missing)} parameter(s) of this model were not parameterized by a compiled "
            f"spec: {shown}",
            hint="build the model with c.init(make_model, key), or parameterize a built model "
            "with c.apply(model, key, roles=...), then call c.optimizer on the result",
        )
    names = {b.name for b in compiled.blocks}

    def values(info: LeafInfo) -> dict[str, Any]:
        form, block = _split_label(labels[info.path])
        if block not in names:
            raise SpecError(
                f"parameter {info.path} was parameterized by block `{block}`, which spec "
                f"`{compiled.spec.name}` does not have",
                hint="use the same compiled spec for c.init and c.optimizer")
        return _values(compiled, block, info, form)

    return map_parameters(values, model, leaves=infos)


def optimizer(compiled: Compiled, model: Any, *, learning_rate: Any, eps: float = 1e-8,
              weight_decay: float = 0.0, b1: float = 0.9, b2: float = 0.999,
              momentum: float | None = 0.9, atan2_a: float = 1.27, atan2_b: float = 1.0,
              adafactor_kwargs: Mapping[str, Any] | None = None) -> Any:
    from .._optax import build_optimizer

    values = per_leaf_values(compiled, model)
    is_values = lambda x: isinstance(x, dict)  # noqa: E731 - a leaf predicate

    def tree(key: str, base: float) -> Any:
        return jax.tree_util.tree_map(lambda v: base * v[key], values, is_leaf=is_values)

    return build_optimizer(
        compiled.optimizer_name,
        learning_rate=learning_rate,
        lr_scale=tree("lr", 1.0),
        eps=tree("eps", eps),
        weight_decay=tree("wd", weight_decay),
        b1=b1, b2=b2, momentum=momentum, atan2_a=atan2_a, atan2_b=atan2_b,
        adafactor_kwargs=adafactor_kwargs,
    )
