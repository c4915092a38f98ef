"""A muP transformer trained on a 2 x 4 (data x model) device mesh, checked end to end.

Run it with 8 devices; on a CPU-only machine simulate them (the flag must be set
before JAX starts):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
        python -P tests/sharding_worker.py

(`-P`: do not put `tests/` on the path, its `tests/equinox` package would shadow Equinox.)

It prints one JSON line with what it measured and fails with an AssertionError if
sharding changed anything. `docs/scaling-out.md` shows this file verbatim (a test
keeps the two identical).
"""

import json
import sys
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import paramspec as ps
from paramspec._equinox._build import per_leaf_values
from paramspec._equinox._multiply import block_labels
from paramspec.models import transformer

WIDTH, SEQ, BATCH, STEPS = 64, 16, 8, 5
TOL = {"rtol": 1e-4, "atol": 1e-4}  # float32; sharded matmuls reduce in another order, and 5 Adam steps amplify it where gradients are tiny

mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
replicated = NamedSharding(mesh, P())


def param_sharding(x):
    """Matrices split along the model axis where a dimension divides by 4; else replicated."""
    if x.ndim >= 2:
        for dim in (0, 1):  # Linear: (out, in); Embedding: (vocab, width)
            if x.shape[dim] % mesh.shape["model"] == 0:
                spec = [None] * x.ndim
                spec[dim] = "model"
                return NamedSharding(mesh, P(*spec))
    return replicated


def make_model(width, key):
    return transformer(width, key, seq_len=SEQ, depth=1)


c = ps.compile("mup", width=WIDTH, base_width=16)
model = c.init(make_model, jax.random.key(0))
opt = c.optimizer(model, learning_rate=1e-2, weight_decay=0.1)
tokens = jax.random.randint(jax.random.key(1), (BATCH, SEQ + 1), 0, 64)


