"""Resuming a sweep after its spec's text changed: refused, never silently stale."""

import pytest

from paramspec._transfer import ResultsFile
from paramspec._transfer._sweep import SweepError, spec_fingerprint, sweep
from paramspec._transfer._table import read_runs

GRID = dict(model="mlp", widths=[8], lrs=[1e-2], seeds=[0], steps=2, progress=False,
            engine="sequential")


def test_a_changed_spec_is_refused_and_a_reformatted_one_resumes(tmp_path):
    spec = tmp_path / "mine.pspec"
    spec.write_text("spec mine\nextends mup\n")
    out = tmp_path / "runs"
    assert sweep([str(spec)], out=out, **GRID).ran == 1
    path = out / "results.csv"
    (row,) = ResultsFile(path).final_rows()
    assert row["key"].endswith(f"/pspec={spec_fingerprint(str(spec))}/steps=2")

    # A comment and blank lines do not change the canonical text: the run is done.
    spec.write_text("# my own spec\nspec mine\n\nextends mup\n")
    assert sweep([str(spec)], out=out, **GRID).ran == 0

    spec.write_text("spec mine\nextends mup\nbase_width 4\n")  # edited, same label
    before = path.read_bytes()
    with pytest.raises(SweepError, match=r"another text of `mine`.*new `--out` directory"):
        sweep([str(spec)], out=out, **GRID)
    assert path.read_bytes() == before  # nothing ran, nothing was written
    # A new directory runs it with the current text.
    assert sweep([str(spec)], out=tmp_path / "new", **GRID).ran == 1


def test_another_base_width_is_refused_too(tmp_path):
    """`base_width` changes every parameter's scale but not the spec's text: it is part
    of the fingerprint, so a sweep at another base width never reuses the rows."""
    out = tmp_path / "runs"
    assert sweep(["mup"], out=out, base_width=4, **GRID).ran == 1
    assert sweep(["mup"], out=out, base_width=4, **GRID).ran == 0
    assert spec_fingerprint("mup", 4) != spec_fingerprint("mup", 2) != spec_fingerprint("mup")
    with pytest.raises(SweepError, match=r"another base width.*new `--out` directory"):
        sweep(["mup"], out=out, base_width=2, **GRID)


def test_a_results_file_without_fingerprints_is_read_but_not_resumed(tmp_path):
    fresh = tmp_path / "fresh"
    sweep(["mup"], out=fresh, **GRID)
    # The same row as written before keys had a fingerprint.
    text = (fresh / "results.csv").read_text()
    old = tmp_path / "old"
    old.mkdir()
    legacy = text.replace(f"/pspec={spec_fingerprint('mup')}", "")
    assert legacy != text
    (old / "results.csv").write_text(legacy)
    assert [r["lr"] for r in read_runs(old / "results.csv")] == [1e-2]  # transfer-metrics
    assert ResultsFile(old / "results.csv").done_keys()  # the strict reader too
    with pytest.raises(SweepError, match="cannot be checked"):
        sweep(["mup"], out=old, **GRID)
    assert (old / "results.csv").read_text() == legacy
