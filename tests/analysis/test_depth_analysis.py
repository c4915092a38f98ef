"""`check`, `explain` and `equivalent` in depth and for the attention logits.

The expected exponents are derived here from docs/theory.md §12's model on their own
(one block's update moves the stream by m^(-(beta + a + s)), m blocks add up), not read
from `_depthcheck`.
"""

from __future__ import annotations

import json
from fractions import Fraction as F

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import paramspec as ps
from paramspec._analysis import check, equivalent, explain, render_check, to_text
from paramspec._cli import app
from paramspec._ir import OPTIMIZERS

ALPHAS = (F(1, 2), F(3, 4), F(1))


def expected_completep_hidden(optimizer: str, alpha: F) -> dict[str, F]:
    """completep's `hidden` (a_m = b_m = 0, beta = alpha, lr/eps auto), by hand."""
    beta = alpha
    g = beta  # behind the branch multiplier
    c = {"sgd": 1 - 2 * beta}.get(optimizer, 1 - beta)
    s = c + g if optimizer == "sgd" else c  # b_m = 0: adafactor's step is c too
    return {"c": c, "g": g, "s": s, "q": s, "r": beta + s - 1}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_completep_in_depth_matches_the_hand_derivation(optimizer):
    for alpha in ALPHAS:
        report = check("completep", optimizer=optimizer, alignment="full", depth=16,
                       base_depth=4, depth_alpha=alpha)
        d = report.cases[0].depth
        assert d.alpha == alpha and d.beta == alpha and d.m == 4
        h = d.layers["hidden"]
        want = expected_completep_hidden(optimizer, alpha)
        assert {k: getattr(h, k if k != "s" else "step") for k in want} == want
        assert h.r == 0 and h.q == 1 - alpha  # Theta(1) stream; blocks lazy below alpha 1
        assert d.init == alpha - F(1, 2)  # m branches at init add m^(1/2 - alpha)
        assert d.layers["embedding"].r == 0 and not d.layers["embedding"].repeated
        assert d.verdict == ("every block learns" if alpha == 1 else "stable, lazy blocks")
        assert report.stable and not report.warnings


def test_mup_is_unstable_in_depth_when_asked_and_says_why():
    assert check("mup").cases[0].depth is None  # not asked: width only
    report = check("mup", depth=16, base_depth=4)
    case = report.cases[0]
    d = case.depth
    assert not report.stable and not case.unstable_layers  # stable in width
    assert d.verdict == "unstable at init in depth" and d.assumed
    assert d.init == F(-1, 2)  # the stream grows like m^(1/2) at init
    assert d.layers["hidden"].r == -1 and d.layers["hidden"].repeated  # m^1 per step
    assert not d.layers["readout"].repeated
    text = to_text(render_check(report))
    assert text.startswith("mup: UNSTABLE in depth")
    assert "no `depth` line" in text and "`residual { branch m^(-alpha) }`" in text
    assert "Fix: lr ∝ m^(-1) in block `hidden`" in text


def test_depth_repeated_without_a_residual_block_is_unstable_at_init(tmp_path):
    path = tmp_path / "deep.pspec"
    path.write_text("spec deep\nextends mup\n\nhidden {\n    depth repeated\n}\n",
                    encoding="utf-8")
    case = check(ps.load(path), optimizer="adam", alignment="full").cases[0]
    d = case.depth
    assert d.beta == 0 and d.init == F(-1, 2) and not d.assumed
    # lr auto solves the training condition even without a branch multiplier (c_m = 1)...
    assert d.layers["hidden"].c == 1 and d.layers["hidden"].r == 0
    # ...but m unscaled branches make the stream grow like m^(1/2) at init
    assert not case.stable and any("add `residual { branch m^(-alpha) }`" in r
                                   for r in d.reasons)


def test_a_fixed_depth_lr_is_located_and_its_fix_named(tmp_path):
    path = tmp_path / "slow.pspec"
    path.write_text("spec slow\nextends completep\n\nhidden {\n    lr n^(-1) * m^(-1/2)\n}\n",
                    encoding="utf-8")
    d = check(ps.load(path), optimizer="adam", alignment="full").cases[0].depth
    h = d.layers["hidden"]
    assert h.c == F(1, 2) and h.r == F(1, 2) and h.verdict == "vanishing in depth"
    assert d.stable  # lazy, not unstable
    (reason,) = h.reasons  # located at the written lr, the fix symbolic in alpha
    assert f"block `hidden` ({path}:5:8)" in reason
    assert "lr ∝ m^(-1 + alpha) (= 1 at alpha 1)" in reason
    fast = path.with_name("fast.pspec")
    fast.write_text("spec fast\nextends completep\n\nhidden {\n    lr n^(-1) * m^(1/2)\n}\n",
                    encoding="utf-8")
    h = check(ps.load(fast), optimizer="sgd", alignment="full").cases[0].depth.layers["hidden"]
    # sgd at alpha 1: g = beta = 1, s = c + g = 1/2, r = beta + s - 1 = 1/2: lazy, and
    # it needs c = 1 - 2 beta, lr ∝ m
    assert (h.c, h.g, h.step, h.r) == (F(-1, 2), 1, F(1, 2), F(1, 2))
    assert "lr ∝ m^(-1 + 2*alpha) (= m at alpha 1)" in h.reasons[0]
    h = check(ps.load(fast), optimizer="adam", alignment="full").cases[0].depth.layers["hidden"]
    assert h.r == F(-1, 2) and h.verdict == "unstable in depth"
    assert "unstable in depth" in h.reasons[0] and f"{fast}:5:8" in h.reasons[0]