def make_step(layout=None):
    """One jitted training step; `layout` (param and state shardings) pins its outputs,
    so XLA keeps the chosen layout instead of propagating its own."""

    @eqx.filter_jit
    def step(model, state, tokens):
        def loss(model):
            logits = jax.vmap(model)(tokens[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

        value, grads = eqx.filter_value_and_grad(loss)(model)
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, state = opt.update(grads, state, params)
        model = eqx.apply_updates(model, updates)
        if layout is not None:
            model = eqx.filter_shard(model, layout[0])
            state = jax.lax.with_sharding_constraint(state, layout[1])
        return model, state, value

    return step


def train(step, model, state, tokens, steps):
    losses = []
    for _ in range(steps):
        model, state, value = step(model, state, tokens)
        losses.append(float(value))
    return model, state, losses


def param_copies(state, params):
    """The subtrees of the optimizer state shaped like the parameters (Adam's mu and nu).

    Our own rather than `optax.tree_map_params`: that one calls `opt.init` on a single
    placeholder, which the compiled optimizer rejects (its per-leaf factors are checked
    against the parameter tree).
    """
    like = jax.tree.structure(params)
    return lambda x: jax.tree.structure(x) == like


def shard(model, state):
    """Parameters by `param_sharding`; every optimizer-state copy of the parameters
    exactly like its parameter; counters replicated."""
    params = eqx.filter(model, eqx.is_inexact_array)
    shardings = jax.tree.map(param_sharding, params)
    is_copy = param_copies(state, params)
    state_shardings = jax.tree.map(
        lambda x: shardings if is_copy(x) else replicated, state, is_leaf=is_copy
    )
    # `jax.device_put` on the arrays only: it would turn static fields (Dropout's
    # `inference` flag) into arrays. (`eqx.filter_shard` outside `jit` is a sharding
    # constraint, which refuses arrays already committed to one device.)
    dynamic, static = eqx.partition(model, eqx.is_inexact_array)
    model = eqx.combine(jax.device_put(dynamic, shardings), static)
    return model, jax.device_put(state, state_shardings), (shardings, state_shardings)


def check_state_like_params(model, state):
    """Each optimizer-state leaf that mirrors a parameter has the parameter's sharding."""
    params = eqx.filter(model, eqx.is_inexact_array)
    is_copy = param_copies(state, params)
    copies = [x for x in jax.tree.leaves(state, is_leaf=is_copy) if is_copy(x)]
    assert len(copies) >= 2, "Adam's mu and nu should both mirror the parameters"
    n = 0
    for copy in copies:
        for s, p in zip(jax.tree.leaves(copy), jax.tree.leaves(params), strict=True):
            assert s.shape == p.shape
            assert s.sharding.is_equivalent_to(p.sharding, p.ndim), (
                f"state {s.sharding} != param {p.sharding} for shape {p.shape}"
            )
            n += 1
    return n


def max_diff(a, b):
    pairs = zip(
        jax.tree.leaves(eqx.filter(a, eqx.is_inexact_array)),
        jax.tree.leaves(eqx.filter(b, eqx.is_inexact_array)),
        strict=True,
    )
    return max(float(jnp.max(jnp.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def assert_close(a, b):
    pairs = zip(
        jax.tree.leaves(eqx.filter(a, eqx.is_inexact_array)),
        jax.tree.leaves(eqx.filter(b, eqx.is_inexact_array)),
        strict=True,
    )
    for x, y in pairs:
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL)


assert len(jax.devices()) == 8, "set XLA_FLAGS=--xla_force_host_platform_device_count=8"
params0 = eqx.filter(model, eqx.is_inexact_array)

# 1. Reference: one device (JAX's default, devices()[0]), 5 + 3 steps.
step = make_step()
single, single_state, single_losses = train(step, model, opt.init(params0), tokens, STEPS)
single_more, _, single_more_losses = train(step, single, single_state, tokens, 3)

# 2. The same on the mesh: params and optimizer state sharded, batch split along data.
sharded, state, layout = shard(model, opt.init(params0))
shardings, sharded_step = layout[0], make_step(layout)
n_split = sum(s.spec != P() for s in jax.tree.leaves(shardings))
assert n_split > 0, "no parameter was split: the test would not test sharding"
check_state_like_params(sharded, state)
batch = jax.device_put(tokens, NamedSharding(mesh, P("data", None)))
sharded, state, losses = train(sharded_step, sharded, state, batch, STEPS)
mirrored = check_state_like_params(sharded, state)  # jit kept the layout
for p, s in zip(
    jax.tree.leaves(eqx.filter(sharded, eqx.is_inexact_array)),
    jax.tree.leaves(shardings),
    strict=True,
):
    assert p.sharding.is_equivalent_to(s, p.ndim), f"{p.shape}: {p.sharding} != {s}"
np.testing.assert_allclose(losses, single_losses, **TOL)
assert_close(sharded, single)
assert losses[-1] < losses[0], "training did not reduce the loss"

# 3. The parameterization survived: same multipliers and blocks (static tree), same
#    per-leaf lr / eps / wd factors.
assert jax.tree.structure(sharded) == jax.tree.structure(model)
assert block_labels(sharded) == block_labels(model)
assert per_leaf_values(c, sharded) == per_leaf_values(c, model)

# 4. Checkpoint round trip: save, restore into a fresh `c.init` skeleton, re-shard,
#    continue: the same result as never stopping.
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "ckpt.eqx"
    eqx.tree_serialise_leaves(path, (sharded, state))

    # The structure of a fresh model and state, traced without computing any values.
    def fresh(key):
        model = c.init(make_model, key)
        return model, opt.init(eqx.filter(model, eqx.is_inexact_array))

    skeleton = eqx.filter_eval_shape(fresh, jax.random.key(42))
    restored, restored_state = eqx.tree_deserialise_leaves(path, skeleton)
assert block_labels(restored) == block_labels(model)
assert max_diff(restored, sharded) == 0.0
restored, restored_state, _ = shard(restored, restored_state)
check_state_like_params(restored, restored_state)
restored, _, more_losses = train(sharded_step, restored, restored_state, batch, 3)
np.testing.assert_allclose(more_losses, single_more_losses, **TOL)
assert_close(restored, single_more)

json.dump(
    {
        "devices": len(jax.devices()),
        "mesh": dict(mesh.shape),
        "split_params": n_split,
        "params": len(jax.tree.leaves(shardings)),
        "mirrored_state_leaves": mirrored,
        "losses": losses,
        "max_diff_vs_single": max_diff(sharded, single),
        "max_diff_after_restore": max_diff(restored, single_more),
    },
    sys.stdout,
)
print()
