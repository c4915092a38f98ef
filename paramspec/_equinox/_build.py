"""A compiled spec meets a model: `Compiled.init`, `Compiled.apply`, `Compiled.optimizer`.

    leaves (path, module, field, fans, role)  --_select-->  block per parameter
    block + fans  --Compiled.value-->  init std, multiplier, lr / eps / wd factors

The block of every parameter is recorded in the returned model as static metadata on
its `Multiplied` wrapper, so `c.optimizer(model)` (and a model rebuilt from a checkpoint
with `eqx.tree_deserialise_leaves(path, c.init(...))`) knows which rule each parameter
follows without being told again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import jax

from .._attention import needs_growth
from .._depth import require_depth_one, uses_depth
from .._errors import SpecError
from .._select import assign_blocks
from ._attention import attention_growth, scale_attention
from ._depth_learn import (
    Place,
    accepts_depth,
    at_depth,
    branch_parameters,
    check_declared,
    counterparts,
    learn_places,
)
from ._multiply import block_labels, multiply, recorded_params
from ._own_init import check_init_from, rescale_own_init
from ._reinit import reinit
from ._roles import LeafInfo, ParamRecord, describe_leaves, infer_leaves, map_parameters
from ._ties import check_reads, resolve_ties

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


def _floor(compiled: Compiled, block: str, fans: dict[str, Any], form: Form) -> float:
    """Factor on Adafactor's parameter-scale floor: it scales like the stored weight's
    init std, n^(-b) (1 at the base width), times |m| where the multiplier is folded in,
    so `max(RMS(w), floor)` keeps the width exponent (and folding stays exact)."""
    factor = compiled.n ** -float(compiled.theory.layers[block].b)
    if form == "absorbed":
        factor *= abs(compiled.value(block, "multiplier", **fans) or 1.0)
    return factor


def _values(compiled: Compiled, block: str, info: LeafInfo, form: Form,
            place: str | None = None) -> dict[str, Any]:
    """The numbers of one parameter; `place`: where it sits in depth ("repeated",
    "fixed", or None where not learned: the block's `depth` line decides)."""
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
            "floor": _floor(compiled, block, fans, form),
        }
    values = {q: compiled.value(block, q, **fans, depth_place=place)
              for q in ("multiplier", "init", "lr", "eps", "wd")}
    return {**values, "floor": _floor(compiled, block, fans, form)}


