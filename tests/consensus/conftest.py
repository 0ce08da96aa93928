"""Hypothesis profiles for the consensus tests; the tests pick ``consensus-deep`` when
OGPU_DEEP=1 and ``consensus-ci`` otherwise."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "consensus-ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "consensus-deep",
    max_examples=1_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
