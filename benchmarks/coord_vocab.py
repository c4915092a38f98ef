"""The readout's vocabulary correction, measured (docs/coord-check.md, "Logits and routers").

The reference transformer (depth 2, head_dim 16, seq 16, batch 8) with vocabulary V under
`mup`, Adam, one step of next-token cross-entropy at the default (perturbative) learning
rate; prints the logits' rms change per width, the finite-size factor sqrt(1 + V/n) and
their ratio, and the slopes over sub-ranges of widths.

    python benchmarks/coord_vocab.py --vocab 100 --widths 64,128,256,512,1024,2048
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import jax
import optax

from paramspec import models
from paramspec._coord import _slope, coord_check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=100)
    parser.add_argument("--widths", default="64,128,256,512,1024,2048")
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    tokens = jax.random.randint(jax.random.key(0), (8, 17), 0, args.vocab)
    make = functools.partial(models.transformer, vocab=args.vocab, seq_len=16, depth=2,
                             head_dim=16)

    def loss(m, batch):
        logits = jax.vmap(m)(batch[0])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

    start = time.perf_counter()
    check = coord_check("mup", make, (tokens[:, :-1], tokens[:, 1:]), loss, widths=widths,
                        seeds=tuple(range(args.seeds)))
    logits = check.layer("logits")
    factor = [math.sqrt(1 + args.vocab / w) for w in widths]
    ratio = [d / f for d, f in zip(logits.deltas, factor, strict=True)]
    print(f"vocab {args.vocab}, lr {check.learning_rate:.3g} (perturbative), "
          f"{time.perf_counter() - start:.0f} s")
    print("| width | " + " | ".join(map(str, widths)) + " |")
    print("|---|" + "---|" * len(widths))
    print("| rms Δlogits | " + " | ".join(f"{d:.4g}" for d in logits.deltas) + " |")
    print("| sqrt(1 + V/n) | " + " | ".join(f"{f:.3f}" for f in factor) + " |")
    print("| ratio | " + " | ".join(f"{r:.4g}" for r in ratio) + " |")
    for i in range(0, len(widths) - 2, 3):
        j = min(i + 4, len(widths))
        print(f"widths {widths[i]}..{widths[j - 1]}: logits slope "
              f"{_slope(widths[i:j], logits.deltas[i:j]):+.3f}, sqrt(1 + V/n) slope "
              f"{_slope(widths[i:j], factor[i:j]):+.3f}, ratio slope "
              f"{_slope(widths[i:j], ratio[i:j]):+.3f}")
    print(f"all: judged {logits.verdict} ({logits.note})")


if __name__ == "__main__":
    main()
