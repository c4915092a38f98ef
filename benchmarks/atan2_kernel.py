"""The Adam-atan2 kernel alone, against another version of it, in one run.

    python benchmarks/atan2_kernel.py --other old_atan2.py [--size 10000000] [--rounds 60]

Times `1.27 * _atan2_sqrt(1.1 m, 0.9 v)` (the kernel with the bias-correction scalars,
as in a step) on `--size` float32 elements, jitted, for this checkout's kernel and the
`_atan2_sqrt` of another copy of `paramspec/_optax/_atan2.py` (e.g.
`git show REV:paramspec/_optax/_atan2.py > old_atan2.py`), interleaved in rotated order.
Prints the fusion count of each compiled kernel (1: one fused elementwise loop) and the
ratio of medians, this / other. The whole optimizer step is in `optimizer_step.py`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time

import jax
import numpy as np

from paramspec._optax._atan2 import _atan2_sqrt


def load_kernel(path: str):
    spec = importlib.util.spec_from_file_location("_atan2_other", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._atan2_sqrt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, metavar="FILE")
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    m = jax.numpy.asarray(rng.normal(size=args.size).astype(np.float32))
    v = jax.numpy.asarray((rng.normal(size=args.size) ** 2).astype(np.float32))
    kernels = {"this": _atan2_sqrt, "other": load_kernel(args.other)}
    steps = {
        name: jax.jit(lambda m, v, k=k: 1.27 * k(m * 1.1, v * 0.9)).lower(m, v).compile()
        for name, k in kernels.items()
    }
    fusions = {name: s.as_text().count("fusion(") for name, s in steps.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for i in range(args.rounds + 3):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            steps[name](m, v).block_until_ready()
            if i >= 3:
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "size": args.size,
        "rounds": args.rounds,
        "fusions": fusions,
        "median_ms": {name: round(1e3 * t, 3) for name, t in median.items()},
        "ratio_this_vs_other": round(median["this"] / median["other"], 4),
    }
    print(f"kernel this / other = {result['ratio_this_vs_other']:.4f}, fusions {fusions}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
