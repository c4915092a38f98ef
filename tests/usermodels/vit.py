"""A vision transformer in the style of Equinox's own example (docs/examples/vision_transformer).

Patch embedding as a Linear over flattened patches, bare-array `cls_token` (1, width) and
`positional_embedding` (num_patches + 1, width) fields drawn N(0, 1) as in the example,
pre-LN blocks on `eqx.nn.MultiheadAttention` with a fixed number of heads (the head size
grows with the width), a GELU MLP, and a head `Sequential([LayerNorm, Linear])`. Dropout
is left out (rate 0 at these sizes; it has no parameters).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

from paramspec import Layout

NUM_CLASSES = 10
IMAGE_SIZE = 8
CHANNELS = 3
PATCH_SIZE = 2
NUM_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2
NUM_HEADS = 4
NUM_LAYERS = 2

# The two bare arrays are tables with one row per token (like an `eqx.nn.Embedding`):
# axis 0 indexes positions (fixed), axis 1 is the width.
LAYOUTS = {
    # Tables with one row per position, added (looked up), never summed over: `lookup`
    # makes their fan-in 1, as for eqx.nn.Embedding (sp's std is then 1, as a table's).
    "VisionTransformer.cls_token": Layout(fan_in=(0,), fan_out=(1,), lookup=True),
    "VisionTransformer.positional_embedding": Layout(fan_in=(0,), fan_out=(1,), lookup=True),
}
ROLES = None
# The residual branches' output projections (docs/models.md, "Depth").
BRANCHES = ["attention_blocks[*].attention.output_proj", "attention_blocks[*].linear2"]


class PatchEmbedding(eqx.Module):
    linear: eqx.nn.Linear
    patch_size: int = eqx.field(static=True)

    def __init__(self, input_channels, output_shape, patch_size, key):
        self.patch_size = patch_size
        self.linear = eqx.nn.Linear(patch_size**2 * input_channels, output_shape, key=key)

    def __call__(self, x):
        # "c (h ph) (w pw) -> (h w) (c ph pw)" without einops
        c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(c, h // p, p, w // p, p).transpose(1, 3, 0, 2, 4)
        x = x.reshape((h // p) * (w // p), c * p * p)
        return jax.vmap(self.linear)(x)


class AttentionBlock(eqx.Module):
    layer_norm1: eqx.nn.LayerNorm
    layer_norm2: eqx.nn.LayerNorm
    attention: eqx.nn.MultiheadAttention
    linear1: eqx.nn.Linear
    linear2: eqx.nn.Linear

    def __init__(self, input_shape, hidden_dim, num_heads, key):
        key1, key2, key3 = jr.split(key, 3)
        self.layer_norm1 = eqx.nn.LayerNorm(input_shape)
        self.layer_norm2 = eqx.nn.LayerNorm(input_shape)
        self.attention = eqx.nn.MultiheadAttention(num_heads, input_shape, key=key1)
        self.linear1 = eqx.nn.Linear(input_shape, hidden_dim, key=key2)
        self.linear2 = eqx.nn.Linear(hidden_dim, input_shape, key=key3)

    def __call__(self, x):
        input_x = jax.vmap(self.layer_norm1)(x)
        x = x + self.attention(input_x, input_x, input_x)
        input_x = jax.vmap(self.layer_norm2)(x)
        input_x = jax.nn.gelu(jax.vmap(self.linear1)(input_x))
        return x + jax.vmap(self.linear2)(input_x)


class VisionTransformer(eqx.Module):
    patch_embedding: PatchEmbedding
    positional_embedding: jnp.ndarray
    cls_token: jnp.ndarray
    attention_blocks: list
    mlp: eqx.nn.Sequential

    def __init__(self, embedding_dim, hidden_dim, num_heads, num_layers, patch_size,
                 num_patches, num_classes, channels, key):
        key1, key2, key3, key4, key5 = jr.split(key, 5)
        self.patch_embedding = PatchEmbedding(channels, embedding_dim, patch_size, key1)
        self.positional_embedding = jr.normal(key2, (num_patches + 1, embedding_dim))
        self.cls_token = jr.normal(key3, (1, embedding_dim))
        self.attention_blocks = [
            AttentionBlock(embedding_dim, hidden_dim, num_heads, k)
            for k in jr.split(key4, num_layers)
        ]
        self.mlp = eqx.nn.Sequential(
            [eqx.nn.LayerNorm(embedding_dim), eqx.nn.Linear(embedding_dim, num_classes, key=key5)]
        )

    def __call__(self, x):
        x = self.patch_embedding(x)
        x = jnp.concatenate((self.cls_token, x), axis=0)
        x = x + self.positional_embedding[: x.shape[0]]
        for block in self.attention_blocks:
            x = block(x)
        return self.mlp(x[0])  # the CLS token


def make_model(width, key, *, depth=NUM_LAYERS, num_heads=NUM_HEADS,
               num_classes=NUM_CLASSES, patch_size=PATCH_SIZE, image_size=IMAGE_SIZE,
               channels=CHANNELS):
    num_patches = (image_size // patch_size) ** 2
    return VisionTransformer(width, 2 * width, num_heads, depth, patch_size,
                             num_patches, num_classes, channels, key)


def make_batch(key, batch_size=8):
    kx, ky = jr.split(key)
    x = jr.normal(kx, (batch_size, CHANNELS, IMAGE_SIZE, IMAGE_SIZE))
    return x, jr.randint(ky, (batch_size,), 0, NUM_CLASSES)


def loss(model, x, y):
    logits = jax.vmap(model)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _block_roles(i):
    p = f"attention_blocks[{i}]"
    roles = {f"{p}.layer_norm{j}.{f}": "vector" for j in (1, 2) for f in ("weight", "bias")}
    for proj in ("query_proj", "key_proj", "value_proj", "output_proj"):
        roles[f"{p}.attention.{proj}.weight"] = "hidden"  # MultiheadAttention: no biases
    for lin in ("linear1", "linear2"):
        roles[f"{p}.{lin}.weight"] = "hidden"
        roles[f"{p}.{lin}.bias"] = "vector"
    return roles


EXPECTED_ROLES = {
    "patch_embedding.linear.weight": "input",
    "patch_embedding.linear.bias": "vector",
    "positional_embedding": "input",
    "cls_token": "input",
    **{k: v for i in range(NUM_LAYERS) for k, v in _block_roles(i).items()},
    "mlp.layers[0].weight": "vector",
    "mlp.layers[0].bias": "vector",
    "mlp.layers[1].weight": "output",
    "mlp.layers[1].bias": "constant",  # (num_classes,): nothing grows
}
