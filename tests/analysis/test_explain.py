"""`explain`: the derivation in words carries the theory's numbers."""

from __future__ import annotations

import pytest

import paramspec as ps
from paramspec._analysis._explain import explain, npow
from paramspec._ir import OPTIMIZERS


def test_mup_hidden_layer_numbers():
    text = explain("mup", "hidden", width=1024)
    for needle in (
        "under adam with alignment full",
        "init        fan_in^(-1/2)",
        "b = 1/2",
        "a+b = 1/2",
        "-> stable at init",
        "`readout`: a = 1/2, min(b, c~) = min(1/2, 1/2): entries ~ n^(-1)",
        "g = a + 1 = 0 + 1 = 1",
        "lr is `auto`",
        "-> c = 1",
        "c~ >= 1, i.e. c >= 1",
        "r = 0 -> feature learning",
        "e = g = 1",
        "init std    0.03125",  # 1024^(-1/2)
        "lr factor   0.000976562",  # 1024^(-1)
    ):
        assert needle in text, needle


def test_sgd_readout_uses_its_own_gradient():
    text = explain("mup", "readout", optimizer="sgd")
    assert "c~ = c + a (SGD" in text
    assert "sgd has no epsilon" in text
    assert "r = 0 -> maximal update" in text


def test_sgd_knee_is_explained():
    text = explain("mfp", "readout", optimizer="sgd", alignment="none")
    assert "The solver goes above that bound" in text
    assert "r = 1/2 -> kernel/lazy" in text


def test_unstable_layer_explains_the_gap():
    text = explain("sp-global", "hidden")
    assert "lr is written `1` -> c = 0" in text
    assert "the theory would pick c = 1" in text
    assert "larger than the theory's largest stable learning rate by n" in text
    assert "r = -1 -> UNSTABLE in training" in text


def test_constant_eps_is_flagged():
    spec = ps.parse("spec flat\nextends mup\nhidden {\n  eps 1\n}\n")
    text = explain(spec, "hidden")
    assert "eps / sqrt(v) grows like n^(1)" in text


@pytest.mark.parametrize("name", ps.builtin_names())
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("alignment", ["full", "none"])
def test_every_layer_states_the_theorys_exponents(name, optimizer, alignment):
    c = ps.compile(name, width=8, optimizer=optimizer, alignment=alignment)
    for block in c.blocks:
        t = c.theory.layers[block.name]
        text = explain(name, block.name, optimizer=optimizer, alignment=alignment)
        assert f"a = {t.a}" in text and f"b = {t.b}" in text
        assert f"-> c = {t.c}" in text
        if t.r is not None:
            assert f"   r = {t.r} -> " in text


def test_unknown_layer():
    with pytest.raises(ps.SpecError, match="has no block `middle`"):
        explain("mup", "middle")


def test_npow():
    from fractions import Fraction as F

    assert npow(F(0)) == "1" and npow(F(-1)) == "n"
    assert npow(F(1, 2)) == "n^(-1/2)" and npow(F(-3, 2)) == "n^(3/2)"
