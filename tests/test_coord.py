"""The quantitative coordinate check (issue: Equinox backend's must-show).

After one Adam step on a fixed batch (at the default, perturbative learning rate), the
compiled `mup` keeps every layer's activation change flat in width (the library's
judgement; hidden layers within 0.1 of 0 over widths 64..512 (the MLP) and 64..256
(the transformer) in every run, 64..2048 under `pytest -m slow`), while `sp-global` does not — on the MLP and on the transformer.
"""

import functools

import jax
import jax.numpy as jnp
import optax
import pytest

from paramspec import models
from paramspec._coord import coord_check, linear_loss

WIDTHS = (64, 128, 256, 512, 1024, 2048)


# A fixed, small learning rate: these tests judge the slopes, not the perturbative
# calibration (tested in test_coord_usermodels.py), whose probe runs double their cost.
LR = {"learning_rate": 1e-3}


def _mlp_task():
    key = jax.random.key(42)
    x = jax.random.normal(key, (16, 16))
    y = jax.random.normal(jax.random.fold_in(key, 1), (16, 8))
    return (x, y), lambda m, b: jnp.mean((jax.vmap(m)(b[0]) - b[1]) ** 2)


def _transformer_task():
    tokens = jax.random.randint(jax.random.key(0), (4, 9), 0, 32)

    def loss(model, inputs):
        logits = jax.vmap(model)(inputs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    make = functools.partial(models.transformer, vocab=32, seq_len=8, depth=1)
    return make, tokens[:, :-1], loss


def _slopes(result):
    return {layer.name: round(layer.slope, 3) for layer in result.layers}


@pytest.mark.parametrize("widths", [
    WIDTHS[:4],  # 64..512 in every run, as on the transformer
    pytest.param(WIDTHS, marks=pytest.mark.slow),  # 64..2048: `pytest -m slow`
])
def test_mup_is_flat_and_sp_global_is_not_on_the_mlp(widths):
    batch, loss = _mlp_task()
    mup = coord_check("mup", models.mlp, batch, loss, widths=widths, seeds=(0,), **LR)
    assert mup.passed, _slopes(mup)
    assert all(abs(layer.slope) <= 0.1 for layer in mup.layers), _slopes(mup)
    sp = coord_check("sp-global", models.mlp, batch, loss, widths=widths, seeds=(0,), **LR)
    hidden = [layer for layer in sp.layers if layer.role == "hidden"]
    assert all(layer.slope > 0.5 for layer in hidden), _slopes(sp)
    assert sp.layer("readout").slope > 1.0, _slopes(sp)  # predicted +1.5


@pytest.mark.parametrize("widths", [
    # 64..256 in every run (measured: mup's hidden slopes -0.055, -0.059, sp-global's
    # +0.895, +0.945, its logits +1.33; at 64..512 the same picture, 10 s more CPU)
    WIDTHS[:3],
    pytest.param(WIDTHS, marks=pytest.mark.slow),  # 64..2048: `pytest -m slow` (~2 min)
])
def test_mup_is_flat_and_sp_global_is_not_on_the_transformer(widths):
    make, inputs, loss = _transformer_task()
    mup = coord_check("mup", make, inputs, loss, widths=widths, seeds=(0,), **LR)
    assert mup.passed, _slopes(mup)
    assert all(abs(layer.slope) <= 0.1 for layer in mup.layers if layer.role != "output"), \
        _slopes(mup)
    sp = coord_check("sp-global", make, inputs, loss, widths=widths, seeds=(0,), **LR)
    hidden = [layer for layer in sp.layers if layer.role == "hidden"]
    assert all(layer.slope > 0.5 for layer in hidden), _slopes(sp)
    assert sp.layer("logits").slope > 0.3, _slopes(sp)


def test_coord_check_rejects_bad_arguments():
    batch, loss = _mlp_task()
    from paramspec import SpecError

    with pytest.raises(SpecError, match="at least two different widths"):
        coord_check("mup", models.mlp, batch, loss, widths=(64,))


def test_predictions_use_only_the_blocks_the_model_has():
    """sp-perlayer's `vectors` block (biases, lr n^(1/2) under SGD) would predict the
    embedding flat; the MLP without biases has no vector leaves, so the prediction is the
    embedding weights' own n^(-1/2) — and that is what is measured."""
    with jax.enable_x64(True):
        key = jax.random.key(42)
        x = jax.random.normal(key, (16, 16), dtype=jnp.float64)
        y = jax.random.normal(jax.random.fold_in(key, 1), (16, 8), dtype=jnp.float64)
        check = coord_check("sp-perlayer", models.mlp, (x, y), linear_loss,
                            widths=(64, 128, 256), seeds=(0, 1), optimizer="sgd",
                            learning_rate=1e-4)
    embed = check.layer("embed")
    assert embed.predicted == -0.5
    assert abs(embed.slope - embed.predicted) <= 0.1, _slopes(check)


def test_linear_loss_gives_the_same_output_gradient_whatever_the_model_outputs():
    x = jnp.ones((4, 3))
    y = jnp.arange(8.0).reshape(4, 2)
    grads = [jax.grad(lambda s: linear_loss(lambda v: s * jnp.ones(2) * v.sum(), (x, y)))(s)
             for s in (0.0, 1.0, 5.0)]
    assert grads[0] == grads[1] == grads[2] == pytest.approx(float(jnp.mean(3.0 * y)))
