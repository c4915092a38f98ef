"""Cold start of `paramspec compile`, as a ratio to importing its dependencies.

    python benchmarks/cli_cold_start.py [--repeats 21]

The figure is `paramspec compile` / `python -c "import pydantic, typer, lark"`, both
medians of the same run (target <= 2.0): an absolute time says more about the machine
and the Python environment than about paramspec.

Each run is a new Python process (`paramspec compile mup --format json`), as a user
types it; the grammar's LALR tables come from the user cache after the first run (the
first, warming run is not counted). Compared, in the same run, against a bare
`python -c pass` (the interpreter's own start) and against
`python -c "import pydantic, typer, lark"`: the floor that the chosen dependencies set
(the IR is pydantic, the CLI typer, the parser Lark), below which no change to
paramspec's own code can go. No cache of compile results is involved (a stale one
would print wrong exponents); only Lark's grammar tables are cached.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

# Python's default bytecode caching, as for an installed package (pip writes the .pyc
# files): an environment with PYTHONDONTWRITEBYTECODE set would recompile paramspec's
# sources in every process of a source checkout, but not its installed dependencies.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    exe = shutil.which("paramspec")
    cli = [exe] if exe else [sys.executable, "-m", "paramspec"]
    cli += ["compile", "mup", "--width", "4096", "--base-width", "256", "--format", "json"]
    bare = [sys.executable, "-c", "pass"]
    deps = [sys.executable, "-c", "import pydantic, typer, lark"]
    _time(cli)  # warm the grammar cache, the bytecode cache and the OS file cache
    cli_times, bare_times, deps_times = [], [], []
    commands = [(cli, cli_times), (bare, bare_times), (deps, deps_times)]
    for i in range(args.repeats):  # interleaved and rotated, so machine noise hits all alike
        for cmd, times in commands[i % 3 :] + commands[: i % 3]:
            times.append(_time(cmd))
    ratio = statistics.median(cli_times) / statistics.median(deps_times)
    result = {
        "compile_median_s": round(statistics.median(cli_times), 4),
        "compile_min_s": round(min(cli_times), 4),
        "python_bare_median_s": round(statistics.median(bare_times), 4),
        "import_deps_median_s": round(statistics.median(deps_times), 4),
        "ratio_to_bare": round(statistics.median(cli_times) / statistics.median(bare_times), 1),
        "ratio_to_deps": round(ratio, 3),
        "ratio_to_deps_per_round_median": round(
            statistics.median(c / d for c, d in zip(cli_times, deps_times, strict=True)), 3
        ),
        "target_ratio_to_deps": 2.0,
        "repeats": args.repeats,
    }
    print(
        f"paramspec compile / import pydantic, typer, lark = {result['ratio_to_deps']:.3f}"
        " (target <= 2.0)"
    )
    print(
        f"paramspec compile cold start: median {result['compile_median_s']:.3f} s "
        f"(min {result['compile_min_s']:.3f} s; bare python {result['python_bare_median_s']:.3f} s;"
        f" importing pydantic, typer and lark {result['import_deps_median_s']:.3f} s)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
