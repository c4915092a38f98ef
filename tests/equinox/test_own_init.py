"""`init_from="model"`: the model's own init at the base width, scaled by the spec from
there. The example is GPT-2's: every matrix N(0, 0.02^2), residual projections
N(0, (0.02 / sqrt(2L))^2), biases zero, LayerNorm gains one."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import paramspec as ps
from paramspec._equinox._own_init import own_rms, parameter_arrays

VOCAB, SEQ, DEPTH = 32, 8, 2
BASE = 16


class Block(eqx.Module):
    ln: eqx.nn.LayerNorm
    c_fc: eqx.nn.Linear
    c_proj: eqx.nn.Linear

    def __call__(self, x):
        return x + self.c_proj(jax.nn.gelu(self.c_fc(self.ln(x))))


class TinyGPT2(eqx.Module):
    wte: eqx.nn.Embedding
    wpe: eqx.nn.Embedding
    blocks: tuple[Block, ...]
    ln_f: eqx.nn.LayerNorm
    lm_head: eqx.nn.Linear

    def __call__(self, tokens):
        x = jax.vmap(self.wte)(tokens) + jax.vmap(self.wpe)(jnp.arange(tokens.shape[0]))
        for block in self.blocks:
            x = jax.vmap(block)(x)
        return jax.vmap(self.lm_head)(jax.vmap(self.ln_f)(x))


def _structure(width):
    key = jax.random.key(0)
    return TinyGPT2(
        wte=eqx.nn.Embedding(VOCAB, width, key=key),
        wpe=eqx.nn.Embedding(SEQ, width, key=key),
        blocks=tuple(Block(ln=eqx.nn.LayerNorm(width),
                           c_fc=eqx.nn.Linear(width, 4 * width, key=key),
                           c_proj=eqx.nn.Linear(4 * width, width, key=key))
                     for _ in range(DEPTH)),
        ln_f=eqx.nn.LayerNorm(width),
        lm_head=eqx.nn.Linear(width, VOCAB, use_bias=False, key=key),
    )


@eqx.filter_jit  # one program per width (eagerly, every draw compiles per shape)
def gpt2(width, key):
    """GPT-2's init: N(0, 0.02^2) everywhere, 0.02 / sqrt(2L) on residual projections,
    zero biases, unit LayerNorm gains."""
    abstract = eqx.filter_eval_shape(_structure, width)
    paths, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    keys = jax.random.split(key, len(paths))

    def fill(path, leaf, k):
        name = jax.tree_util.keystr(path)
        if name.endswith(".bias"):
            return jnp.zeros(leaf.shape, leaf.dtype)
        if ".ln" in name:
            return jnp.ones(leaf.shape, leaf.dtype)
        std = 0.02 / math.sqrt(2 * DEPTH) if "c_proj" in name else 0.02
        return std * jax.random.normal(k, leaf.shape, leaf.dtype)

    return jax.tree_util.tree_unflatten(
        treedef, [fill(p, leaf, k) for (p, leaf), k in zip(paths, keys, strict=True)])


KEY = jax.random.key(3)
MODEL_KEY = jax.random.split(KEY)[0]  # the key c.init builds the model with
TOKENS = jnp.arange(SEQ) % VOCAB


@pytest.mark.parametrize("spec", ["mup", "sp"])
def test_at_the_base_width_the_model_is_its_own(spec):
    own = gpt2(BASE, MODEL_KEY)
    model = ps.compile(spec, width=BASE, base_width=BASE).init(gpt2, KEY, init_from="model")
    got = parameter_arrays(model)
    for path, value in parameter_arrays(own).items():
        np.testing.assert_array_equal(got[path], value, err_msg=path)
    np.testing.assert_array_equal(model(TOKENS), own(TOKENS))
    # GPT-2's two scales, as the model drew them
    assert own_rms(got["blocks[0].c_fc.weight"]) == pytest.approx(0.02, rel=0.05)
    assert own_rms(got["blocks[0].c_proj.weight"]) == pytest.approx(0.01, rel=0.05)


def test_away_from_the_base_width_each_parameter_is_scaled_by_the_spec():
    width = 2 * BASE
    c = ps.compile("mup", width=width, base_width=BASE)
    model = c.init(gpt2, KEY, init_from="model")
    got = parameter_arrays(model)
    base = parameter_arrays(gpt2(BASE, MODEL_KEY))
    # mup: hidden and readout init fan_in^(-1/2) (fan-in x2: std / sqrt 2), embedding
    # fan_in^(-1/2) * n^(-1/2) (fan-in 1, n = 2: std / sqrt 2); the own scale at the
    # base width times that ratio, per parameter
    for path in ("wte.weight", "wpe.weight", "blocks[0].c_fc.weight",
                 "blocks[1].c_proj.weight", "lm_head.weight"):
        assert own_rms(got[path]) == pytest.approx(own_rms(base[path]) / math.sqrt(2),
                                                   rel=1e-5), path
    # GPT-2's residual projections keep their own, smaller scale: 1/sqrt(2L) of c_fc's
    ratio = own_rms(got["blocks[0].c_proj.weight"]) / own_rms(got["blocks[0].c_fc.weight"])
    assert ratio == pytest.approx(1 / math.sqrt(2 * DEPTH), rel=0.1)
    # zero biases stay zero, LayerNorm gains (init keep) stay one
    assert not np.any(got["blocks[0].c_fc.bias"])
    np.testing.assert_array_equal(got["blocks[1].ln.weight"], np.ones(width))
    # sp keeps the embeddings' own 0.02 at every width (their init has no width factor)
    sp = parameter_arrays(ps.compile("sp", width=width, base_width=BASE).init(
        gpt2, KEY, init_from="model"))
    assert own_rms(sp["wte.weight"]) == pytest.approx(own_rms(base["wte.weight"]), rel=1e-5)


def test_apply_takes_the_base_model():
    width = 2 * BASE
    c = ps.compile("mup", width=width, base_width=BASE)
    via_init = parameter_arrays(c.init(gpt2, KEY, init_from="model"))
    model, base_model = gpt2(width, MODEL_KEY), gpt2(BASE, MODEL_KEY)
    roles = {"wte.weight": "input", "wpe.weight": "input", "lm_head.weight": "output",
             "blocks[*].c_*.weight": "hidden", "*.bias": "vector", "*ln*.weight": "vector"}
    via_apply = parameter_arrays(c.apply(model, KEY, roles=roles, init_from="model",
                                         base_model=base_model))
    for path, value in via_init.items():
        np.testing.assert_allclose(via_apply[path], value, rtol=1e-6, err_msg=path)
    with pytest.raises(ps.SpecError, match="needs the model's own init at the base width"):
        c.apply(model, KEY, roles=roles, init_from="model")
    with pytest.raises(ps.SpecError, match="unknown init_from"):
        c.init(gpt2, KEY, init_from="own")
