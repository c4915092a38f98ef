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

Both engines run under the JAX configuration that `paramspec sweep` uses: one CPU
device per core (`use_every_cpu_core`; `--cpu-devices N` to choose, 1 for JAX's
default).

**The ceiling.** A training step costs the same floating-point operations in either
engine (XLA's cost analysis of one run's compiled step, `flop/step`), so an engine's
speed is also a FLOP rate: runs/s x steps x flop/step. Against the matrix-product peak
of the same machine, measured in the same run (a chain of [1024,1024] products, all
cores), `ceiling = peak / the sequential engine's FLOP rate` bounds the ratio that
*any* engine could reach: a step that is already compute-bound cannot be batched
faster than the machine multiplies.

    python benchmarks/sweep_engine.py [--model mlp] [--widths 32,64,128,256]
        [--steps 100] [--lrs 12] [--seeds 2] [--rounds 3] [--chunk N]
        [--cpu-devices N] [--json out.json]
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


def _flop_per_step(width: int, args: argparse.Namespace) -> float:
    """XLA's count of the floating-point operations of one run's training step."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from paramspec._transfer._sweep import _cached, _Options, make_task

    setup = _cached(make_task(args.model), args.spec, width, _Options(), "sequential").setup
    params, static = eqx.partition(setup.init(0), eqx.is_inexact_array)
    batch = jax.tree.map(lambda d: d[0], setup.task.train_data(0, 1))
    one = jnp.float32(1.0)
    compiled = jax.jit(setup.step_fn(), static_argnums=5).lower(
        params, setup.opt.init(params), one, one, batch, static).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # older jax: one per program
    return float(cost["flops"])


def _matmul_peak(n: int = 1024, chain: int = 16, repeats: int = 5) -> float:
    """GFLOP/s of float32 [n,n] @ [n,n] products on this machine: the best of one
    device using every core (XLA:CPU threads one large product) and of every device
    multiplying its own shard at once."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    def products(a: jax.Array) -> jax.Array:
        return jax.lax.fori_loop(0, chain, lambda _, x: (x @ a) * (1.0 / n), a)

    devices = jax.devices()
    single = jnp.ones((n, n), jnp.float32)
    stacked = jax.device_put(
        jnp.ones((len(devices), n, n), jnp.float32),
        NamedSharding(Mesh(np.array(devices), ("d",)), PartitionSpec("d")),
    )
    best = 0.0
    for x, count in ((single, 1), (stacked, len(devices))):
        f = jax.jit(products if count == 1 else jax.vmap(products))
        f(x).block_until_ready()
        for _ in range(repeats):
            start = time.perf_counter()
            f(x).block_until_ready()
            best = max(best, 2 * n**3 * chain * count / (time.perf_counter() - start) / 1e9)
    return best


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
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="JAX CPU devices (default: one per core, as `paramspec sweep`)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import jax

    from paramspec._transfer._vectorised import use_every_cpu_core

    if args.cpu_devices is None:
        use_every_cpu_core()
    else:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)

    lrs = [2.0 ** (-2 - k / 2) for k in range(args.lrs)]
    load_at_start = os.getloadavg()
    print(f"load average at start: {load_at_start}")
    peak = _matmul_peak()
    print(f"devices: {len(jax.devices())} x {jax.devices()[0].platform}; "
          f"matrix-product peak: {peak:.1f} GFLOP/s")
    rows = []
    print("| width | runs | MFLOP/step | sequential runs/s | vectorised runs/s | ratio (median) "
          "| ratios | sequential GFLOP/s | vectorised GFLOP/s | ceiling |")
    print("|---|---|---|---|---|---|---|---|---|---|")
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
        flop = _flop_per_step(width, args)
        row = {
            "width": width,
            "runs": len(lrs) * args.seeds,
            "flop_per_step": flop,
            "sequential_runs_per_s": statistics.median(seq),
            "vectorised_runs_per_s": statistics.median(vec),
            "ratio": statistics.median(ratios),
            "ratios": ratios,
        }
        rate = {e: row[f"{e}_runs_per_s"] * args.steps * flop / 1e9
                for e in ("sequential", "vectorised")}
        row.update(sequential_gflops=rate["sequential"], vectorised_gflops=rate["vectorised"],
                   ceiling=peak / rate["sequential"])
        rows.append(row)
        print(
            f"| {width} | {row['runs']} | {flop / 1e6:.3g} | "
            f"{row['sequential_runs_per_s']:.3g} | {row['vectorised_runs_per_s']:.3g} | "
            f"{row['ratio']:.2f} | {', '.join(f'{x:.2f}' for x in ratios)} | "
            f"{rate['sequential']:.3g} | {rate['vectorised']:.3g} | {row['ceiling']:.2f} |",
            flush=True,
        )
    machine = {
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average": os.getloadavg(),
        "devices": [str(d) for d in jax.devices()],
        "matmul_peak_gflops": peak,
        "jax": jax.__version__,
        "python": platform.python_version(),
    }
    print(machine)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "rows": rows, "machine": machine}, f, indent=2)


if __name__ == "__main__":
    main()
