"""Role inference: which parameters grow with width, and how.

`infer_leaves(make_model, width, other_width)` builds the model twice *abstractly*
(`eqx.filter_eval_shape`: shapes only, no memory), walks both trees once, and gives
every parameter a `LeafInfo`: its path, owning module, fans and role.

A role says which of a parameter's fans grow with width (`reference/theory.md` §1):

| role       | fan-in | fan-out | rule                                      |
|------------|--------|---------|-------------------------------------------|
| `input`    | fixed  | grows   | only fan-out axes change                  |
| `hidden`   | grows  | grows   | fan-in and fan-out axes change            |
| `output`   | grows  | fixed   | only fan-in axes change                   |
| `vector`   | —      | grows   | a vector (no fan-in axes) that changes    |
| `constant` | fixed  | fixed   | nothing changes                           |

Any change counts as growth, so sizes that grow by a multiple (an MLP ratio of 4) or
through a head count (heads x a fixed head dimension) are handled alike. Which axes are
fan-in and fan-out comes from the layout table in `_fans.py`.

Parameters are the leaves that are inexact (floating or complex) arrays; integer
arrays, Python scalars, functions and the initial values held by `eqx.nn.StateIndex`
(running statistics) are not parameters.

Paths are stable strings built from the attribute names and indices that lead from the
model to the leaf: `.name` for an attribute (no leading dot at the start), `[i]` for a
list or tuple index, `['key']` for a dict key. For example `layers[0].weight` or
`blocks[2].attn.query_proj.weight`. A `Multiplied` wrapper (see `_multiply.py`) is
transparent: the wrapped model's paths are those of the plain model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import SpecError, listing
from .._ir import ROLES, Role
from ._fans import Layout, fans, known_module_types, leaf_layout

__all__ = [
    "ROLES",
    "LeafInfo",
    "ParamRecord",
    "Role",
    "RoleInferenceError",
    "describe_leaves",
    "infer_leaves",
    "leaf_paths",
    "map_parameters",
]


class RoleInferenceError(SpecError, ValueError):
    """The roles or fans of a model's parameters cannot be determined."""


@dataclasses.dataclass(frozen=True)
class LeafInfo:
    """What paramspec knows about one parameter.

    - `path`: stable path from the model to the leaf, e.g. `"blocks[0].attn.query_proj.weight"`.
    - `module_type`: class name of the module that owns the leaf (`"Linear"`), or `None`
        for a leaf that no module owns (a bare array in a dict or tuple).
    - `field`: the owner's attribute that holds the leaf (`"weight"`, `"bias"`, ...).
    - `shape`: the leaf's shape at the width the model was built at.
    - `fan_in`, `fan_out`: at that width (see `_fans.py`).
    - `role`: one of `ROLES`, or `None` when it has not been inferred
        (`describe_leaves` looks at one width only, and reports the role that
        `c.init` recorded on the model where there is one).
    - `layout`: the layout given by `layouts=` or recorded on the model by `c.init`;
        `None` where paramspec's table of Equinox layers gives it.
    """

    path: str
    module_type: str | None
    field: str | None
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    role: Role | None = None
    layout: Layout | None = None


@dataclasses.dataclass(frozen=True)
class ParamRecord:
    """What `c.init`/`c.apply` learned about one parameter, recorded on the model (static
    metadata on its `Multiplied` wrapper) so that later readers need nothing again.

    - `role`: the inferred (or given) role.
    - `layout`: the explicit layout (`layouts=`), `None` where the table gives it.
    - `tie`: `(block, factor)` for a tied parameter whose direct reads are another
        block's use (a tied readout): reading the field through the wrapper gives
        `factor * w` (see `docs/models.md`, "Tied weights").
    - `depth`: `"repeated"` (inside the repeated residual blocks) or `"fixed"`, learned
        by building the model at two depths (`_depth_learn.py`); `None` where it was not
        learned (the spec's `depth` lines decide).
    - `branch`: the residual-branch multiplier folded into this parameter's multiplier
        (it belongs to a branch's output projection named by `branches=`), else `None`.
    """

    role: str | None = None
    layout: Layout | None = None
    tie: tuple[str, float] | None = None
    depth: str | None = None
    branch: float | None = None


# ----------------------------------------------------------------------------- walking


class _Entry(NamedTuple):
    path: str
    leaf: Any
    owner: eqx.Module | None
    field: str | None
    is_param: bool


