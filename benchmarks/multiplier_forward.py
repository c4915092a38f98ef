"""Cost of multipliers: forward + backward of the reference transformer, multiplied vs plain.

Four runs over the same stored leaves:

- plain: the reference transformer, no multipliers;
- multiplied: `multiply(...)` wraps every parameter's module in `Multiplied` (every leaf
  gets a multiplier != 1, so nothing is skipped);
- by hand: the loss first computes `W = m * w` for every leaf (`scaled(model)` inside the
  differentiated function), then calls the plain model: what one would write by hand;
- plain again: the plain model compiled a second time, to show the noise floor.

Each step is a jitted `eqx.filter_value_and_grad` of the next-token cross-entropy over a
batch. Timings are interleaved (plain, multiplied, by hand, plain again, plain, ...) so that load
from other processes hits all alike; the reported numbers are medians of the per-round
ratios (target: multiplied / plain <= 1.03).

    python benchmarks/multiplier_forward.py [--width 256] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import equinox as eqx
import jax
import optax

from paramspec._equinox import infer_leaves, multiply, scaled
from paramspec.models import transformer

# Arbitrary values != 1 per role (muP-like at n = 4), so every module is wrapped.
MULTIPLIERS = {"input": 2.0, "hidden": 0.75, "output": 0.5, "vector": 1.5, "constant": 1.25}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=3, help="steps per timing")
    args = parser.parse_args()

    def make(width: int, key: jax.Array) -> eqx.Module:
        return transformer(width, key, depth=args.depth, seq_len=args.seq_len, vocab=args.vocab)

    plain = make(args.width, jax.random.key(0))
    infos = infer_leaves(make, args.width, 2 * args.width)
    multiplied = multiply(plain, lambda info: MULTIPLIERS[info.role], leaves=infos)
    tokens = jax.random.randint(jax.random.key(1), (args.batch, args.seq_len + 1), 0, args.vocab)

    def make_step(prepare):  # type: ignore[no-untyped-def]
        @eqx.filter_jit
        def step(model: eqx.Module, tokens: jax.Array) -> tuple[jax.Array, eqx.Module]:
            def loss(model: eqx.Module) -> jax.Array:
                logits = jax.vmap(prepare(model))(tokens[:, :-1])
                labels = tokens[:, 1:]
                return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

            return eqx.filter_value_and_grad(loss)(model)

        return step

    runs = {
        "plain": (make_step(lambda m: m), plain),
        "multiplied": (make_step(lambda m: m), multiplied),
        "by hand": (make_step(scaled), multiplied),
        # The plain model again, compiled separately: how far apart two identical
        # programs time on this machine (the noise floor of the ratios above).
        "plain again": (make_step(lambda m: m), plain),
    }

    def timed(name: str) -> float:
        step, model = runs[name]
        start = time.perf_counter()
        for _ in range(args.steps):
            out = step(model, tokens)
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / args.steps

    for name in runs:  # compile and warm up
        timed(name)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name in runs:
            times[name].append(timed(name))

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    n_params = sum(x.size for x in jax.tree.leaves(eqx.filter(plain, eqx.is_inexact_array)))
    print(
        f"device: {jax.devices()[0].device_kind}; transformer width={args.width} "
        f"depth={args.depth} seq_len={args.seq_len} vocab={args.vocab} batch={args.batch} "
        f"({n_params / 1e6:.2f}M parameters)"
    )
    medians = ", ".join(f"{k} {statistics.median(v) * 1e3:.2f} ms" for k, v in times.items())
    print(f"forward+backward medians: {medians}")
    print(f"median ratio plain again/plain:    {ratio('plain again', 'plain'):.4f} (noise)")
    print(f"median ratio by hand/plain:        {ratio('by hand', 'plain'):.4f}")
    print(f"median ratio multiplied/by hand:   {ratio('multiplied', 'by hand'):.4f}")
    print(
        f"median ratio multiplied/plain over {args.repeats} interleaved rounds: "
        f"{ratio('multiplied', 'plain'):.4f} (target <= 1.03)"
    )


if __name__ == "__main__":
    main()
