"""Coordinate check across depth (theory.md §9 with L in place of n), a first measurement.

Reference transformer at a fixed width, depths 2..16 (base depth 2), Adam, a few steps on
one fixed batch of random tokens: the rms change of the final residual stream
(embedding + every branch's output, as added) and the mean rms change of one block's
branch outputs, against depth. Prints the slope of log(change) against log(depth).

    python benchmarks/depth_coord.py [--steps 3] [--width 32] [--lr 0.01]
"""

import argparse
import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import paramspec as ps
from paramspec.models import transformer


def stream(model, tokens):
    f = model.features(tokens)
    x = f["embed"]
    branches = [v for k, v in f.items() if k.startswith("blocks[")]
    for b in branches:
        x = x + b
    return x, branches


def run(spec, depth, args):
    c = ps.compile(spec, width=args.width, base_width=args.width, depth=depth, base_depth=2)
    key = jax.random.key(0)
    model = c.init(lambda w, k: transformer(w, k, depth=depth, vocab=32, seq_len=16,
                                            head_dim=8), key)
    tokens = jax.random.randint(jax.random.key(1), (8, 16), 0, 32)
    opt = c.optimizer(model, learning_rate=args.lr)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))

    def loss(m):
        logits = jax.vmap(m)(tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    @eqx.filter_jit
    def step(m, s):
        g = eqx.filter_grad(loss)(m)
        u, s = opt.update(g, s, eqx.filter(m, eqx.is_inexact_array))
        return eqx.apply_updates(m, u), s

    feats = eqx.filter_jit(jax.vmap(stream, in_axes=(None, 0)))
    x0, b0 = feats(model, tokens)
    for _ in range(args.steps):
        model, state = step(model, state)
    x1, b1 = feats(model, tokens)
    rms = lambda a: float(jnp.sqrt(jnp.mean(a ** 2)))  # noqa: E731
    return rms(x1 - x0), sum(rms(p - q) for p, q in zip(b1, b0, strict=True)) / len(b0)


def slope(xs, ys):
    """Least-squares slope of log(ys) against log(xs)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum(
        (a - mx) ** 2 for a in lx)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--depths", default="2,4,8,16")
    p.add_argument("--specs", default="completep,depth-mup,mup")
    args = p.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    start = time.time()
    print("| spec | " + " | ".join(f"L={d}: stream, block" for d in depths)
          + " | slope stream | slope block |")
    print("|---" * (len(depths) + 3) + "|")
    for spec in args.specs.split(","):
        res = [run(spec, d, args) for d in depths]
        cells = " | ".join(f"{s:.3g}, {b:.3g}" for s, b in res)
        print(f"| {spec} | {cells} | {slope(depths, [r[0] for r in res]):+.2f} | "
              f"{slope(depths, [r[1] for r in res]):+.2f} |")
    print(f"\n{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