def _parameterize(
    compiled: Compiled,
    model: Any,
    key: Any,
    leaves: list[LeafInfo],
    roles: Mapping[str, str] | None,
    form: Form,
    base: tuple[Any, list[LeafInfo]] | None = None,
    tied: Mapping[str, str] | None = None,
    growth: Mapping[str, str] | str | None = None,
    places: Mapping[str, Place] | None = None,
    branches: Sequence[str] | None = None,
) -> Any:
    blocks = assign_blocks(compiled.blocks, leaves, roles)
    if places is not None:
        check_declared(compiled, leaves, blocks, places)
    place = {info.path: places[info.path].name for info in leaves} if places else {}
    values = {info.path: _values(compiled, blocks[info.path], info, form, place.get(info.path))
              for info in leaves}
    # The residual-branch multiplier, folded into each branch's output projection.
    branch = compiled.branch_multiplier()
    in_branch = branch_parameters(compiled, leaves, branches, places) if branches else set()
    for path in in_branch:
        values[path]["multiplier"] = branch * values[path]["multiplier"]
    ties = resolve_ties(compiled, leaves, blocks, values, tied,
                        lambda block, info: _values(compiled, block, info, form))
    check_reads(model, leaves, blocks, {b.name: b.role for b in compiled.blocks}, ties)
    if base is None:
        model = reinit(model, key, lambda info: values[info.path]["init"], leaves=leaves)
    else:  # init_from="model": the model's own init at the base width, scaled from there
        base_model, base_leaves = base
        # with learned depth places the base model is also at the base depth (its
        # repeated blocks' counterparts: `counterparts`)
        at_base = dataclasses.replace(compiled, width=compiled.base_width, depth=(
            compiled.base_depth if places else compiled.depth))
        base_infos = {info.path: info for info in base_leaves}
        twin = counterparts(places, base_infos) if places else {}

        def ratio(info: LeafInfo) -> float | None:
            std = values[info.path]["init"]
            there = twin.get(info.path, info.path)
            if std is None or std == 0.0 or there not in base_infos:
                return std  # keep / zeros / (missing: rescale_own_init says so)
            std_base = _values(at_base, blocks[info.path], base_infos[there], form,
                               place.get(info.path))["init"]
            if not std_base:
                raise SpecError(
                    f"init_from='model': the init std of {info.path} is 0 at the base width "
                    f"but {std:g} at width {compiled.width}, so there is no own scale to keep",
                    hint="use init_from='spec' for this spec")
            return std / std_base

        model = rescale_own_init(model, base_model, ratio, leaves=leaves, base_path=twin)
    label = _ABSORBED if form == "absorbed" else ""
    # Everything learned here travels with the model (static metadata on the wrappers):
    # block (label), role, explicit layout and tie, for c.optimizer, describe and restores.
    model = multiply(
        model,
        lambda info: values[info.path]["multiplier"],
        leaves=leaves,
        label_for=lambda info: label + blocks[info.path],
        record_for=lambda info: ParamRecord(
            info.role, info.layout, ties.get(info.path), place.get(info.path),
            branch if info.path in in_branch else None),
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
    init_from: str = "spec",
    tied: Mapping[str, str] | None = None,
    branches: Sequence[str] | None = None,
    other_depth: int | None = None,
) -> Any:
    _check_form(form)
    check_init_from(init_from)
    if not callable(make_model):
        raise SpecError(
            f"make_model must be callable as make_model(width, key), got "
            f"{type(make_model).__name__}",
            hint="for a model you already built, use c.apply(model, key, roles=...)",
        )
    other = other_width if other_width is not None else 2 * compiled.width
    model_key, init_key = jax.random.split(key)
    # Depth (docs/models.md, "Depth"): a make_model that takes `depth` is built at the
    # compiled depth, and the repeated blocks are learned from a second depth.
    places, own = None, make_model
    depth_route = compiled.depth_given and accepts_depth(make_model)
    if depth_route:
        if uses_depth(compiled.spec):
            places = learn_places(make_model, compiled.width, compiled.depth,
                                  other_depth or 2 * compiled.depth, model_key)
        make_model = at_depth(make_model, compiled.depth)
    leaves = infer_leaves(make_model, compiled.width, other, key=model_key, layouts=layouts)
    model = make_model(compiled.width, model_key)
    growth = None
    if needs_growth(compiled.spec.attention):
        growth = attention_growth(make_model, compiled.width, other, model_key, model)
    base = None
    if init_from == "model":
        if not places:  # the model's own init at its own depth: only where depth is moot
            require_depth_one(compiled, "c.init", init_from="model")
        at_base = compiled.base_width == compiled.width and (
            not places or compiled.base_depth == compiled.depth)
        if at_base:
            base_model = model
        elif places:  # the base width *and* the base depth
            base_model = _build_at_base(at_depth(own, compiled.base_depth), compiled.base_width,
                                        model_key, depth=compiled.base_depth)
        else:
            base_model = _build_at_base(make_model, compiled.base_width, model_key)
        base = (base_model, describe_leaves(base_model, layouts=layouts))
    return _parameterize(compiled, model, init_key, leaves, roles, form, base, tied, growth,
                         places, branches)


def _build_at_base(make_model: Callable[[int, Any], Any], base_width: int, key: Any,
                   depth: int | None = None) -> Any:
    # init_from="model" needs the model's own init at the base width (and depth): built
    # there with the same key, so at width == base_width the model is exactly its own.
    try:
        return make_model(base_width, key)
    except Exception as e:  # the user's constructor: say which width it was asked for
        call = f"make_model({base_width}, key" + (f", depth={depth})" if depth else ")")
        raise SpecError(
            f"init_from='model' builds the model at the base width {base_width}"
            + (f" and the base depth {depth}" if depth else "") + f", and "
            f"{call} failed: {type(e).__name__}: {e}",
            hint="set the base width at which the model's own init was tuned "
            "(ps.compile(..., base_width=B), or `base_width B` in the spec)",
        ) from e