def test_sp_depth_is_stable_at_init_but_not_in_training():
    d = check("sp-depth", optimizer="adam", alignment="full").cases[0].depth
    assert d.init == 0  # GPT-2's 1/sqrt(2L) projections keep the stream O(1) at init
    assert d.layers["residual_proj"].b == F(1, 2)
    assert d.layers["residual_proj"].r == -1 and not d.stable


def test_width_only_output_is_unchanged_by_depth():
    report = check("mup")
    assert "depth" not in json.dumps(report.to_dict())
    assert "in depth" not in to_text(render_check(report))
    assert "Depth" not in explain("mup", "hidden")
    assert "depth" not in equivalent("sp", "ntk", optimizer="adam").to_dict()


def test_json_carries_the_depth_verdicts():
    d = check("completep", depth=16, base_depth=4).to_dict()["cases"][0]["depth"]
    assert (d["depth"], d["base_depth"], d["depth_alpha"], d["branch"]) == (16, 4, "1", "1")
    assert d["stable"] and d["init"] == "1/2"
    assert d["layers"]["hidden"]["exponents"]["r"] == "0"
    assert d["layers"]["hidden"]["needed_lr_power"] == "-1 + alpha"


# ---------------------------------------------------------------- equivalence


def test_completep_is_not_mup_in_depth():
    report = equivalent("completep", "mup", optimizer="adam", constants=False)
    assert not report.equivalent
    assert any("branch multiplier is m^(-1) in `completep` but 1 in `mup`" in r
               for r in report.reasons)


def test_completep_and_depth_mup_agree_only_at_one_alpha():
    assert not equivalent("completep", "depth-mup").equivalent
    report = equivalent("completep", "depth-mup", depth_alpha=1)
    assert report.equivalent and report.depth["branch"] == {"a": "1", "b": "1"}


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adafactor", "adam_atan2"])
def test_completep_written_two_ways_is_equivalent(optimizer):
    # alpha written out as 1, and the depth analogue of the abc symmetry (theta_m = 1/2)
    literal = ps.parse("spec literal\nextends completep\nresidual {\n    branch m^(-1)\n}\n")
    shifted = ps.parse("spec shifted\nextends completep\nhidden {\n"
                       "    multiplier m^(-1/2)\n    init fan_in^(-1/2) * m^(1/2)\n}\n")
    assert equivalent("completep", literal, optimizer=optimizer).equivalent
    report = equivalent("completep", shifted, optimizer=optimizer)
    assert report.equivalent, report.reasons
    assert report.depth["theta_m"]["hidden"] == "1/2"
    # without the init's compensation the shift is a different training
    unmatched = ps.parse("spec u\nextends completep\nhidden {\n    multiplier m^(-1/2)\n}\n")
    assert not equivalent("completep", unmatched, optimizer=optimizer).equivalent


def test_specs_differing_only_in_the_logit_scale_are_not_equivalent():
    standard = ps.parse("spec std\nextends mup\nattention {\n    logits head_dim^(-1/2)\n}\n")
    report = equivalent("mup", standard, optimizer="adam")
    assert not report.equivalent and not report.exponents_equivalent
    assert any("where the head size grows the scale is ∝ n^(-1)" in r for r in report.reasons)
    doubled = ps.parse("spec two\nextends mup\nattention {\n"
                       "    logits 2 * head_dim^(-1/2) * head_n^(-1/2)\n}\n")
    assert not equivalent("mup", doubled, optimizer="adam").equivalent
    assert equivalent("mup", doubled, optimizer="adam", constants=False).equivalent


# ---------------------------------------------------------------- attention in check


def test_check_reports_logits_that_grow_with_width():
    case = check("sp", optimizer="adam", alignment="full").cases[0]
    assert case.stable  # the growth is not known: a warning
    (warning,) = [w for w in case.warnings if "attention" in w]
    assert "head size grows" in warning and "n^(1/2)" in warning
    counted = check("sp", optimizer="adam", alignment="full", attention="head_size")
    assert not counted.stable
    assert to_text(render_check(counted)).startswith("sp: UNSTABLE in attention logits")
    assert check("sp", optimizer="adam", alignment="full", attention="heads").stable
    mup = check("mup", attention="head_size").cases[0]
    assert mup.stable and not mup.warnings and mup.attention[0].theory.r == 0
    with pytest.raises(ps.SpecError, match="unknown attention growth"):
        check("mup", attention="width")


# ---------------------------------------------------------------- explain


