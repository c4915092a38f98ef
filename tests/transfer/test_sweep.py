"""The sweep's training loop: resume after a kill, diverged runs, the embedding-lr knob."""

import math
import re

import pytest

from paramspec._transfer import ResultsFile, ResultsFileError
from paramspec._transfer._sweep import SweepError, _trainer, make_task, spec_label, sweep

GRID = dict(model="mlp", widths=[8], lrs=[1e-2, 1e-1], seeds=[0, 1], steps=3, progress=False)


class Stop(Exception):
    pass


@pytest.mark.parametrize(
    "engine", [dict(engine="sequential"), dict(engine="vectorised", chunk_size=2)]
)
def test_killed_sweep_resumes_without_redoing_runs(tmp_path, engine):
    GRID = {**globals()["GRID"], **engine}  # noqa: N806 - the module's grid, one engine
    done = []

    def stop_after_two(row):
        done.append(row["key"])
        if len(done) == 2:
            raise Stop

    with pytest.raises(Stop):
        sweep(["mup"], out=tmp_path, on_run=stop_after_two, **GRID)
    path = tmp_path / "results.csv"
    first = path.read_bytes()
    assert len(ResultsFile(path).final_rows()) == 2

    report = sweep(["mup"], out=tmp_path, **GRID)
    assert (report.ran, report.skipped) == (2, 2)
    after = path.read_bytes()
    assert after.startswith(first)  # the finished rows are untouched, byte for byte
    rows = ResultsFile(path).final_rows()
    assert len(rows) == 4 and len({r["key"] for r in rows}) == 4
    assert [r["key"] for r in rows[:2]] == done
    assert all(r["status"] == "ok" and math.isfinite(r["loss"]) for r in rows)

    again = sweep(["mup"], out=tmp_path, **GRID)
    assert (again.ran, again.skipped) == (0, 4) and path.read_bytes() == after


def test_training_lowers_the_loss_and_huge_lr_diverges(tmp_path):
    trainer = _trainer(make_task("mlp"), "sp-global", 16, None)  # reused below: one compile
    assert trainer.run(3e-2, 1.0, 0, 5) < 0.9 * trainer.run(1e-12, 1.0, 0, 5)
    sweep(
        ["sp-global"],
        out=tmp_path,
        model="mlp",
        widths=[16],
        lrs=[1e30],
        seeds=[0],
        steps=5,
        progress=False,
    )
    (row,) = ResultsFile(tmp_path / "results.csv").final_rows()
    assert row["status"] == "diverged" and not math.isfinite(row["loss"])


def test_embed_lr_mult_scales_only_the_input_block():
    import jax

    trainer = _trainer(make_task("mlp"), "sp-global", 16, None)
    flags = jax.tree.leaves(trainer.is_input)
    assert flags.count(True) == 1 and len(flags) == 4  # embed; 2 hidden; readout
    assert jax.tree.leaves(trainer.is_input.embed)[0] is True
    # A zero multiplier freezes the embedding: the same run ends elsewhere than with 1.
    assert trainer.run(1e-2, 0.0, 0, 5) != trainer.run(1e-2, 1.0, 0, 5)
    assert spec_label("sp", 4.0) == "sp*emb4" and spec_label("dir/my.pspec") == "my"


def test_foreign_results_file_is_an_error_and_unchanged(tmp_path):
    path = tmp_path / "results.csv"
    path.write_bytes(b"name,score\nalice,3\n")
    with pytest.raises(ResultsFileError, match="expected the header"):
        sweep(["mup"], out=tmp_path, **GRID)
    assert path.read_bytes() == b"name,score\nalice,3\n"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(widths=[]), "`widths` is empty"),
        (dict(lrs=[-1.0]), "`lrs` must be positive"),
        (dict(model="cnn"), "Unknown model 'cnn'"),
        (dict(steps=0), "`steps` must be an int >= 1"),
        (dict(seeds=[0, 0]), "`seeds` has duplicates"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, kwargs, match):
    with pytest.raises(SweepError, match=match):
        sweep(["mup"], out=tmp_path, **{**GRID, **kwargs})
    assert not (tmp_path / "results.csv").exists()


