"""`equivalent`: the symmetry of theory.md §3 with the corrected Adam-atan2 and eps rules."""

from __future__ import annotations

import json
from fractions import Fraction as F

import pytest
from hypothesis import given
from hypothesis import strategies as st

import paramspec as ps
from paramspec._analysis._check import to_text
from paramspec._analysis._equiv import equivalent, render_equiv, shift
from paramspec._ir import OPTIMIZERS

H = F(1, 2)
ALIGNMENTS = ("full", "none")
# theory.md §2, (a) per role: input, hidden, output.
A_TABLE = {"sp": (0, 0, 0), "ntk": (0, H, H), "mup": (-H, 0, H), "mfp": (0, H, 1)}
LAYERS = ("embedding", "hidden", "readout")


def _theta(a: str, b: str) -> dict[str, F]:
    expected = {
        layer: F(y) - F(x) for layer, x, y in zip(LAYERS, A_TABLE[a], A_TABLE[b], strict=True)
    }
    return {**expected, "vectors": F(0), "constants": F(0)}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize("a,b", [("sp", "ntk"), ("mup", "mfp"), ("ntk", "sp"), ("mfp", "mup")])
def test_table_pairs_are_equivalent(a, b, optimizer, alignment):
    report = equivalent(a, b, optimizer=optimizer, alignment=alignment)
    assert report.equivalent, report.reasons
    assert report.exponents_equivalent and report.constants_equivalent
    assert report.theta == _theta(a, b)
    assert report.reasons == ()

    def core(canon):  # the decay (c + wd) only counts with weight_decay=True
        return {
            x: {k: v for k, v in d.items() if k not in ("decay", "values")}
            for x, d in canon.items()
        }

    assert core(report.canonical_a) == core(report.canonical_b)
    assert all(d["a"] == "0" for d in report.canonical_a.values())


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize("a,b", [("sp", "mup"), ("ntk", "mfp"), ("sp", "mfp")])
def test_different_classes_are_not_equivalent(a, b, optimizer, alignment):
    report = equivalent(a, b, optimizer=optimizer, alignment=alignment)
    assert not report.equivalent and not report.exponents_equivalent
    # The readout's effective init scale a+b is 1/2 in the SP class and 1 in the muP class.
    assert any(r.startswith("`readout`: a+b") for r in report.reasons)


def test_sp_to_ntk_theta_and_json():
    report = equivalent("sp", "ntk", optimizer="adam")
    data = report.to_dict()
    assert data["equivalent"] is True
    assert data["theta"]["hidden"] == "1/2" and data["theta"]["readout"] == "1/2"
    assert data["theta"]["embedding"] == "0"
    json.dumps(data)  # plain data
    text = to_text(render_equiv(report))
    assert "sp vs ntk under adam: EQUIVALENT" in text


def _n(x: F) -> str:
    """`n^(x)` as .pspec text."""
    return "1" if x == 0 else f"n^({x})"


def _explicit(name: str, a, b, c, e) -> ps.Spec:
    lines = [f"spec {name}", "optimizer adam"]
    for layer, ai, bi, ci, ei in zip(LAYERS, a, b, c, e, strict=True):
        lines += [
            f"{layer} {{",
            f"  multiplier {_n(-ai)}",
            f"  init {_n(-bi)}",
            f"  lr {_n(-ci)}",
            f"  eps {_n(-ei)}",
            "}",
        ]
    return ps.parse("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "optimizer,k", [("sgd", 2), ("adam", 1), ("adam_atan2", 1), ("adafactor", 0)]
)
def test_explicit_learning_rates_follow_the_corrected_rules(optimizer, k):
    sp = ps.compile("sp", width=8, optimizer=optimizer, alignment="full").theory.layers
    a = [sp[x].a for x in LAYERS]
    b = [sp[x].b for x in LAYERS]
    c = [sp[x].c for x in LAYERS]
    e = [sp[x].e for x in LAYERS]
    theta = [F(0), H, H]
    base = _explicit("base", a, b, c, e)

    def moved(kk: int, eps_moves: bool) -> ps.Spec:
        return _explicit(
            "moved",
            [x + t for x, t in zip(a, theta, strict=True)],
            [x - t for x, t in zip(b, theta, strict=True)],
            [x - kk * t for x, t in zip(c, theta, strict=True)],
            [x + t if eps_moves else x for x, t in zip(e, theta, strict=True)],
        )

    right = equivalent(base, moved(k, True), optimizer=optimizer)
    assert right.equivalent, right.reasons
    assert right.theta == dict(zip(LAYERS, theta, strict=True))
    # theory.md §3's "Adam-atan2: c' = c" (k = 0) is a slip: not equivalent under atan2.
    for wrong in {0, 1, 2} - {k}:
        report = equivalent(base, moved(wrong, True), optimizer=optimizer)
        assert not report.equivalent
        assert any("effective step exponent" in r for r in report.reasons)
    # The epsilon must move with the gradient where there is one (e' = e + theta; the
    # "e' = e - theta" of theory.md §3 is the other slip).
    kept_eps = equivalent(base, moved(k, False), optimizer=optimizer)
    assert kept_eps.equivalent is (optimizer in ("sgd", "adam_atan2"))
    if not kept_eps.equivalent:
        assert any("epsilon relative to W's gradient" in r for r in kept_eps.reasons)


