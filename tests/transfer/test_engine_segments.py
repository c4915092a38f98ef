"""The vectorised engine's segments: a shorter last segment, progress, same losses."""

import pytest

from paramspec._transfer._sweep import _cached, _Options, make_task


def test_a_shorter_last_segment_trains_exactly_the_sequential_runs():
    # 13 steps in segments of 2: six full segments and a last one of 1 step.
    task = make_task("mlp")
    runs = [("mup", 8, lr, 1.0, 0) for lr in (1e-2, 1e-1)]
    sequential = _cached(task, "mup", 8, _Options(), "sequential")
    vectorised = _cached(task, "mup", 8, _Options(), "vectorised")
    done = []
    ((chunk, losses, wall_s),) = vectorised.run_chunks(runs, 13, 2, on_step=done.append)
    assert chunk == runs and wall_s > 0
    assert done == [0, 2, 4, 6, 8, 10, 12, 13]
    for (_, _, lr, mult, seed), loss in zip(runs, losses, strict=True):
        assert loss == pytest.approx(sequential.run(lr, mult, seed, 13), rel=1e-5, abs=1e-7)
    assert losses[0] != losses[1]


def test_each_seeds_data_is_drawn_once_for_every_spec_and_width(tmp_path):
    # The data depends on the task, the seeds and the steps only: the vectorised engine
    # draws it once for all (spec, width) groups, and again for another number of steps.
    import dataclasses

    from paramspec._transfer._sweep import sweep

    base = make_task("mlp")
    drawn = []

    def train_data(seed, steps):
        drawn.append((seed, steps))
        return base.train_data(seed, steps)

    task = dataclasses.replace(base, train_data=train_data)
    grid = dict(model=task, widths=[8, 16], lrs=[1e-2, 1e-1], seeds=[0, 1], progress=False)
    sweep(["mup", "sp"], steps=3, out=tmp_path / "a", **grid)
    assert sorted(drawn) == [(0, 3), (1, 3)]
    sweep(["mup"], steps=4, out=tmp_path / "b", **grid)
    assert sorted(drawn) == [(0, 3), (0, 4), (1, 3), (1, 4)]


def test_large_data_is_not_kept_after_its_sweep(tmp_path, monkeypatch):
    # Data above the keep budget is drawn per (spec, width) and not held afterwards.
    import dataclasses

    from paramspec._transfer import _vectorised
    from paramspec._transfer._sweep import sweep

    monkeypatch.setattr(_vectorised, "_KEEP_BYTES", 0)
    base = make_task("mlp")
    drawn = []
    task = dataclasses.replace(
        base, train_data=lambda seed, steps: drawn.append(seed) or base.train_data(seed, steps))
    sweep(["mup"], model=task, widths=[8, 16], lrs=[1e-2], seeds=[0], steps=3,
          out=tmp_path, progress=False)
    assert drawn == [0, 0] and not _vectorised._DATA
