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
