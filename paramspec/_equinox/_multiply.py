"""Multipliers: the model computes with `W = multiplier * w`, training stores `w`.

Design. Every module that *owns* a parameter with a multiplier other than 1 is wrapped
in `Multiplied(module, {"weight": m, ...})`. Its `__call__` rebuilds the module with the
scaled leaves and calls it, so a parent that calls its children
(`self.linear(x)`, `jax.vmap(self.proj)(x)`, `eqx.nn.MLP`, `eqx.nn.MultiheadAttention`,
`eqx.nn.MLP(scan=True)`) works unchanged. This is Equinox's own pattern for
reparameterisations (`eqx.nn.WeightNorm` rebuilds its layer's weight in `__call__`).

Why this design:

- The stored leaf stays `w`: gradients, optimizer states and checkpoints see `w`, and
  `d loss / d w = m * d loss / d W` falls out of autodiff.
- The wrapper adds no leaves: multipliers are static Python floats (`eqx.field(static=True)`),
  part of the tree structure. So `eqx.filter_jit`, `eqx.filter_grad`, sharding and
  `eqx.tree_serialise_leaves` see exactly the plain model's leaves, in the same order (a
  checkpoint of the plain model loads into the wrapped one and back).
- Cost: `m * w` is one elementwise pass over each scaled parameter in the forward pass
  and `m * dL/dW` one over its gradient in the backward pass: O(parameters), next to the
  O(tokens x parameters) of the matmuls that use them. On CPU XLA does not fold the
  scalar into the dot, it runs these passes as small separate fusions; measured in
  `benchmarks/multiplier_forward.py`.
- Paths (`_roles.leaf_paths`) see through the wrapper, so the wrapped model's parameters
  have the plain model's paths.
- The wrapper can also carry a static label per parameter (`multiply(...,
  label_for=...)`, read back with `block_labels`): which spec block parameterized it,
  so that an optimizer built later from the model alone finds its per-parameter values.
  A labelled parameter's module is wrapped even when its multiplier is 1.

What it cannot do by itself: a parent that reads a child's array directly
(`self.embed.weight.T @ x`, tied weights) instead of calling the child. On a bare
`multiply`-ed model, reading a scaled field through the wrapper raises an error that
names the explicit routes: `unwrap(child).weight` (the stored `w`, to scale by hand)
and `scaled(child).weight` (`m * w`). On a model built by `c.init`/`c.apply` (which
records a `ParamRecord` per parameter and scans the model's source for tied reads,
`_ties.py`) a direct read gives `m * w`, or `t * w` for a declared tie. Other attributes
(`in_features`, `num_heads`, methods) are forwarded, methods to the scaled module.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import equinox as eqx
import jax

from .._errors import SpecError
from ._roles import (
    LeafInfo,
    ParamRecord,
    _cuts_below,
    _is_param,
    describe_leaves,
    join_path,
    render_path,
)

__all__ = [
    "Multiplied",
    "block_labels",
    "MultiplierError",
    "ScaledFieldAccessError",
    "multiply",
    "recorded_params",
    "scaled",
    "unwrap",
]

_M = TypeVar("_M")


class MultiplierError(SpecError, ValueError):
    """A multiplier that cannot be applied."""


class ScaledFieldAccessError(AttributeError):
    """A scaled field read through its `Multiplied` wrapper, which is ambiguous."""


_ACCESS_MESSAGE = """\
`{owner}.{name}` is multiplied by {multiplier} inside `Multiplied`, so reading it directly \
is ambiguous. Say which array you mean:
    paramspec.unwrap(module).{name}   # the stored (trained) array w
    paramspec.scaled(module).{name}   # the effective array multiplier * w
For a tied weight (an embedding read as the readout), build the model with
    c.init(make_model, key, tied={{"embed.weight": "readout"}})
and direct reads give the readout's use; or scale the stored array yourself, e.g.
    logits = x @ (readout_multiplier * paramspec.unwrap(self.embed).weight).T
