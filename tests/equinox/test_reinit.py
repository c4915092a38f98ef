"""Re-initialisation: the requested statistics, determinism, purity."""

import functools
import math
import zlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramspec._equinox import (
    ReinitError,
    infer_leaves,
    leaf_key,
    multiply,
    reinit,
    unwrap,
)
from paramspec.models import mlp, transformer

KEY = jax.random.key(0)


def _std_by_role(info):
    return {"input": 1.0, "hidden": info.fan_in**-0.5, "output": 0.0, "vector": None}[info.role]


def test_std_matches_the_request_on_a_256_by_256_matrix():
    lin = eqx.filter_eval_shape(eqx.nn.Linear, 256, 256, key=KEY)  # shapes suffice
    for std in (0.02, 1.0, 3.0):
        out = reinit(lin, jax.random.key(1), lambda info, std=std: std)
        assert abs(float(jnp.std(out.weight)) / std - 1) < 0.05
        assert abs(float(jnp.mean(out.weight))) < 0.05 * std
        # Normal, not uniform: about 4.6% of N(0, 1) lies beyond 2 std.
        tail = float(jnp.mean(jnp.abs(out.weight) > 2 * std))
        assert 0.040 < tail < 0.052


def test_zero_std_gives_zeros_and_none_keeps_the_module_values():
    model = transformer(32, KEY, depth=1, head_dim=8)
    infos = infer_leaves(functools.partial(transformer, depth=1, head_dim=8), 32, 64)
    out = reinit(model, jax.random.key(1), _std_by_role, leaves=infos)
    assert not jnp.any(out.readout.weight)  # output: std 0
    assert jnp.array_equal(out.final_norm.weight, jnp.ones(32))  # vector: None, kept
    assert out.blocks[0].attn_norm.weight is model.blocks[0].attn_norm.weight
    up = out.blocks[0].up.weight
    assert abs(float(jnp.std(up)) * math.sqrt(32) - 1) < 0.05
    assert not jnp.array_equal(up, model.blocks[0].up.weight)


def test_same_key_same_model_other_key_other_model():
    model = mlp(16, KEY, use_bias=True)
    a = reinit(model, jax.random.key(1), lambda info: 0.5)
    b = reinit(model, jax.random.key(1), lambda info: 0.5)
    c = reinit(model, jax.random.key(2), lambda info: 0.5)
    assert eqx.tree_equal(a, b)
    assert not jnp.array_equal(a.embed.weight, c.embed.weight)
    # Different leaves of the same shape get different draws.
    assert not jnp.array_equal(a.hidden[0].weight, a.hidden[1].weight)
    assert a.embed.weight.sharding == model.embed.weight.sharding


def test_each_leaf_is_drawn_from_fold_in_of_its_path():
    model = mlp(16, KEY)
    out = reinit(model, jax.random.key(3), lambda info: 0.25)
    key = jax.random.fold_in(jax.random.key(3), zlib.crc32(b"hidden[1].weight"))
    assert leaf_key(jax.random.key(3), "hidden[1].weight") == key
    expected = 0.25 * jax.random.normal(key, (16, 16))
    assert jnp.array_equal(out.hidden[1].weight, expected)


def test_adding_a_layer_does_not_reshuffle_the_others():
    shallow = reinit(mlp(16, KEY, depth=1), jax.random.key(1), lambda info: 1.0)
    deep = reinit(mlp(16, KEY, depth=3), jax.random.key(1), lambda info: 1.0)
    assert jnp.array_equal(shallow.embed.weight, deep.embed.weight)
    assert jnp.array_equal(shallow.hidden[0].weight, deep.hidden[0].weight)
    assert jnp.array_equal(shallow.readout.weight, deep.readout.weight)


def test_input_model_is_unchanged():
    model = mlp(16, KEY, use_bias=True)
    before = jax.tree.map(np.asarray, model)
    reinit(model, jax.random.key(1), lambda info: 3.0)
    assert eqx.tree_equal(jax.tree.map(np.asarray, model), before)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_dtype_is_kept(dtype):
    lin = eqx.filter_eval_shape(eqx.nn.Linear, 64, 64, dtype=dtype, key=KEY)
    out = reinit(lin, jax.random.key(1), lambda info: 0.1)
    assert out.weight.dtype == dtype and out.bias.dtype == dtype
    assert abs(float(jnp.std(out.weight.astype(jnp.float32))) / 0.1 - 1) < 0.1


def test_reinit_of_a_multiplied_model_redraws_the_stored_leaves():
    model = multiply(mlp(16, KEY), lambda info: 2.0)
    out = reinit(model, jax.random.key(1), lambda info: 0.5)
    assert eqx.tree_equal(unwrap(out), reinit(mlp(16, KEY), jax.random.key(1), lambda i: 0.5))
    assert out.embed.multipliers == (("weight", 2.0),)


@pytest.mark.parametrize(("std", "match"), [(-1.0, ">= 0, got -1.0"), (math.nan, "got nan")])
def test_invalid_std_is_an_error(std, match):
    with pytest.raises(ReinitError, match=match):
        reinit(mlp(16, KEY), KEY, lambda info: std)


def test_sp_at_base_width_reproduces_equinox_default_init_in_distribution():
    # Equinox's default Linear init is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight
    # and for the bias (with the *layer's* fan_in), so its std is 1/sqrt(3 fan_in), not
    # 1/sqrt(fan_in). Embeddings are N(0, 1). Read those off real Equinox draws.
    fan_in = 256
    lin = eqx.nn.Linear(fan_in, 512, key=jax.random.key(5))
    emb = eqx.nn.Embedding(512, 256, key=jax.random.key(6))
    eqx_std = float(jnp.std(lin.weight))
    assert abs(eqx_std * math.sqrt(3 * fan_in) - 1) < 0.05
    assert abs(float(jnp.std(lin.bias)) * math.sqrt(3 * fan_in) - 1) < 0.1
    assert float(jnp.max(jnp.abs(lin.weight))) <= 1 / math.sqrt(fan_in)

    # SP's hidden/output init std c * fan_in^(-1/2) matches Equinox with c = 1/sqrt(3);
    # with c = 1 it is sqrt(3) times wider.
    sp = reinit(lin, jax.random.key(1), lambda info: (3 * info.fan_in) ** -0.5)
    assert abs(float(jnp.std(sp.weight)) / eqx_std - 1) < 0.05
    plain = reinit(lin, jax.random.key(1), lambda info: info.fan_in**-0.5)
    assert abs(float(jnp.std(plain.weight)) / eqx_std / math.sqrt(3) - 1) < 0.05

    # SP's input init (std 1) is Equinox's embedding init, distribution and all:
    # a two-sample Kolmogorov-Smirnov distance far below its 1% critical value.
    sp_emb = reinit(emb, jax.random.key(2), lambda info: 1.0)
    a = np.sort(np.asarray(emb.weight).ravel())
    b = np.sort(np.asarray(sp_emb.weight).ravel())
    grid = np.linspace(-3, 3, 601)
    ks = np.max(np.abs(np.searchsorted(a, grid) - np.searchsorted(b, grid))) / a.size
    assert ks < 1.63 * math.sqrt(2 / a.size)
