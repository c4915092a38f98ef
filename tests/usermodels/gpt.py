"""A nanoGPT port (Karpathy's `model.py`) to Equinox, as users write it.

Token embedding `wte` and learned positions `wpe` (an `eqx.nn.Embedding` whose
`.weight[:T]` is read directly), pre-LN blocks, a fused `c_attn` projection to q, k, v,
causal attention with a fixed head count (the head size grows with the width), a 4x GELU
MLP, biases on, a final LayerNorm and an lm_head tied to `wte`: `x @ wte.weight.T`.
Initialised as GPT-2: N(0, 0.02) for every Linear/Embedding weight, zero biases, and
N(0, 0.02/sqrt(2 n_layer)) for the residual projections (`c_proj`), with `eqx.tree_at`.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

NUM_CLASSES = 64  # vocabulary
BLOCK_SIZE = 16
N_LAYER = 2
N_HEAD = 4
LAYOUTS = None
ROLES = None
# Each residual branch's output projection (paramspec folds a depth spec's branch
# multiplier into them: docs/models.md, "Depth").
BRANCHES = ["blocks[*].attn.c_proj", "blocks[*].mlp.c_proj"]


class CausalSelfAttention(eqx.Module):
    c_attn: eqx.nn.Linear
    c_proj: eqx.nn.Linear
    n_head: int = eqx.field(static=True)

    def __init__(self, n_embd, n_head, key):
        k1, k2 = jax.random.split(key)
        self.c_attn = eqx.nn.Linear(n_embd, 3 * n_embd, key=k1)
        self.c_proj = eqx.nn.Linear(n_embd, n_embd, key=k2)
        self.n_head = n_head

    def __call__(self, x):
        T, C = x.shape
        q, k, v = jnp.split(jax.vmap(self.c_attn)(x), 3, axis=-1)
        hs = C // self.n_head
        q, k, v = (a.reshape(T, self.n_head, hs).transpose(1, 0, 2) for a in (q, k, v))
        att = (q @ k.transpose(0, 2, 1)) * (1.0 / math.sqrt(hs))
        mask = jnp.tril(jnp.ones((T, T), dtype=bool))
        att = jax.nn.softmax(jnp.where(mask, att, -jnp.inf), axis=-1)
        y = (att @ v).transpose(1, 0, 2).reshape(T, C)
        return jax.vmap(self.c_proj)(y)


class MLP(eqx.Module):
    c_fc: eqx.nn.Linear
    c_proj: eqx.nn.Linear

    def __init__(self, n_embd, key):
        k1, k2 = jax.random.split(key)
        self.c_fc = eqx.nn.Linear(n_embd, 4 * n_embd, key=k1)
        self.c_proj = eqx.nn.Linear(4 * n_embd, n_embd, key=k2)

    def __call__(self, x):
        return jax.vmap(self.c_proj)(jax.nn.gelu(jax.vmap(self.c_fc)(x)))


class Block(eqx.Module):
    ln_1: eqx.nn.LayerNorm
    attn: CausalSelfAttention
    ln_2: eqx.nn.LayerNorm
    mlp: MLP

    def __init__(self, n_embd, n_head, key):
        k1, k2 = jax.random.split(key)
        self.ln_1 = eqx.nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, k1)
        self.ln_2 = eqx.nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, k2)

    def __call__(self, x):
        x = x + self.attn(jax.vmap(self.ln_1)(x))
        return x + self.mlp(jax.vmap(self.ln_2)(x))


class GPT(eqx.Module):
    wte: eqx.nn.Embedding
    wpe: eqx.nn.Embedding
    blocks: list
    ln_f: eqx.nn.LayerNorm

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, key):
        k1, k2, *ks = jax.random.split(key, 2 + n_layer)
        self.wte = eqx.nn.Embedding(vocab_size, n_embd, key=k1)
        self.wpe = eqx.nn.Embedding(block_size, n_embd, key=k2)
        self.blocks = [Block(n_embd, n_head, k) for k in ks]
        self.ln_f = eqx.nn.LayerNorm(n_embd)

    def __call__(self, idx):
        (T,) = idx.shape
        x = jax.vmap(self.wte)(idx) + self.wpe.weight[:T]
        for block in self.blocks:
            x = block(x)
        x = jax.vmap(self.ln_f)(x)
        return x @ self.wte.weight.T  # weight tying: lm_head is wte


def _gpt2_init(model, key, n_layer):
    """GPT-2's init, as nanoGPT's `_init_weights` plus its `c_proj` special case."""
    is_layer = lambda m: isinstance(m, eqx.nn.Linear | eqx.nn.Embedding)  # noqa: E731

    def layers(m):
        return [x for x in jax.tree_util.tree_leaves(m, is_leaf=is_layer) if is_layer(x)]

    def normal(key, arrays, std):
        keys = jax.random.split(key, len(arrays))
        return [std * jax.random.normal(k, a.shape, a.dtype)
                for k, a in zip(keys, arrays, strict=True)]

    def weights(m):
        return [x.weight for x in layers(m)]

    def biases(m):
        return [x.bias for x in layers(m) if isinstance(x, eqx.nn.Linear)]

    def residual_projections(m):
        return [w for b in m.blocks for w in (b.attn.c_proj.weight, b.mlp.c_proj.weight)]

    k1, k2 = jax.random.split(key)
    model = eqx.tree_at(weights, model, normal(k1, weights(model), 0.02))
    model = eqx.tree_at(biases, model, [jnp.zeros_like(b) for b in biases(model)])
    std = 0.02 / math.sqrt(2 * n_layer)
    return eqx.tree_at(residual_projections, model,
                       normal(k2, residual_projections(model), std))


def make_model(width, key, *, depth=N_LAYER, vocab_size=NUM_CLASSES, block_size=BLOCK_SIZE,
               n_head=N_HEAD):
    k1, k2 = jax.random.split(key)
    model = GPT(vocab_size, block_size, depth, n_head, width, k1)
    return _gpt2_init(model, k2, depth)


def make_batch(key, batch_size=8):
    tokens = jax.random.randint(key, (batch_size, BLOCK_SIZE + 1), 0, NUM_CLASSES)
    return tokens[:, :-1], tokens[:, 1:]


def loss(model, x, y):
    logits = jax.vmap(model)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _block_roles(i):
    p = f"blocks[{i}]"
    return {
        f"{p}.ln_1.weight": "vector", f"{p}.ln_1.bias": "vector",
        f"{p}.attn.c_attn.weight": "hidden", f"{p}.attn.c_attn.bias": "vector",
        f"{p}.attn.c_proj.weight": "hidden", f"{p}.attn.c_proj.bias": "vector",
        f"{p}.ln_2.weight": "vector", f"{p}.ln_2.bias": "vector",
        f"{p}.mlp.c_fc.weight": "hidden", f"{p}.mlp.c_fc.bias": "vector",
        f"{p}.mlp.c_proj.weight": "hidden", f"{p}.mlp.c_proj.bias": "vector",
    }


EXPECTED_ROLES = {
    "wte.weight": "input",  # tied: also the lm_head, but the array is the embedding's
    "wpe.weight": "input",
    **{k: v for i in range(N_LAYER) for k, v in _block_roles(i).items()},
    "ln_f.weight": "vector", "ln_f.bias": "vector",
}