def _is_param(leaf: Any, owner: Any) -> bool:
    if isinstance(owner, eqx.nn.StateIndex):
        return False  # initial state (e.g. BatchNorm running stats), not a parameter
    if not isinstance(leaf, jax.Array | np.ndarray | jax.ShapeDtypeStruct):
        return False
    return bool(jnp.issubdtype(leaf.dtype, jnp.inexact))


def _key_str(key: Any) -> str:
    if isinstance(key, jax.tree_util.GetAttrKey):
        return f".{key.name}"
    if isinstance(key, jax.tree_util.SequenceKey):
        return f"[{key.idx}]"
    if isinstance(key, jax.tree_util.DictKey):
        return f"[{key.key!r}]"
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return f"[{key.key}]"
    return f"[{key!r}]"


def render_path(prefix: str, keys: Sequence[Any]) -> str:
    """`prefix` followed by the jax key path `keys`, in paramspec's path syntax."""
    path = prefix + "".join(_key_str(k) for k in keys)
    return path[1:] if path.startswith(".") else path


def join_path(prefix: str, relative: str) -> str:
    """A path relative to the module at `prefix`, made absolute (`"a.b"`, `"a[0]"`)."""
    if not prefix or not relative:
        return prefix or relative
    return prefix + relative if relative.startswith("[") else f"{prefix}.{relative}"


def _cuts_below(node: Any) -> Callable[[Any], bool]:
    # Flatten `node` one module deep: every module strictly below it is a leaf.
    return lambda x: x is not node and isinstance(x, eqx.Module)


def iter_leaves(tree: Any) -> Iterator[_Entry]:
    """Every leaf of `tree`, in `jax.tree_util.tree_leaves` order, with its owner.

    Linear in the number of leaves: each module is flattened once, one level deep.
    (`jax.tree_util.tree_flatten_with_path` alone gives paths, not the module that owns
    each leaf, which the fan table needs.)
    """
    from ._multiply import Multiplied  # the wrapper is transparent (import cycle)

    def walk(node: Any, path: str) -> Iterator[_Entry]:
        if isinstance(node, Multiplied):
            yield from walk(node.module, path)
            return
        # Only the root can be a non-module container: below it we recurse into modules.
        owner = node if isinstance(node, eqx.Module) else None
        items = jax.tree_util.tree_flatten_with_path(node, is_leaf=_cuts_below(node))[0]
        for keys, item in items:
            if item is not node and isinstance(item, eqx.Module):
                yield from walk(item, render_path(path, keys))
                continue
            field = None
            if owner is not None and isinstance(keys[0], jax.tree_util.GetAttrKey):
                field = keys[0].name
            yield _Entry(render_path(path, keys), item, owner, field, _is_param(item, owner))

    yield from walk(tree, "")


def leaf_paths(tree: Any) -> list[str]:
    """The path of every parameter of `tree` (a model, or its gradients), in leaf order."""
    return [e.path for e in iter_leaves(tree) if e.is_param]


# ----------------------------------------------------------------------------- layouts

_UNKNOWN_LAYOUT_HINT = """\
paramspec knows the layout of Equinox's layers ({known}) but not of a plain array \
with two or more axes in a custom module: an (in, out) and an (out, in) matrix look \
the same, so it cannot tell which axis is the fan-in. Either store the array in an \
`eqx.nn` layer (for example `eqx.nn.Linear`), or give its layout, keyed by \
"ModuleType.field" or by path, for example
    layouts={{"{example_key}": Layout(fan_in=(0,), fan_out=(1,))}}
for an (in, out) matrix used as `x @ w` (`Layout` is in `paramspec`)."""


def _type_name(entry: _Entry) -> str | None:
    return None if entry.owner is None else type(entry.owner).__name__


def _explicit_layout(entry: _Entry, layouts: Mapping[str, Layout]) -> Layout | None:
    if entry.path in layouts:
        return layouts[entry.path]
    if entry.owner is not None and entry.field is not None:
        return layouts.get(f"{type(entry.owner).__name__}.{entry.field}")
    return None


def _stacked_hint(entries: Sequence[_Entry]) -> str:
    stacked = next((e for e in entries if len(e.leaf.shape) > 2), None)
    if stacked is None:
        return ""
    shape = tuple(int(s) for s in stacked.leaf.shape)
    lead = len(shape) - 2
    return (
        f"\n{stacked.path} has ndim {len(shape)}: a layout describes its trailing `ndim` "
        f"axes and the {lead} leading one(s) are stacked copies (experts, an ensemble). "
        f"For a stack of (in, out) matrices of shape {shape} used as `x @ w[e]`:\n"
        f'    layouts={{"{stacked.path}": Layout(fan_in=(0,), fan_out=(1,), ndim=2)}}\n'
        "(without ndim=2 the stacked axis would count as a fan-in axis)."
    )


