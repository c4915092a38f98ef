"""The coordinate check under Muon (issue 14's must-show).

After one step on a fixed batch with Muon on the hidden matrices and Adam elsewhere,
`mup` (its `auto` rates derived for Muon) keeps every layer's activation change flat in
width, while `sp-global` at one learning rate does not: its hidden matrices are flat
too (Muon's spectral rate is width-independent when a = 0, so SP's hidden layers need
no correction), but its Adam readout grows like n. The MLP at widths 64..256 in every run; the MLP and the
transformer at 64..1024 with `pytest -m slow` (numbers in docs/theory.md). At 64..256 the
transformer's logits measure -0.10 (a finite-size correction of the readout's W dz term,
which converges from below: -0.06 at 64..1024), so the transformer is checked wide only.
"""

import functools

import jax
import jax.numpy as jnp
import optax
import pytest

from paramspec import models
from paramspec._coord import coord_check

SMALL, WIDE = (64, 128, 256), (64, 128, 256, 512, 1024)


def _mlp_task():
    key = jax.random.key(42)
    x = jax.random.normal(key, (16, 16))
    y = jax.random.normal(jax.random.fold_in(key, 1), (16, 8))
    return models.mlp, (x, y), lambda m, b: jnp.mean((jax.vmap(m)(b[0]) - b[1]) ** 2)


def _transformer_task():
    tokens = jax.random.randint(jax.random.key(0), (4, 9), 0, 32)

    def loss(model, inputs):
        logits = jax.vmap(model)(inputs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    make = functools.partial(models.transformer, vocab=32, seq_len=8, depth=1)
    return make, tokens[:, :-1], loss


def _slopes(result):
    return {layer.name: round(layer.slope, 3) for layer in result.layers}


@pytest.mark.parametrize("task, widths", [
    pytest.param(_mlp_task, SMALL, id="mlp"),
    pytest.param(_mlp_task, WIDE, id="mlp-wide", marks=pytest.mark.slow),
    pytest.param(_transformer_task, WIDE, id="transformer-wide", marks=pytest.mark.slow),
])
def test_mup_is_flat_under_muon_and_sp_global_is_not(task, widths):
    make, inputs, loss = task()
    mup = coord_check("mup", make, inputs, loss, widths=widths, seeds=(0,), optimizer="muon")
    print("mup", _slopes(mup))
    assert mup.passed, _slopes(mup)
    assert all(abs(layer.slope) <= 0.1 for layer in mup.layers), _slopes(mup)
    sp = coord_check("sp-global", make, inputs, loss, widths=widths, seeds=(0,),
                     optimizer="muon")
    print("sp-global", _slopes(sp))
    readout = sp.layers[-1]
    assert readout.role == "output" and readout.slope > 0.5, _slopes(sp)
