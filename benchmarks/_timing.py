"""The timing loop shared by the optimizer-step benchmarks (`optimizer_step.py`,
`muon_step.py`): every step function timed interleaved, the order rotated each round."""

from __future__ import annotations

import time
from typing import Any


def rotated_times(runs: dict[str, dict[str, Any]], grads: Any, warmup: int,
                  repeats: int) -> dict[str, list[float]]:
    """Seconds of each timed step of each run (`{"step", "params", "state"}`; `step` is
    `(params, state, grads) -> (params, state)`), after `warmup` untimed rounds. The runs
    are interleaved and the order rotated every round (A B C, B C A, C A B, ...), so
    that no step always runs first or after the same one. Updates `runs` in place."""
    import jax

    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for i in range(warmup + repeats):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            run = runs[name]
            start = time.perf_counter()
            run["params"], run["state"] = run["step"](run["params"], run["state"], grads)
            jax.block_until_ready((run["params"], run["state"]))
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times