def _params_with_layouts(
    tree: Any, layouts: Mapping[str, Layout] | None
) -> list[tuple[_Entry, Layout, ParamRecord | None]]:
    """Every parameter with its layout: `layouts=` first, then the layout recorded on the
    model by `c.init`, then the table. The third item is the recorded record, if any."""
    from ._multiply import recorded_params  # import cycle: _multiply imports this module

    layouts = {} if layouts is None else layouts
    records = recorded_params(tree)
    out: list[tuple[_Entry, Layout, ParamRecord | None]] = []
    unknown: list[_Entry] = []
    for entry in iter_leaves(tree):
        if not entry.is_param:
            continue
        record = records.get(entry.path)
        layout = _explicit_layout(entry, layouts)
        if layout is None and record is not None:
            layout = record.layout
        if layout is None:
            layout = leaf_layout(entry.owner, entry.field or "", len(entry.leaf.shape))
        if layout is None:
            unknown.append(entry)
        else:
            out.append((entry, layout, record))
    if unknown:
        first = next((e for e in unknown if len(e.leaf.shape) == 2), unknown[0])
        owner = _type_name(first)
        example = f"{owner}.{first.field}" if owner and first.field else first.path
        lines = [
            f"{e.path}  ({_type_name(e) or 'no module'}.{e.field}, shape "
            f"{tuple(e.leaf.shape)}, ndim {len(e.leaf.shape)})"
            for e in unknown
        ]
        raise RoleInferenceError(
            f"cannot tell the fan-in of {len(unknown)} parameter(s) of custom modules:\n"
            + listing(lines),
            hint=_UNKNOWN_LAYOUT_HINT.format(
                known=", ".join(known_module_types()), example_key=example
            ) + _stacked_hint(unknown),
        )
    return out


def _info(entry: _Entry, layout: Layout, role: Role | None,
          record: ParamRecord | None = None, explicit: bool = False) -> LeafInfo:
    shape = tuple(int(s) for s in entry.leaf.shape)
    fan_in, fan_out = fans(shape, layout)
    if role is None and record is not None:
        role = record.role  # type: ignore[assignment]
    keep = explicit or (record is not None and record.layout is not None)
    return LeafInfo(entry.path, _type_name(entry), entry.field, shape, fan_in, fan_out, role,
                    layout if keep else None)


# ----------------------------------------------------------------------------- public


def describe_leaves(model: Any, *, layouts: Mapping[str, Layout] | None = None) -> list[LeafInfo]:
    """A `LeafInfo` (with `role=None`) for every parameter of a built model.

    One width cannot tell what grows, so roles are left unset; use `infer_leaves` for
    them, or set them yourself with `dataclasses.replace(info, role=...)`.
    `layouts` gives the layout of parameters of custom modules, keyed by
    `"ModuleType.field"` or by path (see `Layout`).
    """
    explicit = {} if layouts is None else layouts
    return [
        _info(e, lay, None, rec, _explicit_layout(e, explicit) is not None)
        for e, lay, rec in _params_with_layouts(model, layouts)
    ]


def map_parameters(
    fn: Callable[[LeafInfo], Any],
    model: Any,
    *,
    leaves: Sequence[LeafInfo] | None = None,
    other: Any = None,
    layouts: Mapping[str, Layout] | None = None,
) -> Any:
    """A pytree shaped like `model`: `fn(info)` at every parameter, `other` elsewhere.

    For per-parameter trees that must line up with the model: `optax.partition` labels
    (`map_parameters(lambda i: i.role, model, leaves=infos)`), or an `eqx.filter` spec
    that selects exactly the parameters (`map_parameters(lambda i: True, model,
    other=False)`; unlike `eqx.is_inexact_array` it leaves out `eqx.nn.StateIndex`
    state). `leaves` as for `reinit`; by default `describe_leaves(model, layouts=layouts)`.

    The result is a module, hence callable: give it to `optax.partition` as a function,
    `lambda params: labels`, or optax calls it in place of a label function.
    """
    infos = describe_leaves(model, layouts=layouts) if leaves is None else leaves
    by_path = {info.path: info for info in infos}
    flat, treedef = jax.tree_util.tree_flatten(model)
    out = []
    for entry, _ in zip(iter_leaves(model), flat, strict=True):
        if not entry.is_param:
            out.append(other)
        elif entry.path in by_path:
            out.append(fn(by_path[entry.path]))
        else:
            raise RoleInferenceError(
                f"no LeafInfo for the parameter {entry.path}",
                hint="pass leaves= computed for this model (infer_leaves or describe_leaves)",
            )
    return jax.tree_util.tree_unflatten(treedef, out)