def apply(
    compiled: Compiled,
    model: Any,
    key: Any,
    *,
    roles: Mapping[str, str] | None = None,
    layouts: Mapping[str, Layout] | None = None,
    form: Form = "multiplier",
    init_from: str = "spec",
    base_model: Any = None,
    tied: Mapping[str, str] | None = None,
    attention: Mapping[str, str] | str | None = None,
    branches: Sequence[str] | None = None,
) -> Any:
    _check_form(form)
    check_init_from(init_from)
    leaves = describe_leaves(model, layouts=layouts)
    base = None
    if init_from == "model":
        if base_model is None and compiled.width != compiled.base_width:
            raise SpecError(
                f"init_from='model' at width {compiled.width} needs the model's own init at "
                f"the base width {compiled.base_width}",
                hint="pass base_model= (the same model built at the base width), or use "
                "c.init(make_model, key, init_from='model'), which builds it")
        base_model = model if base_model is None else base_model
        base = (base_model, describe_leaves(base_model, layouts=layouts))
    elif base_model is not None:
        raise SpecError("base_model= is only used with init_from='model'",
                        hint="add init_from='model', or leave base_model out")
    return _parameterize(compiled, model, key, leaves, roles, form, base, tied, attention,
                         None, branches)


def per_leaf_values(compiled: Compiled, model: Any) -> Any:
    """A tree shaped like `model`: at each parameter, its resolved numbers (a dict of
    multiplier, init, lr, eps, wd, and floor: the factor on Adafactor's parameter-scale
    floor), from the blocks recorded by `init`/`apply`."""
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
    records = recorded_params(model)

    def values(info: LeafInfo) -> dict[str, Any]:
        form, block = _split_label(labels[info.path])
        if block not in names:
            raise SpecError(
                f"parameter {info.path} was parameterized by block `{block}`, which spec "
                f"`{compiled.spec.name}` does not have",
                hint="use the same compiled spec for c.init and c.optimizer")
        record = records.get(info.path)
        return _values(compiled, block, info, form, None if record is None else record.depth)

    return map_parameters(values, model, leaves=infos)


def optimizer(compiled: Compiled, model: Any, *, learning_rate: Any, eps: float = 1e-8,
              weight_decay: float = 0.0, b1: float = 0.9, b2: float = 0.999,
              momentum: float | None = 0.9, atan2_a: float = 1.27, atan2_b: float = 1.0,
              adafactor_kwargs: Mapping[str, Any] | None = None,
              muon_scale: str = "spectral") -> Any:
    from .._optax import build_optimizer
    from .._optax._chain import ADAFACTOR_PARAM_SCALE_FLOOR

    values = per_leaf_values(compiled, model)
    is_values = lambda x: isinstance(x, dict)  # noqa: E731 - a leaf predicate

    def tree(key: str, base: float) -> Any:
        return jax.tree_util.tree_map(lambda v: base * v[key], values, is_leaf=is_values)

    lr_scale, muon = tree("lr", 1.0), {}
    if compiled.optimizer_name == "muon":  # Muon leaves: the shape factor joins the lr factor
        from ._muon import muon_trees

        dims, factors = muon_trees(compiled, model, muon_scale)
        lr_scale = jax.tree_util.tree_map(lambda v, f: v * f, lr_scale, factors)
        muon = {"muon_dimension_numbers": dims}
    return build_optimizer(
        compiled.optimizer_name,
        learning_rate=learning_rate,
        lr_scale=lr_scale,
        eps=tree("eps", eps),
        weight_decay=tree("wd", weight_decay),
        b1=b1, b2=b2, momentum=momentum, atan2_a=atan2_a, atan2_b=atan2_b,
        adafactor_kwargs=adafactor_kwargs,
        param_scale_floor=tree("floor", ADAFACTOR_PARAM_SCALE_FLOOR), **muon,
    )
