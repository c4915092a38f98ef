"""Sweeps across depth: the results file's depth column, the sweep's depth axis (both
engines, resume), the residual branch multiplier in a sweep, and the transfer metrics
with depth in place of width (`summarize(axis="depth")`, the any-table reader, the CLI)."""

import json
import math
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from paramspec._cli import app
from paramspec._transfer import (
    ResultsFile,
    ResultsFileError,
    TransferMetricError,
    run_key,
    summarize,
    transfer_metrics,
)
from paramspec._transfer._sweep import sweep

# Today's header, spelled out: a width-only sweep's file must keep it byte for byte.
OLD_HEADER = b"key,spec,model,width,lr,embed_lr_mult,seed,step,loss,status,wall_s\n"
DEPTH_HEADER = b"key,spec,model,width,depth,lr,embed_lr_mult,seed,step,loss,status,wall_s\n"


def _row(depth=None, **overrides):
    extra = {} if depth is None else {"depth": depth}
    row = dict(key=run_key("mup", "m", 8, 0.01, **extra), spec="mup", model="m", width=8,
               lr=0.01, embed_lr_mult=1.0, seed=0, step=3, loss=1.5, status="ok", wall_s=0.1)
    if depth is not None:
        row["depth"] = depth
    return {**row, **overrides}


def test_results_file_has_a_depth_column_only_for_depth_sweeps(tmp_path):
    width_only = ResultsFile(tmp_path / "w.csv")
    width_only.append(_row())
    assert width_only.path.read_bytes().startswith(OLD_HEADER + b"mup/m/w8/lr0.01/")
    deep = ResultsFile(tmp_path / "d.csv")
    deep.append([_row(depth=2), _row(depth=4)])
    assert deep.path.read_bytes().startswith(DEPTH_HEADER)
    assert [(r["depth"], r["key"].endswith(f"depth={r['depth']}")) for r in deep.final_rows()] \
        == [(2, True), (4, True)]
    # One kind per file: neither is appended to the other, and nothing is written.
    for results, row in ((width_only, _row(depth=8)), (deep, _row(key="other"))):
        before = results.path.read_bytes()
        with pytest.raises(ResultsFileError, match="new directory"):
            results.append(row)
        assert results.path.read_bytes() == before
    with pytest.raises(ResultsFileError, match="depth must be positive"):
        ResultsFile(tmp_path / "x.csv").append(_row(depth=0))
    with pytest.raises(ResultsFileError, match="some rows to append have a depth"):
        ResultsFile(tmp_path / "y.csv").append([_row(), _row(depth=2, key="k2")])


# A synthetic sweep across depth with known answers and noise: at depth L the loss is
# L*(L) + K/2 (ln lr - ln eta*(L))^2 + noise, eta*(L) = 0.01 (L/2)^(-1/2) (p = -1/2).
DEPTHS = (2, 4, 8, 16)


def _synthetic_rows(p=-0.5, width=32, noise=0.002):
    rng = np.random.default_rng(0)
    rows = []
    for spec, gap in (("a", 0.0), ("b", 0.1)):
        for depth in DEPTHS:
            star = math.log(0.01 * (depth / 2) ** p)
            for k in range(-20, -4):
                lr = 2.0 ** (k / 2)
                for seed in (0, 1):
                    loss = 2.0 + gap + 0.3 * (math.log(lr) - star) ** 2 + noise * rng.normal()
                    rows.append(dict(spec=spec, width=width, depth=depth, lr=lr, seed=seed,
                                     loss=loss, status="ok"))
    return rows


def test_summarize_across_depth_recovers_the_exponent():
    summary = summarize(_synthetic_rows(), axis="depth")
    for entry in summary.values():
        assert entry["depths"] == list(DEPTHS) and entry["edge_depths"] == []
        assert entry["p"] == pytest.approx(-0.5, abs=0.1)
        # eta* moves 8^(1/2) over the depths: 3 grid steps of 2^(1/2).
        assert entry["drift_steps"] == pytest.approx(3.0, abs=0.3)
        assert [o["depth"] for o in entry["optima"]] == list(DEPTHS)
    assert summary["b"]["R_inf"] == pytest.approx(0.1, abs=0.02)
    flat = summarize(_synthetic_rows(p=0.0), axis="depth")
    assert all(abs(e["p"]) < 0.1 and e["drift_steps"] < 1 for e in flat.values())
    # Across width, these rows (one width, four depths) are not one series: a clear error.
    with pytest.raises(TransferMetricError, match="one depth per spec"):
        summarize(_synthetic_rows())
    two_widths = _synthetic_rows() + _synthetic_rows(width=64)
    with pytest.raises(TransferMetricError, match="one width per spec"):
        summarize(two_widths, axis="depth")
    with pytest.raises(TransferMetricError, match="Unknown axis"):
        summarize(_synthetic_rows(), axis="heads")


