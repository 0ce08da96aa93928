"""Proposer schedule: deterministic, stake-weighted, replaced slot by slot."""

from __future__ import annotations

from collections import Counter

import pytest

from consensus.errors import InvalidSchedule
from consensus.proposer import may_propose, proposer_for, slot_at, slot_start
from consensus.validators import ValidatorSet

CHAIN = b"ogpu-devnet"


def vid(i: int) -> bytes:
    return bytes([i + 1]) * 20


def test_same_inputs_give_the_same_proposer_whatever_the_listing_order() -> None:
    a = ValidatorSet([(vid(i), 10 + i) for i in range(7)])
    b = ValidatorSet([(vid(i), 10 + i) for i in reversed(range(7))])
    for height in range(50):
        for slot in range(3):
            assert proposer_for(CHAIN, height, slot, a) == proposer_for(CHAIN, height, slot, b)


def test_chain_id_changes_the_schedule() -> None:
    vset = ValidatorSet([(vid(i), 1) for i in range(10)])
    ours = [proposer_for(CHAIN, h, 0, vset) for h in range(40)]
    theirs = [proposer_for(b"other", h, 0, vset) for h in range(40)]
    assert ours != theirs


def test_draw_is_stake_weighted() -> None:
    vset = ValidatorSet([(vid(0), 900), (vid(1), 100)])
    counts = Counter(proposer_for(CHAIN, h, 0, vset) for h in range(2_000))
    assert 1_700 < counts[vid(0)] < 1_900


def test_slots_open_one_window_apart_and_replace_a_silent_proposer() -> None:
    vset = ValidatorSet([(vid(i), 1) for i in range(10)])
    parent_time, window = 1_000, 500
    assert slot_at(parent_time, 900, window) == 0
    assert slot_at(parent_time, 1_499, window) == 0
    assert slot_at(parent_time, 1_500, window) == 1
    assert slot_start(parent_time, 2, window) == 2_000
    first = proposer_for(CHAIN, 5, 0, vset)
    later = next(s for s in range(1, 50) if proposer_for(CHAIN, 5, s, vset) != first)
    replacement = proposer_for(CHAIN, 5, later, vset)
    at = slot_start(parent_time, later, window)
    assert may_propose(CHAIN, replacement, 5, parent_time=parent_time, now=at, window=window,
                       validators=vset)
    assert not may_propose(CHAIN, first, 5, parent_time=parent_time, now=at, window=window,
                           validators=vset)


@pytest.mark.parametrize(("height", "slot"), [(-1, 0), (0, -1)])
def test_negative_inputs_are_typed_errors(height: int, slot: int) -> None:
    vset = ValidatorSet([(vid(0), 1)])
    with pytest.raises(InvalidSchedule):
        proposer_for(CHAIN, height, slot, vset)
    with pytest.raises(InvalidSchedule):
        slot_at(0, 10, 0)
