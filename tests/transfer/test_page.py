"""The shared page writer of the transfer benchmarks (benchmarks/transfer/_page.py)."""

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def page():
    spec = importlib.util.spec_from_file_location(
        "transfer_page", ROOT / "benchmarks/transfer/_page.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entry(optima, **metrics):
    base = dict(drift_steps=None, p=None, E=None, holdout_steps=None, kappa=None,
                R_inf=None, edge_widths=[], reference="mup", notes=[])
    return {**base, **metrics, "optima": optima}


def test_metrics_table_rows_missing_metrics_and_edges(page):
    summary = {
        "mup": entry([dict(width=16, lr_star=0.0151, at_edge=False),
                      dict(width=32, lr_star=0.02, at_edge=True)],
                     drift_steps=0.96, p=0.1422, edge_widths=[32]),
        "sp": entry([dict(width=16, lr_star=0.01, at_edge=False)], R_inf=-0.00658,
                    notes=["R(inf) is undetermined: ..."]),
    }
    lines = page.metrics_table(summary, order=["sp", "mup", "absent"])
    assert lines[0].startswith("| spec | η* per width |") and "R(∞) vs mup" in lines[0]
    assert lines[2] == "| sp | 16: 0.01 | – | – | – | – | – | -0.00658 | – |"
    assert lines[3] == "| mup | 16: 0.015, 32: 0.02* | 0.96 | 0.142 | – | – | – | – | [32] |"
    depth = page.metrics_table({"a": entry([dict(depth=4, lr_star=0.5, at_edge=False)])},
                               axis="depth")
    assert "η* per depth" in depth[0] and depth[2].startswith("| a | 4: 0.5 |")
    assert page.notes(summary) == ["## Notes from `summarize`", "",
                                   "- sp: R(inf) is undetermined: ...", ""]
    assert page.notes({"mup": entry([])}) == []


def test_timing_is_recorded_only_from_scratch(page, tmp_path, monkeypatch):
    monkeypatch.setattr(page, "machine", lambda: "a test machine")
    fresh = SimpleNamespace(ran=10, skipped=0)
    resumed = SimpleNamespace(ran=3, skipped=7)
    assert page.record_timing(tmp_path, resumed, 5.0) is None
    assert page.record_timing(tmp_path, [fresh, fresh], 42.0) == {"wall_s": 42.0, "runs": 20}
    assert page.record_timing(tmp_path, resumed, 1.0) == {"wall_s": 42.0, "runs": 20}
    assert json.loads((tmp_path / "timing.json").read_text()) == {"wall_s": 42.0, "runs": 20}
    rows = [dict(wall_s=1.5), dict(wall_s=2.0)]
    text = page.run_time({"wall_s": 42.0, "runs": 20}, rows, resumed, 9.0)
    assert text.startswith("**Run time.** 42 s wall for the whole command run from scratch")
    assert "sum to 4 s" in text and "3 runs trained, 7 resumed" in text
    assert text.endswith("on a test machine.")
    assert "written from the results file" in page.run_time(None, rows, [], 0.0)


def test_command_and_page(page, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["x.py", "--widths", "16,32", "--from-results"])
    assert page.command("benchmarks/transfer/x.py") == "python benchmarks/transfer/x.py --widths 16,32"
    lines = page.header("Title", "benchmarks/transfer/x.py")
    assert lines[0] == "# Title" and "python benchmarks/transfer/x.py --widths 16,32" in lines
    path = page.write_page(tmp_path / "p.md", [*lines, "", ""])
    assert path.read_text(encoding="utf-8").endswith("--widths 16,32\n```\n")
