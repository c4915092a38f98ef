"""Record the outputs of a model's parameterized modules during one forward pass.

The coordinate check needs every layer's output ("feature") of a model that was not
written for it. A model built by `c.init`/`c.apply` has every module that owns a parameter
wrapped in `Multiplied` (with its block labels), so those modules are known by path.
`recording(model, select)` returns a copy in which the selected wrappers are wrapped once
more in `_Recorder`, whose `__call__` calls the module and sends its output to the host;
`record(...)` runs a function of that copy (the user's loss) and returns, per module
path, every output it produced (all calls, in call order, flattened and concatenated).

Why a host callback rather than returning the arrays: models call their layers inside
their own `jax.vmap` (`jax.vmap(self.linear)(x)`) or `jax.lax.scan`; an array captured
there and returned from outside would be a leaked tracer. `jax.pure_callback` with
`vmap_method="broadcast_all"` receives the whole batched array in one call (no per-element
loop), and its (zero) result is added to the output so that no transformation drops it.
The recorded values are exact: `y + 0` is `y`.

A module is recorded when it owns a matrix (`hidden` or `output` role: a Linear, a Conv,
stacked expert arrays), or when it owns parameters and contains no parameterized module
(an embedding, a norm, a module holding a buffer). A container that owns only input-role
arrays next to parameterized children (a ViT's `cls_token`) is not recorded itself: its
output is its children's work. See docs/coord-check.md.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._multiply import Multiplied
from ._roles import render_path

__all__ = ["module_roles", "record", "recording"]

# Roles by strength: the role a module's output gets from the roles of its own parameters.
_MATRIX = ("output", "hidden")
_ORDER = ("output", "hidden", "input", "vector", "constant")

_SINK: contextvars.ContextVar[tuple[dict[str, list[np.ndarray]], dict] | None] = contextvars.ContextVar(
    "paramspec_record_sink", default=None
)


def _first_inexact(out: Any) -> tuple[list[Any], Any, int | None]:
    leaves, treedef = jax.tree_util.tree_flatten(out)
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jnp.inexact):
            return leaves, treedef, i
    return leaves, treedef, None


def _emit(name: str, out: Any) -> Any:
    active = _SINK.get()
    if active is None:
        return out
    sink, shapes = active
    leaves, treedef, i = _first_inexact(out)
    if i is None:
        return out
    y = leaves[i]
    rank = y.ndim  # the per-call rank; leading axes beyond it are vmapped batches

    def send(value: np.ndarray) -> np.ndarray:
        sink.setdefault(name, []).append(np.asarray(value).copy())
        shapes.setdefault(name, tuple(value.shape[value.ndim - rank:]))
        return np.zeros(value.shape[: value.ndim - rank], dtype=value.dtype)

    zero = jax.pure_callback(
        send, jax.ShapeDtypeStruct((), y.dtype), y, vmap_method="broadcast_all"
    )
    leaves[i] = y + zero
    return jax.tree_util.tree_unflatten(treedef, leaves)


class _Recorder(eqx.Module):
    """Calls `module` and records its output under `name` (see the module docstring).
    Attribute reads go through to the module, as with `Multiplied`."""

    module: Any
    name: str = eqx.field(static=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _emit(self.name, self.module(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("module", "name"):
            raise AttributeError(name)
        return getattr(self.module, name)


def _has_wrapped(node: Any) -> bool:
    found = jax.tree_util.tree_leaves(node, is_leaf=lambda x: isinstance(x, Multiplied))
    return any(isinstance(x, Multiplied) for x in found)


def _own_role(node: Multiplied, block_roles: Mapping[str, str]) -> str | None:
    from ._build import _split_label  # a label is "[absorbed:]block" (import cycle)

    roles = {block_roles.get(_split_label(label)[1]) for _, label in node.labels}
    roles.discard(None)
    if not roles:
        return None
    role = next(r for r in _ORDER if r in roles)
    if role in _MATRIX or not _has_wrapped(node.module):
        return role
    return None  # a container of parameterized modules that also owns, e.g., a cls token


def module_roles(model: Any, block_roles: Mapping[str, str]) -> dict[str, str]:
    """Path -> role of every module `recording` records, in tree order."""
    out: dict[str, str] = {}

    def visit(node: Any, path: str) -> None:
        def one(keys: Any, x: Any) -> None:
            if isinstance(x, Multiplied):
                here = render_path(path, keys)
                role = _own_role(x, block_roles)
                if role is not None:
                    out[here] = role
                visit(x.module, here)

        jax.tree_util.tree_map_with_path(one, node, is_leaf=lambda x: isinstance(x, Multiplied))

    visit(model, "")
    return out


def recording(model: Any, paths: Mapping[str, str], root: str) -> Any:
    """`model` with every module of `paths` recorded under its path, and the model's own
    output recorded under `root`."""

    def wrap(node: Any, path: str) -> Any:
        def one(keys: Any, x: Any) -> Any:
            if not isinstance(x, Multiplied):
                return x
            here = render_path(path, keys)
            inner = wrap(x.module, here)
            x = eqx.tree_at(lambda m: m.module, x, inner)
            return _Recorder(x, here) if here in paths else x

        return jax.tree_util.tree_map_with_path(one, node, is_leaf=lambda x: isinstance(x, Multiplied))

    if isinstance(model, Multiplied):
        inner = eqx.tree_at(lambda m: m.module, model, wrap(model.module, ""))
    else:
        inner = wrap(model, "")
    return _Recorder(inner, root)


def record(
    fn: Callable[[], Any],
) -> tuple[Any, dict[str, np.ndarray], dict[str, tuple[int, ...]]]:
    """Run `fn()` (which calls a `recording` model) and return its result; per recorded
    name, every output in call order, flattened into one float64 vector; and per name
    the shape of one call's output (without the vmapped axes)."""
    sink: dict[str, list[np.ndarray]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    token = _SINK.set((sink, shapes))
    try:
        result = fn()
        jax.block_until_ready(result)
    finally:
        _SINK.reset(token)
    feats = {
        name: np.concatenate([np.ravel(v).astype(np.float64) for v in values])
        for name, values in sink.items()
    }
    return result, feats, shapes
