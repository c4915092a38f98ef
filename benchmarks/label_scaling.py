"""Labelling scales linearly: compile a spec and parameterize a model of 1k vs 10k leaves.

The model is a custom Equinox module holding many small `eqx.nn.Linear(width, width)`
layers with biases (2 parameter leaves each; weights get role `hidden`, biases `vector`).
For 1k and 10k leaves it times, as medians over `--repeats` runs:

- `label`: `ps.compile("mup", ...)`, role inference (`infer_leaves`, two traced widths)
  and block assignment (`assign_blocks`): everything that decides each leaf's rule;
- `init` (unless `--no-init`): the whole `c.init(make_model, key)`, which also re-draws
  every leaf and wraps the modules in `Multiplied` (its eager random draws dominate).

and reports the 10k / 1k ratio of each (linear: ~10; quadratic: ~100).

    python benchmarks/label_scaling.py [--repeats 3] [--no-init]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import equinox as eqx
import jax

import paramspec as ps
from paramspec._equinox._roles import infer_leaves
from paramspec._select import assign_blocks

WIDTH = 4  # tiny layers: the cost measured is per leaf, not per float


class ManyLinears(eqx.Module):
    """`n_layers` independent `width -> width` Linear layers (weight + bias each)."""

    layers: tuple[eqx.nn.Linear, ...]

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        return x


def make_factory(n_leaves: int):  # type: ignore[no-untyped-def]
    n_layers = n_leaves // 2

    def make_model(width: int, key: Any) -> ManyLinears:
        keys = jax.random.split(key, n_layers)
        return ManyLinears(tuple(eqx.nn.Linear(width, width, key=k) for k in keys))

    return make_model


def label(make_model, n_leaves: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    c = ps.compile("mup", width=WIDTH, base_width=1)
    leaves = infer_leaves(make_model, WIDTH, 2 * WIDTH)
    assert len(leaves) == n_leaves, (len(leaves), n_leaves)
    return assign_blocks(c.blocks, leaves)


def init(make_model, n_leaves: int) -> Any:  # type: ignore[no-untyped-def]
    c = ps.compile("mup", width=WIDTH, base_width=1)
    model = c.init(make_model, jax.random.key(0))
    assert len(jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))) == n_leaves
    return jax.block_until_ready(eqx.filter(model, eqx.is_inexact_array))


def _median_time(fn, *args, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    *, small: int = 1_000, large: int = 10_000, repeats: int = 3, with_init: bool = True
) -> dict[str, Any]:
    """Median seconds for `small` and `large` leaves, and the large/small ratios."""
    result: dict[str, Any] = {"leaves": [small, large], "repeats": repeats}
    stages = {"label": label, **({"init": init} if with_init else {})}
    for name, fn in stages.items():
        medians = []
        for n in (small, large):
            make_model = make_factory(n)
            fn(make_model, n)  # warm up: compile the eager ops once per shape
            medians.append(_median_time(fn, make_model, n, repeats=repeats))
        result[f"{name}_s"] = [round(m, 4) for m in medians]
        result[f"{name}_ratio"] = round(medians[1] / medians[0], 2)
    result["expected_ratio"] = large / small
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--no-init", action="store_true", help="time labelling only")
    args = parser.parse_args()
    result = measure(
        small=args.small, large=args.large, repeats=args.repeats, with_init=not args.no_init
    )
    for name in ("label", "init"):
        if f"{name}_s" in result:
            a, b = result[f"{name}_s"]
            print(
                f"{name:<6} {args.small} leaves {a:.3f} s, {args.large} leaves {b:.3f} s: "
                f"ratio {result[f'{name}_ratio']:.2f} (linear ~{result['expected_ratio']:g})"
            )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
