"""A CNN in the style of Equinox's MNIST tutorial (docs/examples/mnist), channels = width.

A `Conv2d(1, width, kernel_size=4)` stem (fan-in 16), a hidden `Conv2d(width, width, 3)`,
max pooling, a global mean over space, and a `Linear(width, 10)` head; biases on.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

NUM_CLASSES = 10
IMAGE_SIZE = 16
LAYOUTS = None
ROLES = None


class CNN(eqx.Module):
    layers: list

    def __init__(self, width, num_classes, key):
        key1, key2, key3 = jr.split(key, 3)
        self.layers = [
            eqx.nn.Conv2d(1, width, kernel_size=4, key=key1),
            jax.nn.relu,
            eqx.nn.Conv2d(width, width, kernel_size=3, key=key2),
            jax.nn.relu,
            eqx.nn.MaxPool2d(kernel_size=2, stride=2),
            lambda x: jnp.mean(x, axis=(1, 2)),
            eqx.nn.Linear(width, num_classes, key=key3),
        ]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def make_model(width, key, *, num_classes=NUM_CLASSES):
    return CNN(width, num_classes, key)


def make_batch(key, batch_size=8):
    kx, ky = jr.split(key)
    x = jr.uniform(kx, (batch_size, 1, IMAGE_SIZE, IMAGE_SIZE))  # pixels in [0, 1)
    return x, jr.randint(ky, (batch_size,), 0, NUM_CLASSES)


def loss(model, x, y):
    logits = jax.vmap(model)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


EXPECTED_ROLES = {
    "layers[0].weight": "input",  # the stem: fan-in 1 * 4 * 4 = 16, fixed
    "layers[0].bias": "vector",
    "layers[2].weight": "hidden",
    "layers[2].bias": "vector",
    "layers[6].weight": "output",
    "layers[6].bias": "constant",
}
