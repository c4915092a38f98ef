"""Measured alignment of a weight against its inputs (theory.md §4, Everett et al.).

    A(W, z) = log( rms(W z) / (rms(W) * rms(z)) ) / log(fan_in)

For `W` of shape `(fan_out, fan_in)` and a batch `z` of shape `(batch, fan_in)` (or one
vector `(fan_in,)`): `rms(W z)` is over every output entry of every example (the
`batch x fan_out` numbers `z @ W.T`), `rms(W)` over every entry of `W`, `rms(z)` over
every entry of the batch. Each output entry is a sum of `fan_in` products: if they are
independent the sum grows like `fan_in^(1/2)` (A = 1/2); if they all point the same
way, like `fan_in` (A = 1, e.g. `W = u v^T` with `z` along `v`).

`alignments(W0, W1, z0, z1)` measures the three products of §4 for one layer between
two states: `alpha = A(dW, z0)`, `omega = A(W0, dz)`, `u = A(dW, dz)` with
`dW = W1 - W0` and `dz = z1 - z0`.

Plain numpy in float64 (JAX arrays are accepted); nothing here is traced. numpy is
imported on first use, so `import paramspec._analysis` stays light for the CLI.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .._errors import SpecError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["AlignmentInputError", "alignment", "alignments"]


class AlignmentInputError(SpecError, ValueError):
    """Arrays that the alignment metric cannot measure: what is wrong and the fix."""


def _rms(x: np.ndarray) -> float:
    import numpy as np

    return float(np.sqrt(np.mean(np.square(x))))


def _as_arrays(w: Any, z: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    w_arr = np.asarray(w, dtype=np.float64)
    z_arr = np.asarray(z, dtype=np.float64)
    wn, zn = names
    if w_arr.ndim != 2:
        raise AlignmentInputError(
            f"`{wn}` must be a matrix of shape (fan_out, fan_in), got shape {w_arr.shape}",
            hint="pass the layer's weight as stored by a Linear layer (out x in)",
        )
    if z_arr.ndim not in (1, 2) or z_arr.shape[-1] != w_arr.shape[1]:
        raise AlignmentInputError(
            f"`{zn}` must have shape (fan_in,) or (batch, fan_in) with fan_in = "
            f"{w_arr.shape[1]} (the second axis of `{wn}`), got shape {z_arr.shape}",
            hint="pass the layer's inputs, one example per row",
        )
    if w_arr.shape[1] < 2:
        raise AlignmentInputError(
            f"fan_in is {w_arr.shape[1]}: log(fan_in) is 0 and the alignment is undefined",
            hint="measure a layer whose fan-in grows with width (hidden or readout)",
        )
    if not (np.all(np.isfinite(w_arr)) and np.all(np.isfinite(z_arr))):
        raise AlignmentInputError(
            f"`{wn}` or `{zn}` holds NaN or inf values",
            hint="measure finite states (is the training diverging?)",
        )
    return w_arr, z_arr.reshape(-1, w_arr.shape[1])


def alignment(w: Any, z: Any, *, _names: tuple[str, str] = ("W", "z")) -> float:
    """`log(rms(W z) / (rms(W) rms(z))) / log(fan_in)`: 1/2 independent, 1 aligned.

    Example:
        >>> import numpy as np
        >>> from paramspec._analysis._alignment import alignment
        >>> v = np.ones(256)
        >>> round(alignment(np.outer(np.ones(8), v), v), 6)  # rank one, z along v
        1.0
    """
    w_arr, z_arr = _as_arrays(w, z, _names)
    rms_w, rms_z = _rms(w_arr), _rms(z_arr)
    wn, zn = _names
    if rms_w == 0.0 or rms_z == 0.0:
        zero = wn if rms_w == 0.0 else zn
        raise AlignmentInputError(
            f"`{zero}` is all zeros, so the alignment is undefined (0/0)",
            hint="measure between two different states (did the layer not move?)",
        )
    rms_out = _rms(z_arr @ w_arr.T)
    if rms_out == 0.0:
        return -math.inf  # W z = 0 exactly: z lies in W's null space
    return math.log(rms_out / (rms_w * rms_z)) / math.log(w_arr.shape[1])


def alignments(w0: Any, w1: Any, z0: Any, z1: Any) -> dict[str, float]:
    """The exponents of §4 for one layer between two states `(W0, z0)` and `(W1, z1)`.

    Returns `{"alpha": A(dW, z0), "omega": A(W0, dz), "u": A(dW, dz)}`.
    """
    import numpy as np

    w0_arr = np.asarray(w0, dtype=np.float64)
    w1_arr = np.asarray(w1, dtype=np.float64)
    z0_arr = np.asarray(z0, dtype=np.float64)
    z1_arr = np.asarray(z1, dtype=np.float64)
    if w0_arr.shape != w1_arr.shape or z0_arr.shape != z1_arr.shape:
        raise AlignmentInputError(
            f"the two states differ in shape: W {w0_arr.shape} vs {w1_arr.shape}, "
            f"z {z0_arr.shape} vs {z1_arr.shape}",
            hint="pass the same layer and the same batch at two training steps",
        )
    dw, dz = w1_arr - w0_arr, z1_arr - z0_arr
    return {
        "alpha": alignment(dw, z0_arr, _names=("W1 - W0", "z0")),
        "omega": alignment(w0_arr, dz, _names=("W0", "z1 - z0")),
        "u": alignment(dw, dz, _names=("W1 - W0", "z1 - z0")),
    }
