"""A small encoder on `eqx.nn.MultiheadAttention` with a FIXED head count (the head size
grows with width), exposing its attention logits for coordinate checks.

Used by tests/test_attention.py and docs/attention.md's measurement.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

HEADS = 2
VOCAB = 16
SEQ = 8


class Encoder(eqx.Module):
    """tokens -> embed + positions -> [LN -> attention -> +, LN -> MLP -> +] -> LN -> readout."""

    embed: eqx.nn.Embedding
    pos: eqx.nn.Embedding
    attn_norm: eqx.nn.LayerNorm
    attn: eqx.nn.MultiheadAttention
    mlp_norm: eqx.nn.LayerNorm
    up: eqx.nn.Linear
    down: eqx.nn.Linear
    final_norm: eqx.nn.LayerNorm
    readout: eqx.nn.Linear

    def __call__(self, tokens):
        return self.features(tokens)["readout"]

    def attention_logits(self, h):
        """The logits `eqx.nn.MultiheadAttention` computes inside, `q.k / sqrt(qk_size)`,
        with the projections as the model calls them (so any factor on them counts)."""
        a = self.attn
        q = jax.vmap(a.query_proj)(h).reshape(h.shape[0], a.num_heads, a.qk_size)
        k = jax.vmap(a.key_proj)(h).reshape(h.shape[0], a.num_heads, a.qk_size)
        return jnp.einsum("shd,Shd->hsS", q, k) / math.sqrt(a.qk_size)

    def features(self, tokens):
        x = jax.vmap(self.embed)(tokens) + jax.vmap(self.pos)(jnp.arange(tokens.shape[0]))
        out = {"embed": x}
        h = jax.vmap(self.attn_norm)(x)
        out["attn_logits"] = self.attention_logits(h)
        out["attn"] = attn = self.attn(h, h, h)
        x = x + attn
        h = jax.vmap(self.mlp_norm)(x)
        out["mlp"] = mlp = jax.vmap(lambda v: self.down(jax.nn.gelu(self.up(v))))(h)
        x = x + mlp
        out["readout"] = jax.vmap(self.readout)(jax.vmap(self.final_norm)(x))
        return out

    def feature_roles(self):
        return {"embed": "input", "attn_logits": "hidden", "attn": "hidden", "mlp": "hidden",
                "readout": "output"}


def encoder(width, key, *, heads=HEADS, head_dim=None, bias=False):
    """`heads` fixed (head size `width // heads`), or `head_dim` fixed (the head count
    grows) when given."""
    if head_dim is not None:
        heads = width // head_dim
    keys = jax.random.split(key, 5)
    return Encoder(
        embed=eqx.nn.Embedding(VOCAB, width, key=keys[0]),
        pos=eqx.nn.Embedding(SEQ, width, key=keys[1]),
        attn_norm=eqx.nn.LayerNorm(width, use_bias=False),
        attn=eqx.nn.MultiheadAttention(
            heads, width, use_query_bias=bias, use_key_bias=bias, use_value_bias=bias,
            use_output_bias=bias, key=keys[2]),
        mlp_norm=eqx.nn.LayerNorm(width, use_bias=False),
        up=eqx.nn.Linear(width, 2 * width, use_bias=False, key=keys[3]),
        down=eqx.nn.Linear(2 * width, width, use_bias=False, key=keys[4]),
        final_norm=eqx.nn.LayerNorm(width, use_bias=False),
        readout=eqx.nn.Linear(width, VOCAB, use_bias=False, key=jax.random.fold_in(key, 9)),
    )


def batch(key=0, size=8):
    """One fixed batch for `linear_loss`: tokens (size, SEQ) and output weights."""
    k = jax.random.key(key)
    tokens = jax.random.randint(k, (size, SEQ), 0, VOCAB)
    y = jax.random.normal(jax.random.fold_in(k, 1), (size, SEQ, VOCAB))
    return tokens, y
