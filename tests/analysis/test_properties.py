"""Properties of the analysis layer on random stable specs (tests/strategies.py)."""

from __future__ import annotations

from fractions import Fraction as F

import pytest
from hypothesis import given
from hypothesis import strategies as st

import paramspec as ps
from paramspec._analysis import check, equivalent, explain
from paramspec._analysis._equiv import SHIFT_C
from paramspec._ir import OPTIMIZERS, Exponent, Expr, Power

from ..strategies import stable_specs

ALIGNMENTS = st.sampled_from([F(1), F(3, 4), F(1, 2)])
# Random specs (fixed learning rates among them) may be unstable for their optimizer:
# that is expected here, not a reason to warn.
pytestmark = [pytest.mark.property,
              pytest.mark.filterwarnings("ignore::paramspec.UnstableSpecWarning")]


@given(spec=stable_specs(), optimizer=st.sampled_from(OPTIMIZERS), alignment=ALIGNMENTS)
def test_check_agrees_with_the_theory(spec, optimizer, alignment):
    theory = ps.compile(spec, width=8, optimizer=optimizer, alignment=alignment).theory
    case = check(spec, optimizer=optimizer, alignment=alignment).cases[0]
    assert case.stable is theory.stable
    assert case.feature_learning is theory.feature_learning
    for name, layer in case.layers.items():
        assert layer.r == theory.layers[name].r
        assert layer.stable is (theory.layers[name].r is None or theory.layers[name].r >= 0)
        assert (layer.reasons != ()) is (not layer.stable)
    # `prescribed_c` is the theory's own choice (every lr auto), and that is stable
    auto = spec.model_copy(
        update={
            "blocks": tuple(b.model_copy(update={"lr": Expr(kind="auto")}) for b in spec.blocks)
        }
    )
    auto_case = check(auto, optimizer=optimizer, alignment=alignment).cases[0]
    assert auto_case.stable
    for name, layer in case.layers.items():
        assert layer.prescribed_c == auto_case.layers[name].c


def _n_power(x: F) -> Expr:
    return Expr(powers=(Power(symbol="n", exponent=Exponent(const=x)),))


@given(
    spec=stable_specs(),
    thetas=st.tuples(*[st.sampled_from([F(-1), F(-1, 2), F(0), F(1, 2), F(1)])] * 3),
    optimizer=st.sampled_from(OPTIMIZERS),
    alignment=ALIGNMENTS,
)
def test_every_shift_is_equivalent_and_nothing_else_moves(spec, thetas, optimizer, alignment):
    """Shift each layer by theta with the corrected rule: equivalent, with that theta."""
    k = SHIFT_C[optimizer]
    blocks = []
    for block, theta in zip(spec.blocks, thetas, strict=True):
        a = -block.multiplier.exponent_of("n").const
        b = -block.init.exponent_of("n").const
        update = {"multiplier": _n_power(-(a + theta)), "init": _n_power(-(b - theta))}
        if block.lr.kind == "value":
            c = -block.lr.exponent_of("n").const
            update["lr"] = _n_power(-(c - k * theta))
        blocks.append(block.model_copy(update=update))
    moved = spec.model_copy(update={"name": "moved", "blocks": tuple(blocks)})
    report = equivalent(spec, moved, optimizer=optimizer, alignment=alignment)
    assert report.equivalent, report.reasons
    assert [report.theta[b.name] for b in spec.blocks] == list(thetas)
    assert equivalent(spec, spec, optimizer=optimizer, alignment=alignment).equivalent
    # and the two have the same stability verdicts, layer by layer
    one = check(spec, optimizer=optimizer, alignment=alignment).cases[0]
    two = check(moved, optimizer=optimizer, alignment=alignment).cases[0]
    assert {n: x.r for n, x in one.layers.items()} == {n: x.r for n, x in two.layers.items()}


@given(spec=stable_specs(), optimizer=st.sampled_from(OPTIMIZERS), alignment=ALIGNMENTS)
def test_explain_states_every_exponent(spec, optimizer, alignment):
    theory = ps.compile(spec, width=8, optimizer=optimizer, alignment=alignment).theory
    for name, layer in theory.layers.items():
        text = explain(spec, name, optimizer=optimizer, alignment=alignment)
        assert f"-> c = {layer.c}" in text and f"   r = {layer.r} -> " in text
        assert f"g = {layer.g}" in text or f"= {layer.g}." in text
