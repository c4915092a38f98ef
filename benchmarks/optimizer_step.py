"""Cost of the compiled optimizer against hand-written Optax, on a ~10M-parameter pytree.

Measures the median wall time of one jitted update + apply step (params and state
donated, `block_until_ready` after every step) for

- `compiled adam`: `build_optimizer("adam", ...)` with distinct per-leaf lr_scale, eps and
  weight decay (every stage of the chain doing work);
- `optax.adamw`: the hand-written baseline with one lr, eps and weight decay;
- `compiled adam_atan2`: the same per-leaf numbers with the atan2 core;
- with `--with-jnp-arctan2`, also `adam_atan2 (jnp.arctan2)`: the same chain with the
  library's fused rational kernel swapped for `jnp.arctan2(m_hat, b * sqrt(v_hat))`, the
  straightforward form the kernel replaces (for reference; not a target);
- with `--with-named-chain`, also `named_chain adamw`: optax.adamw's own three
  transforms in `optax.named_chain` (as the compiled chain is built), which isolates
  what the named state costs per call (for reference; not a target);
- with `--with-kernel-from FILE`, also `adam_atan2 (other kernel)`: the same chain with
  the `_atan2_sqrt` of another copy of `_atan2.py`, to A/B a kernel change in one run
  (e.g. `git show REV:paramspec/_optax/_atan2.py > old_atan2.py`).

The three are measured interleaved, in an order rotated every round (A B C, B C A,
C A B, ...), so drift of the machine (other jobs, frequency scaling) and position in
the round hit all of them alike. Prints a table and one JSON line:

    python benchmarks/optimizer_step.py [--repeats 100] [--width 512] [--with-jnp-arctan2]
        [--with-named-chain] [--with-kernel-from FILE]

Targets: compiled adam / optax.adamw <= 1.02; atan2 / adam <= 1.10; state bytes ratio 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramspec._optax import _atan2
from paramspec._optax._chain import build_optimizer

try:  # run as a script from the repository root or as a module
    from benchmarks._timing import rotated_times
except ImportError:  # pragma: no cover
    from _timing import rotated_times  # type: ignore[no-redef]


def make_params(width: int, vocab: int, blocks: int) -> dict[str, jax.Array]:
    """A transformer-shaped pytree: embedding, MLP blocks with gains, readout."""
    rng = np.random.default_rng(0)

    def normal(*shape: int) -> jax.Array:
        return jnp.asarray((rng.normal(size=shape) / np.sqrt(shape[0])).astype(np.float32))

    params = {"embed": normal(vocab, width), "readout": normal(width, vocab)}
    for i in range(blocks):
        params[f"block{i}.up"] = normal(width, 4 * width)
        params[f"block{i}.down"] = normal(4 * width, width)
        params[f"block{i}.gain"] = jnp.ones(width)
    return params


def per_leaf_numbers(params: dict[str, jax.Array], width: int, base: int = 128):
    """muP-like numbers: distinct per role, so every per-leaf stage does real work."""
    n = width / base
    lr, eps, wd = {}, {}, {}
    for name, p in params.items():
        if name == "embed" or p.ndim == 1:
            lr[name], eps[name] = 1.0, 1e-8
        elif name == "readout":
            lr[name], eps[name] = n**-0.5, 1e-8 * n**-0.5
        else:
            lr[name], eps[name] = 1.0 / n, 1e-8 / n
        wd[name] = 0.0 if p.ndim == 1 else 0.1
    return lr, eps, wd


def make_step(opt: optax.GradientTransformation, params, state, grads, *, kernel=None):
    """The step compiled ahead of time; `kernel` swaps the atan2 kernel while tracing."""

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    library_kernel = _atan2._atan2_sqrt
    if kernel is not None:
        _atan2._atan2_sqrt = kernel
    try:
        return jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
    finally:
        _atan2._atan2_sqrt = library_kernel


def load_kernel(path: str):
    """`_atan2_sqrt` from another copy of `_atan2.py` (e.g. `git show REV:FILE > old.py`)."""
    spec = importlib.util.spec_from_file_location("_atan2_other", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._atan2_sqrt


def nbytes(tree) -> int:
    return sum(x.nbytes for x in jax.tree.leaves(tree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument(
        "--with-jnp-arctan2",
        action="store_true",
        help="also time adam_atan2 with jnp.arctan2 in place of the fused kernel",
    )
    parser.add_argument(
        "--with-named-chain",
        action="store_true",
        help="also time optax.adamw's transforms in optax.named_chain",
    )
    parser.add_argument(
        "--with-kernel-from",
        metavar="FILE",
        help="also time adam_atan2 with the _atan2_sqrt of another _atan2.py (A/B a change)",
    )
    args = parser.parse_args()

    params = make_params(args.width, args.vocab, args.blocks)
    count = sum(p.size for p in jax.tree.leaves(params))
    lr_scale, eps, wd = per_leaf_numbers(params, args.width)
    learning_rate = 1e-3
    optimizers = {
        "compiled adam": build_optimizer(
            "adam", learning_rate=learning_rate, lr_scale=lr_scale, eps=eps, weight_decay=wd
        ),
        "optax.adamw": optax.adamw(learning_rate, eps=1e-8, weight_decay=0.1),
        "compiled adam_atan2": build_optimizer(
            "adam_atan2", learning_rate=learning_rate, lr_scale=lr_scale, eps=eps, weight_decay=wd
        ),
    }
    if args.with_jnp_arctan2:
        optimizers["adam_atan2 (jnp.arctan2)"] = optimizers["compiled adam_atan2"]
    if args.with_kernel_from:
        optimizers["adam_atan2 (other kernel)"] = optimizers["compiled adam_atan2"]
    if args.with_named_chain:
        optimizers["named_chain adamw"] = optax.named_chain(
            ("core", optax.scale_by_adam(eps=1e-8)),
            ("weight_decay", optax.add_decayed_weights(0.1)),
            ("learning_rate", optax.scale_by_learning_rate(learning_rate)),
        )
    rng = np.random.default_rng(1)
    grads = {k: jnp.asarray(rng.normal(size=p.shape).astype(np.float32)) for k, p in params.items()}

    runs = {}
    for name, opt in optimizers.items():
        p = jax.tree.map(jnp.copy, params)
        state = jax.jit(opt.init)(p)
        kernel = {
            "adam_atan2 (jnp.arctan2)": lambda y, w: jnp.arctan2(y, jnp.sqrt(w)),
            "adam_atan2 (other kernel)": args.with_kernel_from
            and load_kernel(args.with_kernel_from),
        }.get(name)
        step = make_step(opt, p, state, grads, kernel=kernel)
        runs[name] = {"step": step, "params": p, "state": state}
    state_bytes = {name: nbytes(run["state"]) for name, run in runs.items()}

    times = rotated_times(runs, grads, args.warmup, args.repeats)
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "device": str(jax.devices()[0].device_kind),
        "params": int(count),
        "repeats": args.repeats,
        "median_ms": {name: round(1e3 * m, 3) for name, m in median.items()},
        "ratio_compiled_adam_vs_optax_adamw": round(
            median["compiled adam"] / median["optax.adamw"], 4
        ),
        "ratio_atan2_vs_compiled_adam": round(
            median["compiled adam_atan2"] / median["compiled adam"], 4
        ),
        "state_bytes": state_bytes,
        "state_bytes_ratio_compiled_adam_vs_optax_adamw": state_bytes["compiled adam"]
        / state_bytes["optax.adamw"],
    }
    if args.with_jnp_arctan2:
        result["ratio_jnp_arctan2_vs_compiled_adam"] = round(
            median["adam_atan2 (jnp.arctan2)"] / median["compiled adam"], 4
        )
    if args.with_kernel_from:
        result["ratio_other_kernel_vs_compiled_adam"] = round(
            median["adam_atan2 (other kernel)"] / median["compiled adam"], 4
        )
    if args.with_named_chain:
        result["ratio_named_chain_adamw_vs_optax_adamw"] = round(
            median["named_chain adamw"] / median["optax.adamw"], 4
        )

    print(
        f"{count / 1e6:.1f}M parameters, {args.repeats} interleaved repeats on {result['device']}"
    )
    print(f"{'optimizer':<26}{'median ms':>12}{'p10 ms':>10}{'p90 ms':>10}{'state MB':>11}")
    for name, t in times.items():
        p10, p90 = np.percentile(t, [10, 90])
        print(
            f"{name:<26}{1e3 * median[name]:>12.3f}{1e3 * p10:>10.3f}{1e3 * p90:>10.3f}"
            f"{state_bytes[name] / 2**20:>11.2f}"
        )
    print(
        f"compiled adam / optax.adamw = {result['ratio_compiled_adam_vs_optax_adamw']:.4f}"
        " (target <= 1.02)"
    )
    print(
        f"adam_atan2 / compiled adam  = {result['ratio_atan2_vs_compiled_adam']:.4f}"
        " (target <= 1.10)"
    )
    print(
        "state bytes compiled adam / optax.adamw = "
        f"{result['state_bytes_ratio_compiled_adam_vs_optax_adamw']:.4f}"
    )
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
