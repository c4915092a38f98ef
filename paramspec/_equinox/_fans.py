"""Fan-in and fan-out of a parameter, from the type of the module that owns it.

One table, `_LAYOUTS`, says for every parameter field of the standard Equinox layers
which axes make up its fan-in and which its fan-out. Everything else in paramspec
(role inference, initialisation, optimizer scales) reads fans through `leaf_layout`.

Rules:

- A layout describes the trailing `ndim` axes of a leaf (its *core*). Extra leading
  axes are stacked copies of the layer (`jax.vmap`-built layers, `eqx.nn.MLP(scan=True)`,
  ensembles) and take part in neither fan.
- fan-in (fan-out) is the product of the sizes of the fan-in (fan-out) axes; an empty
  product is 1. A vector (bias, norm gain) has no fan-in axes: fan-in 1, fan-out its
  size.
- Subclasses inherit their parent's layout (`Conv2d` uses `Conv`'s).
- A leaf of a module type that is not in the table: with at most one axis it is read as
  a vector; with two or more axes paramspec cannot know which axis is the fan-in (an
  `(in, out)` and an `(out, in)` matrix look the same), so `leaf_layout` returns `None`
  and role inference raises an error asking for an explicit `Layout`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx

__all__ = ["Layout", "leaf_layout", "fans"]


@dataclass(frozen=True)
class Layout:
    """Which axes of a parameter are its fan-in and its fan-out.

    **Arguments:**

    - `fan_in`: axes (of the core, counted from 0) whose sizes multiply into fan-in.
    - `fan_out`: axes whose sizes multiply into fan-out. An axis may be in both (the
        kernel axes of a convolution).
    - `ndim`: number of trailing axes the layout describes; leading axes beyond it are
        stacked copies. `None` means the whole leaf.
    - `lookup`: the fan-in axes are *indexed*, not summed over (a table read with a
        one-hot input, as `eqx.nn.Embedding`): each output is a single entry, so the
        fan-in is 1. The axes still mark the parameter as input-like for role inference.

    For example a plain `(in, out)` matrix used as `x @ w` is
    `Layout(fan_in=(0,), fan_out=(1,))`, and `eqx.nn.Linear.weight` is
    `Layout(fan_in=(1,), fan_out=(0,), ndim=2)`.
    """

    fan_in: tuple[int, ...] = ()
    fan_out: tuple[int, ...] = ()
    ndim: int | None = None
    lookup: bool = False

    def core_start(self, leaf_ndim: int) -> int:
        """Index of the first core axis of a leaf with `leaf_ndim` axes."""
        ndim = leaf_ndim if self.ndim is None else self.ndim
        if ndim > leaf_ndim:
            raise ValueError(
                f"Layout describes {ndim} axes but the parameter has only {leaf_ndim}."
            )
        for axis in self.fan_in + self.fan_out:
            if not 0 <= axis < ndim:
                raise ValueError(f"Layout axis {axis} is outside the {ndim} axes it describes.")
        return leaf_ndim - ndim

    def fan_in_axes(self, leaf_ndim: int) -> tuple[int, ...]:
        """The fan-in axes as indices into a leaf with `leaf_ndim` axes."""
        start = self.core_start(leaf_ndim)
        return tuple(start + a for a in self.fan_in)

    def fan_out_axes(self, leaf_ndim: int) -> tuple[int, ...]:
        """The fan-out axes as indices into a leaf with `leaf_ndim` axes."""
        start = self.core_start(leaf_ndim)
        return tuple(start + a for a in self.fan_out)


def fans(shape: tuple[int, ...], layout: Layout) -> tuple[int, int]:
    """`(fan_in, fan_out)` of a leaf of this shape under `layout`."""
    ndim = len(shape)
    fan_in = 1 if layout.lookup else math.prod(shape[a] for a in layout.fan_in_axes(ndim))
    fan_out = math.prod(shape[a] for a in layout.fan_out_axes(ndim))
    return fan_in, fan_out


def _matrix(module: object, ndim: int) -> Layout:
    # (out, in), applied as `weight @ x` (Linear, the RNN cells).
    return Layout(fan_in=(1,), fan_out=(0,), ndim=2)


def _vector(module: object, ndim: int) -> Layout:
    return Layout(fan_in=(), fan_out=(0,), ndim=1)


def _embedding(module: object, ndim: int) -> Layout:
    # (num_embeddings, embedding_size): one row per token. A lookup is a one-hot input
    # times this matrix: each output sums a single term, so the fan-in is 1 (and
    # `init fan_in^(-1/2)` gives the usual std 1); fan-out is the embedding size (grows).
    return Layout(fan_in=(0,), fan_out=(1,), ndim=2, lookup=True)


def _conv_weight(module: object, ndim: int) -> Layout:
    # (out, in // groups, *kernel); fan-in = in // groups * prod(kernel) as in Equinox's
    # own initialiser, fan-out = out * prod(kernel) as in PyTorch's.
    spatial = tuple(range(2, 2 + module.num_spatial_dims))  # type: ignore[attr-defined]
    return Layout(fan_in=(1, *spatial), fan_out=(0, *spatial), ndim=2 + len(spatial))


def _conv_bias(module: object, ndim: int) -> Layout:
    # (out, 1, ..., 1): the trailing singleton axes broadcast over space.
    return Layout(fan_in=(), fan_out=(0,), ndim=1 + module.num_spatial_dims)  # type: ignore[attr-defined]


def _norm_vector(module: object, ndim: int) -> Layout:
    # LayerNorm/RMSNorm weight and bias have the normalised `shape`, which may have
    # several axes; all of them are the vector.
    shape = module.shape  # type: ignore[attr-defined]
    ndim = 1 if isinstance(shape, int) else len(shape)
    return Layout(fan_in=(), fan_out=tuple(range(ndim)), ndim=ndim)


def _whole_vector(module: object, ndim: int) -> Layout:
    # PReLU's slope: a scalar (constant) or one slope per channel.
    return Layout(fan_in=(), fan_out=tuple(range(ndim)), ndim=ndim)


# (owning module, number of axes of the leaf) -> layout
_LayoutFn = Callable[[object, int], Layout]

# The one table: module type -> field -> layout. Looked up along the MRO.
_LAYOUTS: dict[type, dict[str, _LayoutFn]] = {
    eqx.nn.Linear: {"weight": _matrix, "bias": _vector},
    eqx.nn.Embedding: {"weight": _embedding},
    eqx.nn.Conv: {"weight": _conv_weight, "bias": _conv_bias},
    eqx.nn.ConvTranspose: {"weight": _conv_weight, "bias": _conv_bias},
    eqx.nn.LayerNorm: {"weight": _norm_vector, "bias": _norm_vector},
    eqx.nn.RMSNorm: {"weight": _norm_vector, "bias": _norm_vector},
    eqx.nn.GroupNorm: {"weight": _vector, "bias": _vector},
    eqx.nn.BatchNorm: {"weight": _vector, "bias": _vector},
    eqx.nn.GRUCell: {
        "weight_ih": _matrix,
        "weight_hh": _matrix,
        "bias": _vector,
        "bias_n": _vector,
    },
    eqx.nn.LSTMCell: {"weight_ih": _matrix, "weight_hh": _matrix, "bias": _vector},
    eqx.nn.PReLU: {"negative_slope": _whole_vector},
}


def leaf_layout(module: object | None, field: str, ndim: int) -> Layout | None:
    """The layout of the leaf stored in `module.<field>` with `ndim` axes.

    `module` is the owning module (an instance, as its static fields such as
    `num_spatial_dims` matter), or `None` for a leaf that no module owns.
    Returns `None` when the layout cannot be known: a leaf with two or more axes in a
    module type that is not in the table.
    """
    if module is not None:
        for cls in type(module).__mro__:
            entry = _LAYOUTS.get(cls)
            if entry is not None and field in entry:
                return entry[field](module, ndim)
    if ndim <= 1:
        return _whole_vector(module, ndim)
    return None


def known_module_types() -> tuple[str, ...]:
    """Names of the module types in the table, for error messages."""
    return tuple(cls.__name__ for cls in _LAYOUTS)
