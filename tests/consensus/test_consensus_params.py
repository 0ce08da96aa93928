from __future__ import annotations

import pytest

from consensus.errors import ConsensusError, InvalidParameters
from consensus.params import DEFAULT_PARAMETERS, Parameters


def test_defaults_are_the_issue_values_and_verify() -> None:
    p = DEFAULT_PARAMETERS
    assert (p.k, p.alpha_preference, p.alpha_confidence, p.beta, p.concurrent_polls) == (
        20, 15, 15, 20, 4)
    p.verify()


@pytest.mark.parametrize(
    "changes",
    [
        {"k": 0},
        {"alpha_preference": 10},  # not > k/2
        {"alpha_preference": 16, "alpha_confidence": 15},  # alpha_c < alpha_p
        {"alpha_confidence": 21},  # > k
        {"beta": 0},
        {"concurrent_polls": 0},
        {"max_processing": 0},
        {"poll_timeout": 0},
    ],
)
def test_each_broken_invariant_is_rejected(changes: dict[str, int]) -> None:
    fields = {
        "k": 20, "alpha_preference": 15, "alpha_confidence": 15, "beta": 20,
        "concurrent_polls": 4, "max_processing": 10, "poll_timeout": 100,
    } | changes
    with pytest.raises(InvalidParameters):
        Parameters(**fields).verify()


def test_invalid_parameters_is_a_consensus_error() -> None:
    assert issubclass(InvalidParameters, ConsensusError)


def test_passes_compares_stake_shares_in_integers() -> None:
    p = DEFAULT_PARAMETERS
    assert p.passes(15, 3, 4)  # 3/4 of stake == 15/20
    assert not p.passes(15, 2, 4)
    assert not p.passes(15, 749_999, 1_000_000)
    assert p.passes(15, 750_000, 1_000_000)
