"""Property 3: optimizer invariants. Adam-atan2 is invariant to the gradients' scale and
bounded by a * pi / 2 for any gradients; a compiled chain equals the hand-written Optax
optimizer with the per-leaf learning rate and epsilon read off the compiled table (for
Muon: `optax.contrib.muon` on the hidden matrices, `optax.adam` on the rest)."""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import paramspec as ps
from paramspec import models
from paramspec._equinox._multiply import block_labels
from paramspec._equinox._roles import leaf_paths
from paramspec._optax import scale_by_adam_atan2

from ..strategies import examples, stable_specs

# Random specs (fixed learning rates among them) may be unstable for their optimizer:
# that is expected here, not a reason to warn.
pytestmark = [pytest.mark.property,
              pytest.mark.filterwarnings("ignore::paramspec.UnstableSpecWarning")]

floats = st.floats(-1e6, 1e6, allow_nan=False, width=32)
gradient_steps = st.lists(st.lists(floats, min_size=4, max_size=4), min_size=1, max_size=3)


def run(transform, grads):
    params = jnp.zeros(4)
    state = transform.init(params)
    out = []
    for g in grads:
        u, state = transform.update(jnp.asarray(g, dtype=jnp.float32), state, params)
        out.append(np.asarray(u))
    return np.stack(out)


@settings(max_examples=examples(25))
@given(
    grads=gradient_steps,
    scale=st.sampled_from([1e-6, 1e-3, 0.5, 7.0, 1e4]),
    a=st.sampled_from([1.0, 1.27]),
    b=st.sampled_from([1.0, 2.0]),
)
def test_adam_atan2_is_scale_invariant_and_bounded(grads, scale, a, b):
    transform = scale_by_adam_atan2(a=a, b=b)
    base = run(transform, grads)
    scaled = run(transform, [[scale * g for g in step] for step in grads])
    assert np.all(np.isfinite(base))
    assert np.all(np.abs(base) <= a * math.pi / 2 + 1e-6)
    np.testing.assert_allclose(scaled, base, rtol=1e-4, atol=1e-5)


def hand_written(c, model, optimizer, lr, eps):
    """The same optimizer, one plain Optax transform per leaf (optax.multi_transform)."""
    params = eqx.filter(model, eqx.is_inexact_array)
    leaves = jax.tree_util.tree_leaves(params)
    paths, labels = leaf_paths(params), block_labels(model)
    assert len(paths) == len(leaves)
    transforms = {}
    for i, path in enumerate(paths):
        block = labels[path]
        rate = lr * c.value(block, "lr")
        if optimizer == "adam":
            transforms[str(i)] = optax.adam(rate, eps=eps * c.value(block, "eps"))
        elif optimizer == "sgd":
            transforms[str(i)] = optax.sgd(rate, momentum=0.9)
        else:
            transforms[str(i)] = optax.chain(
                scale_by_adam_atan2(), optax.scale_by_learning_rate(rate)
            )
    # on the flat list of leaves: plain Optax, no Equinox tree in the way
    return optax.multi_transform(transforms, [str(i) for i in range(len(leaves))])


@settings(max_examples=examples(6))
@given(
    spec=stable_specs(),
    optimizer=st.sampled_from(["adam", "sgd", "adam_atan2"]),
    seed=st.integers(0, 2**16),
)
def test_compiled_chain_equals_hand_written_optax(spec, optimizer, seed):
    note(f"optimizer {optimizer}\n{ps.render(spec)}")
    c = ps.compile(spec, width=32, base_width=8, optimizer=optimizer)
    model = c.init(functools.partial(models.mlp, depth=1), jax.random.key(seed))
    lr, eps = 1e-2, 1e-3  # eps large enough that a wrong per-leaf eps shows
    ours = c.optimizer(model, learning_rate=lr, eps=eps)
    theirs = hand_written(c, model, optimizer, lr, eps)
    params = eqx.filter(model, eqx.is_inexact_array)
    flat = jax.tree_util.tree_leaves(params)
    s1, s2 = ours.init(params), theirs.init(flat)
    for step in range(3):
        key = jax.random.fold_in(jax.random.key(seed), step)
        grads = jax.tree_util.tree_map(
            lambda p, k=key, s=10.0 ** (step - 1): jax.random.normal(k, p.shape, p.dtype) * s,
            params,
        )
        u1, s1 = ours.update(grads, s1, params)
        u2, s2 = theirs.update(jax.tree_util.tree_leaves(grads), s2, flat)
        for x, y in zip(jax.tree_util.tree_leaves(u1), jax.tree_util.tree_leaves(u2), strict=True):
            np.testing.assert_allclose(
                x, y, rtol=2e-5, atol=1e-9, err_msg=f"{optimizer}\n{ps.render(spec)}"
            )


