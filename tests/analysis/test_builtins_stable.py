"""Every built-in spec stays stable as the theory grows (new optimizers, depth, Muon).

Built-ins whose learning rates are all `auto` let the theory choose them, so they must
be stable under every optimizer the language knows (`paramspec._ir.OPTIMIZERS`) and
both ends of alignment: a new optimizer or rule that breaks one fails here by name. The
other built-ins fix their learning rates for their own optimizer and are checked there.
Both lists are discovered from the library, so a new built-in is covered on arrival.
"""

from __future__ import annotations

import pytest

import paramspec as ps
from paramspec._analysis import check
from paramspec._ir import OPTIMIZERS

# Sweep baselines are unstable at a fixed learning rate on purpose (the transfer
# benchmark's "before" rows) and say so with the language's `unstable "why"` statement.
SWEEP_BASELINES = frozenset({"sp-global", "sp-embed-lr"})
ALIGNMENTS = ("full", "none")


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
    for case in report.cases:
        assert case.stable, (
            f"built-in `{name}` (every lr auto) is unstable under {case.name}: "
            f"{case.verdict}, layers {case.unstable_layers}"
        )


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
