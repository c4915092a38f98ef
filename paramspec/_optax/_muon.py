"""Muon for the hidden matrices, Adam (per-leaf eps) for everything else: one transform.

`scale_by_muon_and_adam(dimension_numbers, eps)` is the core stage of the compiled
`muon` chain (`_chain.build_optimizer`): each leaf whose `dimension_numbers` entry is an
`optax.contrib.MuonDimensionNumbers` takes `optax.contrib.scale_by_muon` (Optax's
momentum and Newton-Schulz orthogonalisation, untouched), every other leaf takes
`scale_by_adam_per_leaf_eps`. Learning rates, the Muon shape factor and decay are the
later stages of the chain, as static per-leaf floats.

Why our own split rather than `optax.partition` (which `optax.contrib.muon` uses): the
Adam part has a per-leaf epsilon whose tree must match the updates with `None` where a
leaf is not Adam's, and `partition` hands each group `MaskedNode`s instead. Here each
group sees the updates with `None` at the other groups' leaves (an empty subtree to
every `jax.tree.map`), which both `scale_by_muon` and the per-leaf Adam accept as they
are. Muon's own epsilon (the guard of `m / (||m||_F + eps)`) is one scalar in Optax,
so Muon leaves with different eps go to one `scale_by_muon` per distinct value (one in
the usual case).

`shape_factor` gives the static factor of a Muon leaf (the spectral condition's
`sqrt(fan_out / fan_in)` by default; Jordan's and Moonlight's forms as options).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import optax
from optax.contrib import MuonDimensionNumbers, scale_by_muon

from ._adam_eps import scale_by_adam_per_leaf_eps

__all__ = ["MUON_SCALES", "muon_dimension_numbers", "scale_by_muon_and_adam", "shape_factor"]

MUON_SCALES = ("spectral", "jordan", "moonlight")


def _is_none(x: Any) -> bool:
    return x is None


def muon_dimension_numbers(shape: tuple[int, ...], fan_in_axes: tuple[int, ...],
                           fan_out_axes: tuple[int, ...]) -> MuonDimensionNumbers:
    """Optax's dimension numbers for a leaf whose fan-in / fan-out axes are given.

    The reshape rule: the fan-in axes are reduced over (an axis counted in both fans,
    like a convolution's kernel axes, goes to the fan-in side), the remaining fan-out
    axes are the output, every other axis is a batch of independent matrices. So an
    `eqx.nn.Linear` weight `(out, in)` is the matrix `(out, in)`, a `Conv2d` kernel
    `(out, in, kh, kw)` is `(out, in*kh*kw)`, as in Jordan's Muon for convolutions.
    """
    del shape
    reduction = tuple(fan_in_axes)
    output = tuple(a for a in fan_out_axes if a not in reduction)
    return MuonDimensionNumbers(reduction_axis=reduction, output_axis=output)


def shape_factor(shape: tuple[int, ...], dims: MuonDimensionNumbers, scale: str,
                 n: float = 1.0) -> float:
    """The static factor on a Muon leaf's orthogonalised update (a Python float).

    With `m = prod(reduction axes)` (fan-in) and `k = prod(output axes)` (fan-out) of
    the matrix Muon orthogonalises:

    - `"spectral"`: `sqrt(k / m)`, the spectral condition (Yang, Simon & Bernstein,
      arXiv 2310.17813): `||dW||_* ~ sqrt(fan_out / fan_in)`.
    - `"jordan"`: `sqrt(max(1, k / m))`, `optax.contrib.muon`'s default
      (`consistent_rms=None`, from Jordan's Muon).
    - `"moonlight"`: `0.2 * sqrt(max(m, k) / n)`, Moonlight's AdamW-matched RMS
      (Liu et al., arXiv 2502.16982; optax's `consistent_rms=0.2`) evaluated at the base
      width (`n = width / base_width`; a hidden matrix's `max(m, k)` grows like `n`).
      At the base width it is exactly Optax's factor, so one learning rate serves the
      Muon and the Adam parts there; away from it the width rule keeps the spectral
      norm fixed (equivalently: Optax's factor with the hidden `c` raised by 1/2).

    All three are width-independent for a hidden matrix (both fans grow like `n`), so
    the spec's `lr` exponent is the whole width rule; Optax computes the first two
    with `jnp` inside `scale_by_shape`, here they are folded into the static lr factor.
    """
    axes = (dims.reduction_axis,) if isinstance(dims.reduction_axis, int) else dims.reduction_axis
    out_axes = (dims.output_axis,) if isinstance(dims.output_axis, int) else dims.output_axis
    m = math.prod(shape[a] for a in axes)
    k = math.prod(shape[a] for a in out_axes)
    if scale == "spectral":
        return math.sqrt(k / m)
    if scale == "jordan":
        return math.sqrt(max(1.0, k / m))
    if scale == "moonlight":
        return 0.2 * math.sqrt(max(m, k) / n)
    raise ValueError(f"unknown muon scale {scale!r}; use one of {', '.join(MUON_SCALES)}")


def scale_by_muon_and_adam(
    dimension_numbers: Any,
    eps: Any,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    beta: float = 0.95,
    ns_steps: int = 5,
    nesterov: bool = True,
) -> optax.GradientTransformation:
    """Muon (`optax.contrib.scale_by_muon`) on some leaves, Adam with per-leaf eps on the rest.

    Args:
        dimension_numbers: a tree with the structure of the params: an
            `optax.contrib.MuonDimensionNumbers` for each leaf that Muon orthogonalises,
            `None` for an Adam leaf and where the params are `None` (the convention of
            `optax.contrib.muon`'s `muon_weight_dimension_numbers`).
        eps: a tree with the structure of the params, one Python float per array leaf
            (`None` where the params are `None`): Adam's epsilon on Adam leaves, Muon's
            Frobenius guard on Muon leaves.
        b1, b2: Adam's moment decay rates.
        beta, ns_steps, nesterov: `scale_by_muon`'s momentum, Newton-Schulz steps and
            Nesterov switch (Optax's defaults).

    Returns:
        A `GradientTransformation` whose state is a dict: `"adam"` (an
        `optax.ScaleByAdamState`, `None` at Muon leaves) and `"muon"` (an
        `optax.contrib.MuonState`, `None` at Adam leaves; `"muon0"`, `"muon1"`, ... when
        Muon leaves have several eps values).

    Example:
        >>> import jax.numpy as jnp
        >>> from optax.contrib import MuonDimensionNumbers as D
        >>> params = {"w": jnp.ones((4, 3)), "b": jnp.ones(4)}
        >>> tx = scale_by_muon_and_adam({"w": D(1, 0), "b": None}, {"w": 1e-8, "b": 1e-8})
        >>> updates, state = tx.update({"w": jnp.ones((4, 3)), "b": jnp.ones(4)},
        ...                            tx.init(params))
        >>> sorted(state), round(float(updates["b"][0]), 4)
        (['adam', 'muon'], 1.0)
    """

    def is_muon(d: Any) -> bool:
        return isinstance(d, MuonDimensionNumbers)

    def dims_where(keep: Any) -> Any:
        return jax.tree.map(lambda d, e: d if is_muon(d) and keep(e) else None,
                            dimension_numbers, eps, is_leaf=lambda x: x is None or is_muon(x))

    muon_eps = sorted({e for e, d in _pairs(eps, dimension_numbers) if is_muon(d)})
    adam_eps = jax.tree.map(lambda e, d: None if is_muon(d) else e, eps, dimension_numbers,
                            is_leaf=_is_none)
    groups: dict[str, tuple[optax.GradientTransformation, Any]] = {
        "adam": (scale_by_adam_per_leaf_eps(adam_eps, b1, b2), adam_eps),
    }
    for i, value in enumerate(muon_eps):
        dims = dims_where(lambda e, value=value: e == value)
        name = "muon" if len(muon_eps) == 1 else f"muon{i}"
        groups[name] = (
            scale_by_muon(beta=beta, eps=value, ns_steps=ns_steps, nesterov=nesterov,
                          # a function, not the tree: an Equinox Module is callable and
                          # scale_by_muon would call it
                          weight_dimension_numbers=lambda _, dims=dims: dims),
            dims,
        )

    def select(tree: Any, mask: Any) -> Any:
        # `mask` is the group's eps or dims tree: a leaf where the group has the leaf
        return jax.tree.map(lambda x, m: None if m is None else x, tree, mask, is_leaf=_is_none)

    def init_fn(params: Any) -> dict[str, Any]:
        return {name: tx.init(select(params, mask)) for name, (tx, mask) in groups.items()}

    def update_fn(updates: Any, state: dict[str, Any], params: Any = None):
        del params
        outs, new_state = [], {}
        for name, (tx, mask) in groups.items():
            out, new_state[name] = tx.update(select(updates, mask), state[name])
            outs.append(out)
        merged = jax.tree.map(lambda *xs: next((x for x in xs if x is not None), None), *outs,
                              is_leaf=_is_none)
        return merged, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def _pairs(eps: Any, dims: Any) -> list[tuple[float, Any]]:
    """(eps, dimension numbers) per array leaf."""
    out: list[tuple[float, Any]] = []
    jax.tree.map(lambda e, d: out.append((e, d)) if e is not None else None, eps, dims,
                 is_leaf=_is_none)
    return out
