"""Adafactor's parameter-scale floor, per leaf and scaled like the leaf's init std.

Optax's Adafactor multiplies each update by `max(RMS(w), 1e-3)`. A constant floor
bends the width exponent of a layer whose weights are smaller than it; the compiled
optimizer scales the floor like each leaf's init std (Optax's 1e-3 at the base width).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramspec as ps
from paramspec import models
from paramspec._equinox._build import per_leaf_values
from paramspec._optax._chain import build_optimizer

# muP with the hidden layer's scale moved from its init into its multiplier: the same
# effective weights W = m w at init, and for Adafactor (whose step is relative to the
# stored weight's RMS) the same training, the theta-shift symmetry with c' = c. Its
# stored hidden std, n^(-3/2), is 6.9e-4 at width 128: below Optax's floor of 1e-3.
TINY = """spec tiny
extends mup
optimizer adafactor

hidden {
    multiplier  n
    init        n^(-3/2)
}
"""
WIDTH = 128


def _train(spec, steps=2):
    c = ps.compile(spec, width=WIDTH, optimizer="adafactor")
    model = c.init(functools.partial(models.mlp, depth=1), jax.random.key(0))
    opt = c.optimizer(model, learning_rate=1e-2)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    x = jax.random.normal(jax.random.key(1), (8, 16), dtype=jnp.float64)
    y = jax.random.normal(jax.random.key(2), (8, 8), dtype=jnp.float64)
    @eqx.filter_jit
    def step(model, state):
        grads = eqx.filter_grad(lambda m: jnp.mean(jax.vmap(m)(x) * y))(model)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state

    outputs = [jax.vmap(model)(x)]
    for _ in range(steps):
        model, state = step(model, state)
        outputs.append(jax.vmap(model)(x))
    return c, model, np.stack([np.asarray(o) for o in outputs])


def test_a_layer_below_optax_floor_trains_like_its_theta_shifted_twin(tmp_path):
    path = tmp_path / "tiny.pspec"
    path.write_text(TINY)
    with jax.enable_x64(True):
        _, _, want = _train("mup")
        c, model, got = _train(str(path))
    assert not np.allclose(want[0], want[-1]), "the model did not train"
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    std = c.init_std("hidden")
    assert std is not None and std < 1e-3  # the case Optax's constant floor gets wrong
    values = jax.tree.leaves(
        per_leaf_values(c, model), is_leaf=lambda v: isinstance(v, dict) and "floor" in v
    )
    # n^(-b): embedding and readout init n^(-1/2), hidden n^(-3/2) (n = width here).
    assert sorted(v["floor"] for v in values) == pytest.approx([WIDTH**-1.5] + [WIDTH**-0.5] * 2)


def test_per_leaf_floor_matches_optax_per_leaf_and_optax_default():
    rng = np.random.default_rng(0)
    params = {
        k: jnp.asarray(rng.normal(size=(4, 3)) * s, jnp.float32)
        for k, s in (("small", 1e-5), ("mid", 1e-3), ("big", 1.0))
    }
    grads = {k: jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for k in params}
    floors = {"small": 1e-6, "mid": 0.5, "big": 1e-3}
    common = {"learning_rate": 0.1, "lr_scale": 1.0, "eps": 1e-15, "weight_decay": 0.0}
    got, _ = build_optimizer("adafactor", param_scale_floor=floors, **common).update(
        grads, build_optimizer("adafactor", **common).init(params), params
    )

    def by_hand(floor):  # optax.adafactor's chain with `min_scale=floor`
        return optax.chain(
            optax.scale_by_factored_rms(epsilon=1e-30),
            optax.clip_by_block_rms(1.0),
            optax.scale_by_param_block_rms(floor),
            optax.scale_by_learning_rate(0.1),
        )

    for k, floor in floors.items():
        want, _ = by_hand(floor).update(grads[k], by_hand(floor).init(params[k]), params[k])
        np.testing.assert_array_equal(got[k], want, err_msg=k)
    # The default is Optax's own Adafactor, floor 1e-3 for every leaf.
    default, _ = build_optimizer("adafactor", **common).update(
        grads, build_optimizer("adafactor", **common).init(params), params
    )
    plain = optax.adafactor(0.1, eps=1e-30)
    want, _ = plain.update(grads, plain.init(params), params)
    for k in params:
        np.testing.assert_allclose(default[k], want[k], rtol=1e-6, err_msg=k)
    assert not np.allclose(got["small"], default["small"])  # the floor decides this leaf
