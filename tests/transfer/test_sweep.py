"""The sweep's training loop: resume after a kill, diverged runs, the embedding-lr knob."""

import math

import pytest

from paramspec._transfer import ResultsFile, ResultsFileError
from paramspec._transfer._sweep import SweepError, _trainer, make_task, spec_label, sweep

GRID = dict(model="mlp", widths=[8], lrs=[1e-2, 1e-1], seeds=[0, 1], steps=3, progress=False)


class Stop(Exception):
    pass


def test_killed_sweep_resumes_without_redoing_runs(tmp_path):
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
