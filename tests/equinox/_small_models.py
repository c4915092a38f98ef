"""Small third-party-style models for the describe / tie / router / buffer tests."""

import equinox as eqx
import jax
import jax.numpy as jnp

from paramspec import Layout

VOCAB, SEQ = 24, 6


class MoE(eqx.Module):
    """A mixture-of-experts layer with stacked bare-array experts, a router, a bare-array
    class token and a RoPE-style buffer."""

    router: eqx.nn.Linear
    w_in: jax.Array  # (experts, width, 2 width), used as x @ w_in[e]
    w_out: jax.Array  # (experts, 2 width, width)
    cls_token: jax.Array  # (1, width)
    inv_freq: jax.Array  # a buffer: fixed frequencies, not to be trained
    head: eqx.nn.Linear

    def __init__(self, width, key, experts=4):
        k = jax.random.split(key, 5)
        self.router = eqx.nn.Linear(width, experts, key=k[0])
        self.w_in = jax.random.normal(k[1], (experts, width, 2 * width)) / width**0.5
        self.w_out = jax.random.normal(k[2], (experts, 2 * width, width)) / (2 * width) ** 0.5
        self.cls_token = jax.random.normal(k[3], (1, width))
        self.inv_freq = 1.0 / 10_000 ** (jnp.arange(0, 8, 2) / 8)
        self.head = eqx.nn.Linear(width, 3, key=k[4])

    def __call__(self, x):
        x = x + self.cls_token[0] + jnp.cos(self.inv_freq).sum()
        gate = jax.nn.softmax(self.router(x))
        h = jax.nn.gelu(jnp.einsum("d,edf->ef", x, self.w_in))
        y = jnp.einsum("ef,efd->ed", h, self.w_out)
        return self.head(jnp.einsum("e,ed->d", gate, y))


MOE_LAYOUTS = {
    "MoE.w_in": Layout(fan_in=(0,), fan_out=(1,), ndim=2),
    "MoE.w_out": Layout(fan_in=(0,), fan_out=(1,), ndim=2),
    "MoE.cls_token": Layout(fan_in=(0,), fan_out=(1,)),
}


class TiedGPT(eqx.Module):
    """A GPT written the usual Equinox way: tied lm_head read as `self.wte.weight.T`,
    learned positions read directly as a table."""

    wte: eqx.nn.Embedding
    wpe: eqx.nn.Embedding
    fc: eqx.nn.Linear
    proj: eqx.nn.Linear
    ln: eqx.nn.LayerNorm

    def __init__(self, width, key):
        k = jax.random.split(key, 4)
        self.wte = eqx.nn.Embedding(VOCAB, width, key=k[0])
        self.wpe = eqx.nn.Embedding(SEQ, width, key=k[1])
        self.fc = eqx.nn.Linear(width, 2 * width, key=k[2])
        self.proj = eqx.nn.Linear(2 * width, width, key=k[3])
        self.ln = eqx.nn.LayerNorm(width)

    def __call__(self, tokens):
        x = jax.vmap(self.wte)(tokens) + self.wpe.weight[: tokens.shape[0]]
        x = x + jax.vmap(lambda h: self.proj(jax.nn.gelu(self.fc(h))))(x)
        x = jax.vmap(self.ln)(x)
        return x @ self.wte.weight.T


class TiedAsTable(TiedGPT):
    """A declared tie that is also indexed directly as a table (wrong under a tie)."""

    def __call__(self, tokens):
        x = self.wte.weight[tokens]
        return jax.vmap(self.ln)(x) @ self.wte.weight.T
