"""Adam-atan2: Adam with the quotient `m / (sqrt(v) + eps)` replaced by an `atan2`.

Everett et al. (2024), section on epsilon: `update = a * atan2(m_hat, b * sqrt(v_hat))`.
It needs no epsilon, is exactly invariant to the scale of the gradient and is bounded;
see `reference/theory.md` section 6.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu

__all__ = ["ScaleByAdamAtan2State", "adam_atan2", "scale_by_adam_atan2"]


class ScaleByAdamAtan2State(NamedTuple):
    """State of `scale_by_adam_atan2`: the same fields and shapes as `optax.ScaleByAdamState`."""

    count: jax.Array  # shape=(), dtype=jnp.int32.
    mu: optax.Updates  # same tree and shapes as the params; dtype `mu_dtype` or the params'.
    nu: optax.Updates  # same tree, shapes and dtypes as the params.


# atan(z) / z ~ N(t) / D(t) with t = z^2 in [0, 1]: a [3/2] rational fit made for this
# module (weighted linear least squares, Loeb's iteration, on 40k Chebyshev points);
# max error 4.5e-8 in float64. N > 0 and D > 0 on [0, 1].
_ATAN_N = (0.9999999868531014, 0.8302194172570622, 0.09138652155822277, -0.0030203924243808744)
_ATAN_D = (1.0, 1.1635511079060443, 0.27926800328247126)


def _atan2_sqrt(y: jax.Array, w: jax.Array) -> jax.Array:
    """`atan2(y, sqrt(w))` for float32 `y` and `w >= 0`, as one fusible kernel.

    Why not `jnp.arctan2(m_hat, b * jnp.sqrt(v_hat))`: XLA:CPU lowers `atan2` to a
    scalar routine, and XLA does not fuse a division or square root whose result is
    used more than once; on a 10.5M-parameter step that made Adam-atan2 ~10x slower
    than Adam. This form has one division and one square root, each used once, so the
    whole update stays one fused elementwise kernel, like Adam's:

    - scale `y` by `2^-k` and `w` by `2^-2k` (exact: exponent bits), `k` chosen so
      that both land in [0, 2) and one of them in [1/2, 2): nothing below can
      overflow or underflow, for every finite `w` and `|y| < 2^79` (~6e23; Adam's
      `m_hat` stays below `2^64` while `v` is finite, since `g^2` overflows at `2^64`);
    - `lo, hi = min(y^2, w), max(y^2, w)`, so `t = lo / hi = z^2` with `z` in [0, 1];
    - `atan(z) = sqrt(t) N(t) / D(t) = sqrt(lo hi) (hi^3 N) / (hi^2 (hi^2 D))`, with
      `hi^3 N` and `hi^2 D` evaluated as homogeneous polynomials in `(lo, hi)`;
    - `atan2 = atan(z)` where `|y| <= sqrt(w)`, else `pi/2 - atan(z)`; sign of `y`.

    Limits: `atan2(0, 0) = 0`; `atan2(y, inf) = 0` (with the sign of `y`) for every `y`,
    also `y = +-inf` (IEEE would give `+-pi/4` there; see `scale_by_adam_atan2` for why
    0). So Adam's moments never give NaN unless a gradient is NaN. Max abs error 3e-7 in
    float32 (`jnp.arctan2`: 1e-7), tested against `numpy.arctan2` over inputs from 1e-30
    to 1e19 (and `w` up to 3.4e38). On a 10.5M-parameter CPU
    step Adam-atan2 costs 1.15-1.2x Adam (extra arithmetic in a compute-bound kernel),
    against ~10x with `jnp.arctan2`. On an H100 the step is memory-bound and both forms
    cost 1.00-1.03x Adam (benchmarks/optimizer_step.py, docs/performance.md).
    """
    # Biased exponents; w >= 0 has no sign bit. k = max(e(y), ceil(e(w) / 2)), kept
    # <= 63 so that 2^-2k stays a normal float32: y below 2^79 is enough, as Adam's
    # m_hat stays below 2^64 while v is finite (g^2 overflows at 2^64), and every y
    # goes with v = inf beyond; k >= -63 holds by construction.
    e_y = (jax.lax.bitcast_convert_type(y, jnp.int32) >> 23) & 0xFF
    e_w = jax.lax.bitcast_convert_type(w, jnp.int32) >> 23
    k = jnp.minimum(jnp.maximum(e_y, (e_w + 128) >> 1), 190)  # k + 127
    y = y * jax.lax.bitcast_convert_type((254 - k) << 23, jnp.float32)  # y * 2^-k
    w = w * jax.lax.bitcast_convert_type((381 - 2 * k) << 23, jnp.float32)  # w * 2^-2k
    y2 = y * y
    big = y2 > w
    hi, lo = jnp.maximum(y2, w), jnp.minimum(y2, w)
    n0, n1, n2, n3 = _ATAN_N
    d0, d1, d2 = _ATAN_D
    num = ((n3 * lo + n2 * hi) * lo + n1 * hi * hi) * lo + n0 * hi * hi * hi  # hi^3 N(t)
    den = (d2 * lo + d1 * hi) * lo + d0 * hi * hi  # hi^2 D(t)
    # hi is in [1/4, 4) (so hi^2 den >= 1/1024), or 0 when y = w = 0: the tiny term
    # only turns that 0 / 0 into 0.
    angle = jnp.sqrt(lo * hi) * num / (hi * hi * den + 1e-30)  # atan(z)
    angle = jnp.where(big, math.pi / 2, 0.0) + jnp.where(big, -1.0, 1.0) * angle
    # w = inf (an overflowed second moment): the limit atan2(y, inf) = 0 for every y,
    # also y = +-inf (see `scale_by_adam_atan2`: an overflowed element stops). One
    # compare and select, fused with the rest.
    angle = jnp.where(w == jnp.inf, 0.0, angle)
    return jnp.copysign(angle, y)


def _check_hyperparams(b1: Any, b2: Any, a: Any, b: Any) -> None:
    # Only static Python numbers can be checked: under `optax.inject_hyperparams` they
    # arrive as (traced) arrays, and reading their value would force a host sync.
    for name, value in (("b1", b1), ("b2", b2)):
        if isinstance(value, int | float) and not 0.0 <= value < 1.0:
            raise ValueError(
                f"scale_by_adam_atan2: {name}={value!r} is not a valid decay rate. "
                f"Pass a number in [0, 1), for example {name}=0.9."
            )
    for name, value in (("a", a), ("b", b)):
        if isinstance(value, int | float) and not (math.isfinite(value) and value > 0.0):
            raise ValueError(
                f"scale_by_adam_atan2: {name}={value!r} must be a finite number > 0 "
                "(the defaults are a=1.27, b=1.0)."
            )


def scale_by_adam_atan2(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    *,
    a: jax.typing.ArrayLike = 1.27,
    b: jax.typing.ArrayLike = 1.0,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Rescale updates by the Adam-atan2 rule (Adam without epsilon).

    With gradient :math:`g_t` and bias-corrected moments as in Adam,

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,

        \hat m_t = m_t / (1-\beta_1^t), \qquad \hat v_t = v_t / (1-\beta_2^t),

        u_t = a \cdot \operatorname{atan2}\big(\hat m_t,\; b \sqrt{\hat v_t}\big).

    Properties: `atan2(k m, k s) = atan2(m, s)` for `k > 0`, so the update does not
    change when every gradient is multiplied by the same constant (no epsilon can
    underflow); `|u_t| < a * pi / 2`; `atan2(0, 0) = 0`, so zero gradients give zero,
    finite updates; and for `|m_hat| << b sqrt(v_hat)` the update is close to
    `(a / b) * m_hat / sqrt(v_hat)`, Adam with `eps = 0`.

    Overflow: in float32 and bf16 a gradient above about 1.8e19 makes `g^2`, and so
    `v`, overflow to `inf`. The update of that element is then the limit
    `a * atan2(m_hat, inf) = 0`, not NaN, and it stays 0 while `v` is `inf` (an `inf`
    never decays: the element stops, the others carry on unaffected). An `inf`
    gradient is treated the same way: it overflows both moments and gives 0, not
    IEEE's `atan2(inf, inf) = pi/4`, which would move the element by a full step in
    the same direction at every later step, however the gradient changes. So every
    update is finite and `|u_t| <= a * pi / 2` unless a gradient is NaN (NaN in, NaN
    out, never hidden). A first gradient below about 3e-18 underflows `(1 - b2) g^2`
    to 0 (XLA:CPU flushes subnormals), and the update is the other limit,
    `a * atan2(m_hat, 0) = +-a * pi / 2`. To keep spikes
    out of the moments, clip before this transform (`optax.clip_by_global_norm`); to
    skip steps with non-finite gradients, wrap the optimizer in
    `optax.apply_if_finite`.

    Defaults: `a = 1.27 ≈ 4 / pi` and `b = 1`. A perfectly consistent gradient has
    `m_hat = g`, `sqrt(v_hat) = |g|`, so `u = a * atan2(1, 1) = a * pi / 4 ≈ 1`: a unit
    step, like Adam's. Public implementations also use `a = b = 1`; both are settable.
    The sign flip and the learning rate are *not* applied here: chain with
    `optax.scale_by_learning_rate`, or use `adam_atan2`.

    Implementation: the `atan2` is evaluated in float32 (also for bf16/f16 moments, the
    update takes the moments' dtype) by a rational approximation that XLA fuses into one
    elementwise kernel (max abs error 3e-7; see `_atan2_sqrt` for why not
    `jnp.arctan2`, which is ~10x slower on CPU).

    Args:
        b1: decay rate of the first moment (gradient average).
        b2: decay rate of the second moment (squared-gradient average).
        a: output scale; the update is bounded by `a * pi / 2`.
        b: scale of `sqrt(v_hat)` inside the `atan2`.
        mu_dtype: optional dtype of the first moment; `None` uses the params' dtype.

    Returns:
        An `optax.GradientTransformation` whose state is a `ScaleByAdamAtan2State`
        (the same bytes as `optax.scale_by_adam`'s).

    References:
        Everett et al., *Scaling Exponents Across Parameterizations and Optimizers*,
        ICML 2024, https://arxiv.org/abs/2407.05872

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from paramspec._optax._atan2 import scale_by_adam_atan2
        >>> tx = optax.chain(scale_by_adam_atan2(), optax.scale_by_learning_rate(0.1))
        >>> params = jnp.array([1.0, -2.0])
        >>> state = tx.init(params)
        >>> updates, state = jax.jit(tx.update)(jnp.array([3.0, 0.0]), state, params)
        >>> [round(float(u), 4) + 0.0 for u in updates]  # -0.1 * 1.27 * pi / 4, and 0 for g = 0
        [-0.0997, 0.0]
    """
    _check_hyperparams(b1, b2, a, b)
    mu_dtype = jax.dtypes.canonicalize_dtype(mu_dtype) if mu_dtype is not None else None

    def init_fn(params: optax.Params) -> ScaleByAdamAtan2State:
        return ScaleByAdamAtan2State(
            count=jnp.zeros([], jnp.int32),
            mu=otu.tree_zeros_like(params, dtype=mu_dtype),
            nu=otu.tree_zeros_like(params),
        )

    def update_fn(
        updates: optax.Updates, state: ScaleByAdamAtan2State, params: optax.Params | None = None
    ) -> tuple[optax.Updates, ScaleByAdamAtan2State]:
        del params
        # The same moment and count helpers as `optax.scale_by_adam`.
        mu = otu.tree_update_moment(updates, state.mu, b1, 1)
        nu = otu.tree_update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count_inc = optax.safe_increment(state.count)
        # Bias correction and b as two scalars: m_hat = mu / (1 - b1^t) and
        # (b sqrt(v_hat))^2 = b^2 nu / (1 - b2^t).
        t = count_inc.astype(jnp.float32)
        mu_factor = 1.0 / (1.0 - jnp.asarray(b1, jnp.float32) ** t)
        nu_factor = jnp.asarray(b, jnp.float32) ** 2 / (1.0 - jnp.asarray(b2, jnp.float32) ** t)

        def leaf(m: jax.Array, v: jax.Array) -> jax.Array:
            dtype = jnp.promote_types(m.dtype, v.dtype)
            m, v = m.astype(jnp.float32), v.astype(jnp.float32)  # bf16/f16: in float32
            angle = _atan2_sqrt(m * mu_factor, v * nu_factor)
            return (a * angle).astype(dtype)

        updates = jax.tree.map(
            lambda m, v: None if m is None else leaf(m, v), mu, nu, is_leaf=lambda x: x is None
        )
        mu = otu.tree_cast(mu, mu_dtype)
        nu = otu.tree_cast_like(nu, state.nu)
        return updates, ScaleByAdamAtan2State(count=count_inc, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adam_atan2(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    *,
    a: jax.typing.ArrayLike = 1.27,
    b: jax.typing.ArrayLike = 1.0,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adam-atan2 with decoupled weight decay, composed like `optax.adamw`.

    .. math::

        \theta_{t+1} = \theta_t - \eta_t \big( a\,\operatorname{atan2}(\hat m_t,
        b\sqrt{\hat v_t}) + \lambda \theta_t \big)

    with the moments of `scale_by_adam_atan2`. The weight decay is multiplied by the
    learning rate (the PyTorch/Optax AdamW convention); `weight_decay=0.0` adds no work.

    Args:
        learning_rate: a float or an Optax schedule (see `optax.scale_by_learning_rate`).
        b1: decay rate of the first moment.
        b2: decay rate of the second moment.
        a: output scale (default 1.27 ≈ 4/pi: a consistent gradient gives a unit step).
        b: scale of `sqrt(v_hat)` inside the `atan2` (default 1).
        weight_decay: decoupled weight-decay coefficient (or schedule).
        mu_dtype: optional dtype of the first moment.

    Returns:
        An `optax.GradientTransformationExtraArgs`; works with
        `optax.inject_hyperparams(adam_atan2)(learning_rate=...)`.

    References:
        Everett et al., *Scaling Exponents Across Parameterizations and Optimizers*,
        ICML 2024, https://arxiv.org/abs/2407.05872

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from paramspec._optax._atan2 import adam_atan2
        >>> def f(x): return jnp.sum(x**2)
        >>> solver = adam_atan2(learning_rate=0.1)
        >>> params = jnp.array([1.0, 2.0, 3.0])
        >>> state = solver.init(params)
        >>> @jax.jit
        ... def step(params, state):
        ...     updates, state = solver.update(jax.grad(f)(params), state, params)
        ...     return optax.apply_updates(params, updates), state
        >>> for _ in range(5):
        ...     params, state = step(params, state)
        >>> print(f"{float(f(params)):.2f}")
        8.78
    """
    decay = (
        optax.identity()
        if isinstance(weight_decay, int | float) and weight_decay == 0.0
        else optax.add_decayed_weights(weight_decay)
    )
    return optax.chain(
        scale_by_adam_atan2(b1, b2, a=a, b=b, mu_dtype=mu_dtype),
        decay,
        optax.scale_by_learning_rate(learning_rate),
    )
