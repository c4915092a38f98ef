"""Runs per second of the vectorised sweep engine against the sequential one.

For each width, one (spec, width) group of a learning-rate sweep -- `--lrs` learning
rates x `--seeds` seeds of `--spec` on the `--model` reference task -- is trained by
`sweep(..., engine="sequential")` and by `sweep(..., engine="vectorised")`, each into a
fresh results file (so the whole path is timed: init, data, training, evaluation, the
results file). Both engines are compiled first (one untimed warm-up sweep each), so the
figures are steady-state runs per second, as in a sweep of many widths and specs.

The machine may be shared: the engines alternate within a round (sequential first in
even rounds, vectorised first in odd ones), and the reported figure is the median of
the per-round ratios vectorised / sequential (target: >= 3 at widths <= 128 on the CPU).

    python benchmarks/sweep_engine.py [--model mlp] [--widths 32,64,128,256]
        [--steps 100] [--lrs 12] [--seeds 2] [--rounds 3] [--chunk N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time


def _timed(engine: str, width: int, args: argparse.Namespace, lrs: list[float]) -> float:
    from paramspec._transfer._sweep import sweep

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        report = sweep(
            [args.spec],
            model=args.model,
            widths=[width],
            lrs=lrs,
            seeds=list(range(args.seeds)),
            steps=args.steps,
            out=out,
            engine=engine,
            chunk_size=args.chunk if engine == "vectorised" else None,
            progress=False,
        )
        elapsed = time.perf_counter() - start
    assert report.ran == len(lrs) * args.seeds
    return report.ran / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--spec", default="mup")
    parser.add_argument("--widths", default="32,64,128,256")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lrs", type=int, default=12, help="learning rates (ratio 2^(1/2))")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=None,
                        help="runs per vectorised program (default: the engine's)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import jax

    lrs = [2.0 ** (-2 - k / 2) for k in range(args.lrs)]
    load_at_start = os.getloadavg()
    print(f"load average at start: {load_at_start}")
    rows = []
    print("| width | runs | sequential runs/s | vectorised runs/s | ratio (median) | ratios |")
    print("|---|---|---|---|---|---|")
    for width in (int(w) for w in args.widths.split(",")):
        for engine in ("sequential", "vectorised"):  # compile both, untimed
            _timed(engine, width, args, lrs)
        seq, vec, ratios = [], [], []
        for r in range(args.rounds):
            order = ("sequential", "vectorised") if r % 2 == 0 else ("vectorised", "sequential")
            rate = {engine: _timed(engine, width, args, lrs) for engine in order}
            seq.append(rate["sequential"])
            vec.append(rate["vectorised"])
            ratios.append(rate["vectorised"] / rate["sequential"])
        row = {
            "width": width,
            "runs": len(lrs) * args.seeds,
            "sequential_runs_per_s": statistics.median(seq),
            "vectorised_runs_per_s": statistics.median(vec),
            "ratio": statistics.median(ratios),
            "ratios": ratios,
        }
        rows.append(row)
        print(
            f"| {width} | {row['runs']} | {row['sequential_runs_per_s']:.3g} | "
            f"{row['vectorised_runs_per_s']:.3g} | {row['ratio']:.2f} | "
            f"{', '.join(f'{x:.2f}' for x in ratios)} |",
            flush=True,
        )
    machine = {
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average": os.getloadavg(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "python": platform.python_version(),
    }
    print(machine)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "rows": rows, "machine": machine}, f, indent=2)


if __name__ == "__main__":
    main()
