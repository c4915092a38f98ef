"""Every built-in spec stays stable as the theory grows (new optimizers, depth, Muon).

Built-ins whose learning rates are all `auto` let the theory choose them, so they must
be stable under every optimizer the language knows (`paramspec._ir.OPTIMIZERS`) and
both ends of alignment: a new optimizer or rule that breaks one fails here by name. The
other built-ins fix their learning rates for their own optimizer and are checked there.
Both lists are discovered from the library, so a new built-in is covered on arrival.

Depth (docs/analysis.md, "Depth"): a built-in that uses depth is checked in depth as
well, and every built-in is asked about depth at 16 blocks over a base of 4: the
depth built-ins with a residual-branch multiplier (`completep`, `depth-mup`) are stable in
depth under every optimizer, the depth-blind ones (`mup`, ...) and SP's init-only depth
heuristic (`sp-depth`) are not (their residual stream's update grows like m).
"""

from __future__ import annotations

import pytest

import paramspec as ps
from paramspec._analysis import check
from paramspec._depth import uses_depth
from paramspec._ir import OPTIMIZERS

# Sweep baselines are unstable at a fixed learning rate on purpose (the transfer
# benchmark's "before" rows) and say so with the language's `unstable "why"` statement.
SWEEP_BASELINES = frozenset({"sp-global", "sp-embed-lr"})
ALIGNMENTS = ("full", "none")
# GPT-2's residual-projection init keeps the stream O(1) at init but not in training:
# the depth baseline that CompleteP and Depth-muP are measured against (theory.md §10).
DEPTH_BASELINES = frozenset({"sp-depth"})


def expected_stable(spec: ps.Spec) -> bool:
    return spec.unstable is None


def _all_lr_auto(spec: ps.Spec) -> bool:
    return all(block.lr is not None and block.lr.kind == "auto" for block in spec.blocks)


SPECS = {name: ps.load(name) for name in ps.builtin_names()}
AUTO = sorted(name for name, spec in SPECS.items() if _all_lr_auto(spec))
FIXED = sorted(set(SPECS) - set(AUTO))


def test_discovery_finds_the_known_auto_built_ins():
    assert {"sp", "ntk", "mup", "mfp"} <= set(AUTO)
    assert "sp-perlayer" in FIXED and SWEEP_BASELINES <= set(FIXED)
    assert {name for name, spec in SPECS.items() if not expected_stable(spec)} == SWEEP_BASELINES


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name", AUTO)
def test_auto_built_in_is_stable_for_every_optimizer_and_alignment(name, optimizer):
    report = check(name, optimizer=optimizer, alignment="all")
    assert {(case.optimizer, case.name) for case in report.cases} == {
        (optimizer, f"{optimizer}/{a}") for a in ALIGNMENTS
    }
    assert all(case.depth is not None for case in report.cases) == uses_depth(SPECS[name])
    for case in report.cases:
        assert not case.unstable_layers, (
            f"built-in `{name}` (every lr auto) is unstable under {case.name}: "
            f"{case.verdict}, layers {case.unstable_layers}"
        )
        assert case.stable == (name not in DEPTH_BASELINES), (name, case.name, case.depth)


DEPTH = sorted(name for name, spec in SPECS.items() if uses_depth(spec))


def test_discovery_finds_the_depth_built_ins():
    assert {"completep", "depth-mup"} | DEPTH_BASELINES <= set(DEPTH)
    assert "mup" not in DEPTH


# every optimizer for the `auto` built-ins, their own for the fixed-lr ones
CASES = [(n, o) for n in AUTO for o in OPTIMIZERS] + [(n, SPECS[n].optimizer) for n in FIXED]


@pytest.mark.parametrize(("name", "optimizer"), CASES)
def test_every_built_in_asked_about_depth(name, optimizer):
    """Depth-scaled built-ins are stable in depth; depth-blind ones grow like m."""
    spec = SPECS[name]
    report = check(name, optimizer=optimizer, alignment="all", depth=16, base_depth=4)
    for case in report.cases:
        d = case.depth
        assert d is not None and d.m == 4
        if spec.residual is not None:
            assert d.stable, (name, case.name, d.verdict, d.unstable_layers)
            expected = "every block learns" if d.alpha == 1 else "stable, lazy blocks"
            assert d.verdict == expected
            assert all(x.r == 0 for x in d.layers.values())
        else:
            # no branch multiplier: the repeated blocks move the stream by m^1 per step
            # (Adafactor's step follows RMS(w): sp-depth's m^(-1/2) init gives m^(1/2))
            assert not d.stable and not case.stable and d.verdict.startswith("unstable")
            rs = [x.r for x in d.layers.values() if x.repeated]
            assert rs and min(rs) == -1 and max(rs) < 0, (name, case.name, rs)


@pytest.mark.parametrize("name", FIXED)
def test_fixed_lr_built_in_is_as_expected_for_its_own_optimizer(name):
    spec = SPECS[name]
    assert spec.optimizer in OPTIMIZERS, f"`{name}` fixes its lr but names no optimizer"
    report = check(name)  # the spec's own optimizer (and alignment, or both ends)
    assert [case.optimizer for case in report.cases] == [spec.optimizer] * len(report.cases)
    if expected_stable(spec):
        assert report.stable, [(c.name, c.unstable_layers) for c in report.cases]
    else:
        assert not any(case.stable for case in report.cases), "a sweep baseline became stable"