def test_any_table_and_the_cli_measure_transfer_across_depth(tmp_path):
    rows = _synthetic_rows()
    # Another tool's CSV: no width column, columns in another order, an extra one.
    table = tmp_path / "runs.csv"
    lines = ["Loss,DEPTH,spec,lr,seed,note"]
    lines += [f"{r['loss']!r},{r['depth']},{r['spec']},{r['lr']!r},{r['seed']},x" for r in rows]
    table.write_text("\n".join(lines) + "\n")
    assert transfer_metrics(table, axis="depth")["a"]["p"] == pytest.approx(-0.5, abs=0.1)
    # The same runs as a sweep's results file, through `transfer-metrics --axis depth`.
    results = ResultsFile(tmp_path / "results.csv")
    results.append(
        {**r, "key": run_key(r["spec"], "syn", 32, r["lr"], seed=r["seed"], depth=r["depth"]),
         "model": "syn", "embed_lr_mult": 1.0, "step": 10, "wall_s": 0.0} for r in rows
    )
    out = CliRunner().invoke(app, ["transfer-metrics", str(results.path), "--axis", "depth",
                                   "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["b"]["p"] == pytest.approx(-0.5, abs=0.1)
    text = CliRunner().invoke(app, ["transfer-metrics", str(results.path), "--axis", "depth"])
    assert text.exit_code == 0 and "eta* by depth" in text.stdout
    wrong = CliRunner().invoke(app, ["transfer-metrics", str(results.path)])
    assert wrong.exit_code == 2 and "--axis depth" in wrong.stderr


def test_depth_sweep_trains_every_depth_in_both_engines_and_resumes(tmp_path):
    # The MLP task's factory takes `depth=` (its hidden layers): a cheap depth axis.
    grid = dict(model="mlp", widths=[8], lrs=[1e-2, 1e-1], seeds=[0], steps=3,
                base_depth=1, progress=False)
    first = sweep(["mup"], out=tmp_path / "seq", engine="sequential", depths=[1], **grid)
    # Resuming with a second depth trains only that depth's runs: the key holds the depth.
    seq = sweep(["mup"], out=tmp_path / "seq", engine="sequential", depths=[1, 3], **grid)
    assert (first.ran, seq.ran, seq.skipped) == (2, 2, 2)
    # The vectorised engine, from the command line: the same runs, and a plot per depth.
    cli = CliRunner().invoke(app, [
        "sweep", "mup", "--model", "mlp", "--widths", "8", "--depths", "1,3", "--base-depth",
        "1", "--lrs", "0.01,0.1", "--seeds", "1", "--steps", "3", "--chunk", "2",
        "--no-progress", "--out", str(tmp_path / "vec")])
    assert cli.exit_code == 0, cli.output
    assert "4 runs trained" in cli.stdout and (tmp_path / "vec/optimal-lr-vs-depth.png").exists()
    vec_path = tmp_path / "vec/results.csv"
    a, b = (ResultsFile(path).final_rows() for path in (seq.results, vec_path))
    assert [(r["depth"], r["lr"]) for r in a] == [(1, 1e-2), (1, 1e-1), (3, 1e-2), (3, 1e-1)]
    assert all("base_depth=1/depth=" in r["key"] for r in a)
    assert len({r["loss"] for r in a}) == 4  # the depths really differ
    for x, y in zip(a, b, strict=True):  # the engines agree, run by run
        assert x["key"] == y["key"] and y["loss"] == pytest.approx(x["loss"], rel=1e-5)
    assert vec_path.read_bytes().startswith(DEPTH_HEADER)


class _Block(eqx.Module):
    linear: eqx.nn.Linear
    branch_multiplier: float = eqx.field(static=True, default=1.0)

    def __call__(self, x):
        return x + self.branch_multiplier * jax.nn.tanh(self.linear(x))


class _ResMLP(eqx.Module):
    embed: eqx.nn.Linear
    blocks: list
    readout: eqx.nn.Linear

    def __call__(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.readout(x)


def _res_mlp(width, key, depth=1):
    keys = jax.random.split(key, depth + 2)
    return _ResMLP(eqx.nn.Linear(4, width, key=keys[0]),
                   [_Block(eqx.nn.Linear(width, width, key=k)) for k in keys[2:]],
                   eqx.nn.Linear(width, 2, key=keys[1]))


def _batch(key, size):
    x = jax.random.normal(key, (size, 4))
    return x, jax.numpy.sin(x[:, :2])


def test_completep_scales_the_branches_of_a_depth_sweep(tmp_path):
    report = sweep(["mup", "completep"], model=_res_mlp, make_batch=_batch, widths=[16],
                   depths=[1, 4], lrs=[0.05], seeds=[0], steps=4, batch_size=8,
                   out=tmp_path, progress=False)
    loss = {(r["spec"], r["depth"]): r["loss"] for r in ResultsFile(report.results).final_rows()}
    # At the base depth completep is mup; at 4x depth its 1/4 branches train differently.
    assert loss["completep", 1] == pytest.approx(loss["mup", 1], rel=1e-6)
    # (float reassociation alone moves a loss by ~1e-7 relative; here it is ~1e-3)
    assert abs(loss["completep", 4] - loss["mup", 4]) > 1e-4 * loss["mup", 4]


def test_a_model_files_branches_reach_a_depth_sweep(tmp_path):
    """`--model FILE.py:FUNC` with a depth spec: the file's BRANCHES list is passed to
    `c.init` (without it a user model's repeated blocks have no branch to scale and
    `c.init` refuses), so a GPT written elsewhere sweeps across depth under completep."""
    from paramspec._transfer._sweep import sweep

    gpt = str(Path(__file__).resolve().parents[1] / "usermodels" / "gpt.py") + ":make_model"
    report = sweep(["completep"], model=gpt, widths=[16], depths=[1, 2], lrs=[1e-2],
                   seeds=[0], steps=2, out=tmp_path / "runs", progress=False,
                   engine="sequential", tied={"wte.weight": "readout"})
    assert report.ran == 2
    rows = ResultsFile(report.results).final_rows()
    assert sorted(r["depth"] for r in rows) == [1, 2]
    assert all(r["status"] == "ok" for r in rows)
