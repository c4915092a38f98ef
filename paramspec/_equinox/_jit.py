"""`local_jit`: `eqx.filter_jit` for a function made per call, whose compiled programs
are freed with it.

`eqx.filter_jit(f)` keeps `f`, and every program compiled for it, for the life of the
process (equinox 0.13): its cache is a `WeakKeyDictionary` keyed by `f`, whose value (a
`jax.jit` of a wrapper) holds `f` among the static arguments of its compiled entries, so
the weak key never dies. For a module-level function that is what a cache should do; for
a closure made per call (a training step over one model, optimizer and batch) each call
leaves its compiled programs behind. On CPU every program keeps its LLVM code mapped
(tens to hundreds of `/proc/self/maps` entries each), so a process that compiles a few
hundred such steps (a notebook running many sweeps or coordinate checks, the slow
real-models matrix in one pytest process) passes Linux's `vm.max_map_count` (65530) and
XLA aborts. `jax.jit` keys its cache weakly on the function itself, and nothing in the
cache refers back to it: dropping the function frees its programs.

So `local_jit` is `eqx.filter_jit`'s contract (arrays traced, everything else static,
any pytree out) on `jax.jit` of a closure that only the returned function holds. Written
here because equinox has no public way to free one function's entries (`eqx.clear_caches`
drops every function's).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import equinox as eqx
import jax

_F = TypeVar("_F", bound=Callable[..., Any])


class _Static(eqx.Module):
    # Non-array leaves as a hashable static argument (or output): their treedef and leaves.
    treedef: Any = eqx.field(static=True)
    leaves: tuple[Any, ...] = eqx.field(static=True)

    @classmethod
    def of(cls, tree: Any) -> _Static:
        leaves, treedef = jax.tree.flatten(tree)
        return cls(treedef, tuple(leaves))

    @property
    def value(self) -> Any:
        return jax.tree.unflatten(self.treedef, self.leaves)


def local_jit(fun: _F) -> _F:
    """`eqx.filter_jit(fun)` whose compiled programs live only as long as the result.

    Every JAX or NumPy array among the arguments is traced; every other leaf is static
    (a new value compiles again), as with `eqx.filter_jit`. Use it for a function made per
    call; a module-level function is better served by `eqx.filter_jit`'s process-wide cache.

    ```python
    def train(model, opt, batch):
        step = local_jit(lambda m, s: ...)  # compiled once, freed when `train` returns
    ```
    """

    def flat(dynamic: Any, static: _Static) -> tuple[Any, _Static]:
        args, kwargs = eqx.combine(dynamic, static.value)
        out_dynamic, out_static = eqx.partition(fun(*args, **kwargs), eqx.is_array)
        return out_dynamic, _Static.of(out_static)

    jitted = jax.jit(flat, static_argnums=1)

    @functools.wraps(fun)
    def call(*args: Any, **kwargs: Any) -> Any:
        dynamic, static = eqx.partition((args, kwargs), eqx.is_array)
        out_dynamic, out_static = jitted(dynamic, _Static.of(static))
        return eqx.combine(out_dynamic, out_static.value)

    return call  # type: ignore[return-value]