def test_explain_derives_the_depth_factors():
    text = explain("completep", "hidden", depth=16, base_depth=4)
    assert "m = depth / base_depth = 16/4 (= 4)" in text
    assert "g_m = beta + a_m = 1 + 0 = 1" in text
    assert "lr auto (adam, step = c): c = 1 - beta - a = 0" in text
    assert "lr needs m^(-1 + alpha)" in text and "every block learns" in text
    sgd = explain("depth-mup", "hidden", optimizer="sgd")
    assert "c = 1 - beta - a - g = 0" in sgd and "q = a_m + s = 1/2" in sgd
    blind = explain("mup", "hidden", depth=16)
    assert "assumed inside the repeated blocks" in blind and "unstable in depth" in blind


def test_explain_residual_and_attention():
    text = explain("completep", "residual", depth=16, base_depth=4)
    assert "at this depth it is 0.25" in text and "O(1): stable at init" in text
    text = explain("mup", "residual", depth=8)
    assert "grows like m^(1/2): unstable at init" in text
    text = explain("sp", "attention")
    assert "docs/theory.md §9" in text and "growing like n^(1/2): unstable" in text
    assert "their change Theta(1)" in explain("mup", "attention")


# ---------------------------------------------------------------- CLI


def test_cli_check_explain_equiv_in_depth():
    runner = CliRunner()
    ok = runner.invoke(app, ["check", "completep", "--depth", "16", "--base-depth", "4"])
    assert ok.exit_code == 0 and "every block learns" in ok.stdout
    bad = runner.invoke(app, ["check", "mup", "--depth", "16", "--format", "json"])
    assert bad.exit_code == 3
    assert json.loads(bad.stdout)["cases"][0]["depth"]["verdict"] == "unstable at init in depth"
    same = runner.invoke(app, ["equiv", "completep", "depth-mup", "--depth-alpha", "1"])
    assert same.exit_code == 0 and "in depth" in same.stdout
    why = runner.invoke(app, ["explain", "completep", "--layer", "residual"])
    assert why.exit_code == 0 and "Residual branches" in why.stdout
    wrong = runner.invoke(app, ["check", "mup", "--depth-alpha", "2"])
    assert wrong.exit_code == 2 and "outside [1/2, 1]" in wrong.output


def test_an_epsilon_without_its_depth_factor_is_warned_about():
    spec = ps.parse("spec e\nextends completep\nhidden {\n    eps n^(-1)\n}\n")
    case = check(spec, optimizer="adam", alignment="full").cases[0]
    h = case.depth.layers["hidden"]
    assert (h.g, h.e) == (1, 0) and h.stable  # a warning, not an instability
    (warning,) = h.warnings
    assert "eps/sqrt(v) grows like m^(1)" not in warning and "grows like m and" in warning
    assert warning in case.warnings
    assert not check("completep", optimizer="adam", alignment="full").warnings


GRID = st.sampled_from([F(k, 4) for k in range(-4, 5)])


@settings(max_examples=10, deadline=None)
@given(theta=GRID, optimizer=st.sampled_from(OPTIMIZERS), alpha=st.sampled_from(ALPHAS))
def test_the_depth_symmetry_changes_no_verdict(theta, optimizer, alpha):
    """Storing `hidden` as m^(theta) w (multiplier m^(-theta), init m^(theta), lr/eps auto)
    is the same training: equivalent, and check's depth exponents q, r_m unchanged."""
    moved = ps.parse(f"spec moved\nextends completep\nhidden {{\n    multiplier m^({-theta})\n"
                     f"    init fan_in^(-1/2) * m^({theta})\n}}\n")
    report = equivalent("completep", moved, optimizer=optimizer, depth_alpha=alpha)
    assert report.equivalent, report.reasons
    assert F(report.depth["theta_m"]["hidden"]) == theta
    a, b = (check(x, optimizer=optimizer, alignment="full", depth_alpha=alpha).cases[0].depth
            for x in ("completep", moved))
    assert (b.layers["hidden"].q, b.layers["hidden"].r) == (a.layers["hidden"].q, 0)


@settings(max_examples=10, deadline=None)
@given(p=GRID, optimizer=st.sampled_from(OPTIMIZERS), alpha=st.sampled_from(ALPHAS))
def test_a_written_depth_lr_gives_the_hand_derived_stream_exponent(p, optimizer, alpha):
    """lr ∝ m^p in completep's `hidden`: r_m = beta + s - 1 with s = -p (+ g under sgd)."""
    spec = ps.parse(f"spec w\nextends completep\nhidden {{\n    lr n^(-1) * m^({p})\n}}\n")
    h = check(spec, optimizer=optimizer, alignment="full",
              depth_alpha=alpha).cases[0].depth.layers["hidden"]
    s = -p + (alpha if optimizer == "sgd" else 0)
    assert (h.step, h.q, h.r) == (s, s, alpha + s - 1)
    assert h.verdict == ("unstable in depth" if alpha + s < 1 or s < 0 else
                         "vanishing in depth" if alpha + s > 1 else
                         "every block learns" if s == 0 else "lazy blocks")
