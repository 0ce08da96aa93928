"""Stake-weighted sampling and poll early termination."""

from __future__ import annotations

import random

import pytest

from consensus.errors import InvalidValidatorSet
from consensus.params import DEFAULT_PARAMETERS, Parameters
from consensus.poll import COUNTED, FINISHED, IGNORED, Poll
from consensus.sampling import query_all_by_stake, sample_by_stake
from consensus.validators import ValidatorSet

A, B = b"A" * 32, b"B" * 32


def vid(i: int) -> bytes:
    return bytes([i + 1]) * 20


def test_sampling_draws_k_by_stake_with_the_passed_in_source() -> None:
    vset = ValidatorSet([(vid(0), 700), (vid(1), 200), (vid(2), 100)])
    totals = dict.fromkeys(vset.ids, 0)
    rng = random.Random(5)
    for _ in range(500):
        draws = sample_by_stake(vset, 20, rng)
        assert sum(draws.values()) == 20
        assert list(draws) == sorted(draws)  # one query per distinct validator, in id order
        for validator, count in draws.items():
            totals[validator] += count
    assert 6_700 < totals[vid(0)] < 7_300
    assert 1_800 < totals[vid(1)] < 2_200
    assert 800 < totals[vid(2)] < 1_200
    again = [sample_by_stake(vset, 20, random.Random(9)) for _ in range(2)]
    assert again[0] == again[1]


def test_query_all_weighs_by_stake() -> None:
    vset = ValidatorSet([(vid(1), 3), (vid(0), 1)])
    assert query_all_by_stake(vset) == {vid(0): 1, vid(1): 3}


@pytest.mark.parametrize("entries", [[], [(vid(0), 0)], [(vid(0), 1), (vid(0), 2)],
                                     [(b"", 1)], [(vid(0), True)]])
def test_bad_validator_sets_are_typed_errors(entries: list[tuple[bytes, int]]) -> None:
    with pytest.raises(InvalidValidatorSet):
        ValidatorSet(entries)


def draws_poll(draws: dict[bytes, int], params: Parameters = DEFAULT_PARAMETERS) -> Poll:
    return Poll(1, draws, deadline=100, params=params)


def test_answer_counts_once_per_draw_and_only_once() -> None:
    poll = draws_poll({vid(0): 3, vid(1): 17})
    assert poll.record(vid(0), A) == COUNTED
    assert poll.record(vid(0), A) == IGNORED
    assert poll.record(vid(9), A) == IGNORED
    assert poll.votes == {A: 3}


def test_early_termination_when_confidence_is_reached_and_nothing_can_change() -> None:
    poll = draws_poll({vid(i): 1 for i in range(20)})
    for i in range(14):
        assert poll.record(vid(i), A) == COUNTED
    assert poll.record(vid(14), A) == FINISHED  # 15 for A, 5 missing cannot reach 15
    assert poll.record(vid(15), B) == IGNORED


def test_early_termination_when_alpha_preference_is_out_of_reach() -> None:
    poll = draws_poll({vid(i): 1 for i in range(20)})
    for i in range(5):
        assert poll.drop(vid(i)) == COUNTED  # 15 can still answer
    assert poll.drop(vid(5)) == FINISHED  # 14 left: no block can reach 15
    assert poll.closed and poll.votes == {}


def test_split_poll_waits_for_every_answer() -> None:
    poll = draws_poll({vid(i): 1 for i in range(20)})
    for i in range(19):
        assert poll.record(vid(i), A if i < 10 else B) == COUNTED
    assert poll.record(vid(19), B) == FINISHED
    assert poll.sorted_votes() == [(A, 10), (B, 10)]


def test_expiry_closes_the_poll_with_missing_answers_as_no_votes() -> None:
    poll = draws_poll({vid(i): 1 for i in range(4)}, Parameters(k=4, alpha_preference=3,
                                                               alpha_confidence=3))
    poll.record(vid(0), A)
    poll.expire()
    assert poll.closed
    assert poll.record(vid(1), A) == IGNORED
    assert poll.sorted_votes() == [(A, 1)]
