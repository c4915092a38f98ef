"""Every performance figure of paramspec, measured in one run, as one table and JSON.

    python benchmarks/run_all.py [--quick] [--json out.json]

Runs the other benchmarks (each in a fresh process, as its own command line would, so
one does not warm the next) and `label_scaling.measure` in this process, then prints:

| figure                               | source                    | target    |
|--------------------------------------|---------------------------|-----------|
| compiled adam step / optax.adamw     | optimizer_step.py         | <= 1.02   |
| adam_atan2 step / compiled adam      | optimizer_step.py         | <= 1.10   |
| optimizer state bytes / optax.adamw  | optimizer_step.py         | == 1      |
| multiplied fwd+bwd / plain           | multiplier_forward.py     | <= 1.03   |
| same program twice (noise floor)     | multiplier_forward.py     | ~1        |
| CLI cold start / import of its deps  | cli_cold_start.py         | <= 2.0    |
| label time 10k / 1k leaves           | label_scaling.py          | ~10       |

`--quick` uses smaller sizes and fewer repeats (about a minute; noisier, and the label
ratio is then 2000 / 200 leaves). Timings are only comparable within one machine and
one run: the JSON records the machine (cores, CPU model, load average, JAX version).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import label_scaling  # noqa: E402 - a sibling script, importable once HERE is on the path

FULL = {
    "optimizer_step": ["--repeats", "100"],
    "multiplier_forward": ["--repeats", "20"],
    "cli_cold_start": ["--repeats", "21"],
    "label": {"small": 1_000, "large": 10_000, "repeats": 1, "with_init": True},
}
QUICK = {
    "optimizer_step": ["--repeats", "20", "--width", "256", "--vocab", "1024"],
    "multiplier_forward": [
        "--repeats",
        "5",
        "--width",
        "128",
        "--depth",
        "2",
        "--seq-len",
        "64",
        "--vocab",
        "256",
    ],
    "cli_cold_start": ["--repeats", "7"],
    "label": {"small": 200, "large": 2_000, "repeats": 1, "with_init": False},
}


def _run(script: str, args: list[str]) -> str:
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    proc = subprocess.run(
        [sys.executable, str(HERE / f"{script}.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"{script}.py {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def _last_json(out: str) -> dict[str, Any]:
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def _ratio(out: str, label: str) -> float:
    # multiplier_forward.py prints text lines such as
    # "median ratio multiplied/plain over 20 interleaved rounds: 1.0123 (target <= 1.03)".
    match = re.search(rf"median ratio {re.escape(label)}[^:]*:\s*([0-9.]+)", out)
    if match is None:
        raise RuntimeError(f"no `median ratio {label}` line in multiplier_forward.py output")
    return float(match.group(1))


def machine() -> dict[str, Any]:
    import jax

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
    }


def run(quick: bool) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    start = time.perf_counter()
    before = machine()
    opt = _last_json(_run("optimizer_step", plan["optimizer_step"]))
    mult_out = _run("multiplier_forward", plan["multiplier_forward"])
    cold = _last_json(_run("cli_cold_start", plan["cli_cold_start"]))
    label = label_scaling.measure(**plan["label"])
    rows = [
        (
            "compiled adam / optax.adamw",
            opt["ratio_compiled_adam_vs_optax_adamw"],
            "<= 1.02",
            opt["ratio_compiled_adam_vs_optax_adamw"] <= 1.02,
        ),
        (
            "adam_atan2 / compiled adam",
            opt["ratio_atan2_vs_compiled_adam"],
            "<= 1.10",
            opt["ratio_atan2_vs_compiled_adam"] <= 1.10,
        ),
        (
            "state bytes compiled adam / optax.adamw",
            opt["state_bytes_ratio_compiled_adam_vs_optax_adamw"],
            "== 1",
            opt["state_bytes_ratio_compiled_adam_vs_optax_adamw"] == 1,
        ),
        (
            "multiplied / plain fwd+bwd",
            _ratio(mult_out, "multiplied/plain"),
            "<= 1.03",
            _ratio(mult_out, "multiplied/plain") <= 1.03,
        ),
        ("plain again / plain (noise floor)", _ratio(mult_out, "plain again/plain"), "~1", None),
        (
            "CLI cold start / import pydantic+typer+lark",
            cold["ratio_to_deps"],
            "<= 2.0",
            cold["ratio_to_deps"] <= 2.0,
        ),
        ("CLI cold start median (s)", cold["compile_median_s"], "-", None),
        ("bare python start median (s)", cold["python_bare_median_s"], "-", None),
        ("import pydantic+typer+lark median (s)", cold["import_deps_median_s"], "-", None),
        (
            f"label time {label['leaves'][1]} / {label['leaves'][0]} leaves",
            label["label_ratio"],
            f"~{label['expected_ratio']:g}",
            label["label_ratio"] <= 1.5 * label["expected_ratio"],
        ),
    ]
    if "init_ratio" in label:
        rows.append(
            (
                f"c.init time {label['leaves'][1]} / {label['leaves'][0]} leaves",
                label["init_ratio"],
                f"~{label['expected_ratio']:g}",
                label["init_ratio"] <= 1.5 * label["expected_ratio"],
            )
        )
    return {
        "mode": "quick" if quick else "full",
        "machine_before": before,
        "machine_after": machine(),
        "wall_s": round(time.perf_counter() - start, 1),
        "table": [{"figure": f, "value": v, "target": t, "met": m} for f, v, t, m in rows],
        "raw": {
            "optimizer_step": opt,
            "multiplier_forward": mult_out.strip().splitlines(),
            "cli_cold_start": cold,
            "label_scaling": label,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    result = run(args.quick)
    m = result["machine_before"]
    print(
        f"{m['nproc']} cores, {m['cpu']}, jax {m['jax']} ({m['device']}), load average "
        f"{m['loadavg_1_5_15']} -> {result['machine_after']['loadavg_1_5_15']}; "
        f"{result['mode']} run, {result['wall_s']} s"
    )
    print(f"{'figure':<42}{'value':>10}  {'target':<9}met")
    for row in result["table"]:
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        print(f"{row['figure']:<42}{row['value']:>10}  {row['target']:<9}{met}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
