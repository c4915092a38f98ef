"""`check`: stability verdicts, named layers, epsilon underflow, JSON shape."""

from __future__ import annotations

import json
import math
from fractions import Fraction as F

import pytest

import paramspec as ps
from paramspec._analysis._check import (
    GRAD_SCALE,
    GRAD_WIDTH,
    UNDERFLOW_RATIO,
    check,
    render_check,
    to_text,
    update_terms,
)
from paramspec._ir import OPTIMIZERS

SWEEP_BASELINES = {"sp-global", "sp-embed-lr"}  # unstable at a fixed lr, by design


@pytest.mark.parametrize("name", ps.builtin_names())
def test_builtins_pass_for_their_own_optimizer(name):
    spec = ps.load(name)
    report = check(name)
    assert spec.optimizer is not None
    assert [case.optimizer for case in report.cases] == [spec.optimizer]
    if name in SWEEP_BASELINES:
        assert not report.stable
        case = report.case("adam", "full")
        assert not case.stable and case.verdict == "unstable in training"
        # DESIGN: the hidden and readout layers need c = 1 at a fixed learning rate.
        for layer in ("hidden", "readout"):
            assert layer in case.unstable_layers
            assert any("needs c >= 1" in r for r in case.layers[layer].reasons)
    elif name == "sp-depth":  # stable in width, not in depth (its init-only heuristic)
        assert not report.stable and report.feature_learning
        assert all(not c.unstable_layers and not c.depth.stable for c in report.cases)
    else:
        assert report.stable and report.feature_learning
        assert all(case.verdict == "feature learning" for case in report.cases)


def test_sp_embed_lr_names_the_embedding_as_the_root_cause():
    case = check("sp-embed-lr").case("adam", "full")
    assert case.unstable_layers == ["embedding", "hidden", "readout"]
    emb = case.layers["embedding"]
    assert emb.c == -1 and emb.r == -1 and emb.prescribed_c == 0
    assert any(
        "receives a change" in r and "`embedding`" in r for r in case.layers["hidden"].reasons
    )


def test_default_cases_sweep_what_the_spec_leaves_open():
    spec = ps.parse(
        "spec open\nhidden {\n  init fan_in^(-1/2)\n  lr auto\n}\n"
        "readout {\n  init fan_in^(-1)\n  lr auto\n}\n"
    )
    report = check(spec)
    got = {(c.optimizer, c.alignment) for c in report.cases}
    assert got == {(o, a) for o in OPTIMIZERS for a in (F(1), F(1, 2))}
    assert report.stable  # every lr auto: stable everywhere
    assert len(check("mup", optimizer="all", alignment="all").cases) == 2 * len(OPTIMIZERS)
    assert [c.name for c in check("mup", optimizer="sgd", alignment="3/4").cases] == ["sgd/3/4"]


def test_sp_global_with_adafactor_and_no_alignment_is_stable():
    # theory.md §5: for Adafactor the no-alignment exponents are one global lr (c = 0).
    assert check("sp-global", optimizer="adafactor", alignment="none").stable
    assert not check("sp-global", optimizer="adafactor", alignment="full").stable


def test_unstable_init_spec_fails_with_the_layer_named():
    spec = ps.parse(
        "spec bad\noptimizer adam\nalignment full\n"
        "embedding {\n  init 1\n  lr auto\n}\n"
        "hidden {\n  init 1\n  lr auto\n  allow unstable_init\n}\n"
        "readout {\n  init fan_in^(-1)\n  lr auto\n}\n"
    )
    report = check(spec)
    assert not report.stable
    case = report.cases[0]
    assert case.verdict == "unstable at init"
    assert case.unstable_layers == ["hidden"]
    layer = case.layers["hidden"]
    assert not layer.stable_init and layer.verdict == "unstable at init"
    assert any("a+b = 0" in r and "a+b = 1/2" in r for r in layer.reasons)
    assert "hidden: unstable at init" in to_text(render_check(report))


