"""Property: the base-width principle. At `width == base_width` every built-in spec is
`sp`'s model, initialised and trained exactly as `sp` does it, constants included: the
same outputs at init and the same parameters after 5 steps, for adam, adam_atan2, sgd
and adafactor, on the reference MLP, a token-embedding model and a user's CNN
(`tests/usermodels/cnn.py`).

Every width factor of a built-in is written relative to the base width (`n = 1`
there) on top of sp's `fan_in^(-1/2)` init, so the multipliers, init stds and the
learning-rate, epsilon and weight-decay factors all equal sp's at the base width
(reference/theory.md §3's symmetry, applied to the constants)."""

from __future__ import annotations

import functools
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import paramspec as ps
from paramspec import models

from ..strategies import examples
from ..usermodels import cnn

pytestmark = pytest.mark.property

OPTIMIZERS = ("adam", "adam_atan2", "sgd", "adafactor")
SPECS = tuple(name for name in ps.builtin_names() if name != "sp")


class TokenModel(eqx.Module):
    """Token embedding (fan-in 1) -> LayerNorm -> hidden -> readout, one token per
    example: the transformer's roles without attention's compile time."""

    embed: eqx.nn.Embedding
    norm: eqx.nn.LayerNorm
    hidden: eqx.nn.Linear
    readout: eqx.nn.Linear

    def __call__(self, token):
        return self.readout(jax.nn.relu(self.hidden(self.norm(self.embed(token)))))


def token_model(width, key):
    k1, k2, k3 = jax.random.split(key, 3)
    return TokenModel(eqx.nn.Embedding(16, width, key=k1), eqx.nn.LayerNorm(width),
                      eqx.nn.Linear(width, width, key=k2), eqx.nn.Linear(width, 4, key=k3))


MODELS = {
    # dense input layer (fan-in 8), hidden, readout, biases (vector) and the readout's
    # bias (constant)
    "mlp": (functools.partial(models.mlp, in_size=8, out_size=4, depth=1, use_bias=True),
            lambda key: jax.random.normal(key, (4, 8))),
    # token embedding (fan-in 1), LayerNorm gain and bias (vector)
    "tokens": (token_model, lambda key: jax.random.randint(key, (4,), 0, 16)),
    # a user's model (tests/usermodels): Equinox's MNIST-style CNN, conv stem fan-in 16
    "cnn": (cnn.make_model, lambda key: jax.random.uniform(key, (2, 1, 16, 16))),
}


def _loss(model, x):
    return jnp.mean(jax.vmap(model)(x) ** 2)


# Jitted once per model structure: the specs' models at the base width share it (their
# labels and multipliers, static metadata, are the same), so the forward and backward
# pass compile once per case instead of being traced eagerly for every spec. Not for
# the CNN: its `lambda` layer is a new static object at every build (a recompile per spec).
_JIT_GRAD = eqx.filter_jit(eqx.filter_grad(_loss))
_EAGER_GRAD = eqx.filter_grad(_loss)


def train(spec: str, optimizer: str, model_name: str, width: int, seed: int, steps: int = 5):
    make, data = MODELS[model_name]
    with warnings.catch_warnings():
        # A fixed-lr spec (sp-perlayer) compiled for another optimizer may be unstable
        # there; it is the base-width numbers that are under test here.
        warnings.simplefilter("ignore", ps.UnstableSpecWarning)
        c = ps.compile(spec, width=width, base_width=width, optimizer=optimizer)
    model = c.init(make, jax.random.key(seed))
    # eps and weight decay not negligible, so their factors are under test too
    opt = c.optimizer(model, learning_rate=1e-2, eps=1e-3, weight_decay=0.1)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    x = data(jax.random.key(seed + 1))
    out0 = np.asarray(jax.vmap(model)(x))
    for _ in range(steps):
        grads = (_EAGER_GRAD if model_name == "cnn" else _JIT_GRAD)(model, x)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        model = eqx.apply_updates(model, updates)
    params = [np.asarray(p) for p in jax.tree_util.tree_leaves(
        eqx.filter(model, eqx.is_inexact_array))]
    return out0, params


# Every optimizer on one model each under the ci profile (each case's cost is mostly
# compiling its model and optimizer once); every pair under `thorough`.
CASES = [(o, m) for o in OPTIMIZERS for m in sorted(MODELS)] if examples(1) > 1 else [
    ("adam", "cnn"), ("adam_atan2", "tokens"), ("sgd", "mlp"), ("adafactor", "mlp")]


@pytest.mark.parametrize(("optimizer", "model_name"), CASES)
@settings(max_examples=examples(1))
@given(width=st.sampled_from([8, 16]), seed=st.integers(0, 2**16))
def test_every_builtin_is_sp_at_the_base_width(optimizer, model_name, width, seed):
    note(f"{optimizer}, {model_name}, width = base_width = {width}, seed {seed}")
    ref_out, ref_params = train("sp", optimizer, model_name, width, seed)
    _, start = train("sp", optimizer, model_name, width, seed, steps=0)
    assert any(not np.allclose(a, b) for a, b in zip(start, ref_params, strict=True)), (
        "sp did not train")
    for spec in SPECS:
        out, params = train(spec, optimizer, model_name, width, seed)
        np.testing.assert_allclose(out, ref_out, rtol=1e-6, atol=1e-7,
                                   err_msg=f"{spec} at init, {optimizer}")
        assert len(params) == len(ref_params)
        for a, b in zip(params, ref_params, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{spec} after 5 steps, {optimizer}")
