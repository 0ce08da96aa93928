"""Snowflake against its definitions (k=20, alpha_p=12, alpha_c=15, beta=3)."""

from __future__ import annotations

from consensus.params import Parameters
from consensus.snowflake import Snowflake

P = Parameters(k=20, alpha_preference=12, alpha_confidence=15, beta=3)
A, B, C = b"a", b"b", b"c"


def test_confidence_grows_only_at_alpha_confidence_and_finalises_at_beta() -> None:
    sf = Snowflake(P, A)
    assert sf.record_poll(A, 15, 20)
    assert sf.record_poll(A, 20, 20)
    assert (sf.confidence, sf.finalized) == (2, False)
    assert sf.record_poll(A, 15, 20)
    assert (sf.confidence, sf.finalized) == (3, True)


def test_poll_under_alpha_preference_resets_confidence() -> None:
    sf = Snowflake(P, A)
    sf.record_poll(A, 16, 20)
    sf.record_poll(A, 16, 20)
    assert not sf.record_poll(A, 11, 20)
    assert (sf.preference, sf.confidence) == (A, 0)


def test_between_alphas_keeps_preference_but_resets_confidence() -> None:
    sf = Snowflake(P, A)
    sf.record_poll(A, 16, 20)
    assert sf.record_poll(A, 13, 20)  # successful for preference, not for confidence
    assert (sf.preference, sf.confidence) == (A, 0)


def test_change_of_preference_resets_confidence() -> None:
    sf = Snowflake(P, A)
    sf.record_poll(A, 16, 20)
    sf.record_poll(A, 16, 20)
    sf.record_poll(B, 12, 20)
    assert (sf.preference, sf.confidence) == (B, 0)
    sf.record_poll(C, 15, 20)
    assert (sf.preference, sf.confidence) == (C, 1)


def test_finalised_instance_ignores_further_polls() -> None:
    sf = Snowflake(P, A)
    for _ in range(3):
        sf.record_poll(A, 20, 20)
    assert sf.finalized
    assert not sf.record_poll(B, 20, 20)
    sf.record_unsuccessful_poll()
    sf.adopt(B)
    assert (sf.preference, sf.confidence, sf.finalized) == (A, 3, True)


def test_unsuccessful_poll_and_plurality_never_add_confidence() -> None:
    sf = Snowflake(P, A)
    sf.record_poll(A, 20, 20)
    sf.adopt(B)
    assert (sf.preference, sf.confidence) == (B, 0)
    sf.record_poll(B, 20, 20)
    sf.record_unsuccessful_poll()
    assert sf.confidence == 0


def test_stake_weighted_thresholds_use_shares() -> None:
    sf = Snowflake(P, A)
    assert sf.record_poll(A, 750, 1000)  # 15/20 of stake
    assert sf.confidence == 1
    assert not sf.record_poll(A, 599, 1000)  # under 12/20
    assert sf.confidence == 0
