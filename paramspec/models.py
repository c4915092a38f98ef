"""Reference models, small and fast on CPU, for examples, tests and coordinate checks.

Both constructors have the signature `make_model(width, key, **options)`, so
`functools.partial(transformer, depth=4)` is a `make_model` for `c.init`. Their
parameters get the roles a person would give them:

| model         | input                          | hidden                      | output    | vector     |
|---------------|--------------------------------|-----------------------------|-----------|------------|
| `mlp`         | `embed.weight`                 | `hidden[i].weight`          | `readout.weight` | biases of `embed`, `hidden[i]` |
| `transformer` | `token_embed`, `pos_embed`     | attention q/k/v/o, `up`, `down` | `readout.weight` | LayerNorm gains |

(The `mlp`'s readout bias, when biases are on, has a fixed size: role `constant`.)
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._errors import SpecError

__all__ = ["MLP", "Block", "ModelConfigError", "Transformer", "mlp", "transformer"]


class ModelConfigError(SpecError, ValueError):
    """Sizes that a reference model cannot be built with."""


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelConfigError(
                f"`{name}` must be a positive integer, got {value!r}",
                hint=f"pass for example {name}=64",
            )


# ----------------------------------------------------------------------------- MLP


class MLP(eqx.Module):
    """`in_size -> width -> ... -> width -> out_size` with an activation between layers."""

    embed: eqx.nn.Linear
    hidden: tuple[eqx.nn.Linear, ...]
    readout: eqx.nn.Linear
    activation: Callable[[Array], Array] = eqx.field(static=True)

    def __call__(self, x: Float[Array, " in_size"]) -> Float[Array, " out_size"]:
        return self.features(x)["readout"]

    def features(self, x: Float[Array, " in_size"]) -> dict[str, Array]:
        """Every layer's output (pre-activation), by name, for coordinate checks."""
        out = {"embed": self.embed(x)}
        h = self.activation(out["embed"])
        for i, layer in enumerate(self.hidden):
            out[f"hidden[{i}]"] = z = layer(h)
            h = self.activation(z)
        out["readout"] = self.readout(h)
        return out

    def feature_roles(self) -> dict[str, str]:
        """The role of the layer behind each feature of `features`."""
        roles = {"embed": "input"}
        roles.update({f"hidden[{i}]": "hidden" for i in range(len(self.hidden))})
        roles["readout"] = "output"
        return roles


def mlp(
    width: int,
    key: PRNGKeyArray,
    *,
    in_size: int = 16,
    out_size: int = 8,
    depth: int = 2,
    use_bias: bool = False,
    activation: Callable[[Array], Array] = jax.nn.relu,
) -> MLP:
    """A multi-layer perceptron whose hidden size is `width`.

    **Arguments:**

    - `width`: hidden size (the size that grows).
    - `key`: PRNG key for Equinox's default initialisation.
    - `in_size`, `out_size`: input and output sizes (fixed).
    - `depth`: number of hidden `width -> width` layers (0 or more).
    - `use_bias`: biases on every layer. Off by default (as in Everett et al.); when on,
        the `embed`/`hidden` biases are `vector` parameters and the readout bias a
        `constant` one, so a spec must cover those roles too.
    - `activation`: elementwise nonlinearity (ReLU by default).

    Call it on one input of shape `(in_size,)`; `jax.vmap` it for a batch.

    !!! Example

        ```python
        import jax
        from paramspec.models import mlp

        model = mlp(64, jax.random.key(0))
        y = jax.vmap(model)(jax.numpy.ones((5, 16)))   # (5, 8)
        ```
    """
    _check_positive(width=width, in_size=in_size, out_size=out_size)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ModelConfigError(
            f"`depth` must be a non-negative integer, got {depth!r}", hint="pass e.g. depth=2"
        )
    ekey, rkey, *hkeys = jax.random.split(key, 2 + depth)
    return MLP(
        embed=eqx.nn.Linear(in_size, width, use_bias=use_bias, key=ekey),
        hidden=tuple(eqx.nn.Linear(width, width, use_bias=use_bias, key=k) for k in hkeys),
        readout=eqx.nn.Linear(width, out_size, use_bias=use_bias, key=rkey),
        activation=activation,
    )


# ----------------------------------------------------------------------------- transformer


class Block(eqx.Module):
    """One pre-LN decoder block: `x + attn(LN(x))`, then `x + down(gelu(up(LN(x))))`."""

    attn_norm: eqx.nn.LayerNorm
    attn: eqx.nn.MultiheadAttention
    mlp_norm: eqx.nn.LayerNorm
    up: eqx.nn.Linear
    down: eqx.nn.Linear

    def __call__(
        self, x: Float[Array, "seq width"], mask: Float[Array, "seq seq"]
    ) -> Float[Array, "seq width"]:
        return self.features(x, mask)["out"]

    def features(self, x: Float[Array, "seq width"], mask: Float[Array, "seq seq"]
                 ) -> dict[str, Array]:
        """The attention and MLP branch outputs (before the residual adds) and the result."""
        h = jax.vmap(self.attn_norm)(x)
        attn = self.attn(h, h, h, mask)
        x = x + attn
        h = jax.vmap(self.mlp_norm)(x)
        mlp = jax.vmap(lambda v: self.down(jax.nn.gelu(self.up(v))))(h)
        return {"attn": attn, "mlp": mlp, "out": x + mlp}


