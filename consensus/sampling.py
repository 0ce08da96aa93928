"""Stake-weighted sampling of the validators to query in one poll."""

from __future__ import annotations

from bisect import bisect_right
from typing import Protocol

from consensus.validators import ValidatorSet


class RandomSource(Protocol):
    """The only randomness the engine uses; ``random.Random`` satisfies it."""

    def getrandbits(self, k: int, /) -> int:
        """A uniform integer with ``k`` random bits."""
        ...


DRAW_BITS = 128
_DRAW_MASK = (1 << DRAW_BITS) - 1


def uniform_below(rng: RandomSource, stop: int) -> int:
    """An integer in ``[0, stop)``; 128 bits reduced modulo ``stop`` < 2**64 leave a bias
    below 2**-64, far under any stake granularity."""
    return rng.getrandbits(DRAW_BITS) % stop


def sample_by_stake(validators: ValidatorSet, k: int, rng: RandomSource) -> dict[bytes, int]:
    """Draw ``k`` validators with replacement, each with probability stake/total.

    Returns ``{validator: number of draws}`` with keys in id order, so a validator drawn
    several times is queried once and its answer counts once per draw.
    """
    cumulative = validators.cumulative
    ids = validators.ids
    total = validators.total_stake
    # One call for all k draws: the engine's hottest path at 2,000 validators.
    bits = rng.getrandbits(DRAW_BITS * k)
    mask, width = _DRAW_MASK, DRAW_BITS
    picks: list[int] = []
    pick = picks.append
    for _ in range(k):
        pick(bisect_right(cumulative, (bits & mask) % total))
        bits >>= width
    # ``ids`` is sorted, so positions in ascending order give the keys in id order.
    picks.sort()
    draws: dict[bytes, int] = {}
    for position in picks:
        validator = ids[position]
        draws[validator] = draws.get(validator, 0) + 1
    return draws


def query_all_by_stake(validators: ValidatorSet) -> dict[bytes, int]:
    """Small-set mode: every validator is queried and its answer weighs its stake."""
    return dict(zip(validators.ids, validators.stakes, strict=True))
