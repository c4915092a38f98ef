"""`optimizer muon`: the width rule (docs/theory.md §9), the chain's pieces, the built-in."""

from fractions import Fraction as F

import equinox as eqx
import jax
import numpy as np
import pytest
from optax.contrib import MuonDimensionNumbers

import paramspec as ps
from paramspec import models
from paramspec._equinox._fans import leaf_layout
from paramspec._optax._chain import build_optimizer
from paramspec._optax._muon import muon_dimension_numbers, shape_factor

H = F(1, 2)

# c = (embedding, hidden, readout) under muon, typed in from docs/theory.md §9.
MUON_C = {
    ("mup", "full"): (H, 0, H), ("mup", "none"): (H, 0, 0),
    ("sp", "full"): (0, 0, 1), ("sp", "none"): (0, 0, H),
    ("ntk", "full"): (0, -H, H), ("mfp", "full"): (0, -H, 0),
}


@pytest.mark.parametrize("name, alignment", sorted(MUON_C))
def test_muon_learning_rate_exponents(name, alignment):
    t = ps.compile(name, width=64, optimizer="muon", alignment=alignment).theory
    assert tuple(t.layers[b].c for b in ("embedding", "hidden", "readout")) == MUON_C[
        (name, alignment)]
    assert t.feature_learning


def test_muon_hidden_rule_is_alignment_free_and_adam_parts_are_adams():
    for name in ("mup", "sp", "ntk", "mfp"):
        for alignment in ("full", "3/4", "none"):
            muon = ps.compile(name, width=64, optimizer="muon", alignment=alignment).theory
            adam = ps.compile(name, width=64, optimizer="adam", alignment=alignment).theory
            assert muon.layers["hidden"].c == -muon.layers["hidden"].a
            for block in ("embedding", "readout", "vectors"):
                assert muon.layers[block].c == adam.layers[block].c
                assert muon.layers[block].e == muon.layers[block].g
            # Muon's eps guards ||G||_F ~ n^(1-g)
            assert muon.layers["hidden"].e == muon.layers["hidden"].g - 1


def test_mup_muon_is_builtin_cites_its_sources_and_sets_muon():
    spec = ps.load("mup-muon")
    assert spec.optimizer == "muon"
    for source in ("Jordan", "2310.17813", "2602.20937", "2502.16982"):
        assert source in spec.doc
    c = ps.compile("mup-muon", width=256, base_width=64)
    assert c.optimizer_name == "muon" and c.value("hidden", "lr") == 1.0


def test_symmetry_shift_under_muon_moves_c_and_e_like_adam():
    from paramspec._analysis._equiv import shift

    exps = {"a": F(0), "b": H, "c": F(0), "e": F(0), "wd": F(0)}
    assert shift(exps, H, "muon") == {"a": H, "b": F(0), "c": -H, "e": H, "wd": H}


def test_reshape_rule_for_linear_and_conv_kernels():
    linear = eqx.nn.Linear(3, 5, key=jax.random.key(0))
    conv = eqx.nn.Conv2d(3, 5, 2, key=jax.random.key(0))
    for module, shape, want in (
        (linear, (5, 3), MuonDimensionNumbers((1,), (0,))),
        (conv, (5, 3, 2, 2), MuonDimensionNumbers((1, 2, 3), (0,))),  # (out, in*kh*kw)
    ):
        layout = leaf_layout(module, "weight", len(shape))
        dims = muon_dimension_numbers(shape, layout.fan_in_axes(len(shape)),
                                      layout.fan_out_axes(len(shape)))
        assert dims == want
    conv_dims = MuonDimensionNumbers((1, 2, 3), (0,))
    assert shape_factor((5, 3, 2, 2), conv_dims, "spectral") == pytest.approx((5 / 12) ** 0.5)
    assert shape_factor((5, 3, 2, 2), conv_dims, "jordan") == 1.0
    assert shape_factor((5, 3, 2, 2), conv_dims, "moonlight", n=3.0) == pytest.approx(0.4)


def test_muon_leaves_are_the_hidden_matrices_and_the_state_is_by_part():
    c = ps.compile("mup", width=32, base_width=8, optimizer="muon")
    model = c.init(models.mlp, jax.random.key(0))
    params = eqx.filter(model, eqx.is_inexact_array)
    opt = c.optimizer(model, learning_rate=0.1)
    state = opt.init(params)
    muon_mu = [x.shape for x in jax.tree.leaves(state["core"]["muon"].mu)]
    adam_mu = [x.shape for x in jax.tree.leaves(state["core"]["adam"].mu)]
    assert muon_mu == [(32, 32)] * 2 and sorted(adam_mu) == [(8, 32), (32, 16)]
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(1), p.shape), params)
    updates, _ = jax.jit(opt.update)(grads, state, params)
    # one orthogonalised 32x32 step: its singular values ~ lr * sqrt(32/32) (Newton-Schulz
    # leaves them in about [0.5, 1.5] x, the smallest of a random matrix lower), whatever
    # the gradient's scale
    s = np.linalg.svd(np.asarray(updates.hidden[0].module.weight), compute_uv=False)
    assert 0.05 < np.median(s) and s.max() < 0.15
    grads_10 = jax.tree.map(lambda g: 10.0 * g, grads)
    updates_10, _ = jax.jit(opt.update)(grads_10, opt.init(params), params)
    np.testing.assert_allclose(updates_10.hidden[0].module.weight,
                               updates.hidden[0].module.weight, rtol=1e-4, atol=1e-6)


def test_build_optimizer_muon_needs_dimension_numbers():
    with pytest.raises(ps.SpecError, match="muon_dimension_numbers"):
        build_optimizer("muon", learning_rate=0.1, lr_scale=1.0, eps=1e-8, weight_decay=0.0)


def test_sweep_rejects_an_unknown_optimizer_before_training(tmp_path):
    from paramspec._transfer._sweep import sweep

    with pytest.raises(ps.SpecError, match="unknown optimizer"):
        sweep(["mup"], model="mlp", widths=[16], lrs=[1e-2], seeds=[0], steps=2,
              out=tmp_path, progress=False, optimizer="lion")


@pytest.mark.slow  # compiles a training loop (~10 s)
def test_sweep_takes_an_optimizer(tmp_path):
    from paramspec._transfer._sweep import sweep

    rows = []
    sweep(["mup"], model="mlp", widths=[16], lrs=[1e-2], seeds=[0], steps=2, out=tmp_path,
          progress=False, optimizer="muon", on_run=rows.append)
    assert [row["spec"] for row in rows] == ["mup@muon"]
    assert np.isfinite(float(rows[0]["loss"]))
