"""The public reference models."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from paramspec.models import MLP, ModelConfigError, Transformer, mlp, transformer

KEY = jax.random.key(0)


def _abstract(make, *args, **kwargs):
    # Shapes only: structure tests need no random draws (nothing to compile).
    return eqx.filter_eval_shape(make, *args, **kwargs)


def _call(model, *args):
    return model(*args)


def test_mlp_shapes_and_layers():
    model = _abstract(mlp, 32, KEY, in_size=5, out_size=3, depth=3)
    assert isinstance(model, MLP)
    assert model.embed.weight.shape == (32, 5)
    assert [layer.weight.shape for layer in model.hidden] == [(32, 32)] * 3
    assert model.readout.weight.shape == (3, 32)
    assert model.embed.bias is None and model.readout.bias is None  # no biases by default
    assert _abstract(lambda m, x: jax.vmap(m)(x), model, jnp.ones((4, 5))).shape == (4, 3)


def test_mlp_with_biases_and_no_hidden_layers():
    model = mlp(16, KEY, depth=0, use_bias=True)
    assert model.hidden == ()
    assert model.embed.bias.shape == (16,) and model.readout.bias.shape == (8,)
    x = jnp.linspace(-1, 1, 16)
    h = jax.nn.relu(model.embed.weight @ x + model.embed.bias)
    assert jnp.allclose(model(x), model.readout.weight @ h + model.readout.bias)


def test_mlp_activation_is_used():
    x = jnp.linspace(-1, 1, 16)
    relu = mlp(16, KEY)(x)
    tanh = mlp(16, KEY, activation=jnp.tanh)(x)
    assert not jnp.allclose(relu, tanh)


def test_transformer_shapes_and_structure():
    model = _abstract(transformer, 32, KEY, vocab=50, seq_len=12, depth=3, head_dim=8, ffn_ratio=2)
    assert isinstance(model, Transformer)
    assert len(model.blocks) == 3
    block = model.blocks[0]
    assert block.attn.num_heads == 4 and block.attn.qk_size == 8
    assert block.up.weight.shape == (64, 32) and block.down.weight.shape == (32, 64)
    assert model.pos_embed.weight.shape == (12, 32)
    assert model.readout.weight.shape == (50, 32)
    # No biases anywhere; LayerNorms have gains only.
    arrays = [x for x in jax.tree.leaves(model) if isinstance(x, jax.ShapeDtypeStruct)]
    assert all(x.dtype == jnp.float32 for x in arrays)
    assert sum(x.ndim == 1 for x in arrays) == 2 * 3 + 1
    tokens = jnp.arange(12) % 50
    assert _abstract(_call, model, tokens).shape == (12, 50)
    assert _abstract(_call, model, tokens[:5]).shape == (5, 50)


def test_transformer_is_causal_and_untied():
    model = transformer(32, KEY, depth=1, head_dim=8)
    forward = eqx.filter_jit(lambda m, t: m(t))
    tokens = jnp.arange(10)
    changed = tokens.at[7].set(40)
    a, b = forward(model, tokens), forward(model, changed)
    assert jnp.allclose(a[:7], b[:7], atol=1e-6)
    assert not jnp.allclose(a[7:], b[7:])
    assert model.readout.weight is not model.token_embed.weight


def test_make_model_signature_works_with_partial():
    make = functools.partial(transformer, depth=1, vocab=10)
    assert _abstract(make, 32, KEY).readout.out_features == 10
    assert _abstract(functools.partial(mlp, depth=1), 8, KEY).embed.out_features == 8


def test_width_must_be_a_multiple_of_head_dim():
    with pytest.raises(ModelConfigError, match=r"multiple of head_dim=16, got width=40") as info:
        transformer(40, KEY)
    assert "use width=32 or width=48" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: mlp(0, KEY), "`width` must be a positive integer, got 0"),
        (lambda: mlp(8, KEY, depth=-1), "`depth` must be a non-negative integer, got -1"),
        (lambda: transformer(32, KEY, vocab=0), "`vocab` must be a positive integer"),
        (lambda: transformer(32.0, KEY), "`width` must be a positive integer, got 32.0"),
    ],
)
def test_bad_sizes_are_clear_errors(make, match):
    with pytest.raises(ModelConfigError, match=match):
        make()


def test_sequences_longer_than_seq_len_are_an_error():
    model = _abstract(transformer, 16, KEY, depth=0, seq_len=4, head_dim=8)
    with pytest.raises(ModelConfigError, match="at most 4 tokens, got 6"):
        _abstract(_call, model, jnp.arange(6))