def hand_written_muon(c, model, lr, eps, scale):
    """Muon's leaves: `optax.contrib.muon` itself, one per leaf (its learning rate the
    compiled per-leaf one); every other leaf `optax.adam`. Each runs on its own leaf."""
    from optax.contrib import MuonDimensionNumbers, muon

    params = eqx.filter(model, eqx.is_inexact_array)
    paths, labels = leaf_paths(params), block_labels(model)
    txs = []
    for path, leaf in zip(paths, jax.tree_util.tree_leaves(params), strict=True):
        block = labels[path]
        rate, e = lr * c.value(block, "lr"), eps * c.value(block, "eps")
        if c.block(block).role == "hidden" and leaf.ndim == 2:
            # eqx.nn.Linear's weight is (out, in): reduce over axis 1, output axis 0
            dims = MuonDimensionNumbers(reduction_axis=1, output_axis=0)
            fan_out, fan_in = leaf.shape
            jordan = math.sqrt(max(1.0, fan_out / fan_in))
            if scale == "jordan":  # optax's own width scaling
                txs.append(muon(rate, eps=e, muon_weight_dimension_numbers=[dims]))
            elif scale == "spectral":  # the same, times sqrt(fan_out/fan_in) / optax's factor
                rate *= math.sqrt(fan_out / fan_in) / jordan
                txs.append(muon(rate, eps=e, muon_weight_dimension_numbers=[dims]))
            else:  # moonlight: optax's consistent_rms=0.2, at the base width
                txs.append(muon(rate * c.n**-0.5, eps=e, muon_weight_dimension_numbers=[dims],
                                consistent_rms=0.2))
        else:
            txs.append(optax.adam(rate, eps=e))
    return txs


@settings(max_examples=examples(2))
@given(
    spec=stable_specs(),
    scale=st.sampled_from(["spectral", "jordan", "moonlight"]),
    seed=st.integers(0, 2**16),
)
def test_compiled_muon_chain_equals_optax_contrib_muon_plus_adam(spec, scale, seed):
    note(f"muon_scale {scale}\n{ps.render(spec)}")
    c = ps.compile(spec, width=32, base_width=8, optimizer="muon")
    model = c.init(functools.partial(models.mlp, depth=1), jax.random.key(seed))
    lr, eps = 1e-2, 1e-3  # eps large enough that a wrong per-leaf eps shows
    ours = c.optimizer(model, learning_rate=lr, eps=eps, muon_scale=scale)
    theirs = hand_written_muon(c, model, lr, eps, scale)
    params = eqx.filter(model, eqx.is_inexact_array)
    flat = jax.tree_util.tree_leaves(params)
    assert any(isinstance(t, optax.GradientTransformation) for t in theirs)
    s1 = ours.init(params)
    s2 = [tx.init([p]) for tx, p in zip(theirs, flat, strict=True)]
    # eagerly: at width 32 one jit per leaf and example costs more than the steps
    step1, step2 = ours.update, [tx.update for tx in theirs]
    for step in range(3):
        key = jax.random.fold_in(jax.random.key(seed), step)
        grads = jax.tree_util.tree_map(
            lambda p, k=key, s=10.0 ** (step - 1): jax.random.normal(k, p.shape, p.dtype) * s,
            params,
        )
        u1, s1 = step1(grads, s1, params)
        u2 = []
        for i, (g, p) in enumerate(zip(jax.tree_util.tree_leaves(grads), flat, strict=True)):
            u, s2[i] = step2[i]([g], s2[i], [p])
            u2.append(u[0])
        for x, y in zip(jax.tree_util.tree_leaves(u1), u2, strict=True):
            np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-9,
                                       err_msg=f"muon/{scale}\n{ps.render(spec)}")
    assert "muon" in s1["core"], "no leaf took Muon"
