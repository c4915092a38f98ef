"""`use_every_cpu_core`: one JAX CPU device per core for the vectorised engine, only
where the user has not chosen and JAX has not started (docs/sweeps.md "Two engines").

The CPU device count is fixed when JAX's backends start, so each case runs in a fresh
process; `os.sched_getaffinity` is replaced there so the cases do not depend on the
cores of the machine that runs the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_CASE = """
import json, os, sys
cores = json.loads(sys.argv[1])
os.sched_getaffinity = lambda pid: set(range(cores))
import jax
if sys.argv[2] == "started":
    jax.numpy.zeros(1).block_until_ready()
import paramspec as ps
returned = ps.use_every_cpu_core()
print(json.dumps({"returned": returned, "devices": len(jax.devices())}))
"""


# (cores, JAX started first, environment) -> (returned, devices). Only the first case
# changes anything; the others must leave JAX's count as it is.
_CASES = {
    "fresh": ((3, False, {}), (3, 3)),
    "one-core": ((1, False, {}), (None, 1)),  # nothing to spread over
    "jax-started": ((3, True, {}), (None, 1)),  # too late: left as it is
    "jax-num-cpu-devices": ((3, False, {"JAX_NUM_CPU_DEVICES": "2"}), (None, 2)),  # user's
    "xla-flags": ((3, False, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}),
                  (None, 2)),
}


def test_one_cpu_device_per_core_only_where_nobody_chose():
    clean = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    procs = {  # all at once: each is mostly `import jax`
        name: subprocess.Popen(
            [sys.executable, "-P", "-c", _CASE, str(cores), "started" if started else "fresh"],
            env={**clean, "JAX_PLATFORMS": "cpu", **env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for name, ((cores, started, env), _) in _CASES.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (name, err[-2000:])
        got = json.loads(out.strip().splitlines()[-1])
        returned, devices = _CASES[name][1]
        assert got == {"returned": returned, "devices": devices}, name


@pytest.mark.parametrize("engine, calls", [("vectorised", 1), ("sequential", 0)])
def test_the_sweep_command_asks_for_every_core_with_the_vectorised_engine(
    tmp_path, monkeypatch, engine, calls
):
    from typer.testing import CliRunner

    from paramspec import _cli
    from paramspec._transfer import _vectorised

    asked = []
    monkeypatch.setattr(_vectorised, "use_every_cpu_core", lambda: asked.append(1))
    result = CliRunner().invoke(_cli.app, [
        "sweep", "mup", "--model", "mlp", "--widths", "8", "--lrs", "0.01", "--seeds", "1",
        "--steps", "1", "--out", str(tmp_path), "--engine", engine, "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    assert len(asked) == calls