def test_scaling_the_update_after_the_optimizer_equals_its_learning_rate():
    # The trainer builds c.optimizer(learning_rate=1) and multiplies its updates by lr;
    # that is exact because the lr is the chain's last, linear stage (weight decay too).
    import equinox as eqx
    import jax
    import numpy as np

    import paramspec as ps
    from paramspec.models import mlp

    c = ps.compile("mup", width=16, base_width=8)  # per-layer lr factors differ
    model = c.init(mlp, jax.random.key(0))
    params = eqx.filter(model, eqx.is_inexact_array)
    lr = 0.037
    scaled = c.optimizer(model, learning_rate=lr, weight_decay=0.1)
    unit = c.optimizer(model, learning_rate=1.0, weight_decay=0.1)
    s_state, u_state = scaled.init(params), unit.init(params)
    for step in range(2):  # two steps, so the Adam moments are not trivial
        grads = jax.tree.map(lambda p, step=step: 0.3 * p + 0.1 * (step + 1), params)
        a, s_state = scaled.update(grads, s_state, params)
        b, u_state = unit.update(grads, u_state, params)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(x, lr * y, rtol=1e-5, atol=1e-9)


def _losses(path):
    return {r["key"]: r["loss"] for r in ResultsFile(path).final_rows()}


def test_vectorised_engine_matches_the_sequential_one(tmp_path):
    # 2 lrs x 2 embedding multipliers x 2 seeds = 8 runs per width in chunks of 3 (so
    # the last chunk is padded), 5 steps in segments of 1, AdamW: the same losses.
    grid = dict(model="mlp", widths=[8], lrs=[1e-2, 1e-1], embed_lr_mults=[1.0, 4.0],
                seeds=[0, 3], steps=5, weight_decay=0.1, progress=False)
    seq = sweep(["sp-global"], out=tmp_path / "seq", engine="sequential", **grid)
    vec = sweep(["sp-global"], out=tmp_path / "vec", chunk_size=3, **grid)
    a, b = _losses(seq.results), _losses(vec.results)
    assert len(a) == 8 and a.keys() == b.keys() and all("wd=0.1" in k for k in a)
    assert len(set(a.values())) == 8  # the runs really differ
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key


