"""Re-initialise every parameter of a model from a per-parameter standard deviation."""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import SpecError
from ._fans import Layout
from ._roles import LeafInfo, describe_leaves, iter_leaves

__all__ = ["ReinitError", "leaf_key", "reinit"]

_M = TypeVar("_M")


class ReinitError(SpecError, ValueError):
    """A standard deviation that cannot be used to initialise a parameter."""


def leaf_key(key: Any, path: str) -> Any:
    """The key for the parameter at `path`: `fold_in(key, crc32(path))`.

    Keyed by the path, not by the position of the leaf, so adding or removing a layer
    does not change how the other layers are drawn.
    """
    return jax.random.fold_in(key, _path_hash(path))


def _path_hash(path: str) -> np.uint32:
    # crc32 rather than hash(): Python's string hash is salted per process.
    return np.uint32(zlib.crc32(path.encode()))


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _normal(key: Any, path_hash: Any, std: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    # `leaf_key` and the draw in one small program per (shape, dtype), compiled once:
    # eagerly, each of fold_in, normal, multiply and cast compiles per shape.
    # Draw in at least float32 so that low-precision parameters get a good sample;
    # complex parameters get a complex normal with E|z|^2 = std^2.
    key = jax.random.fold_in(key, path_hash)
    draw_dtype = jnp.promote_types(dtype, jnp.float32)
    return (std * jax.random.normal(key, shape, draw_dtype)).astype(dtype)


def _draw(key: Any, path: str, leaf: Any, std: float) -> Any:
    shape, dtype = tuple(leaf.shape), jnp.dtype(leaf.dtype)
    if std == 0.0:
        return jnp.zeros(shape, dtype)
    return _normal(key, _path_hash(path), std, shape, dtype)


def reinit(
    model: _M,
    key: Any,
    std_for: Callable[[LeafInfo], float | None],
    *,
    leaves: list[LeafInfo] | None = None,
    layouts: dict[str, Layout] | None = None,
) -> _M:
    """Re-draw every parameter of `model` from `N(0, std^2)`.

    **Arguments:**

    - `model`: an equinox model (plain or `Multiplied`; the stored `w` is re-drawn).
    - `key`: a JAX PRNG key. Each parameter uses `leaf_key(key, path)`, so the result
        is deterministic per key and path.
    - `std_for`: the standard deviation of a parameter, from its `LeafInfo`. `0` gives
        zeros; `None` keeps the module's own value (e.g. a LayerNorm gain of 1).
    - `leaves`: the `LeafInfo`s to pass to `std_for` (e.g. from `infer_leaves`, which
        knows the roles); by default `describe_leaves(model, layouts=layouts)`.
    - `layouts`: see `describe_leaves`.

    Pure: returns a new model; dtypes, and the sharding of every re-drawn `jax.Array`,
    are kept.
    """
    infos = describe_leaves(model, layouts=layouts) if leaves is None else leaves
    by_path = {info.path: info for info in infos}
    flat, treedef = jax.tree_util.tree_flatten(model)
    entries = list(iter_leaves(model))
    assert len(entries) == len(flat), "iter_leaves out of step with tree_flatten"
    new = []
    for entry, leaf in zip(entries, flat, strict=True):
        if not entry.is_param:
            new.append(leaf)
            continue
        info = by_path.get(entry.path)
        if info is None:
            raise ReinitError(
                f"no LeafInfo for the parameter {entry.path}",
                hint="pass leaves= computed for this model (infer_leaves or describe_leaves)",
            )
        std = std_for(info)
        if std is None:
            new.append(leaf)
            continue
        if isinstance(std, bool) or not isinstance(std, int | float):
            raise ReinitError(
                f"the init std of {entry.path} must be a Python number, got {type(std).__name__}"
            )
        if not (math.isfinite(std) and std >= 0):
            raise ReinitError(
                f"the init std of {entry.path} must be finite and >= 0, got {std}",
                hint="check the spec's `init` for this parameter's role",
            )
        value = _draw(key, entry.path, leaf, float(std))
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
            value = jax.device_put(value, leaf.sharding)
        new.append(value)
    return jax.tree_util.tree_unflatten(treedef, new)
