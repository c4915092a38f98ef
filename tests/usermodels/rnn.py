"""A GRU sequence classifier, as in Equinox's RNN example (docs/examples/train_rnn).

A dense input layer `Linear(8, width)` (8 input features), an `eqx.nn.GRUCell(width,
width)` scanned over the sequence with `jax.lax.scan`, and a readout `Linear(width, 10)`
of the final hidden state.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

NUM_CLASSES = 10
IN_FEATURES = 8
SEQ_LEN = 12
LAYOUTS = None
ROLES = None


class RNN(eqx.Module):
    encoder: eqx.nn.Linear
    cell: eqx.nn.GRUCell
    readout: eqx.nn.Linear
    hidden_size: int = eqx.field(static=True)

    def __init__(self, in_size, hidden_size, out_size, key):
        k1, k2, k3 = jr.split(key, 3)
        self.encoder = eqx.nn.Linear(in_size, hidden_size, key=k1)
        self.cell = eqx.nn.GRUCell(hidden_size, hidden_size, key=k2)
        self.readout = eqx.nn.Linear(hidden_size, out_size, key=k3)
        self.hidden_size = hidden_size

    def __call__(self, xs):
        inputs = jax.vmap(self.encoder)(xs)

        def step(h, x):
            return self.cell(x, h), None

        h, _ = jax.lax.scan(step, jnp.zeros(self.hidden_size), inputs)
        return self.readout(h)


def make_model(width, key, *, num_classes=NUM_CLASSES, in_features=IN_FEATURES):
    return RNN(in_features, width, num_classes, key)


def make_batch(key, batch_size=8):
    kx, ky = jr.split(key)
    x = jr.normal(kx, (batch_size, SEQ_LEN, IN_FEATURES))
    return x, jr.randint(ky, (batch_size,), 0, NUM_CLASSES)


def loss(model, x, y):
    logits = jax.vmap(model)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


EXPECTED_ROLES = {
    "encoder.weight": "input",  # fan-in 8, fixed
    "encoder.bias": "vector",
    "cell.weight_ih": "hidden",
    "cell.weight_hh": "hidden",
    "cell.bias": "vector",
    "cell.bias_n": "vector",
    "readout.weight": "output",
    "readout.bias": "constant",
}
