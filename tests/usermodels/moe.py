"""A mixture-of-experts language model block, as users write one in Equinox.

Token embedding, one pre-norm Switch-style MoE block (a router `eqx.nn.Linear(width,
n_experts)` with top-1 routing scaled by the router probability, and the experts stored
as stacked bare arrays `w_in` (E, width, 4 width) and `w_out` (E, 4 width, width), used as
`x @ w_in[e]`), a residual, a final LayerNorm and a readout `Linear(width, vocab)`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

from paramspec import Layout

NUM_CLASSES = 64  # vocabulary
SEQ_LEN = 8
N_EXPERTS = 4

# The stacked experts: the trailing two axes are an (in, out) matrix used as `x @ w`;
# the leading expert axis is `ndim=2`'s stacked copies.
LAYOUTS = {
    "MoE.w_in": Layout(fan_in=(0,), fan_out=(1,), ndim=2),
    "MoE.w_out": Layout(fan_in=(0,), fan_out=(1,), ndim=2),
}
ROLES = None


class MoE(eqx.Module):
    router: eqx.nn.Linear
    w_in: jax.Array
    w_out: jax.Array

    def __init__(self, dim, n_experts, key, mlp_ratio=4):
        kr, ki, ko = jr.split(key, 3)
        hidden = mlp_ratio * dim
        self.router = eqx.nn.Linear(dim, n_experts, key=kr)
        self.w_in = jr.normal(ki, (n_experts, dim, hidden)) / jnp.sqrt(dim)
        self.w_out = jr.normal(ko, (n_experts, hidden, dim)) / jnp.sqrt(hidden)

    def __call__(self, x):
        # x: (dim,), one token
        probs = jax.nn.softmax(self.router(x))
        expert = jnp.argmax(probs)
        h = jax.nn.gelu(x @ self.w_in[expert])
        return probs[expert] * (h @ self.w_out[expert])


class MoELM(eqx.Module):
    embedding: eqx.nn.Embedding
    norm1: eqx.nn.LayerNorm
    moe: MoE
    norm2: eqx.nn.LayerNorm
    readout: eqx.nn.Linear

    def __init__(self, vocab_size, dim, n_experts, key):
        ke, km, kr = jr.split(key, 3)
        self.embedding = eqx.nn.Embedding(vocab_size, dim, key=ke)
        self.norm1 = eqx.nn.LayerNorm(dim)
        self.moe = MoE(dim, n_experts, km)
        self.norm2 = eqx.nn.LayerNorm(dim)
        self.readout = eqx.nn.Linear(dim, vocab_size, key=kr)

    def __call__(self, tokens):
        x = jax.vmap(self.embedding)(tokens)
        x = x + jax.vmap(self.moe)(jax.vmap(self.norm1)(x))
        return jax.vmap(self.readout)(jax.vmap(self.norm2)(x))


def make_model(width, key, *, vocab_size=NUM_CLASSES, n_experts=N_EXPERTS):
    return MoELM(vocab_size, width, n_experts, key)


def make_batch(key, batch_size=8):
    tokens = jr.randint(key, (batch_size, SEQ_LEN + 1), 0, NUM_CLASSES)
    return tokens[:, :-1], tokens[:, 1:]


def loss(model, x, y):
    logits = jax.vmap(model)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


EXPECTED_ROLES = {
    "embedding.weight": "input",
    "norm1.weight": "vector",
    "norm1.bias": "vector",
    "moe.router.weight": "output",  # width -> n_experts (fixed): a readout by shape
    "moe.router.bias": "constant",
    "moe.w_in": "hidden",
    "moe.w_out": "hidden",
    "norm2.weight": "vector",
    "norm2.bias": "vector",
    "readout.weight": "output",
    "readout.bias": "constant",
}
