"""Measured coordinate-check slopes of the built-in specs on the reference MLP.

For each built-in spec: the fitted slope of log rms(feature change) against log width
after one optimizer step on `linear_loss`, next to the first-step prediction
(paramspec._coord), in float64, with a learning rate from `perturbative_learning_rate`
(the largest change at the largest width about `--scale`). Prints a Markdown table
(docs/properties.md).

    python benchmarks/coord_slopes.py --optimizer adam --widths 64,128,256,512
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import paramspec as ps
from paramspec import models
from paramspec._coord import coord_check, linear_loss, perturbative_learning_rate

SPECS = ("mup", "sp", "ntk", "mfp", "sp-perlayer", "sp-global", "sp-embed-lr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--widths", default="64,128,256,512,1024")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1e-2)
    parser.add_argument("--specs", default=",".join(SPECS))
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    key = jax.random.key(42)
    with jax.enable_x64(True):
        x = jax.random.normal(key, (16, 16), dtype=jnp.float64)
        y = jax.random.normal(jax.random.fold_in(key, 1), (16, 8), dtype=jnp.float64)

        def make(width, k):
            return models.mlp(width, k, depth=args.depth)

        roles = make(8, key).feature_roles()
        print(
            f"optimizer {args.optimizer}, MLP depth {args.depth}, widths {widths}, "
            "1 step on linear_loss, seeds (0, 1), float64\n"
        )
        print("| spec | lr | " + " | ".join(f"{r} slope (pred.)" for r in roles) + " |")
        print("|---|---|" + "---|" * len(roles))
        for name in args.specs.split(","):
            c = ps.compile(name, width=max(widths), optimizer=args.optimizer)
            lr = perturbative_learning_rate(c.theory, roles, c.n, scale=args.scale)
            check = coord_check(
                name,
                make,
                (x, y),
                linear_loss,
                widths=widths,
                learning_rate=lr,
                optimizer=args.optimizer,
                seeds=(0, 1),
            )
            cells = [f"{layer.slope:+.3f} ({layer.predicted:+g})" for layer in check.layers]
            print(f"| {name} | {lr:.2g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
