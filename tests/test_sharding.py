"""paramspec on a device mesh: the muP transformer trained on 2 x 4 simulated CPU devices.

The scenario lives in `tests/sharding_worker.py` (shown verbatim in
`docs/scaling-out.md`); it runs in a subprocess because the device count
(`--xla_force_host_platform_device_count=8`) must be set before JAX starts, and this
process's JAX has already started with one device.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "sharding_worker.py"
DOC = ROOT / "docs" / "scaling-out.md"


def _run_worker() -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    # Compile time dominates this small run; XLA's optimisations do not change results
    # beyond float tolerance and would double the wall time on 2 cores.
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    # -P: keep tests/ off sys.path (tests/equinox would shadow the equinox package).
    return subprocess.run(
        [sys.executable, "-P", str(WORKER)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sharded_training_matches_one_device_and_survives_a_checkpoint():
    proc = _run_worker()
    assert proc.returncode == 0, f"worker failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8
    assert result["mesh"] == {"data": 2, "model": 4}
    # Some parameters really were split over the model axis, and both of Adam's moment
    # trees (mu, nu) were checked leaf by leaf against their parameter's sharding.
    assert 0 < result["split_params"] <= result["params"]
    assert result["mirrored_state_leaves"] == 2 * result["params"]
    losses = result["losses"]
    assert len(losses) == 5 and losses[-1] < losses[0]
    assert result["max_diff_vs_single"] < 1e-4
    assert result["max_diff_after_restore"] < 1e-4


def test_scaling_out_doc_shows_the_tested_worker_verbatim():
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "docs/scaling-out.md has no ```python block"
    assert blocks[0] == WORKER.read_text(), (
        "the first python block of docs/scaling-out.md must be tests/sharding_worker.py "
        "verbatim (it is the tested example): copy the file into the doc"
    )
