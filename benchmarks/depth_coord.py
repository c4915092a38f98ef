"""Coordinate check across depth on the reference transformer (docs/coord-check.md,
"Across depth"; docs/theory.md "Depth", the measured table), on top of the library's
`paramspec._coord_depth.coord_check_depth`.

At a fixed width, depths 2..16 (base depth 2), one optimizer step on one fixed batch of
random tokens (next-token cross-entropy) at the perturbative learning rate, seeds 0 and 1:
the slope of each depth quantity's rms change against log depth, its prediction and the
verdict, for each spec and optimizer. Writes one plot per optimizer.

    python benchmarks/depth_coord.py [--optimizers adam] [--specs completep,depth-mup,mup]
        [--depths 2,4,8,16] [--width 32] [--steps 1] [--seeds 2] [--plot-dir docs/img]
"""

import argparse
import functools
import time

import jax
import optax

from paramspec._coord_depth import coord_check_depth, plot_depth_check
from paramspec.models import transformer

VOCAB, SEQ, BATCH = 32, 8, 4


def task():
    tokens = jax.random.randint(jax.random.key(1), (BATCH, SEQ + 1), 0, VOCAB)

    def loss(model, x):
        logits = jax.vmap(model)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    make = functools.partial(transformer, vocab=VOCAB, seq_len=SEQ, head_dim=8)
    return make, tokens[:, :-1], loss


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--optimizers", default="adam")
    p.add_argument("--specs", default="completep,depth-mup,mup")
    p.add_argument("--depths", default="2,4,8,16")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--plot-dir", default=None)
    args = p.parse_args()
    depths = tuple(int(d) for d in args.depths.split(","))
    make, inputs, loss = task()
    names = ("stream", "block (first)", "blocks (mean)", "block (last)", "logits")
    print(f"width {args.width}, depths {args.depths} (base {min(depths)}), {args.steps} "
          f"step(s), seeds 0..{args.seeds - 1}; each cell: measured slope (predicted)\n")
    print("| optimizer | spec | lr | " + " | ".join(names) + " | passed | stream flat | s |")
    print("|---" * (len(names) + 6) + "|")
    for optimizer in args.optimizers.split(","):
        checks = []
        for spec in args.specs.split(","):
            start = time.time()
            check = coord_check_depth(spec, make, inputs, loss, depths=depths,
                                      width=args.width, steps=args.steps,
                                      seeds=tuple(range(args.seeds)), learning_rate=args.lr,
                                      optimizer=optimizer)
            checks.append(check)
            cells = " | ".join(
                f"{layer.slope:+.2f} ({layer.predicted:+.2g})"
                + ("" if layer.passed else " **fail**" if layer.verdict == "fail" else " flag")
                for layer in (check.layer(n) for n in names))
            print(f"| {optimizer} | {spec} | {check.learning_rate:.2g} | {cells} | "
                  f"{'yes' if check.passed else 'no'} | {'yes' if check.flat else 'no'} | "
                  f"{time.time() - start:.0f} |", flush=True)
        if args.plot_dir:
            plot_depth_check(checks, f"{args.plot_dir}/coord-depth-{optimizer}.png")


if __name__ == "__main__":
    main()
