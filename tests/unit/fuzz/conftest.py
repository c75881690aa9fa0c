"""Hypothesis profiles for the parser fuzz tests: `ci` (the default) is short and
derandomized, so every run tries the same inputs; `soak` (HYPOTHESIS_PROFILE=soak, see
scripts/fuzz_parsers.py) tries many more, new ones each run."""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "soak",
    max_examples=int(os.environ.get("BBACKUP_FUZZ_EXAMPLES", "5000")),
    derandomize=False,
    deadline=timedelta(seconds=10),  # an input this slow is a hang
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