class Transformer(eqx.Module):
    """Decoder-only transformer: token + learned position embeddings, pre-LN blocks,
    final LayerNorm, untied readout. No biases anywhere."""

    token_embed: eqx.nn.Embedding
    pos_embed: eqx.nn.Embedding
    blocks: tuple[Block, ...]
    final_norm: eqx.nn.LayerNorm
    readout: eqx.nn.Linear

    def __call__(self, tokens: Int[Array, " seq"]) -> Float[Array, "seq vocab"]:
        return self.features(tokens)["logits"]

    def features(self, tokens: Int[Array, " seq"]) -> dict[str, Array]:
        """Every layer's output by name, for coordinate checks: the summed embeddings,
        each block's attention and MLP branches, and the logits."""
        (seq,) = tokens.shape
        max_seq = self.pos_embed.num_embeddings
        if seq > max_seq:
            raise ModelConfigError(
                f"the transformer was built for sequences of at most {max_seq} tokens, got {seq}",
                hint=f"build it with seq_len={seq} or pass shorter sequences",
            )
        x = jax.vmap(self.token_embed)(tokens) + jax.vmap(self.pos_embed)(jnp.arange(seq))
        out = {"embed": x}
        mask = jnp.tril(jnp.ones((seq, seq), dtype=bool))  # causal
        for i, block in enumerate(self.blocks):
            parts = block.features(x, mask)
            out[f"blocks[{i}].attn"], out[f"blocks[{i}].mlp"] = parts["attn"], parts["mlp"]
            x = parts["out"]
        out["logits"] = jax.vmap(self.readout)(jax.vmap(self.final_norm)(x))
        return out

    def feature_roles(self) -> dict[str, str]:
        """The role of the layer behind each feature of `features`."""
        roles = {"embed": "input"}
        for i in range(len(self.blocks)):
            roles[f"blocks[{i}].attn"] = roles[f"blocks[{i}].mlp"] = "hidden"
        roles["logits"] = "output"
        return roles


def transformer(
    width: int,
    key: PRNGKeyArray,
    *,
    vocab: int = 64,
    seq_len: int = 32,
    depth: int = 2,
    head_dim: int = 16,
    ffn_ratio: int = 4,
    num_heads: int | None = None,
) -> Transformer:
    """The decoder-only transformer of Everett et al., small.

    Pre-LN (LayerNorm with a gain and no bias), no biases anywhere, GeLU, learned
    positional embeddings, untied readout, causal self-attention with a fixed
    `head_dim` and `width // head_dim` heads (so attention logits need no width factor),
    feed-forward size `ffn_ratio * width`.

    **Arguments:**

    - `width`: model width, a multiple of `head_dim`.
    - `key`: PRNG key for Equinox's default initialisation.
    - `vocab`, `seq_len`: vocabulary size and longest sequence (fixed).
    - `depth`: number of blocks.
    - `head_dim`: size of one attention head (fixed).
    - `ffn_ratio`: feed-forward expansion.
    - `num_heads`: give it to fix the head count instead: the head size is then
        `width // num_heads` and grows with width (`head_dim` is ignored). A spec's
        `attention` block scales the logits right in either case (docs/attention.md).

    Call it on an int array of token ids of shape `(seq,)`, `seq <= seq_len`; it
    returns logits of shape `(seq, vocab)`. `jax.vmap` it for a batch.

    !!! Example

        ```python
        import jax, jax.numpy as jnp
        from paramspec.models import transformer

        model = transformer(64, jax.random.key(0))
        logits = model(jnp.arange(32) % 64)   # (32, 64)
        ```
    """
    _check_positive(
        width=width, vocab=vocab, seq_len=seq_len, head_dim=head_dim, ffn_ratio=ffn_ratio
    )
    if num_heads is not None:
        _check_positive(num_heads=num_heads)
        if width % num_heads:
            raise ModelConfigError(
                f"the transformer's width must be a multiple of num_heads={num_heads}, "
                f"got width={width}",
                hint="use a width that the head count divides, or change num_heads",
            )
        head_dim = width // num_heads
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ModelConfigError(
            f"`depth` must be a non-negative integer, got {depth!r}", hint="pass e.g. depth=2"
        )
    if width % head_dim:
        lower = max(head_dim, width - width % head_dim)
        raise ModelConfigError(
            f"the transformer's width must be a multiple of head_dim={head_dim}, got width={width}",
            hint=f"use width={lower} or width={lower + head_dim}, or change head_dim",
        )
    tkey, pkey, rkey, *bkeys = jax.random.split(key, 3 + depth)

    def block(k: PRNGKeyArray) -> Block:
        akey, ukey, dkey = jax.random.split(k, 3)
        return Block(
            attn_norm=eqx.nn.LayerNorm(width, use_bias=False),
            attn=eqx.nn.MultiheadAttention(
                num_heads=width // head_dim,
                query_size=width,
                qk_size=head_dim,
                vo_size=head_dim,
                use_query_bias=False,
                use_key_bias=False,
                use_value_bias=False,
                use_output_bias=False,
                key=akey,
            ),
            mlp_norm=eqx.nn.LayerNorm(width, use_bias=False),
            up=eqx.nn.Linear(width, ffn_ratio * width, use_bias=False, key=ukey),
            down=eqx.nn.Linear(ffn_ratio * width, width, use_bias=False, key=dkey),
        )

    return Transformer(
        token_embed=eqx.nn.Embedding(vocab, width, key=tkey),
        pos_embed=eqx.nn.Embedding(seq_len, width, key=pkey),
        blocks=tuple(block(k) for k in bkeys),
        final_norm=eqx.nn.LayerNorm(width, use_bias=False),
        readout=eqx.nn.Linear(width, vocab, use_bias=False, key=rkey),
    )