@given(
    base=st.sampled_from(sorted(A_TABLE)),
    thetas=st.tuples(*[st.sampled_from([-1, -H, 0, H, 1])] * 3),
    optimizer=st.sampled_from(OPTIMIZERS),
    alignment=st.sampled_from(ALIGNMENTS),
)
def test_any_shift_of_a_table_spec_is_equivalent(base, thetas, optimizer, alignment):
    """Shift every layer of a built-in by any theta; `auto` re-derives lr and eps."""
    layers = ps.compile(base, width=8, alignment=alignment).theory.layers
    text = [f"spec moved\nextends {base}"]
    for layer, t in zip(LAYERS, thetas, strict=True):
        a, b = layers[layer].a + F(t), layers[layer].b - F(t)
        text.append(f"{layer} {{\n  multiplier {_n(-a)}\n  init {_n(-b)}\n}}")
    report = equivalent(
        base, ps.parse("\n".join(text) + "\n"), optimizer=optimizer, alignment=alignment
    )
    assert report.equivalent, report.reasons
    assert [report.theta[x] for x in LAYERS] == [F(t) for t in thetas]


def test_constants_fold_by_the_optimizer():
    """ntk's hidden multiplier x2 and init x1/2: W is the same; the lr must follow."""
    adam = ps.parse(
        "spec n2\nextends ntk\nhidden {\n  multiplier 2 * fan_in^(-1/2)\n"
        "  init 0.5\n  lr 0.5 * auto\n  eps 2 * auto\n}\n"
    )
    sgd = ps.parse(
        "spec n2\nextends ntk\nhidden {\n  multiplier 2 * fan_in^(-1/2)\n"
        "  init 0.5\n  lr 0.25 * auto\n}\n"
    )
    assert equivalent("ntk", adam, optimizer="adam").equivalent
    assert equivalent("ntk", adam, optimizer="adam_atan2").equivalent  # eps unused
    assert equivalent("ntk", sgd, optimizer="sgd").equivalent
    report = equivalent("ntk", adam, optimizer="sgd")  # adam's lr folding is wrong for sgd
    assert not report.equivalent
    assert report.exponents_equivalent and report.constants_equivalent is False
    assert any("effective learning-rate factor" in r for r in report.reasons)
    assert equivalent("ntk", adam, optimizer="sgd", constants=False).equivalent


def test_constant_differences_alone():
    spec = ps.parse("spec sp2\nextends sp\nhidden {\n  init 2 * fan_in^(-1/2)\n}\n")
    report = equivalent("sp", spec, optimizer="adam")
    assert not report.equivalent
    assert report.exponents_equivalent and report.constants_equivalent is False
    assert any("W's init std" in r for r in report.reasons)


def test_weight_decay_is_compared_on_request():
    # Plain sp and ntk: the same training without decay, different per-step decay with it.
    plain = equivalent("sp", "ntk", optimizer="adam")
    assert plain.equivalent and not plain.weight_decay_equivalent
    assert any("c + wd" in n and "`hidden`" in n for n in plain.notes)
    assert not equivalent("sp", "ntk", optimizer="adam", weight_decay=True).equivalent
    # `wd auto` keeps lr * wd width-invariant in both: equivalent with decay too.
    sp = ps.parse(
        "spec spd\nextends sp\n"
        + "".join(f"{x} {{\n  wd auto\n}}\n" for x in (*LAYERS, "vectors", "constants"))
    )
    ntk = ps.parse(
        "spec ntkd\nextends ntk\n"
        + "".join(f"{x} {{\n  wd auto\n}}\n" for x in (*LAYERS, "vectors", "constants"))
    )
    for optimizer in OPTIMIZERS:
        report = equivalent(sp, ntk, optimizer=optimizer, weight_decay=True)
        assert report.equivalent and report.weight_decay_equivalent, report.reasons


def test_mismatched_blocks_and_optimizers():
    lone = ps.parse(
        "spec lone\noptimizer sgd\nhidden {\n  init fan_in^(-1/2)\n  lr auto\n}\n"
        "readout {\n  init fan_in^(-1)\n  lr auto\n}\n"
    )
    report = equivalent("mup", lone)
    assert not report.equivalent
    assert any("block `embedding` is only in `mup`" == r for r in report.reasons)
    assert any("trains with adam" in r and "with sgd" in r for r in report.reasons)
    with pytest.raises(ps.SpecError, match="unknown optimizer"):
        equivalent("sp", "ntk", optimizer="lamb")


def test_shift_is_a_group_action():
    x = {"a": F(1, 3), "b": F(1, 2), "c": F(1), "e": F(1, 4), "wd": F(0)}
    for optimizer in OPTIMIZERS:
        assert shift(shift(x, H, optimizer), -H, optimizer) == x
        assert shift(shift(x, H, optimizer), F(1, 3), optimizer) == shift(x, H + F(1, 3), optimizer)
