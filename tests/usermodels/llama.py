"""A LLaMA-style decoder in Equinox, as users port it.

A user-written RMSNorm (a module with a `weight` vector), a SwiGLU MLP (three bias-free
Linears `w1`, `w2`, `w3`), grouped-query attention (`n_heads` fixed, `n_kv_heads` <
`n_heads`; the head size grows with the width), rotary position embeddings from a
precomputed `inv_freq` buffer (a bare array field, held out of training with
`jax.lax.stop_gradient`, as ports of HF's `LlamaRotaryEmbedding` do), and an untied
bias-free lm_head `output`.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

NUM_CLASSES = 100  # vocabulary
SEQ_LEN = 16
N_LAYERS = 2
N_HEADS = 4
N_KV_HEADS = 2
LAYOUTS = None
ROLES = None
BRANCHES = ["layers[*].attention.wo", "layers[*].feed_forward.w2"]  # residual branch outputs


class RMSNorm(eqx.Module):
    weight: jax.Array
    eps: float = eqx.field(static=True)

    def __init__(self, dim, eps=1e-6):
        self.weight = jnp.ones(dim)
        self.eps = eps

    def __call__(self, x):
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return self.weight * x


class RotaryEmbedding(eqx.Module):
    inv_freq: jax.Array  # a buffer: never trained (stop_gradient below)

    def __init__(self, head_dim, base=10000.0):
        self.inv_freq = 1.0 / (base ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))

    def __call__(self, x):
        # x: (seq, heads, head_dim), rotated by halves as in HF's `rotate_half`
        inv_freq = jax.lax.stop_gradient(self.inv_freq)
        t = jnp.arange(x.shape[0], dtype=jnp.float32)
        freqs = jnp.outer(t, inv_freq)
        emb = jnp.concatenate((freqs, freqs), axis=-1)[:, None, :]
        x1, x2 = jnp.split(x, 2, axis=-1)
        rotated = jnp.concatenate((-x2, x1), axis=-1)
        return x * jnp.cos(emb) + rotated * jnp.sin(emb)


class Attention(eqx.Module):
    wq: eqx.nn.Linear
    wk: eqx.nn.Linear
    wv: eqx.nn.Linear
    wo: eqx.nn.Linear
    rotary_emb: RotaryEmbedding
    n_heads: int = eqx.field(static=True)
    n_kv_heads: int = eqx.field(static=True)
    head_dim: int = eqx.field(static=True)

    def __init__(self, dim, n_heads, n_kv_heads, key):
        kq, kk, kv, ko = jr.split(key, 4)
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = dim // n_heads
        self.wq = eqx.nn.Linear(dim, n_heads * self.head_dim, use_bias=False, key=kq)
        self.wk = eqx.nn.Linear(dim, n_kv_heads * self.head_dim, use_bias=False, key=kk)
        self.wv = eqx.nn.Linear(dim, n_kv_heads * self.head_dim, use_bias=False, key=kv)
        self.wo = eqx.nn.Linear(n_heads * self.head_dim, dim, use_bias=False, key=ko)
        self.rotary_emb = RotaryEmbedding(self.head_dim)

    def __call__(self, x):
        T = x.shape[0]
        q = jax.vmap(self.wq)(x).reshape(T, self.n_heads, self.head_dim)
        k = jax.vmap(self.wk)(x).reshape(T, self.n_kv_heads, self.head_dim)
        v = jax.vmap(self.wv)(x).reshape(T, self.n_kv_heads, self.head_dim)
        q, k = self.rotary_emb(q), self.rotary_emb(k)
        rep = self.n_heads // self.n_kv_heads  # repeat_kv
        k, v = jnp.repeat(k, rep, axis=1), jnp.repeat(v, rep, axis=1)
        scores = jnp.einsum("qhd,khd->hqk", q, k) / math.sqrt(self.head_dim)
        mask = jnp.tril(jnp.ones((T, T), dtype=bool))
        scores = jax.nn.softmax(jnp.where(mask, scores, -jnp.inf), axis=-1)
        out = jnp.einsum("hqk,khd->qhd", scores, v).reshape(T, -1)
        return jax.vmap(self.wo)(out)


class FeedForward(eqx.Module):
    w1: eqx.nn.Linear
    w2: eqx.nn.Linear
    w3: eqx.nn.Linear

    def __init__(self, dim, hidden_dim, key):
        k1, k2, k3 = jr.split(key, 3)
        self.w1 = eqx.nn.Linear(dim, hidden_dim, use_bias=False, key=k1)
        self.w2 = eqx.nn.Linear(hidden_dim, dim, use_bias=False, key=k2)
        self.w3 = eqx.nn.Linear(dim, hidden_dim, use_bias=False, key=k3)

    def __call__(self, x):
        return self.w2(jax.nn.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(eqx.Module):
    attention_norm: RMSNorm
    attention: Attention
    ffn_norm: RMSNorm
    feed_forward: FeedForward

    def __init__(self, dim, n_heads, n_kv_heads, hidden_dim, key):
        k1, k2 = jr.split(key)
        self.attention_norm = RMSNorm(dim)
        self.attention = Attention(dim, n_heads, n_kv_heads, k1)
        self.ffn_norm = RMSNorm(dim)
        self.feed_forward = FeedForward(dim, hidden_dim, k2)

    def __call__(self, x):
        h = x + self.attention(jax.vmap(self.attention_norm)(x))
        return h + jax.vmap(self.feed_forward)(jax.vmap(self.ffn_norm)(h))


class Transformer(eqx.Module):
    tok_embeddings: eqx.nn.Embedding
    layers: list
    norm: RMSNorm
    output: eqx.nn.Linear

    def __init__(self, vocab_size, dim, n_layers, n_heads, n_kv_heads, key, multiple_of=8):
        ke, ko, *ks = jr.split(key, 2 + n_layers)
        # LLaMA's SwiGLU hidden size: 2/3 of 4 * dim, rounded up to `multiple_of`
        hidden_dim = int(2 * 4 * dim / 3)
        hidden_dim = multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)
        self.tok_embeddings = eqx.nn.Embedding(vocab_size, dim, key=ke)
        self.layers = [TransformerBlock(dim, n_heads, n_kv_heads, hidden_dim, k) for k in ks]
        self.norm = RMSNorm(dim)
        self.output = eqx.nn.Linear(dim, vocab_size, use_bias=False, key=ko)

    def __call__(self, tokens):
        h = jax.vmap(self.tok_embeddings)(tokens)
        for layer in self.layers:
            h = layer(h)
        return jax.vmap(self.output)(jax.vmap(self.norm)(h))


def make_model(width, key, *, depth=N_LAYERS, vocab_size=NUM_CLASSES, n_heads=N_HEADS,
               n_kv_heads=N_KV_HEADS):
    return Transformer(vocab_size, width, depth, n_heads, n_kv_heads, key)


def make_batch(key, batch_size=8):
    tokens = jr.randint(key, (batch_size, SEQ_LEN + 1), 0, NUM_CLASSES)
    return tokens[:, :-1], tokens[:, 1:]


def loss(model, x, y):
    logits = jax.vmap(model)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _block_roles(i):
    p = f"layers[{i}]"
    return {
        f"{p}.attention_norm.weight": "vector",
        **{f"{p}.attention.{w}.weight": "hidden" for w in ("wq", "wk", "wv", "wo")},
        # A buffer, not a parameter: theory.md has no role for it. Its size is
        # head_dim / 2, which grows with the width, so shape inference reads a vector.
        f"{p}.attention.rotary_emb.inv_freq": "vector",
        f"{p}.ffn_norm.weight": "vector",
        **{f"{p}.feed_forward.{w}.weight": "hidden" for w in ("w1", "w2", "w3")},
    }


EXPECTED_ROLES = {
    "tok_embeddings.weight": "input",
    **{k: v for i in range(N_LAYERS) for k, v in _block_roles(i).items()},
    "norm.weight": "vector",
    "output.weight": "output",
}