def _role(layout: Layout, a: tuple[int, ...], b: tuple[int, ...]) -> Role | None:
    ndim = len(a)
    changed = {i for i in range(ndim) if a[i] != b[i]}
    in_axes = set(layout.fan_in_axes(ndim))
    out_axes = set(layout.fan_out_axes(ndim))
    if changed - in_axes - out_axes:
        return None  # a stacked axis, or the singleton axis of a conv bias, grew
    in_grows, out_grows = bool(changed & in_axes), bool(changed & out_axes)
    if not layout.fan_in:
        return "vector" if out_grows else "constant"
    if in_grows and out_grows:
        return "hidden"
    if out_grows:
        return "input"
    if in_grows:
        return "output"
    return "constant"


def infer_leaves(
    make_model: Callable[[int, Any], Any],
    width: int,
    other_width: int,
    *,
    key: Any = None,
    layouts: Mapping[str, Layout] | None = None,
) -> list[LeafInfo]:
    """Infer every parameter's role from how its shape changes between two widths.

    **Arguments:**

    - `make_model`: `make_model(width, key) -> eqx.Module`. It is only traced
        (`eqx.filter_eval_shape`), never run, so no memory is used.
    - `width`: the width whose shapes and fans are reported.
    - `other_width`: any other width at which `make_model` builds the same structure
        (for example `2 * width`).
    - `key`: passed to `make_model`; defaults to `jax.random.key(0)`.
    - `layouts`: layouts of custom modules' parameters (see `describe_leaves`).

    **Returns:** one `LeafInfo` per parameter, in `jax.tree_util.tree_leaves` order.
    Linear time in the number of leaves.
    """
    if width == other_width:
        raise RoleInferenceError(
            f"role inference needs two different widths, got {width} twice",
            hint="pass another width, for example other_width=2 * width",
        )
    key = jax.random.key(0) if key is None else key
    at_width = eqx.filter_eval_shape(make_model, width, key)
    at_other = eqx.filter_eval_shape(make_model, other_width, key)
    params = _params_with_layouts(at_width, layouts)
    explicit = {} if layouts is None else layouts
    others = [e for e in iter_leaves(at_other) if e.is_param]

    if [e.path for e, _, _ in params] != [e.path for e in others]:
        mine = [e.path for e, _, _ in params]
        theirs = [e.path for e in others]
        diff = next(
            (i for i, (p, q) in enumerate(zip(mine, theirs, strict=False)) if p != q),
            min(len(mine), len(theirs)),
        )
        where_a = mine[diff] if diff < len(mine) else "(no more parameters)"
        where_b = theirs[diff] if diff < len(theirs) else "(no more parameters)"
        raise RoleInferenceError(
            f"make_model builds different parameters at width {width} and width "
            f"{other_width}: parameter {diff} is {where_a} at width {width} but "
            f"{where_b} at width {other_width}",
            hint="make_model(width, key) must build the same modules at every width; "
            "only the sizes of arrays may depend on the width",
        )

    infos: list[LeafInfo] = []
    bad: list[str] = []
    for (entry, layout, _), other in zip(params, others, strict=True):
        a = tuple(int(s) for s in entry.leaf.shape)
        b = tuple(int(s) for s in other.leaf.shape)
        role = _role(layout, a, b) if len(a) == len(b) else None
        if role is None:
            bad.append(f"{entry.path}: shape {a} at width {width}, {b} at width {other_width}")
            continue
        infos.append(_info(entry, layout, role,
                           explicit=_explicit_layout(entry, explicit) is not None))
    if bad:
        raise RoleInferenceError(
            f"{len(bad)} parameter(s) change with width along an axis that is neither "
            "their fan-in nor their fan-out (or change their number of axes):\n" + listing(bad),
            hint="only fan-in and fan-out axes may depend on the width; stacked copies "
            "of a layer (a leading vmap axis) must not. If the layout is wrong, pass "
            "layouts={...} (see `Layout`)",
        )
    return infos