(or call the module instead of reading its arrays)."""


def _owned_params(module: Any) -> dict[str, Any]:
    # Relative path -> leaf, for the parameters that `module` itself owns (not those
    # of its submodules).
    items = jax.tree_util.tree_flatten_with_path(module, is_leaf=_cuts_below(module))[0]
    return {
        render_path("", keys): leaf
        for keys, leaf in items
        if not isinstance(leaf, eqx.Module) and _is_param(leaf, module)
    }


def _check_multiplier(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MultiplierError(
            f"the multiplier of {where} must be a Python number, got {type(value).__name__}",
            hint="multipliers are static values baked into the model; pass a float "
            "such as 0.5, not an array",
        )
    value = float(value)
    if not math.isfinite(value):
        raise MultiplierError(
            f"the multiplier of {where} must be finite, got {value}",
            hint="check the spec's multiplier and the width",
        )
    return value


class Multiplied(eqx.Module):
    """A module whose own parameters are used scaled: `W = multiplier * w`.

    **Arguments:**

    - `module`: the wrapped module; its leaves stay the stored (trained) values `w`.
    - `multipliers`: maps the path of each scaled parameter, relative to `module`
        (`"weight"`, `"bias"`, or `"ws[0]"` for a leaf in a list), to its multiplier.
    - `labels`: optional static labels per parameter (same relative paths), e.g. the
        name of the spec block that parameterized it; read back with `block_labels`.
        A parameter may have a label and multiplier 1.
    - `records`: optional `ParamRecord`s per parameter (same relative paths): what
        `c.init` learned (role, explicit layout, tie); read back with `recorded_params`.

    Reading a scaled field directly (`wrapper.weight`) is an error, except for a
    parameter with a record (a model built by `c.init`/`c.apply`): then it gives the
    parameter's own effective array `multiplier * w` (a position table read as
    `self.pos.weight[:T]`), or, for a declared tie, `factor * w`, the other use's.

    Calling it calls `module` with the scaled parameters. `scaled()` returns that
    scaled module; `.module` the stored one.

    !!! Example

        ```python
        import equinox as eqx, jax, jax.numpy as jnp
        from paramspec._equinox._multiply import Multiplied

        linear = eqx.nn.Linear(3, 2, key=jax.random.key(0))
        layer = Multiplied(linear, {"weight": 0.5})
        x = jnp.ones(3)
        assert jnp.allclose(layer(x), 0.5 * linear.weight @ x + linear.bias)
        ```
    """

    module: Any
    multipliers: tuple[tuple[str, float], ...] = eqx.field(static=True)
    labels: tuple[tuple[str, str], ...] = eqx.field(static=True)
    records: tuple[tuple[str, ParamRecord], ...] = eqx.field(static=True)

    def __init__(
        self,
        module: Any,
        multipliers: Mapping[str, float],
        labels: Mapping[str, str] | None = None,
        records: Mapping[str, ParamRecord] | None = None,
    ):
        if isinstance(module, Multiplied):
            raise MultiplierError(
                "cannot wrap a `Multiplied` module in another one",
                hint="use paramspec.multiply(...) (which merges multipliers), or "
                "paramspec.unwrap(module) first",
            )
        if not isinstance(module, eqx.Module):
            raise MultiplierError(
                f"`Multiplied` wraps an equinox Module, got {type(module).__name__}",
                hint="wrap the module that owns the parameters",
            )
        labels = {} if labels is None else labels
        records = {} if records is None else records
        owned = _owned_params(module)
        unknown = sorted((set(multipliers) | set(labels) | set(records)) - set(owned))
        if unknown:
            raise MultiplierError(
                f"{type(module).__name__} has no parameter(s) {', '.join(unknown)}",
                hint=f"its own parameters are: {', '.join(owned) or '(none)'}",
            )
        self.module = module
        self.multipliers = tuple(
            sorted((path, _check_multiplier(path, m)) for path, m in multipliers.items())
        )
        self.labels = tuple(sorted((path, str(label)) for path, label in labels.items()))
        self.records = tuple(sorted(records.items()))

    def scaled(self) -> Any:
        """The wrapped module with every scaled parameter replaced by `multiplier * w`."""
        mults = dict(self.multipliers)

        # A path-keyed map rather than `eqx.tree_at`: the scaled leaves may sit inside
        # containers (`self.ws[0]`), and the map needs no `where` function per module.
        def scale(keys: Any, leaf: Any) -> Any:
            m = mults.get(render_path("", keys))
            return leaf if m is None else m * leaf

        return jax.tree_util.tree_map_with_path(
            scale, self.module, is_leaf=_cuts_below(self.module)
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.scaled()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails, i.e. for the wrapped module's attributes.
        if name.startswith("__") or name in ("module", "multipliers", "labels", "records"):
            raise AttributeError(name)
        module = self.module
        record = dict(self.records).get(name)
        if record is not None:
            # Built by c.init: a direct read is the parameter's own use (W = m * w), or
            # for a declared tie the other block's use (factor * w); c.init scanned the
            # model's source for undeclared tied reads (`_ties.py`).
            factor = record.tie[1] if record.tie is not None else dict(self.multipliers).get(
                name, 1.0)
            value = getattr(module, name)
            return value if factor == 1.0 else factor * value
        for path, m in self.multipliers:
            if path == name or path.startswith((f"{name}[", f"{name}.")):
                raise ScaledFieldAccessError(
                    _ACCESS_MESSAGE.format(owner=type(module).__name__, name=name, multiplier=m)
                )
        if name in {f.name for f in dataclasses.fields(module)} or not hasattr(type(module), name):
            # A field (config, a submodule), or no such attribute: `hasattr` probes
            # (e.g. `eqx.nn.inference_mode`) must not compute the scaled module.
            return getattr(module, name)
        return getattr(self.scaled(), name)  # a method or property: on W, not w


def _merge(old: Mapping[str, float], new: Mapping[str, float]) -> dict[str, float]:
    out = dict(old)
    for path, m in new.items():
        out[path] = out.get(path, 1.0) * m
    return {p: m for p, m in out.items() if m != 1.0}


class _Plan:
    # What `multiply` applies: multipliers and labels by (global) path, and the paths
    # it met, to report the ones that are not parameters of the model.
    def __init__(self, mult: Mapping[str, float], labels: Mapping[str, str],
                 records: Mapping[str, ParamRecord] | None = None):
        self.mult, self.labels, self.used = mult, labels, set()
        self.records = {} if records is None else records


def _rebuild(node: Any, path: str, plan: _Plan) -> Any:
    """Wrap every module below `node` that owns a parameter with a multiplier != 1 or a
    label.

    Each module is flattened once, one level deep, so this is linear in the leaves.
    """
    old_mult: dict[str, float] = {}
    old_labels: dict[str, str] = {}
    old_records: dict[str, ParamRecord] = {}
    if isinstance(node, Multiplied):
        old_mult, old_labels = dict(node.multipliers), dict(node.labels)
        old_records = dict(node.records)
        node = node.module
    leaves, treedef = jax.tree_util.tree_flatten_with_path(node, is_leaf=_cuts_below(node))
    own_mult: dict[str, float] = {}
    own_labels: dict[str, str] = {}
    own_records: dict[str, ParamRecord] = {}
    children = []
    for keys, item in leaves:
        child_path = render_path(path, keys)
        if item is not node and isinstance(item, eqx.Module):
            children.append(_rebuild(item, child_path, plan))
            continue
        children.append(item)
        rel = render_path("", keys)
        if child_path in plan.mult:
            plan.used.add(child_path)
            own_mult[rel] = plan.mult[child_path]
        if child_path in plan.labels:
            plan.used.add(child_path)
            own_labels[rel] = plan.labels[child_path]
        if child_path in plan.records:
            plan.used.add(child_path)
            own_records[rel] = plan.records[child_path]
    node = jax.tree_util.tree_unflatten(treedef, children)
    mult = _merge(old_mult, own_mult)
    labels = {**old_labels, **own_labels}  # a new label replaces an old one
    records = {**old_records, **own_records}
    if not mult and not labels and not records:
        return node
    if not isinstance(node, eqx.Module):
        raise MultiplierError(
            f"the parameter(s) {', '.join({**mult, **labels})} belong to no module, so "
            "there is nothing to call with the scaled values",
            hint="keep parameters inside an equinox Module",
        )
    return Multiplied(node, mult, labels, records)


def multiply(
    model: _M,
    multiplier_for: Callable[[LeafInfo], float | None],
    *,
    leaves: list[LeafInfo] | None = None,
    label_for: Callable[[LeafInfo], str | None] | None = None,
    record_for: Callable[[LeafInfo], ParamRecord | None] | None = None,
) -> _M:
    """Return `model` computing with `W = multiplier * w` for every parameter.

    **Arguments:**

    - `model`: an equinox model (plain, or already multiplied: multipliers compose).
    - `multiplier_for`: the multiplier of a parameter, from its `LeafInfo`; `None` or
        `1.0` leaves it unscaled.
    - `leaves`: the `LeafInfo`s to pass to `multiplier_for` (e.g. from `infer_leaves`,
        which knows the roles); by default `describe_leaves(model)` (roles unset).
    - `label_for`: optionally a static label per parameter (e.g. its spec block),
        recorded in the wrappers and read back with `block_labels`; `None` for none.
    - `record_for`: optionally a `ParamRecord` per parameter (read back with
        `recorded_params`).

    Pure: `model` is not modified. Modules whose parameters all have multiplier 1 and
    no label are not wrapped, so an all-ones multiplier gives back a plain model.
    """
    infos = describe_leaves(model) if leaves is None else leaves
    mult: dict[str, float] = {}
    labels: dict[str, str] = {}
    records: dict[str, ParamRecord] = {}
    for info in infos:
        m = multiplier_for(info)
        if m is not None:
            mult[info.path] = _check_multiplier(info.path, m)
        label = None if label_for is None else label_for(info)
        if label is not None:
            labels[info.path] = str(label)
        record = None if record_for is None else record_for(info)
        if record is not None:
            records[info.path] = record
    plan = _Plan(mult, labels, records)
    out = _rebuild(model, "", plan)
    unused = [path for path in {**mult, **labels, **records} if path not in plan.used]
    if unused:
        raise MultiplierError(
            f"multipliers or labels given for {len(unused)} path(s) that are not parameters of "
            f"the model: {', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}",
            hint="pass leaves= computed for this very model (infer_leaves or describe_leaves)",
        )
    return out


def block_labels(model: Any) -> dict[str, str]:
    """The labels recorded by `multiply(..., label_for=...)`, by parameter path."""
    return _collect(model, "labels")


def recorded_params(model: Any) -> dict[str, ParamRecord]:
    """The `ParamRecord`s recorded by `multiply(..., record_for=...)`, by parameter path."""
    return _collect(model, "records")


def _collect(model: Any, field: str) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def visit(node: Any, path: str) -> None:
        if isinstance(node, Multiplied):
            for rel, value in getattr(node, field):
                out[join_path(path, rel)] = value
            node = node.module
        items = jax.tree_util.tree_flatten_with_path(node, is_leaf=_cuts_below(node))[0]
        for keys, item in items:
            if item is not node and isinstance(item, eqx.Module):
                visit(item, render_path(path, keys))

    visit(model, "")
    return out


def _is_multiplied(x: Any) -> bool:
    return isinstance(x, Multiplied)


def _strip(tree: Any, use_scaled: bool) -> Any:
    def one(node: Any) -> Any:
        if not isinstance(node, Multiplied):
            return node
        inner = node.scaled() if use_scaled else node.module
        # `inner` is never itself `Multiplied`; strip the wrappers below it.
        return jax.tree_util.tree_map(one, inner, is_leaf=_is_multiplied)

    return jax.tree_util.tree_map(one, tree, is_leaf=_is_multiplied)


def unwrap(model: _M) -> _M:
    """Remove every `Multiplied` wrapper: the plain model holding the stored `w`."""
    return _strip(model, use_scaled=False)


def scaled(model: _M) -> _M:
    """The plain model holding the effective `W = multiplier * w` (for inference, export
    or inspection; gradients with respect to it are with respect to `W`, not `w`)."""
    return _strip(model, use_scaled=True)
