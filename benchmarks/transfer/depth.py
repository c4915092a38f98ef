"""Learning-rate transfer across depth: does the optimum move less under CompleteP than muP?

    python benchmarks/transfer/depth.py [--out DIR] [--width 32] [--depths 2,4,8,16]
        [--base-depth 2] [--steps 300] [--lr-min -9.5] [--lr-max -4] [--seeds 2]
        [--weight-decay 0.1] [--specs mup,completep]

Sweeps `mup` (depth-blind) and `completep` (CompleteP, alpha = 1; `--specs` adds
`depth-mup`) on the `"transformer"` task of `paramspec._transfer._sweep` (the task of
the width reproduction, `transformer.py`: pre-LN character model, head size 16, batch
16 windows of 32 characters, cross-entropy on a fixed validation batch) at one width
(= the base width, so every spec is muP = SP in width) and several depths (number of
blocks; base depth = the smallest), AdamW, learning rates 2^(k/2) for k/2 in
[lr-min, lr-max] (ratio 2^(1/2)), with the vectorised sweep engine. Then it writes
`docs/transfer-depth.md` (the metrics of `summarize(rows, axis="depth")`, the reading,
the command, the run time and the machine's load) and the plots under `docs/img/`.

Resumable: the results go to `DIR/results.csv` (default
`benchmarks/transfer/out/depth`); rerun the same command after a kill (or with more
`--specs`) and it trains only the missing runs. Every invocation's wall time and the
load average before and after it are appended to `DIR/timing.json`. `--quick` is a small
smoke run (depths 2,4, 3 lrs, 10 steps) that writes into `DIR` only, never into `docs/`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[2]
SPECS = ("mup", "completep")


def _seed_spread(rows: list[dict], grid_ratio: float) -> list[str]:
    """Where a depth has several seeds: each seed's own optimum, and their spread in grid
    steps (the noise floor of the drifts above)."""
    from paramspec._transfer import TransferMetricError, optimum

    curves: dict[tuple[str, int], dict[int, dict[float, float]]] = {}
    for row in rows:
        loss = row["loss"] if row["status"] == "ok" else math.inf
        curves.setdefault((row["spec"], row["depth"]), {}).setdefault(row["seed"], {})[
            row["lr"]] = loss
    out = []
    for (spec, depth), by_seed in sorted(curves.items()):
        if len(by_seed) < 2:
            continue
        try:
            stars = [optimum(sorted(c), [c[lr] for lr in sorted(c)]) for c in by_seed.values()]
        except TransferMetricError:
            continue
        logs = [o.log_lr_star for o in stars]
        cells = ", ".join(f"{o.lr_star:.3g}{'*' if o.at_edge else ''}" for o in stars)
        out.append(f"{spec} at depth {depth}: η* per seed {cells}, "
                   f"{(max(logs) - min(logs)) / math.log(grid_ratio):.2f} grid steps apart")
    return out


def _reading(summary: dict, grid_ratio: float, rows: list[dict]) -> list[str]:
    """What the numbers say, written from the numbers (so a rerun cannot contradict it)."""
    from _page import fmt

    out = [
        "The claim (Dey et al., CompleteP; theory.md §10): with each residual branch "
        "multiplied by `m^(-alpha)` (`m` = depth / base depth) and the per-block learning "
        "rates and epsilons of §10, the optimal learning rate tuned at the base depth stays "
        "optimal as blocks are added; under depth-blind muP each added block moves the "
        "residual stream as much as the first, so the optimum should fall with depth. "
        f"One grid step is a factor {grid_ratio:.3g}.",
        "",
    ]
    for spec, entry in summary.items():
        d, p = entry["drift_steps"], entry["p"]
        if d is None:
            out.append(f"- {spec}: no drift measured (see the notes).")
            continue
        out.append(
            f"- {spec}: drift {d:.2f} grid steps across depths {entry['depths']} "
            f"(p = {p:+.2f}; E = {fmt(entry['E'])}); within one grid step: "
            f"**{'yes' if d <= 1 else 'no'}**."
        )
    mup, cp = summary.get("mup", {}), summary.get("completep", {})
    if mup.get("drift_steps") is not None and cp.get("drift_steps") is not None:
        gap = mup["drift_steps"] - cp["drift_steps"]
        verdict = (
            "yes" if gap >= 1 else "no" if gap <= -1 else
            f"not resolved (the drifts differ by {abs(gap):.2f} grid steps, less than one "
            "step of the grid, and one seed's noise is of that order)"
        )
        out.append(
            f"- Does the optimum move less under completep than under mup? drift "
            f"{cp['drift_steps']:.2f} against {mup['drift_steps']:.2f} grid steps, p "
            f"{cp['p']:+.2f} against {mup['p']:+.2f}: **{verdict}**."
        )
    grid: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        grid.setdefault((row["spec"], row["depth"]), []).append(row["lr"])
    full = max(len(v) for v in grid.values())
    cut = sorted({(d, s) for (s, d), v in grid.items() if len(v) < full})
    if cut:
        cells = ", ".join(
            f"{s} at depth {d}: 2^{math.log2(min(grid[s, d])):g} .. 2^{math.log2(max(grid[s, d])):g}"
            for d, s in cut
        )
        out.append(
            f"- **A cut grid.** Here the grid was cut ({cells}) to points around each spec's "
            "optimum extrapolated from the smaller depths, chosen after seeing them: a full "
            "grid did not fit the time on the shared machine (see the run time). An optimum "
            "there is a fit to those points only (a `*` if it fell on their edge)."
        )
    spread = _seed_spread(rows, grid_ratio)
    if spread:
        out.append("- Seed noise (each seed's own optimum where a depth has several): "
                   + "; ".join(spread) + ".")
    for spec, entry in summary.items():
        optima = [o for o in entry["optima"] if not o["at_edge"]]  # L* of a bracketed optimum
        if len(optima) >= 2:
            first, last = optima[0], optima[-1]
            out.append(
                f"- Does depth help {spec} at its own best learning rate? L* {first['loss_star']:.3f} "
                f"at depth {first['depth']}, {last['loss_star']:.3f} at depth {last['depth']}."
            )
    seeds = {row["seed"] for row in rows}
    seed_text = ("one seed, so no estimate of the seed noise" if len(seeds) == 1 else
                 f"{len(seeds)} seeds, averaged before the fit")
    out += [
        "",
        "Caveats: a character model of width 32 and at most 16 blocks, trained for a few "
        "hundred steps on a CPU, is far from the paper's scales (CompleteP trains up to "
        "hundreds of layers for tokens-per-parameter budgets); depth 2 to 16 is 3 octaves "
        f"of depth; {seed_text}; a drift below 1 grid step is within "
        "the resolution of the grid. The best loss at each depth (`L*` column) also says "
        "whether adding blocks helped at all in this budget. R(∞) fits three unknowns to "
        "the few depths swept: with 3 or 4 depths it is barely determined (read `L*` per "
        "depth instead).",
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/transfer/out/depth"))
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depths", default="2,4,8,16")
    parser.add_argument("--base-depth", type=int, default=None,
                        help="default: the smallest depth")
    parser.add_argument("--steps", type=int, default=300)
    # 12 points, ratio 2^(1/2). At depth 2 and width 32 the width reproduction's mup
    # optimum is 2^-5.5 (300 steps, AdamW 0.1); the grid leaves 3 points above it and
    # room for mup's optimum to fall 8x (6 steps) by depth 16.
    parser.add_argument("--lr-min", type=float, default=-9.5, help="log2 of the smallest lr")
    parser.add_argument("--lr-max", type=float, default=-4.0, help="log2 of the largest lr")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--specs", default=",".join(SPECS))
    parser.add_argument("--quick", action="store_true", help="a small smoke run (no docs)")
    parser.add_argument("--from-results", action="store_true",
                        help="write the page from the results file, training nothing")
    args = parser.parse_args()

    from paramspec import use_every_cpu_core

    use_every_cpu_core()  # as `paramspec sweep`: one CPU device per core, before JAX starts
    if args.quick:
        args.depths, args.steps, args.lr_min, args.lr_max = "2,4", 10, -6.0, -5.0

    from paramspec._transfer import ResultsFile, summarize
    from paramspec._transfer._plots import plot_sweep
    from paramspec._transfer._sweep import sweep

    depths = [int(d) for d in args.depths.split(",")]
    base_depth = args.base_depth or min(depths)
    count = round((args.lr_max - args.lr_min) * 2) + 1
    lrs = [2.0 ** (args.lr_min + k / 2) for k in range(count)]
    specs = tuple(args.specs.split(","))
    out = Path(args.out)
    load_before = os.getloadavg()
    start = time.perf_counter()
    if args.from_results:  # e.g. rows written before run keys had spec fingerprints
        from paramspec._transfer._sweep import SweepReport

        path = out / "results.csv"
        report = SweepReport(0, len(ResultsFile(path).final_rows()), path)
    else:
        report = sweep(
            specs,
            model="transformer",
            widths=[args.width],
            depths=depths,
            base_depth=base_depth,
            lrs=lrs,
            seeds=list(range(args.seeds)),
            steps=args.steps,
            base_width=args.width,
            weight_decay=args.weight_decay,
            chunk_size=args.chunk,
            out=out,
            progress=True,
        )
    elapsed = time.perf_counter() - start
    timing = out / "timing.json"
    log = json.loads(timing.read_text(encoding="utf-8")) if timing.exists() else []
    if report.ran:
        log.append({"wall_s": elapsed, "ran": report.ran, "skipped": report.skipped,
                    "specs": list(specs), "argv": sys.argv[1:], "load_before": load_before,
                    "load_after": os.getloadavg(), "cpus": os.cpu_count()})
        timing.write_text(json.dumps(log, indent=1), encoding="utf-8")
    rows = ResultsFile(report.results).final_rows()
    summary = summarize(rows, reference="completep" if "completep" in specs else None,
                        axis="depth")
    plots = plot_sweep(rows, summary, out, axis="depth")
    for spec, entry in summary.items():
        print(spec, {k: entry[k] for k in ("drift_steps", "p", "E", "kappa", "R_inf")},
              [(o["depth"], round(o["lr_star"], 5), o["at_edge"]) for o in entry["optima"]])
    if args.quick:
        print(f"{elapsed:.0f} s; quick run, docs left alone; results in {report.results}")
        return

    from _page import header, images, metrics_table, notes, write_page

    # The invocations that trained runs, in order (the results are their union).
    argvs = [entry["argv"] for entry in log if "argv" in entry] or [
        [a for a in sys.argv[1:] if a != "--from-results"]]
    command = "\n".join(
        dict.fromkeys("python benchmarks/transfer/depth.py " + " ".join(a) for a in argvs)
    )
    # What the rows hold (several invocations may have added depths, seeds or specs).
    seeds_at: dict[int, set[int]] = {}
    for row in rows:
        seeds_at.setdefault(row["depth"], set()).add(row["seed"])
    seen = sorted(seeds_at)
    kinds = {tuple(sorted(v)) for v in seeds_at.values()}
    seeds_text = (
        (f"seeds {list(next(iter(kinds)))}" if len(next(iter(kinds))) > 1 else "one seed (0)")
        if len(kinds) == 1
        else "seeds " + ", ".join(f"{list(sorted(seeds_at[d]))} at depth {d}" for d in seen)
    )
    all_lrs = sorted({row["lr"] for row in rows})
    lrs_at: dict[int, set[float]] = {}
    for row in rows:
        lrs_at.setdefault(row["depth"], set()).add(row["lr"])
    partial = {d: sorted(v) for d, v in lrs_at.items() if len(v) < len(all_lrs)}
    partial_text = "".join(
        f"; at depth {d} only {len(v)} of them, 2^{math.log2(v[0]):g} .. 2^{math.log2(v[-1]):g} "
        "(not every spec has each)"
        for d, v in sorted(partial.items())
    )
    setup = (
        "**Setup.** The `transformer` task of `paramspec._transfer._sweep` (as in "
        "[the width reproduction](transfer-transformer.md)): a pre-LN decoder (head size 16, "
        "GeLU MLP of 4x width, no biases, untied readout) as a character model of the "
        "shipped corpus, batches of 16 windows of 32 characters, loss = cross-entropy on a "
        f"fixed validation batch of 64 windows. Width {args.width} (= the base width), "
        f"depths {', '.join(map(str, seen))} blocks (base depth {base_depth}), AdamW "
        f"(eps 1e-8, decoupled weight decay {args.weight_decay:g} times each layer's "
        f"factor), {args.steps} steps, {len(all_lrs)} learning rates "
        f"2^{math.log2(all_lrs[0]):g} .. 2^{math.log2(all_lrs[-1]):g} (ratio 2^(1/2)"
        f"{partial_text}), "
        f"{seeds_text}{'' if seeds_text.startswith('one') else ' (losses averaged over seeds before the fit)'}, specs "
        f"{', '.join(sorted({row['spec'] for row in rows}))}. Metrics: "
        "`summarize(rows, axis='depth')` (the [transfer metrics](transfer-metrics.md) with "
        f"depth in place of width). {len(rows)} runs, trained by the vectorised sweep "
        "engine; their rows are `benchmarks/transfer/out/depth/results.csv`. "
        "`paramspec sweep --depths` runs the same kind of sweep "
        "(see [sweeps](sweeps.md#depth))."
    )
    lines = [
        *header("Learning-rate transfer across depth (CPU)", "benchmarks/transfer/depth.py",
                command),
        setup,
        "",
        _run_time(log, (elapsed, report.ran, report.skipped), rows),
        "",
        *metrics_table(summary, axis="depth", best_loss=True),
        "`L*`: the fitted best loss at each depth. drift: the spread of ln η* over the "
        "depths in grid steps; p: the slope of ln η* against ln depth.",
        "",
        *images(plots, "transfer-depth-"),
        "## Reading",
        "",
        *_reading(summary, 2**0.5, rows),
        "",
        *notes(summary),
    ]
    write_page("docs/transfer-depth.md", lines)
    print(f"{elapsed:.0f} s; wrote docs/transfer-depth.md")


def _run_time(timing: list[dict], invocation: tuple[float, int, int], rows: list[dict]) -> str:
    """The run-time paragraph of a sweep extended over several invocations: each one
    that trained runs (wall time, runs, load before and after), this one, and the runs'
    wall times per depth (`_page.run_time` knows one from-scratch command only)."""
    from _page import machine

    elapsed, ran, skipped = invocation
    text = "**Run time.** "
    if timing:
        parts = [
            f"{entry['wall_s']:.0f} s for {entry['ran']} runs of {', '.join(entry['specs'])} "
            f"(1-min load average {entry['load_before'][0]:.1f} before, "
            f"{entry['load_after'][0]:.1f} after, on {entry['cpus']} CPUs"
            + (f"; {entry['killed']}" if entry.get("killed") else "") + ")"
            for entry in timing
        ]
        total = sum(entry["wall_s"] for entry in timing)
        text += (f"{total:.0f} s of wall time in all, in {len(parts)} invocation"
                 f"{'s' if len(parts) > 1 else ''} that trained runs (a killed or extended "
                 f"sweep resumes): {'; '.join(parts)}. ")
    by_depth: dict[int, float] = {}
    for r in rows:
        by_depth[r["depth"]] = by_depth.get(r["depth"], 0.0) + r["wall_s"]
    per = ", ".join(f"{d}: {seconds:.0f} s" for d, seconds in sorted(by_depth.items()))
    return text + (
        f"The runs' amortised wall times sum to {sum(by_depth.values()):.0f} s (per depth: "
        f"{per}); the last invocation took {elapsed:.0f} s ({ran} runs trained, {skipped} "
        f"resumed from the results file). On {machine()}; the times are upper bounds."
    )


if __name__ == "__main__":
    main()
