"""The third-party-style user models of `tests/usermodels/` (see its docstring).

These check the models themselves (they build, their loss and gradients are sane, their
shapes do not depend on the width) and that paramspec's EXISTING role inference reads
each of their parameters as `reference/theory.md` §1 says (`EXPECTED_ROLES`, written by
hand in each model file).
"""

import functools
import importlib
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import paramspec as ps
from tests.usermodels import MODULES

WIDTHS = (32, 64)


def _load(name):
    return importlib.import_module(f"tests.usermodels.{name}")


@pytest.fixture(scope="module", params=MODULES)
def usermodel(request):
    return _load(request.param)


def test_convention(usermodel):
    for name in ("make_model", "make_batch", "loss"):
        assert callable(getattr(usermodel, name))
    assert isinstance(usermodel.NUM_CLASSES, int)
    assert usermodel.LAYOUTS is None or isinstance(usermodel.LAYOUTS, dict)
    assert usermodel.ROLES is None or isinstance(usermodel.ROLES, dict)


@functools.cache
def _built(name):
    """`(model, loss, grads)` at WIDTHS[0] on `make_batch(key(1))`: one jitted program
    that builds the model and differentiates its loss (compiling is most of the cost,
    so every test shares it)."""
    m = _load(name)
    x, y = m.make_batch(jax.random.key(1))

    @eqx.filter_jit
    def run(key):
        model = m.make_model(WIDTHS[0], key)
        return model, *eqx.filter_value_and_grad(m.loss)(model, x, y)

    return run(jax.random.key(0))


def test_builds_trains_and_shapes_do_not_depend_on_width(usermodel):
    x, y = usermodel.make_batch(jax.random.key(1))
    assert x.shape[0] == y.shape[0] == 8
    k = usermodel.NUM_CLASSES

    def forward(width, key):  # traced only: shapes, no compile
        return usermodel.make_model(width, key)(x[0])

    shapes = {eqx.filter_eval_shape(forward, w, jax.random.key(0)).shape for w in WIDTHS}
    assert shapes == {y.shape[1:] + (k,)}

    _, value, grads = _built(usermodel.__name__.rpartition(".")[2])
    assert value.shape == ()
    # At init every model's logits have rms <= ~0.6 (a head after a norm with
    # Equinox's uniform(+-1/sqrt(fan_in)) init, or GPT-2's 0.02 tied head), so the
    # expected cross-entropy is ln K + rms^2/2 <= ln K + 0.2, and the mean over 8
    # examples adds ~0.1 of noise. A mis-scaled readout (logit rms ~7, loss ~10 on
    # 10 classes) is far outside this.
    assert abs(float(value) - math.log(k)) < 0.5, (float(value), math.log(k))
    flat = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert flat and all(bool(jnp.all(jnp.isfinite(g))) for g in flat)
    assert any(float(jnp.abs(g).max()) > 0 for g in flat)


def test_inferred_roles_are_the_theory_roles(usermodel):
    w = WIDTHS[0]
    infos = ps.infer_leaves(
        usermodel.make_model, w, 2 * w, key=jax.random.key(0), layouts=usermodel.LAYOUTS
    )
    assert {i.path: i.role for i in infos} == usermodel.EXPECTED_ROLES


# Fans of the parameters whose fan-in is not simply read off an eqx.nn.Linear (width 32):
# stems and tables with a small fixed fan-in, bare arrays given a layout, stacked experts.
FANS = {
    "gpt": {"wte.weight": (1, 32), "wpe.weight": (1, 32),  # tables: looked up, fan-in 1
            "blocks[0].attn.c_attn.weight": (32, 96)},
    "vit": {"cls_token": (1, 32), "positional_embedding": (1, 32),
            "patch_embedding.linear.weight": (12, 32)},
    "cnn": {"layers[0].weight": (16, 32 * 16), "layers[2].weight": (32 * 9, 32 * 9)},
    "llama": {"layers[0].attention.wk.weight": (32, 16),
              "layers[0].feed_forward.w2.weight": (88, 32)},
    "moe": {"moe.w_in": (32, 128), "moe.w_out": (128, 32), "moe.router.weight": (32, 4)},
    "rnn": {"encoder.weight": (8, 32), "cell.weight_ih": (32, 96)},
}


@pytest.mark.parametrize("name", sorted(FANS))
def test_fans(name):
    m = _load(name)
    infos = ps.infer_leaves(m.make_model, 32, 64, key=jax.random.key(0), layouts=m.LAYOUTS)
    got = {i.path: (i.fan_in, i.fan_out) for i in infos if i.path in FANS[name]}
    assert got == FANS[name]


def test_bare_arrays_need_their_layouts():
    # Without LAYOUTS the ViT's and the MoE's bare arrays are an error, not a guess.
    for name in ("vit", "moe"):
        m = _load(name)
        with pytest.raises(ps.SpecError, match="cannot tell the fan-in"):
            ps.infer_leaves(m.make_model, 32, 64, key=jax.random.key(0))


def test_gpt_has_gpt2_init_and_a_tied_head():
    from tests.usermodels import gpt

    model, _, grads = _built("gpt")
    std = lambda a: float(jnp.std(a))  # noqa: E731
    for w in (model.wte.weight, model.wpe.weight, model.blocks[0].attn.c_attn.weight,
              model.blocks[1].mlp.c_fc.weight):
        assert std(w) == pytest.approx(0.02, rel=0.1)
    residual = 0.02 / math.sqrt(2 * gpt.N_LAYER)  # 0.01: twice off from 0.02
    for b in model.blocks:
        assert std(b.attn.c_proj.weight) == pytest.approx(residual, rel=0.1)
        assert std(b.mlp.c_proj.weight) == pytest.approx(residual, rel=0.1)
        assert not any(float(jnp.abs(lin.bias).max()) for lin in
                       (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj))
    # tied: a token the batch never uses is looked up nowhere, so its row of wte has a
    # gradient only through the lm_head use (an untied model's would be exactly 0)
    x, _ = gpt.make_batch(jax.random.key(1))
    unused = jnp.setdiff1d(jnp.arange(gpt.NUM_CLASSES), x.ravel())
    assert unused.size > 0
    assert bool(jnp.all(jnp.any(grads.wte.weight[unused] != 0, axis=1)))


def test_llama_rope_buffer_gets_no_gradient():
    _, _, grads = _built("llama")
    for layer in grads.layers:
        assert not bool(jnp.any(layer.attention.rotary_emb.inv_freq))
        assert bool(jnp.any(layer.attention.wq.weight))
