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
