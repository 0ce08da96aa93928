"""Hypothesis settings profiles of the ledger and encoding tests.

`ci` keeps the suite fast on a 2-core machine; `deep` (OGPU_DEEP=1) searches much further.
Kept out of conftest.py so that tests outside tests/ledger (test_encoding.py) can size their
fuzzers from the same switch.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DEEP = os.environ.get("OGPU_DEEP") == "1"

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "deep", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = "deep" if DEEP else "ci"


def examples(ci: int, deep: int = 1000) -> int:
    """`ci` examples normally, `deep` under OGPU_DEEP=1 (for fast tests that can afford more)."""
    return deep if DEEP else ci
