"""PNG plots of coordinate checks and sweeps (matplotlib, imported lazily, Agg backend).

matplotlib is only needed when a plot is asked for; it is imported inside each
function with the non-interactive Agg backend, so plotting works headless and
importing paramspec stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot_coord_check", "plot_sweep"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_coord_check(check: Any, path: str | Path) -> Path:
    """Log-log rms(x_t - x_0) against width, one curve per layer (as microsoft/mup's
    coordinate check), with each layer's measured and predicted slope in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for layer in check.layers:
        mark = {"pass": "ok", "fail": "FAIL", "flagged": "FLAG"}[layer.verdict]
        ax.plot(
            layer.widths,
            layer.deltas,
            "o-",
            label=f"{layer.name} ({layer.role}): slope {layer.slope:+.2f}, "
            f"predicted {layer.predicted:+.2f} [{mark}]",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width")
    ax.set_ylabel("rms(x_t - x_0)")
    ax.set_title(
        f"coordinate check: {check.spec} ({check.optimizer}, {check.steps} step(s), "
        f"lr {check.learning_rate:g})",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out, save (creating the folder) and close a coordinate-check figure."""
    plt = _pyplot()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(
    rows: Iterable[Mapping[str, Any]],
    summary: Mapping[str, Any],
    out: str | Path,
    axis: str = "width",
) -> list[Path]:
    """Two PNGs in `out`: `loss-vs-lr.png` (one panel per spec, one curve per width,
    seeds averaged, diverged runs left out) and `optimal-lr-vs-width.png` (eta* of each
    spec against width, edge optima hollow). `axis="depth"`: curves per depth and
    `optimal-lr-vs-depth.png` (the summary of `summarize(..., axis="depth")`)."""
    import math

    import numpy as np

    plt = _pyplot()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by: dict[str, dict[int, dict[float, list[float]]]] = {}
    for row in rows:
        loss = float(row["loss"])
        lrs = by.setdefault(row["spec"], {}).setdefault(int(row[axis]), {})
        lrs.setdefault(float(row["lr"]), []).append(loss)
    specs = sorted(by)
    cols = min(len(specs), 4)
    nrows = math.ceil(len(specs) / cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(3.6 * cols, 3.0 * nrows), squeeze=False, sharey=True
    )
    for ax, spec in zip(axes.flat, specs, strict=False):
        for width in sorted(by[spec]):
            lrs = sorted(by[spec][width])
            mean = [float(np.mean(by[spec][width][lr])) for lr in lrs]
            keep = [i for i, m in enumerate(mean) if math.isfinite(m)]
            ax.plot([lrs[i] for i in keep], [mean[i] for i in keep], "o-", ms=3,
                    label=f"{axis[0]}{width}")
        ax.set_xscale("log", base=2)
        ax.set_title(spec, fontsize=9)
        ax.set_xlabel("learning rate")
    for ax in axes.flat[len(specs) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("final loss")
    axes[0][0].legend(fontsize=7)
    finite = [
        m
        for s in by.values()
        for w in s.values()
        for v in w.values()
        for m in v
        if math.isfinite(m)
    ]
    if finite:  # clip the divergent tail so the minima stay readable
        low = min(finite)
        axes[0][0].set_ylim(low * 0.95, min(max(finite), low * 4))
    fig.tight_layout()
    loss_path = out / "loss-vs-lr.png"
    fig.savefig(loss_path, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for spec in specs:
        optima = summary.get(spec, {}).get("optima", [])
        if not optima:
            continue
        widths = [o[axis] for o in optima]
        line = ax.plot(widths, [o["lr_star"] for o in optima], "-", label=spec)[0]
        for o in optima:
            ax.plot(
                o[axis],
                o["lr_star"],
                "o",
                color=line.get_color(),
                mfc="none" if o["at_edge"] else line.get_color(),
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel(axis)
    ax.set_ylabel("optimal learning rate (hollow: grid edge)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    lr_path = out / f"optimal-lr-vs-{axis}.png"
    fig.savefig(lr_path, dpi=110)
    plt.close(fig)
    return [loss_path, lr_path]
