"""Property 1 across depth: measured = predicted. The slope of log rms(change) against
log depth of the residual stream, the blocks' contributions and the logits after one
step matches the first-step prediction from the spec's depth exponents
(`paramspec._coord_depth.depth_first_step_terms`, exact Fractions), for random depth
specs, judged by the library's one rule (`paramspec._coord.judgement`).

Random specs (`depth_specs`): muP in width (`extends completep`), a depth exponent alpha
in [1/2, 1], a branch multiplier `m^(-alpha)` or `m^(-beta)` with its own beta in
[1/2, 1], a depth multiplier `m^(-a)` on the hidden matrices with the init compensating
(`m^(+a)`: stable at init, as `stable_specs` does in width), and the hidden and vector
learning rates `auto` or `m^(-c)`. Model: a pre-norm residual MLP (`tests/depth_model.py`,
the reference transformer's block structure without attention, so that an example runs
in seconds), width 32, depths 2, 4, 8 (base 2), `linear_loss`.
"""

from __future__ import annotations

from fractions import Fraction as F

import jax
import pytest
from hypothesis import Phase, given, note, settings
from hypothesis import strategies as st

import paramspec as ps
from paramspec._coord import linear_loss
from paramspec._coord_depth import coord_check_depth

from ..depth_model import resmlp
from ..strategies import examples

pytestmark = [pytest.mark.property,
              pytest.mark.filterwarnings("ignore::paramspec.UnstableSpecWarning")]

DEPTHS = (2, 4, 8)
SEEDS = {"sgd": (0, 1, 2), "adafactor": (0, 1)}  # SGD's step follows the gradient's size
# An example costs seconds: report a failure as drawn, no shrinking (minutes).
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
SHIFTS = (None, F(-1, 4), F(1, 4))  # None: `lr auto`; else the auto exponent shifted


@st.composite
def depth_specs(draw, optimizer, shifts=SHIFTS):
    """A random spec with depth exponents, as text (parsed by the library).

    The hidden learning rate is `auto` or the auto exponent shifted by +-1/4 (the L
    blocks then move the stream like `m^(+-1/4)`): larger shifts put the embedding's
    Θ(1) change and the blocks' next to each other with exponents far apart, and over
    depths 2..8 the fitted slope of such a sum sits anywhere between them.
    The vector (norm gain) learning rate stays `auto`: at width 32 a gain's update moves
    its branch ~width times less than a matrix's, so its depth exponent is not visible
    over two octaves of depth. SGD keeps `auto` (`shifts=(None,)`): shifted by -1/4 its
    stream measured -0.14 against a predicted +0.25 (alpha = 3/4), an open finding
    (docs/theory.md, "Depth")."""
    alpha = draw(st.sampled_from([F(1, 2), F(2, 3), F(3, 4), F(1)]))
    branch = draw(st.sampled_from(["m^(-alpha)", "m^(-1/2)", "m^(-3/4)", "m^(-1)"]))
    a = F(0) if optimizer == "adafactor" else draw(st.sampled_from([F(-1, 2), F(0), F(1, 2)]))
    shift = draw(st.sampled_from(shifts))

    def text(lr):
        return f"""spec random_depth
extends completep
depth_alpha {alpha}

hidden {{
    multiplier  m^({-a})
    init        fan_in^(-1/2) * m^({a})
    lr          {lr}
    eps         auto
}}

residual {{
    branch      {branch}
}}
"""

    if shift is None:
        return text("auto")
    auto = ps.compile(ps.parse(text("auto")), width=32, depth=4, base_depth=2,
                      optimizer=optimizer).depth_theory.layers["hidden"].c
    return text(f"m^({-(auto + shift)})")


def _batch():
    key = jax.random.key(42)
    return (jax.random.normal(key, (8, 8)), jax.random.normal(jax.random.fold_in(key, 1), (8, 4)))


def assert_depth_slopes_match(text, optimizer):
    spec = ps.parse(text)
    note(f"optimizer={optimizer}\n{text}")
    check = coord_check_depth(spec, resmlp, _batch(), linear_loss, depths=DEPTHS, width=32,
                              seeds=SEEDS.get(optimizer, (0,)), optimizer=optimizer)
    for layer in check.layers:
        note(f"{layer.name}: slope {layer.slope:+.3f}, predicted {layer.predicted:+g}, "
             f"band -{layer.tolerance[0]:.2f}/+{layer.tolerance[1]:.2f}, relative "
             f"{layer.relative:.2g}, deltas {[f'{d:.3g}' for d in layer.deltas]}")
    for layer in check.layers:
        assert layer.verdict == "pass", (
            f"{layer.name}: measured slope {layer.slope:+.3f}, predicted {layer.predicted:+g}, "
            f"band -{layer.tolerance[0]:.2f}/+{layer.tolerance[1]:.2f} ({optimizer}) "
            f"{layer.note}\n{text}")


@settings(max_examples=examples(2), phases=NO_SHRINK)
@given(text=depth_specs("adam"))
def test_random_depth_spec_slopes_match_the_prediction_adam(text):
    assert_depth_slopes_match(text, "adam")


@settings(max_examples=examples(2), phases=NO_SHRINK)
@given(text=depth_specs("sgd", shifts=(None,)))
def test_random_depth_spec_slopes_match_the_prediction_sgd(text):
    assert_depth_slopes_match(text, "sgd")


@pytest.mark.slow
@settings(max_examples=examples(2), phases=NO_SHRINK)
@given(data=st.data(), optimizer=st.sampled_from(["adam_atan2", "adafactor"]))
def test_random_depth_spec_slopes_match_the_prediction_atan2_adafactor(data, optimizer):
    # `auto` only: shifted by 1/4 (Adafactor, beta = 3/4), the first block's own update
    # (m^(-5/4)) outweighed its response to the embedding's change (m^(-3/4)) over depths
    # 2..8: slope -1.14 against -0.75 (docs/theory.md, "Depth", open findings).
    assert_depth_slopes_match(data.draw(depth_specs(optimizer, shifts=(None,))), optimizer)
