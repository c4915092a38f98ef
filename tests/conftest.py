"""Test configuration: Hypothesis profiles and JAX on CPU.

Profiles: `ci` (default; the whole suite stays under 10 minutes on 2 cores) and
`thorough` (many more examples, for a person's run):

    HYPOTHESIS_PROFILE=thorough pytest -m property
"""

import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Most of the suite's time is XLA compiling many small programs; the tests check
# values, not speed (speed lives in benchmarks/), so compile with few optimizations.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# The coordinate checks run eagerly (a few steps, paramspec._coord), so XLA compiles
# every operation once per width: XLA:CPU's older elemental emitters compile a small
# program in ~55 % of the CPU time of the default fusion emitters (measured on this
# suite's kernels: 71 -> 39 ms per op), for the same operations. Appended, so a
# device-count flag that a test sets for its subprocesses is kept.
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false"
    ).strip()

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
