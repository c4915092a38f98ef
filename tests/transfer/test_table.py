"""transfer-metrics on tables other tools wrote: CSV (CRLF or LF, any column order) and JSON Lines."""

import csv
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import paramspec as ps
from paramspec._cli import app
from paramspec._transfer import TableError, read_runs

runner = CliRunner()

# Synthetic sweeps with a known exponent: the final loss is a parabola in ln(lr) around
# lr*(n) = 0.01 (n / 32)^p, plus small noise per seed; the grid steps by 2^(1/4).
EXPONENTS = {"flat": 0.0, "half": -0.5, "inverse": -1.0}
WIDTHS = (32, 64, 128, 256)
LRS = 2.0 ** np.arange(-20, -1, 0.25)


def runs(seeds=(0, 1)):
    """(spec, width, lr, seed, final loss); above the optimum, a loss over 5 diverged (nan)."""
    rng = np.random.default_rng(0)
    out = []
    for spec, p in EXPONENTS.items():
        for n in WIDTHS:
            star = math.log(0.01 * (n / 32) ** p)
            for lr in LRS:
                for seed in seeds:
                    loss = 1.0 + 0.5 * (math.log(lr) - star) ** 2 + 0.002 * rng.standard_normal()
                    diverged = loss > 5 and math.log(lr) > star
                    out.append((spec, n, float(lr), seed, math.nan if diverged else loss))
    return out


def metrics(path, *extra):
    """Run the CLI on `path`, check it left the file alone, return its JSON."""
    before = path.read_bytes(), path.stat().st_mtime_ns
    result = runner.invoke(app, ["transfer-metrics", str(path), "--format", "json", *extra])
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_known_exponents(summary):
    assert set(summary) == set(EXPONENTS)
    for spec, p in EXPONENTS.items():
        assert summary[spec]["p"] == pytest.approx(p, abs=0.1), spec
        assert summary[spec]["edge_widths"] == []
        assert all(o["n_seeds"] == 2 for o in summary[spec]["optima"])


def test_csv_written_by_the_csv_module_crlf_with_steps(tmp_path):
    path = tmp_path / "sweep.csv"
    with open(path, "w", newline="") as file:  # csv's default line end is \r\n
        writer = csv.writer(file)
        writer.writerow(["spec", "width", "lr", "seed", "step", "loss"])
        for spec, n, lr, seed, loss in runs():
            # The last step (200) is neither the first nor the last row of its run; the
            # earlier steps' optimum is lr = 1e-3 at every width, so taking either would
            # give p = 0.
            writer.writerow([spec, n, lr, seed, 100, 2 + (math.log(lr / 1e-3)) ** 2])
            writer.writerow([spec, n, lr, seed, 200, loss])
            writer.writerow([spec, n, lr, seed, 150, 1.5 + (math.log(lr / 1e-3)) ** 2])
    assert b"\r\n" in path.read_bytes()
    assert_known_exponents(metrics(path))


def test_csv_by_hand_lf_other_order_extra_column_bom(tmp_path):
    path = tmp_path / "by-hand.csv"
    lines = ["\ufeffLoss, lr ,note,width,spec,seed"]  # BOM, any case, spaces, extra column
    for spec, n, lr, seed, loss in runs():
        lines.append(f'{loss!r},{lr!r},"tried, then kept",{n},{spec},s{seed}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert b"\r\n" not in path.read_bytes() and b"\nnan," in path.read_bytes()
    summary = metrics(path)
    assert_known_exponents(summary)
    assert all(o["n_excluded"] > 0 for o in summary["inverse"]["optima"])  # nan: diverged


def test_json_lines_by_extension_and_by_content(tmp_path):
    text = "".join(
        json.dumps(dict(spec=spec, width=n, lr=lr, seed=seed, loss=loss, wall_s=1.0)) + "\n"
        for spec, n, lr, seed, loss in runs()
    )
    assert "NaN" in text  # json.dumps writes a nan loss as NaN
    for name in ("runs.jsonl", "runs.log"):  # .log: detected from the first line
        path = tmp_path / name
        path.write_text(text)
        assert_known_exponents(metrics(path))
    assert ps.transfer_metrics(path)["half"]["p"] == pytest.approx(-0.5, abs=0.1)


def test_read_runs_averages_nothing_itself_and_takes_the_last_step(tmp_path):
    path = tmp_path / "curve.csv"
    path.write_text("spec,width,lr,step,loss\nsp,8,0.1,5,2.0\nsp,8,0.1,9,1.5\nsp,8,0.1,7,1.7\n")
    assert read_runs(path) == [dict(spec="sp", width=8, lr=0.1, seed=None, loss=1.5)]


BAD = {
    "missing column": ("runs.csv", "spec,width,learning_rate,loss\nsp,8,0.1,1.0\n", 1, "lr"),
    "non-numeric width": (
        "runs.csv",
        "spec,width,lr,loss\nsp,8,0.1,1.0\nsp,sixty,0.1,1.0\n",
        3,
        "width must be an integer, found 'sixty'",
    ),
    "negative lr": (
        "runs.csv",
        "spec,width,lr,loss\r\nsp,8,0.1,1.0\r\nsp,8,0.2,1.0\r\nsp,8,-0.1,1.0\r\n",
        4,
        "lr must be a positive, finite number",
    ),
    "empty file": ("runs.csv", "", 1, "the file is empty"),
    "header only": ("runs.csv", "spec,width,lr,loss\n", 2, "no rows after the header"),
    "ragged row": ("runs.csv", "spec,width,lr,loss\nsp,8,0.1\n", 2, "expected 4 fields"),
    "unknown content": ("runs.txt", "hello world\n", 1, "cannot tell the format"),
    "json array": ("runs.json", '[{"spec": "sp"}]\n', 1, "a JSON array, not JSON Lines"),
    "bad json line": (
        "runs.jsonl",
        '{"spec": "sp", "width": 8, "lr": 0.1, "loss": 1}\n\n{"spec": "sp", width: 8}\n',
        3,
        "not valid JSON",
    ),
    "json key missing": ("runs.jsonl", '{"spec": "sp", "width": 8, "lr": 0.1}\n', 1, "loss"),
    "width not an integer": (
        "runs.jsonl",
        '{"spec": "sp", "width": 8.5, "lr": 0.1, "loss": 1}\n',
        1,
        "width must be a positive integer",
    ),
    "same run twice": (
        "runs.csv",
        "spec,width,lr,seed,loss\nsp,8,0.1,0,1.0\nsp,8,0.1,1,1.0\nsp,8,0.1,0,1.1\n",
        4,
        "the first is line 2",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_tables_are_located_errors_exit_2_and_untouched(tmp_path, case):
    name, text, line, message = BAD[case]
    path = tmp_path / name
    path.write_bytes(text.encode())
    before = path.stat().st_mtime_ns
    result = runner.invoke(app, ["transfer-metrics", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:{line}: " in result.stderr and message in result.stderr, result.stderr
    assert path.read_bytes() == text.encode() and path.stat().st_mtime_ns == before
    with pytest.raises(TableError, match=f":{line}: "):
        read_runs(path)


def test_docstring_examples_run():
    from paramspec._transfer import _table

    from . import run_docstring_examples

    assert run_docstring_examples(_table) == 1
