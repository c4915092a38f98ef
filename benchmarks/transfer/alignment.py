"""Measured alignment of the hidden layers' accumulated update in the MLP drift study.

    python benchmarks/transfer/alignment.py

Trains `mup` on the MLP teacher task (teacher width 64, the benchmark's, and 8) at
widths 32, 128, 512 for 300 steps at the base width's optimal learning rate (from
`drift.py`'s sweep), then measures, for each hidden layer, the alignment of its
accumulated update dW = W_300 - W_0 against the layer's inputs z on the held-out batch
(theory.md §4): A = log(rms(dW z) / (rms(dW) rms(z))) / log(fan_in), 1/2 for
independent, 1 for rank-one aligned; muP's exponents assume 1. What sets the width
exponents is how the ratio rms(dW z) / (rms(dW) rms(z)) grows with the fan-in: its
slope in log-log over the widths (the scaling alignment), given per layer too. The
measurements are kept in `benchmarks/transfer/out/drift/alignment.json` (delete it to
measure again); `run.py` puts the table on the transfer page.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import drift
import numpy as np

CACHE = drift.HERE / "out/drift/alignment.json"

WIDTHS = (32, 128, 512)
TEACHERS = {64: 0.0057, 8: 0.012}  # teacher width -> mup's optimum at width 32 (drift.py)
STEPS = 300


def measure(width: int, teacher: int, lr: float, seed: int = 0) -> list[float]:
    """Per hidden layer, the ratio rms(dW z) / (rms(dW) rms(z)) of its accumulated
    update (see the module doc); the alignment at this width is log(ratio)/log(fan_in)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import paramspec as ps
    from paramspec._transfer._sweep import make_task

    task = drift.teacher_task(teacher)
    task = make_task("mlp") if isinstance(task, str) else task
    c = ps.compile("mup", width=width, base_width=drift.BASE_WIDTH)
    model = c.init(task.make_model, jax.random.key(seed))
    opt = c.optimizer(model, learning_rate=lr)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = opt.init(params)

    @jax.jit
    def step(params: Any, state: Any, batch: Any) -> Any:
        grads = jax.grad(lambda p: task.loss(eqx.combine(p, static), batch))(params)
        updates, state = opt.update(grads, state, params)
        return eqx.apply_updates(params, updates), state

    data = task.train_data(seed, STEPS)
    for t in range(STEPS):
        params, state = step(params, state, jax.tree.map(lambda a, t=t: a[t], data))
    final = eqx.combine(params, static)
    x, _ = task.eval_batch
    feats = jax.vmap(final.features)(x)
    inputs = [jax.nn.relu(feats["embed"]), jax.nn.relu(feats["hidden[0]"])]
    out = []
    for layer0, layer1, z in zip(model.hidden, final.hidden, inputs, strict=True):
        dw = layer1.weight - layer0.weight

        def rms(a: Any) -> float:
            return float(jnp.sqrt(jnp.mean(a**2)))

        out.append(rms(z @ dw.T) / (rms(dw) * rms(z)))
    return out


def ratios(cache: Path = CACHE) -> dict[str, list[float]]:
    """`{"teacher/width": [ratio per hidden layer]}`, measured once and cached."""
    found = json.loads(cache.read_text(encoding="utf-8")) if cache.exists() else {}
    for teacher, lr in TEACHERS.items():
        for w in WIDTHS:
            key = f"{teacher}/{w}"
            if key not in found:
                found[key] = measure(w, teacher, lr)
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(found, indent=1), encoding="utf-8")
    return found


def table() -> list[str]:
    """Alignment per width (both hidden layers) and the scaling alignment per teacher."""
    found = ratios()
    lines = [
        "| teacher width | lr | "
        + " | ".join(f"A at width {w}" for w in WIDTHS)
        + " | scaling alignment (slope) |",
        "|---|---|" + "---|" * (len(WIDTHS) + 1),
    ]
    for teacher, lr in TEACHERS.items():
        per_width = np.array([found[f"{teacher}/{w}"] for w in WIDTHS])  # (widths, layers)
        cells = [
            " / ".join(f"{math.log(r) / math.log(w):.2f}" for r in row)
            for w, row in zip(WIDTHS, per_width, strict=True)
        ]
        slopes = np.polyfit(np.log(WIDTHS), np.log(per_width), 1)[0]
        cells.append(" / ".join(f"{s:.2f}" for s in slopes))
        lines.append(f"| {teacher} | {lr:g} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    print("\n".join(table()))
