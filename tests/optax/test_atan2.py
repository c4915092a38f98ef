"""`scale_by_adam_atan2` / `adam_atan2` against an independent numpy loop and their claims."""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramspec._optax._atan2 import (
    ScaleByAdamAtan2State,
    _atan2_sqrt,
    adam_atan2,
    scale_by_adam_atan2,
)

SHAPES = {"w": (7, 5), "b": (5,), "s": ()}


def _grads(seed: int, steps: int, zeros: float = 0.1) -> dict[str, np.ndarray]:
    """Stacked gradients, leaf -> (steps, *shape): a drifting mean plus noise, some exact
    zeros, so m_hat / sqrt(v_hat) covers small and large ratios of both signs."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in SHAPES.items():
        drift = np.sin(0.3 * np.arange(steps)).reshape((steps,) + (1,) * len(shape))
        g = rng.normal(size=(steps, *shape)) + drift
        out[name] = np.where(rng.random(size=g.shape) < zeros, 0.0, g).astype(np.float32)
    return out


def _const(value: float, steps: int) -> dict[str, np.ndarray]:
    return {k: np.full((steps, *s), value, np.float32) for k, s in SHAPES.items()}


def _numpy_atan2(grads, b1, b2, a, b):
    """Adam-atan2 written out with float64 numpy, independent of the optax helpers."""
    out = {}
    for k, g in grads.items():
        m = v = np.zeros(g.shape[1:])
        steps = []
        for t in range(1, len(g) + 1):
            gt = g[t - 1].astype(np.float64)
            m = b1 * m + (1 - b1) * gt
            v = b2 * v + (1 - b2) * gt * gt
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            steps.append(a * np.arctan2(m_hat, b * np.sqrt(v_hat)))
        out[k] = np.stack(steps)
    return out


def _runner(tx, dtype=jnp.float32, params=None):
    """A jitted function: stacked gradients -> stacked updates (one step per row), state."""
    params = params or {k: jnp.zeros(s, dtype) for k, s in SHAPES.items()}

    @jax.jit
    def run(grads):
        def step(state, g):
            updates, state = tx.update(g, state, params)
            return state, updates

        state, updates = jax.lax.scan(step, tx.init(params), grads)
        return updates, state

    return lambda grads: run(
        {k: jnp.asarray(np.asarray(g).astype(dtype)) for k, g in grads.items()}
    )


def _run(tx, grads, dtype=jnp.float32, params=None):
    return _runner(tx, dtype, params)(grads)


STEPS = 15  # the default runner below is compiled once per dtype for this many steps


@functools.cache
def _default(dtype):
    """`scale_by_adam_atan2()` with default arguments, jitted once per dtype and shared."""
    return _runner(scale_by_adam_atan2(), dtype)


def _f32(x):
    return np.asarray(x).astype(np.float32)  # numpy, not an eager (compiled) JAX op


@pytest.mark.parametrize("b1, b2, a, b", [(0.9, 0.999, 1.27, 1.0), (0.5, 0.9, 2.0, 0.3)])
def test_matches_numpy_loop_over_50_jitted_steps(b1, b2, a, b):
    grads = _grads(0, 50)
    got, state = _run(scale_by_adam_atan2(b1, b2, a=a, b=b), grads)
    want = _numpy_atan2(grads, b1, b2, a, b)
    for k in SHAPES:  # every one of the 50 steps, every entry
        np.testing.assert_allclose(_f32(got[k]), want[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert isinstance(state, ScaleByAdamAtan2State)
    assert int(state.count) == 50


def test_fused_atan2_matches_numpy_over_the_float32_range():
    # The private kernel against numpy.arctan2(y, sqrt(w)): a dense grid of angles, and
    # pairs of magnitudes from 1e-30 to 1e18 (the gradient scales an optimizer sees).
    rng = np.random.default_rng(6)
    y = np.concatenate(
        [
            np.linspace(-4, 4, 20001),
            rng.normal(size=20000) * 10.0 ** rng.uniform(-30, 18, 20000),
            [0.0, -0.0, 0.0, 1.0, -1.0, 1e-30, 1e18],
        ]
    ).astype(np.float32)
    w = np.concatenate(
        [
            np.ones(20001),
            (rng.normal(size=20000) * 10.0 ** rng.uniform(-30, 18, 20000)) ** 2,
            [0.0, 0.0, 1.0, 0.0, 0.0, 1e-60, 1e36],
        ]
    ).astype(np.float32)
    tiny = np.finfo(np.float32).tiny  # subnormals are flushed to 0 by XLA:CPU
    y, w = np.where(np.abs(y) < tiny, 0, y).astype(np.float32), np.where(w < tiny, 0, w)
    got = np.asarray(jax.jit(_atan2_sqrt)(y, w.astype(np.float32))).astype(np.float64)
    want = np.arctan2(y.astype(np.float64), np.sqrt(w.astype(np.float64)))
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-7)
    assert np.array_equal(np.signbit(got), np.signbit(want))  # atan2(-0, 0) = -0


def test_default_gives_unit_step_for_a_consistent_gradient():
    # m_hat = g and sqrt(v_hat) = |g|: u = a * atan2(1, 1) = 1.27 * pi / 4 ~ 0.997.
    got, _ = _default(jnp.float32)(_const(3e-4, STEPS))
    for k in SHAPES:
        np.testing.assert_allclose(_f32(got[k]), 1.27 * math.pi / 4, rtol=1e-5)
    assert abs(1.27 * math.pi / 4 - 1.0) < 3e-3


@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_invariant_to_gradient_scale(dtype, tol):
    grads = _grads(1, STEPS)
    run = _default(dtype)
    base, _ = run(grads)
    for factor in (1e-15, 1e15):
        moved, state = run({k: (factor * g).astype(np.float32) for k, g in grads.items()})
        for k in SHAPES:
            assert moved[k].dtype == dtype
            np.testing.assert_allclose(_f32(moved[k]), _f32(base[k]), rtol=tol, atol=tol)
        assert {x.dtype for x in jax.tree.leaves(state.nu)} == {jnp.dtype(dtype)}
    # The test can fail: Adam with its eps = 1e-8 is *not* scale invariant at 1e-15.
    adam = _runner(optax.scale_by_adam(), dtype)
    tiny, _ = adam({k: (1e-15 * g).astype(np.float32) for k, g in grads.items()})
    assert np.max(np.abs(_f32(tiny["w"]))) < 1e-3 * np.max(np.abs(_f32(adam(grads)[0]["w"])))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_bounded_by_a_pi_over_2(dtype):
    # A spike after a long quiet stretch: with b1 = 0.5 and b2 = 0.999, after 300 steps
    # m_hat / sqrt(v_hat) ~ 0.5 / sqrt(0.001 / (1 - 0.999**300)) ~ 8: an Adam step of
    # ~8 units. atan2 keeps it below a * pi / 2.
    a, b1 = 1.27, 0.5
    grads = {
        k: np.concatenate([q, s])
        for (k, q), s in zip(_const(1e-6, 300).items(), _const(1.0, 1).values(), strict=True)
    }
    got, _ = _run(scale_by_adam_atan2(b1, a=a), grads, dtype=dtype)
    peak = max(float(np.max(np.abs(_f32(got[k])))) for k in SHAPES)
    assert peak <= a * math.pi / 2
    assert peak > a * math.pi / 4 * 1.2  # larger than the unit step: the bound is what holds it
    if dtype == jnp.bfloat16:
        return
    adam, _ = _run(optax.scale_by_adam(b1), grads)
    assert float(np.max(np.abs(_f32(adam["w"][-1])))) > a * math.pi / 2  # Adam is not bounded


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_finite_and_zero_for_zero_gradients(dtype):
    got, state = _default(dtype)(_const(0.0, STEPS))
    for k in SHAPES:
        assert got[k].dtype == dtype
        assert np.all(_f32(got[k]) == 0)
    assert all(np.all(np.isfinite(_f32(x))) for x in jax.tree.leaves(state))


def test_close_to_adam_without_eps_when_ratio_is_small():
    # For |m_hat| << b sqrt(v_hat), atan2(m, b s) ~ m / (b s): with a = b = 1000 the
    # update is (a/b) m_hat/sqrt(v_hat), Adam with eps = 0, to about 1e-6 relative.
    grads = _grads(2, 20, zeros=0.0)  # Adam with eps = 0 is 0/0 at a zero gradient
    got, _ = _run(scale_by_adam_atan2(a=1000.0, b=1000.0), grads)
    adam, _ = _run(optax.scale_by_adam(eps=0.0), grads)
    for k in SHAPES:
        np.testing.assert_allclose(_f32(got[k]), _f32(adam[k]), rtol=1e-4, atol=1e-6)


def test_state_has_adams_bytes_and_respects_mu_dtype():
    params = {k: jnp.zeros(s) for k, s in SHAPES.items()}

    def nbytes(state):
        return sum(x.nbytes for x in jax.tree.leaves(state))

    assert nbytes(scale_by_adam_atan2().init(params)) == nbytes(optax.scale_by_adam().init(params))
    _, state = _run(scale_by_adam_atan2(mu_dtype=jnp.bfloat16), _const(1.0, 2))
    assert {x.dtype for x in jax.tree.leaves(state.mu)} == {jnp.dtype(jnp.bfloat16)}
    assert {x.dtype for x in jax.tree.leaves(state.nu)} == {jnp.dtype(jnp.float32)}


def test_adam_atan2_is_scale_decay_then_learning_rate():
    rng = np.random.default_rng(3)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SHAPES.items()}
    grads = _grads(4, 10)
    lr, wd = 0.03, 0.1
    core, _ = _run(scale_by_adam_atan2(), grads, params=params)
    full, _ = _run(adam_atan2(lr, weight_decay=wd), grads, params=params)
    for k in SHAPES:
        want = -lr * (_f32(core[k]) + wd * _f32(params[k]))
        np.testing.assert_allclose(_f32(full[k]), want, rtol=1e-6, atol=1e-7)


def test_adam_atan2_with_inject_hyperparams_and_schedule():
    params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
    grads = {k: jnp.asarray(g[0]) for k, g in _grads(5, 1).items()}
    opt = optax.inject_hyperparams(adam_atan2)(learning_rate=0.1)
    state = opt.init(params)
    step = jax.jit(opt.update)
    u1, _ = step(grads, state, params)
    state.hyperparams["learning_rate"] = jnp.asarray(0.01)
    u2, _ = step(grads, state, params)
    np.testing.assert_allclose(_f32(u2["w"]), 0.1 * _f32(u1["w"]), rtol=1e-5)

    # A schedule: a constant gradient gives one unit step times the schedule.
    schedule = optax.linear_schedule(1.0, 0.0, transition_steps=4)
    got, _ = _run(adam_atan2(schedule), _const(1.0, 4))
    unit = 1.27 * math.pi / 4
    np.testing.assert_allclose(
        _f32(got["b"][:, 0]), [-unit * s for s in (1, 0.75, 0.5, 0.25)], rtol=1e-5
    )


def _mlp(in_size, out_size, width, depth, seed=0):
    """An `eqx.nn.MLP` with random weights, without its (slow on CPU) eager initialiser."""
    shapes = eqx.filter_eval_shape(
        eqx.nn.MLP, in_size, out_size, width, depth, key=jax.random.key(0)
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: (
            jnp.asarray(rng.normal(size=s.shape) / np.sqrt(max(s.shape[-1], 1)), s.dtype)
            if isinstance(s, jax.ShapeDtypeStruct)
            else s
        ),
        shapes,
    )


def test_equinox_model_with_none_leaves_under_filter_jit():
    model = _mlp(3, 2, 8, 2)
    assert None in jax.tree.leaves(eqx.filter(model, eqx.is_array), is_leaf=lambda x: x is None)
    opt = adam_atan2(1e-2, weight_decay=1e-3)
    state = eqx.filter_jit(opt.init)(eqx.filter(model, eqx.is_array))
    x = jnp.ones((4, 3))

    @eqx.filter_jit
    def step(model, state):
        loss, grads = eqx.filter_value_and_grad(lambda m: jnp.mean(jax.vmap(m)(x) ** 2))(model)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, loss

    losses = []
    for _ in range(20):
        model, state, loss = step(model, state)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    assert all(np.isfinite(losses))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"b1": 1.0}, r"b1=1.0 is not a valid decay rate"),
        ({"b2": -0.1}, r"b2=-0.1 is not a valid decay rate"),
        ({"a": 0.0}, r"a=0.0 must be a finite number > 0"),
        ({"b": float("inf")}, r"b=inf must be a finite number > 0"),
    ],
)
def test_rejects_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        scale_by_adam_atan2(**kwargs)


# Gradient magnitudes over the whole float32 range: 1e-30 .. 3e38, both signs, zeros.
_MAGNITUDES = np.concatenate([10.0 ** np.linspace(-30, 38, 137), [3e38, 3.4e38]])
_SPIKE = np.concatenate([_MAGNITUDES, -_MAGNITUDES, [0.0, -0.0]]).astype(np.float32)


def _steps_of(tx, grads, dtype):
    """Updates of a jitted scan over `grads` (steps, n) for one leaf, and the final state."""

    @jax.jit
    def run(grads):
        params = jnp.zeros(grads.shape[1:], dtype)

        def step(state, g):
            updates, state = tx.update(g, state, params)
            return state, updates

        state, updates = jax.lax.scan(step, tx.init(params), grads)
        return updates, state

    updates, state = run(jnp.asarray(np.asarray(grads).astype(dtype)))
    return _f32(updates).astype(np.float64), state


def test_fused_atan2_limits_at_overflow_and_over_the_moments_range():
    # Every pair Adam's moments can hold: |m_hat| up to 2^64 ~ 1.8e19 (beyond it g^2,
    # and so v, has overflowed) against any finite v up to 3.4e38, and v = inf.
    inf, big = np.inf, np.finfo(np.float32).max
    rng = np.random.default_rng(7)
    y = rng.choice([-1, 1], 4000) * 10.0 ** rng.uniform(-30, 19.25, 4000)
    w = 10.0 ** rng.uniform(-37, np.log10(big), 4000)
    y, w = np.append(y, [1.8e19, -1.8e19, 1.0]), np.append(w, [big, 1.0, big])
    got = np.asarray(jax.jit(_atan2_sqrt)(_f32(y), _f32(w))).astype(np.float64)
    want = np.arctan2(_f32(y).astype(np.float64), np.sqrt(_f32(w).astype(np.float64)))
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-7)  # no NaN among them

    # Limits: w = inf gives 0 with y's sign, for every y up to +-inf (see the
    # docstring); NaN stays NaN.
    y = _f32([1.0, -3e38, 0.0, -0.0, inf, -inf, 1e-30, 1e25, np.nan, 1.0])
    w = _f32([inf, inf, inf, inf, inf, inf, inf, inf, 1.0, np.nan])
    got = np.asarray(jax.jit(_atan2_sqrt)(y, w))
    want = _f32([0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0, 0.0, np.nan, np.nan])
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got[:8]), np.signbit(want[:8]))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_never_nan_from_finite_gradients_from_1e_minus_30_to_3e38(dtype):
    # Each element: 3 ordinary steps, one gradient of magnitude 1e-30 .. 3.4e38 (either
    # sign, or zero), then 3 ordinary steps again. Every update is finite and bounded;
    # where the float32 moments hold the true values, it is the float64 Adam-atan2;
    # where g^2 overflows, the element's update is the limit 0 from then on.
    a, n = 1.27, len(_SPIKE)
    ordinary = np.random.default_rng(8).normal(size=(3, n)).astype(np.float32)
    grads = np.concatenate([ordinary, _SPIKE[None], ordinary])
    got, state = _steps_of(scale_by_adam_atan2(a=a), grads, dtype)
    assert np.all(np.isfinite(got)), "NaN or inf update from a finite gradient"
    assert np.all(np.abs(got) <= a * math.pi / 2)
    assert all(np.all(~np.isnan(_f32(x))) for x in jax.tree.leaves(state))

    g = np.asarray(grads.astype(dtype)).astype(np.float64)  # what the optimizer saw
    want = _numpy_atan2({"g": g}, 0.9, 0.999, a, 1.0)["g"]
    tol = 1e-5 if dtype == jnp.float32 else 3e-2  # bf16 moments round to 8 bits
    overflowed = np.abs(g[3]) > 2e19  # (1 - b2) g^2 > 3.4e38
    assert overflowed.sum() >= 2 * 38  # 1e20 .. 3.4e38, both signs
    np.testing.assert_allclose(got[:, ~overflowed], want[:, ~overflowed], rtol=tol, atol=tol)
    np.testing.assert_array_equal(got[3:, overflowed], 0.0)  # the spike step and after
    np.testing.assert_allclose(got[:3], want[:3], rtol=tol, atol=tol)  # before: unaffected

    # The same magnitudes as the very first gradient: a consistent step, a * pi / 4,
    # where (1 - b2) g^2 is a normal float32; 0 where it overflows; the other limit,
    # a * pi / 2, where it underflows to 0 (g below ~1e-17); the gradient's sign.
    first, _ = _steps_of(scale_by_adam_atan2(a=a), _SPIKE[None], dtype)
    g = np.abs(np.asarray(_SPIKE.astype(dtype)).astype(np.float64))
    assert np.all(np.isfinite(first)) and np.all(np.abs(first) <= a * math.pi / 2)
    np.testing.assert_array_equal(np.signbit(first[0]), np.signbit(_SPIKE))
    held = (g > 1e-17) & (g < 1e19)
    np.testing.assert_allclose(np.abs(first[0, held]), a * math.pi / 4, rtol=tol)
    np.testing.assert_array_equal(first[0, g > 2e19], 0.0)
    np.testing.assert_allclose(np.abs(first[0, (g > 0) & (g < 1e-23)]), a * math.pi / 2, rtol=tol)
    np.testing.assert_array_equal(first[0, g == 0], 0.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_inf_gradient_stops_the_element_and_nan_is_not_hidden(dtype):
    # Documented choice: an inf gradient overflows both moments and gives the limit 0
    # (not IEEE's atan2(inf, inf) = pi/4, a full step forever); the other elements are
    # untouched. A NaN gradient gives NaN: it is a bug upstream, not an overflow.
    grads = np.random.default_rng(9).normal(size=(6, 5)).astype(np.float32)
    base, _ = _steps_of(scale_by_adam_atan2(), grads, dtype)
    hit = grads.copy()
    hit[2, 0], hit[2, 1], hit[4, 2] = np.inf, -np.inf, np.nan
    got, _ = _steps_of(scale_by_adam_atan2(), hit, dtype)
    np.testing.assert_array_equal(got[2:, :2], 0.0)
    np.testing.assert_array_equal(got[:2], base[:2])
    np.testing.assert_array_equal(got[:, 3:], base[:, 3:])
    assert np.all(np.isnan(got[4:, 2])) and np.all(np.isfinite(got[:4, 2]))