def test_chunk_size_is_a_multiple_of_the_devices_and_no_larger_than_needed():
    import jax

    from paramspec._transfer._sweep import _cached, _Options
    from paramspec._transfer._vectorised import default_chunk_size

    trainer = _cached(make_task("mlp"), "mup", 8, _Options(), "vectorised")
    n = len(jax.devices())
    assert trainer.chunk_size(None, 5) == -(-5 // n) * n  # the cache budget allows 5 runs
    if jax.devices()[0].platform == "cpu":  # the cache cap: a width-256 MLP (0.55 MB of
        # parameters) goes one run per device at a time, a width-32 one (11 kB) 93 at once
        assert default_chunk_size(548_000, n) == n
        assert default_chunk_size(11_264, n) == 93 * n
    assert trainer.chunk_size(2, 100) == -(-2 // n) * n
    if n == 1:  # 25 runs in chunks of at most 10: three chunks of 9, not 10 + 10 + 5
        assert trainer.chunk_size(10, 25) == 9
    with pytest.raises(SweepError, match="chunk_size"):
        sweep(["mup"], out="unused", chunk_size=0, **GRID)


def _make_batch(key, batch_size):
    import jax

    x = jax.random.normal(key, (batch_size, 4))
    return x, jax.numpy.sin(x[:, :2])


def _make_model(width, key):
    from paramspec.models import mlp

    return mlp(width, key, in_size=4, out_size=2, depth=1)


def test_sweep_of_your_own_model_in_python(tmp_path):
    import jax.numpy as jnp

    import paramspec as ps

    calls = []

    def loss(model, x, y):
        calls.append(x.shape)
        return jnp.mean((jax_vmap(model)(x) - y) ** 2)

    def jax_vmap(f):
        import jax

        return jax.vmap(f)

    report = ps.sweep(["mup"], model=_make_model, make_batch=_make_batch, loss=loss,
                      widths=[16], lrs=[1e-3, 1e-1], seeds=[0, 1], steps=20, batch_size=8,
                      out=tmp_path, progress=False)
    rows = ResultsFile(report.results).final_rows()
    assert report.ran == 4 and {r["model"] for r in rows} == {"_make_model"}
    assert (8, 4) in calls  # the user's loss was traced on the user's batches
    by = {(r["lr"], r["seed"]): r["loss"] for r in rows}
    start = float(jnp.mean(_make_batch(__import__("jax").random.key(10_000), 256)[1] ** 2))
    for seed in (0, 1):  # a real lr trains: the loss falls well below E[y^2]
        assert by[(1e-1, seed)] < 0.5 * start
        assert by[(1e-1, seed)] < by[(1e-3, seed)]
    with pytest.raises(SweepError, match="make_batch"):
        ps.sweep(["mup"], model=_make_model, widths=[8], lrs=[1e-2], out=tmp_path)


def test_sweep_cli_of_a_third_party_model_file(tmp_path):
    # The LLaMA-style decoder of tests/usermodels (RMSNorm, rotary, SwiGLU, GQA): its
    # file's make_batch and loss drive the sweep.
    from pathlib import Path

    from typer.testing import CliRunner

    from paramspec._cli import app

    llama = Path(__file__).resolve().parents[1] / "usermodels" / "llama.py"
    out = tmp_path / "runs"
    args = ["sweep", "mup", "--model", f"{llama}:make_model", "--widths", "16", "--lrs",
            "1e-3,3e-2", "--seeds", "1", "--steps", "3", "--batch-size", "4", "--out",
            str(out), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = ResultsFile(out / "results.csv").final_rows()
    assert len(rows) == 2 and {r["model"] for r in rows} == {"make_model"}
    assert all(r["status"] == "ok" and 0 < r["loss"] < 10 for r in rows)  # ln 100 = 4.6
    assert rows[0]["loss"] != rows[1]["loss"]


def test_sweep_cli_model_file_without_make_batch_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from paramspec._cli import app

    source = tmp_path / "mine.py"
    source.write_text(
        "from paramspec.models import mlp\n"
        "def make(width, key):\n"
        "    return mlp(width, key, in_size=3, out_size=5, depth=1)\n"
    )
    args = ["sweep", "mup", "--model", f"{source}:make", "--widths", "8", "--lrs", "1e-2",
            "--out", str(tmp_path / "runs"), "--no-progress"]
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code == 2 and "make_batch" in bad.output
    assert not (tmp_path / "runs" / "results.csv").exists()


_DEVICES_WORKER = """
import json, sys, tempfile
import jax
from paramspec._transfer import ResultsFile
from paramspec._transfer._sweep import _TRAINERS, sweep

grid = dict(model="mlp", widths=[8], lrs=[1e-2, 3e-2, 1e-1], seeds=[0, 1], steps=4,
            progress=False)
out = {}
for engine in ("sequential", "vectorised"):
    d = tempfile.mkdtemp()
    sweep(["mup"], out=d, engine=engine, **grid)
    out[engine] = {r["key"]: r["loss"] for r in ResultsFile(d + "/results.csv").final_rows()}
(trainer,) = [t for t in _TRAINERS.values() if hasattr(t, "mesh")]
print(json.dumps({"devices": len(jax.devices()), "mesh": dict(trainer.mesh.shape),
                  "chunk": trainer.chunk_size(None, 6), **out}))
"""


@pytest.mark.slow
def test_vectorised_engine_spreads_runs_over_four_devices():
    # The device count must be set before JAX starts: a subprocess with 4 CPU devices.
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-P", "-c", _DEVICES_WORKER], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4 and result["mesh"] == {"runs": 4}
    assert result["chunk"] == 8  # 6 runs padded to a multiple of the 4 devices
    seq, vec = result["sequential"], result["vectorised"]
    assert len(seq) == 6 and seq.keys() == vec.keys()
    for key in seq:
        assert vec[key] == pytest.approx(seq[key], rel=1e-5, abs=1e-7), key


def test_depth_compiles_every_spec_at_that_depth(tmp_path):
    import jax

    from paramspec._transfer._sweep import _Options, _Setup

    grid = {**GRID, "seeds": [0], "lrs": [1e-2]}
    sweep(["mup"], out=tmp_path, depth=2, **grid)  # no depth factors: runs as without
    (row,) = ResultsFile(tmp_path / "results.csv").final_rows()
    assert re.search(r"/depth=2/pspec=[0-9a-f]{12}/steps=3$", row["key"]) and row["status"] == "ok"
    task = make_task("transformer")  # 2 blocks: completep at depth 2, base depth 1
    at_2 = _Setup(task, "completep", 16, _Options(depth=2))
    at_base = _Setup(task, "completep", 16, _Options())
    assert (at_2.compiled.m, at_base.compiled.m) == (2, 1)
    multipliers = [b.branch_multiplier for b in at_2.init(0).blocks]
    assert multipliers == [0.5, 0.5] and at_base.init(0).blocks[0].branch_multiplier == 1.0
    assert jax.tree.leaves(at_2.init(0)) and at_2.opt is not None
    with pytest.raises(SweepError, match="`depth` must be None or an int >= 1"):
        sweep(["completep"], out=tmp_path, depth=0, **grid)
