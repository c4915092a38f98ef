"""Keep a model's own initialisation (`init_from="model"`), scaled by the spec from the
base width.

A model tuned at the base width is often initialised its own way: GPT-2 draws every
matrix from N(0, 0.02^2) and its residual projections from N(0, (0.02 / sqrt(2L))^2).
With `init_from="model"`, each parameter keeps the model's own values at the base
width, and at another width is the model's own draw rescaled to

    rms_own(base width) * init_std_spec(width) / init_std_spec(base width)

per parameter: the spec's width exponents (and fan ratios) applied to the model's own
scale. A zero-initialised parameter stays zero, and a block with `init keep` keeps the
model's values at every width. At the base width the model is exactly its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from .._errors import SpecError
from ._roles import LeafInfo, iter_leaves

__all__ = ["INIT_FROM", "check_init_from", "own_rms", "parameter_arrays", "rescale_own_init"]

INIT_FROM = ("spec", "model")

_M = TypeVar("_M")


def check_init_from(init_from: str) -> None:
    if init_from not in INIT_FROM:
        raise SpecError(
            f"unknown init_from {init_from!r}",
            hint='init_from="spec" (draw every parameter from the spec\'s init std) or '
            'init_from="model" (keep the model\'s own init at the base width, scaled by the '
            "spec from there)",
        )


@jax.jit
def _rms(x: Any) -> Any:
    # one small program per (shape, dtype) instead of one per eager operation
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return jnp.sqrt(jnp.mean(jnp.abs(x) ** 2))


@jax.jit
def _scaled(x: Any, scale: Any) -> Any:
    return (x * scale).astype(x.dtype)


def own_rms(leaf: Any) -> float:
    """Root mean square of a parameter's entries (in at least float32)."""
    x = jnp.asarray(leaf)
    return float(_rms(x)) if x.size else 0.0


def parameter_arrays(model: Any) -> dict[str, Any]:
    """Every parameter of `model`, by path."""
    return {entry.path: entry.leaf for entry in iter_leaves(model) if entry.is_param}


def rescale_own_init(
    model: _M,
    base_model: Any,
    ratio_for: Callable[[LeafInfo], float | None],
    *,
    leaves: list[LeafInfo],
    base_path: Mapping[str, str] | None = None,
) -> _M:
    """Each parameter `p` of `model` becomes `p * rms(p_base) / rms(p) * ratio`.

    `p_base` is the same parameter of `base_model` (the model built at the base width
    with the same key); `ratio_for(info)` is the spec's `init_std(width) /
    init_std(base width)` for it, `None` to keep `p` as it is, `0` for zeros.
    `base_path`: where `p_base` sits in `base_model` when not at `p`'s own path (a block
    of a deeper model: its counterpart at the base depth).
    """
    by_path = {info.path: info for info in leaves}
    base_path = {} if base_path is None else base_path
    base = parameter_arrays(base_model)
    flat, treedef = jax.tree_util.tree_flatten(model)
    entries = list(iter_leaves(model))
    assert len(entries) == len(flat), "iter_leaves out of step with tree_flatten"
    new = []
    for entry, leaf in zip(entries, flat, strict=True):
        info = by_path.get(entry.path) if entry.is_param else None
        ratio = None if info is None else ratio_for(info)
        if ratio is None:
            new.append(leaf)
            continue
        if ratio == 0.0:
            new.append(jnp.zeros_like(leaf))
            continue
        there = base_path.get(entry.path, entry.path)
        if there not in base:
            raise SpecError(
                f"init_from='model': the model built at the base width has no parameter "
                f"{entry.path}",
                hint="the model's structure must not depend on its width (only sizes may)",
            )
        own = own_rms(leaf)
        if own == 0.0:
            new.append(leaf)  # zero-initialised by the model: stays zero
            continue
        scale = own_rms(base[there]) / own * ratio
        new.append(leaf if scale == 1.0 else _scaled(leaf, scale))
    return jax.tree_util.tree_unflatten(treedef, new)