def test_too_large_learning_rate_fails_with_the_layer_named():
    spec = ps.parse("spec hot\nextends mup\nhidden {\n  lr n^(-1/2)\n}\n")
    case = check(spec).cases[0]
    assert not case.stable
    assert case.unstable_layers == ["hidden", "readout"]
    hidden = case.layers["hidden"]
    assert hidden.r == F(-1, 2) and hidden.prescribed_c == 1
    assert any("needs c >= 1" in r for r in hidden.reasons)
    readout = case.layers["readout"]
    assert any("from `hidden`" in r for r in readout.reasons)
    # Smaller learning rates than the theory's everywhere: stable but lazy. (Only the
    # hidden lr smaller would still move the hidden features through its inputs.)
    cold = check(
        ps.parse(
            "spec cold\nextends mup\nembedding {\n  lr n^(-1)\n}\n"
            "vectors {\n  lr n^(-1)\n}\n"
            "hidden {\n  lr n^(-2)\n}\nreadout {\n  lr n^(-1)\n}\n"
        )
    ).cases[0]
    assert cold.stable and not cold.feature_learning and cold.verdict == "kernel/lazy"
    assert cold.layers["hidden"].verdict == "kernel/lazy" and cold.layers["hidden"].r == F(1, 2)


@pytest.mark.parametrize("name", ps.builtin_names())
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("alignment", [F(1), F(3, 4), F(1, 2)])
def test_update_terms_reproduce_the_theory(name, optimizer, alignment):
    spec = ps.load(name)
    theory = ps.compile(spec, width=8, optimizer=optimizer, alignment=alignment).theory
    for block, terms in update_terms(spec, theory).items():
        layer = theory.layers[block]
        if terms is None:
            assert layer.role == "constant" and layer.r is None
        else:
            assert terms.r == layer.r, block


def test_json_is_plain_and_deterministic():
    report = check("sp-global", optimizer="all", alignment="all")
    data = report.to_dict()
    text = json.dumps(data, sort_keys=False)
    assert text == json.dumps(check("sp-global", optimizer="all", alignment="all").to_dict())
    assert data["stable"] is False and data["feature_learning"] is False
    for case in data["cases"]:
        assert isinstance(case["stable"], bool) and isinstance(case["feature_learning"], bool)
        for layer in case["layers"].values():
            assert isinstance(layer["stable"], bool)
            assert isinstance(layer["feature_learning"], bool)
            assert all(v is None or isinstance(v, str) for v in layer["exponents"].values())
    adafactor_none = [
        c for c in data["cases"] if c["optimizer"] == "adafactor" and c["alignment"] == "1/2"
    ]
    assert adafactor_none[0]["stable"] is True


def test_constant_eps_underflow_warning():
    """mup with a constant hidden eps: g = 1 under adam/full, eps/sqrt(v) grows like n."""
    spec = ps.parse("spec flat\nextends mup\nhidden {\n  eps 1\n}\n")
    # Independently: eps = ratio * grad_scale * (w / grad_width)^(-1)  =>  w = ...
    eps = 1e-8
    crossing = UNDERFLOW_RATIO * GRAD_SCALE * GRAD_WIDTH / eps
    below = check(spec, width=int(crossing / 2), eps=eps).cases[0].layers["hidden"].eps
    above = check(spec, width=int(crossing * 2), eps=eps).cases[0].layers["hidden"].eps
    assert below is not None and not below.underflow
    assert above is not None and above.underflow
    assert below.underflow_width == math.ceil(crossing - 1e-6)
    report = check(spec, width=int(crossing * 2), eps=eps)
    assert report.stable  # a warning, not an instability
    assert len(report.warnings) == 1 and "`hidden`" in report.warnings[0]
    assert "eps auto" in report.warnings[0]
    # eps auto (mup itself): never; optimizers without eps: never.
    assert check("mup", width=10**9).warnings == []
    assert check(spec, optimizer="adam_atan2", width=10**9).cases[0].layers["hidden"].eps is None


def test_bad_arguments_are_spec_errors():
    with pytest.raises(ps.SpecError, match="unknown optimizer `lamb`"):
        check("mup", optimizer="lamb")
    with pytest.raises(ps.SpecError, match="outside"):
        check("mup", alignment="2")
    with pytest.raises(ps.SpecError, match="grad_scale must be a finite number > 0"):
        check("mup", grad_scale=0.0)
    with pytest.raises(ps.SpecError, match="no spec named"):
        check("mupp")


def test_render_names_every_layer():
    text = to_text(render_check(check("sp-global")))
    assert "sp-global: UNSTABLE" in text
    for layer in ("embedding", "hidden", "readout"):
        assert layer in text
    assert "unstable in training" in text
    assert text == to_text(render_check(check("sp-global")))
