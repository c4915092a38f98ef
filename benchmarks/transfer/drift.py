"""Why does mup's optimal learning rate rise with width on the MLP? Controlled variants.

    python benchmarks/transfer/drift.py [--out DIR]

Each variant changes one thing against the MLP benchmark of `run.py` (mup, Adam, the
teacher task, 300 steps, widths 32..256, base width 32, learning rates 2^-14..2^-1,
seeds 0 and 1) and sweeps it into its own results file `DIR/<variant>/results.csv`
(default `benchmarks/transfer/out/drift`; resumable). `run.py` calls `sweep_variants`
and writes the table of `variant_table` into `docs/transfer.md`; run alone, this
prints the table.

The variants (the hypotheses of issue 15):
- `base`: the benchmark itself, at widths 32..512 and 4 seeds: p on 32..256 and on
  64..512 (does the rise shrink as widths grow?), and on seeds {0,1} against {2,3}
  (the seed noise of p);
- `steps-1000`: 1000 steps instead of 300 (too few steps?);
- `eps-tiny`: Adam's epsilon 1e-4 times smaller in every layer (epsilon?);
- `readout-x0.5`, `readout-x2`: the readout multiplier's constant halved / doubled;
- `align-half`, `align-two-thirds`: the spec's exponents for alignment 1/2 or 2/3
  instead of full (hidden lr n^(-1/2) or n^(-2/3), readout lr 1 or n^(-1/6)) — is the
  rise a partial-alignment effect?;
- `teacher-8`, `teacher-512`: a teacher of width 8 (every student fits it) or 512
  (none does) instead of 64 (the teacher task?).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WIDTHS = (32, 64, 128, 256)
LRS = tuple(2.0**k for k in range(-14, 0))  # as run.py: 2^-14 .. 2^-1, ratio 2
SEEDS = (0, 1)
BASE_WIDTH = 32

# The spec variants, written next to this file on first use (`extends mup`, one change).
SPECS = {
    "eps-tiny": (
        "mup with Adam's epsilon 1e-4 times smaller in every layer",
        "\n".join(
            f"{block} {{\n    eps         1e-4 * auto\n}}"
            for block in ("embedding", "hidden", "readout", "vectors", "constants")
        ),
    ),
    "readout-x0.5": (
        "mup with the readout multiplier's constant halved",
        "readout {\n    multiplier  0.5 * n^(-1/2)\n}",
    ),
    "readout-x2": (
        "mup with the readout multiplier's constant doubled",
        "readout {\n    multiplier  2 * n^(-1/2)\n}",
    ),
    "align-half": (
        "mup with the auto exponents of alignment 1/2 (hidden lr n^(-1/2), readout lr 1)",
        "alignment 1/2",
    ),
    "align-two-thirds": (
        "mup with the auto exponents of alignment 2/3 (hidden lr n^(-2/3), readout lr n^(-1/6))",
        "alignment 2/3",
    ),
}

# variant -> (spec, widths, seeds, steps, teacher width)
VARIANTS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], int, int]] = {
    "base": ("mup", (*WIDTHS, 512), (0, 1, 2, 3), 300, 64),
    "eps-tiny": ("eps-tiny", WIDTHS, SEEDS, 300, 64),
    "readout-x0.5": ("readout-x0.5", WIDTHS, SEEDS, 300, 64),
    "readout-x2": ("readout-x2", WIDTHS, SEEDS, 300, 64),
    "align-half": ("align-half", WIDTHS, SEEDS, 300, 64),
    "align-two-thirds": ("align-two-thirds", WIDTHS, SEEDS, 300, 64),
    "teacher-8": ("mup", WIDTHS, SEEDS, 300, 8),
    "teacher-512": ("mup", WIDTHS, SEEDS, 300, 512),
    "steps-1000": ("mup", WIDTHS, SEEDS, 1000, 64),
}


def spec_file(name: str, out: Path) -> str:
    """The path of variant spec `name` (written under `out/specs/`), or a built-in name."""
    if name not in SPECS:
        return name
    doc, body = SPECS[name]
    stem = "mup-" + name.replace(".", "")
    path = out / "specs" / f"{stem}.pspec"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f'spec {stem} "{doc}"\nextends mup\n\n{body}\n'
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return str(path)


@functools.lru_cache(maxsize=4)
def teacher_task(teacher_width: int) -> Any:
    """The MLP teacher task of `paramspec._transfer._sweep` with a teacher of another
    width (64 is the benchmark's own task, returned as is)."""
    from paramspec._transfer import _sweep

    if teacher_width == _sweep._TEACHER_WIDTH:
        return "mlp"
    return _sweep._mlp_task(64, teacher_width, name=f"mlp-teacher{teacher_width}")


def sweep_variants(out: str | Path, progress: bool = True) -> list[Any]:
    """Sweep every variant into `out/<variant>/` (resumable); their `SweepReport`s."""
    from paramspec._transfer._sweep import sweep

    out = Path(out)
    reports = []
    for name, (spec, widths, seeds, steps, teacher) in VARIANTS.items():
        reports.append(sweep(
            [spec_file(spec, out)],
            model=teacher_task(teacher),
            widths=widths,
            lrs=LRS,
            seeds=seeds,
            steps=steps,
            base_width=BASE_WIDTH,
            out=out / name,
            progress=progress,
        ))
    return reports


def _fit(rows: list[dict[str, Any]], widths: tuple[int, ...], seeds: tuple[int, ...]) -> Any:
    from paramspec._transfer import summarize

    chosen = [r for r in rows if r["width"] in widths and r["seed"] in seeds]
    (entry,) = summarize(chosen).values()
    return entry


def variant_rows(out: str | Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(variant, what it measures, summarize entry) for each measured comparison."""
    from paramspec._transfer import ResultsFile

    out = Path(out)
    found = []
    for name, (_, widths, _, _, teacher) in VARIANTS.items():
        path = out / name / "results.csv"
        if not path.exists():
            continue
        rows = ResultsFile(path).final_rows()
        if name == "base":
            found.append(("base", "widths 32..256, seeds 0,1 (the benchmark)",
                          _fit(rows, WIDTHS, SEEDS)))
            found.append(("base", "widths 32..256, seeds 2,3 (seed noise)",
                          _fit(rows, WIDTHS, (2, 3))))
            found.append(("base", "widths 32..256, seeds 0..3", _fit(rows, WIDTHS, (0, 1, 2, 3))))
            found.append(("base", "widths 64..512, seeds 0..3 (finite width)",
                          _fit(rows, (64, 128, 256, 512), (0, 1, 2, 3))))
            continue
        what = {
            "steps-1000": "1000 steps instead of 300",
            "eps-tiny": "epsilon x 1e-4 in every layer",
            "readout-x0.5": "readout multiplier x 0.5",
            "readout-x2": "readout multiplier x 2",
            "align-half": "exponents for alignment 1/2",
            "align-two-thirds": "exponents for alignment 2/3",
            "teacher-8": f"teacher width {teacher} (students fit it)",
            "teacher-512": f"teacher width {teacher} (no student fits it)",
        }[name]
        found.append((name, what, _fit(rows, widths, SEEDS)))
    return found


def variant_table(out: str | Path) -> list[str]:
    """The markdown table of the variants: η* per width, drift, p, E, L* at 256."""
    lines = [
        "| variant | what changes | η* per width | drift (grid steps) | p | E | L* at 256 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, what, entry in variant_rows(out):
        etas = ", ".join(
            f"{o['width']}: {o['lr_star']:.2g}{'*' if o['at_edge'] else ''}"
            for o in entry["optima"]
        )
        loss = next((o["loss_star"] for o in entry["optima"] if o["width"] == 256), None)

        def num(x: Any, spec: str = ".2f") -> str:
            return "–" if x is None else format(x, spec)

        lines.append(
            f"| {name} | {what} | {etas} | {num(entry['drift_steps'])} | "
            f"{num(entry['p'], '+.2f')} | {num(entry['E'], '.3f')} | {num(loss, '.4f')} |"
        )
    return lines


def reading(out: str | Path) -> list[str]:
    """Each variant's effect on p against the benchmark's, in units of the seed noise
    (written from the numbers, so a rerun cannot contradict it)."""
    found = {(name, what): entry for name, what, entry in variant_rows(out)}
    base = [e for (name, _), e in found.items() if name == "base"]
    if len(base) < 4 or any(e["p"] is None for e in base):
        return ["(The variants have not all run yet.)"]
    p0, p_other, p_all, p_wide = (e["p"] for e in base)
    noise = abs(p0 - p_other)
    lines = [
        f"- Seed noise: the same sweep on seeds 2,3 gives p = {p_other:+.2f} against "
        f"{p0:+.2f} on seeds 0,1 (a difference of {noise:.2f}); all four seeds: "
        f"{p_all:+.2f}.",
        f"- Finite width: on widths 64..512 (4 seeds) p = {p_wide:+.2f} against {p_all:+.2f} "
        f"on 32..256: the rise {'shrinks' if abs(p_wide) < abs(p_all) - noise / 2 else 'does not shrink'} "
        "as the widths grow.",
    ]
    for (name, what), entry in found.items():
        if name == "base" or entry["p"] is None:
            continue
        delta = entry["p"] - p0
        size = "within the seed noise" if abs(delta) <= max(noise, 0.05) else (
            "lowers p" if delta < 0 else "raises p")
        lines.append(
            f"- {name} ({what}): p = {entry['p']:+.2f}, {delta:+.2f} against the benchmark's "
            f"{p0:+.2f}: {size}."
        )
    return lines


def conclusion(out: str | Path, alignment: list[str] | None = None) -> list[str]:
    """What is a defect and what is not, from the numbers of `variant_rows` (and the
    table of `alignment.py`, when given)."""
    rows = variant_rows(out)
    found = {name: entry for name, _, entry in rows if name != "base"}
    base = [e for name, _, e in rows if name == "base"]
    p = {name: e["p"] for name, e in found.items()}
    if len(base) < 4 or None in p.values() or len(p) < len(VARIANTS) - 1:
        return []
    p0, p_other, p_wide = base[0]["p"], base[1]["p"], base[3]["p"]
    noise = max(abs(p0 - p_other), 0.05)

    def moved(name: str) -> bool:
        return abs(p[name] - p0) > noise

    same = [n for n in p if not moved(n)]
    flat = [n for n in p if abs(p[n]) <= noise]
    lines = [
        f"**What it is not.** Seed noise (±{noise:.2f} in p), and "
        + (", ".join(f"{n} (p = {p[n]:+.2f})" for n in same) + ": no effect. " if same else "")
        + f"Not a small-width transient either: on widths 64..512 p = {p_wide:+.2f}"
        + (f", and 1000 steps give p = {p['steps-1000']:+.2f}: more training makes the rise "
           "larger, not smaller." if p["steps-1000"] > p0 + noise else ".")
        + " So the benchmark is not too short or too narrow to show transfer; the rise "
        "is a property of the model and the task.",
        "",
        f"**What flattens it** (|p| within the noise): {', '.join(f'{n} ({p[n]:+.2f})' for n in flat) or 'none'}. "
        "One mechanism fits most rows: the alignment of the updates. mup's `auto` "
        "learning rates assume *full* alignment (an update aligned with its layer's "
        "inputs, so dW z grows like the fan-in: hidden lr n^(-1), readout lr n^(-1/2) "
        "under Adam). Where the updates are less aligned than that, those exponents "
        "shrink the rates faster with width than needed, and the best global rate "
        "rises to make up for it. With the exponents of alignment 1/2 the optimum "
        f"falls instead (p = {p['align-half']:+.2f}); those of alignment 2/3 give "
        f"p = {p['align-two-thirds']:+.2f}: full and half alignment bracket p = 0. A "
        "teacher of width 8 gives low-rank gradients, so the updates stay closer to "
        f"aligned (p = {p['teacher-8']:+.2f}); more steps accumulate more directions "
        f"(p = {p['steps-1000']:+.2f}). The readout multiplier's constant (x0.5: "
        f"{p['readout-x0.5']:+.2f}, x2: {p['readout-x2']:+.2f}) moves p too: it sets how "
        "far the output moves per step against the readout's random init, a "
        "finite-width effect muP leaves to the constants."
        + (f" One row does not fit the story cleanly: a teacher of width 512 should give "
           f"less aligned updates and a larger p, but gives p = {p['teacher-512']:+.2f} "
           f"(with a poor power-law fit, E = {found['teacher-512']['E']:.2f}, against "
           f"{base[0]['E']:.2f} for the benchmark)."
           if p["teacher-512"] < p0 - noise else ""),
        "",
    ]
    if alignment:
        lines += [
            "Measured directly (`python benchmarks/transfer/alignment.py`: mup, 300 steps "
            "at the base width's optimum; per hidden layer, first / second), the "
            "alignment A = log(rms(dW z) / (rms(dW) rms(z))) / log(fan_in) of the "
            "accumulated update, and its scaling form, the slope of log(rms(dW z) / "
            "(rms(dW) rms(z))) against log(width), which is what the exponents assume "
            "to be 1:",
            "",
            *alignment,
            "",
            "Both are below the full alignment that mup's exponents assume, and the "
            "task with the flat optimum (teacher 8) is the one closer to 1. The slope is "
            "an end-of-run average over both layers' accumulated update; a spec's "
            "`alignment` is one number for every layer and the whole run, so the value "
            "that flattens the optimum (2/3) need not equal it.",
            "",
        ]
    lines += [
        "**Defect or not?** Not a defect of the built-in spec nor of the benchmark: "
        "`mup` is muP as defined (full alignment, `sp`'s constants at the base width), "
        "and the theory promises p = 0 only when the updates are as aligned as it "
        "assumes; Everett et al. (2024) measured alignment between none and full and "
        "changing during training, and call the full-alignment exponents conservative "
        "for that reason (theory.md §4). A user whose sweep drifts like this can write "
        "the measured alignment into a spec that `extends mup` (`alignment 2/3` here) "
        "or tune the readout multiplier's constant; the built-in stays the paper's muP.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out/drift"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--only", default=None, help="comma-separated variants to sweep")
    args = parser.parse_args()

    from paramspec import use_every_cpu_core

    use_every_cpu_core()  # as `paramspec sweep`: one CPU device per core, before JAX starts
    if args.only:
        keep = set(args.only.split(","))
        for name in list(VARIANTS):
            if name not in keep:
                del VARIANTS[name]
    sweep_variants(args.out, progress=not args.quiet)
    print("\n".join(variant_table(args.out)))
    print("\n".join(reading(args.out)))
    print("\n".join(conclusion(args.out)))


if __name__ == "__main__":
    main()
