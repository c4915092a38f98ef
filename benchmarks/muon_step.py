"""Cost of the compiled Muon chain against hand-written Optax Muon, on a transformer-shaped
pytree.

Measures the median wall time of one jitted update + apply step (params and state
donated, `block_until_ready` after every step) for

- `compiled muon`: `build_optimizer("muon", ...)` with distinct per-leaf lr_scale (the
  Muon shape factor folded in), eps and weight decay, Muon on the hidden matrices and
  per-leaf-eps Adam on the embedding, the readout and the gains;
- `optax.contrib.muon`: the hand-written baseline, `optax.contrib.muon` with the same
  leaves as Muon leaves (`muon_weight_dimension_numbers`), one lr, eps and decay (its
  Adam part is Nesterov AdamW, Optax's choice);
- `hand partition`: `optax.partition` of `scale_by_muon` + `scale_by_shape` + decay + lr
  for the Muon leaves and `optax.adamw` for the rest: the same work as the compiled chain
  written by hand with one number per group.

Interleaved, the order rotated every round (A B C, B C A, C A B, ...), so drift of a
shared machine hits all alike. Prints a table and one JSON line:

    python benchmarks/muon_step.py [--repeats 30] [--width 256] [--blocks 2]

Target: compiled muon / optax.contrib.muon <= 1.02. Also printed: the median of the per-round
ratios (paired, so drift cancels) and XLA's flop and byte counts of the compiled steps
(deterministic).
"""

from __future__ import annotations

import argparse
import json
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax.contrib import MuonDimensionNumbers, scale_by_muon
from optax.contrib._muon import scale_by_shape
from optax.transforms import MaskedNode

from paramspec._optax._chain import build_optimizer
from paramspec._optax._muon import shape_factor

try:  # run as a script from the repository root or as a module
    from benchmarks._timing import rotated_times
    from benchmarks.optimizer_step import make_params, per_leaf_numbers
except ImportError:  # pragma: no cover
    from _timing import rotated_times  # type: ignore[no-redef]
    from optimizer_step import make_params, per_leaf_numbers  # type: ignore[no-redef]


def muon_dims(params: dict[str, jax.Array]) -> dict[str, MuonDimensionNumbers | None]:
    """Hidden matrices (`x @ w`, so (in, out)) take Muon; embed, readout, gains Adam."""
    return {
        name: MuonDimensionNumbers(reduction_axis=0, output_axis=1)
        if p.ndim == 2 and name not in ("embed", "readout") else None
        for name, p in params.items()
    }


def step_fn(opt: optax.GradientTransformation, params, state, grads):
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--blocks", type=int, default=2)
    args = parser.parse_args()

    params = make_params(args.width, args.vocab, args.blocks)
    count = sum(p.size for p in jax.tree.leaves(params))
    dims = muon_dims(params)
    lr_scale, eps, wd = per_leaf_numbers(params, args.width)
    for name, d in dims.items():
        if d is not None:
            lr_scale[name] = 1.0 * shape_factor(params[name].shape, d, "jordan")
            eps[name] = 1e-8
    lr = 1e-3
    labels = {name: "muon" if d is not None else "adam" for name, d in dims.items()}

    def muon_only(updates):  # the dims of the Muon group: MaskedNode where Adam's leaves are
        return {k: v if isinstance(v, MaskedNode) else dims[k] for k, v in updates.items()}

    optimizers = {
        "compiled muon": build_optimizer("muon", learning_rate=lr, lr_scale=lr_scale, eps=eps,
                                         weight_decay=wd, muon_dimension_numbers=dims),
        "optax.contrib.muon": optax.contrib.muon(
            lr, weight_decay=0.1, adam_weight_decay=0.1, muon_weight_dimension_numbers=dims),
        "hand partition": optax.partition(
            {
                "muon": optax.chain(
                    scale_by_muon(weight_dimension_numbers=muon_only),
                    scale_by_shape(weight_dimension_numbers=muon_only),
                    optax.add_decayed_weights(0.1),
                    optax.scale_by_learning_rate(lr),
                ),
                "adam": optax.adamw(lr, eps=1e-8, weight_decay=0.1),
            },
            labels,
        ),
    }
    rng = np.random.default_rng(1)
    grads = {k: jnp.asarray(rng.normal(size=p.shape).astype(np.float32)) for k, p in params.items()}
    runs = {}
    for name, opt in optimizers.items():
        p = jax.tree.map(jnp.copy, params)
        state = jax.jit(opt.init)(p)
        runs[name] = {"step": step_fn(opt, p, state, grads), "params": p, "state": state}

    times = rotated_times(runs, grads, args.warmup, args.repeats)
    median = {name: statistics.median(t) for name, t in times.items()}
    # XLA's own count of the compiled step's work: deterministic, unlike the wall time
    # of a shared machine
    cost = {}
    for name, run in runs.items():
        analysis = run["step"].cost_analysis()
        analysis = analysis[0] if isinstance(analysis, list) else analysis
        cost[name] = {k: float(analysis.get(k, 0.0)) for k in ("flops", "bytes accessed")}
    result = {
        "device": str(jax.devices()[0].device_kind),
        "params": int(count),
        "repeats": args.repeats,
        "median_ms": {name: round(1e3 * m, 3) for name, m in median.items()},
        "ratio_compiled_vs_optax_contrib_muon": round(
            median["compiled muon"] / median["optax.contrib.muon"], 4),
        "ratio_compiled_vs_hand_partition": round(
            median["compiled muon"] / median["hand partition"], 4),
        # the same round's times paired: slow drift of a shared machine cancels
        "paired_ratio_compiled_vs_optax_contrib_muon": round(statistics.median(
            a / b for a, b in zip(times["compiled muon"], times["optax.contrib.muon"],
                                  strict=True)), 4),
        "xla_cost": cost,
    }
    print(f"{count / 1e6:.1f}M parameters, {args.repeats} interleaved repeats on "
          f"{result['device']}")
    print(f"{'optimizer':<22}{'median ms':>12}{'p10 ms':>10}{'p90 ms':>10}{'GFLOP':>10}"
          f"{'MiB moved':>10}")
    for name, t in times.items():
        p10, p90 = np.percentile(t, [10, 90])
        print(f"{name:<22}{1e3 * median[name]:>12.3f}{1e3 * p10:>10.3f}{1e3 * p90:>10.3f}"
              f"{cost[name]['flops'] / 1e9:>10.3f}{cost[name]['bytes accessed'] / 2**20:>10.1f}")
    print(f"compiled muon / optax.contrib.muon = "
          f"{result['ratio_compiled_vs_optax_contrib_muon']:.4f} (target <= 1.02); paired "
          f"per round {result['paired_ratio_compiled_vs_optax_contrib_muon']:.4f}; XLA flops "
          f"{cost['compiled muon']['flops'] / cost['optax.contrib.muon']['flops']:.4f}, bytes "
          f"{cost['compiled muon']['bytes accessed'] / cost['optax.contrib.muon']['bytes accessed']:.4f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
