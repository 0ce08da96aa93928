"""The validator set fixed at a finalised height: sorted ids, integer stakes, cumulative sums."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping

from consensus.errors import InvalidValidatorSet

MAX_VALIDATORS = 100_000


class ValidatorSet:
    """An immutable, id-sorted validator set.

    Sorting by id makes every derived value (cumulative stake, sampling index, proposer draw)
    identical on every node whatever order the ledger listed the validators in.
    """

    __slots__ = ("_index", "cumulative", "ids", "stakes", "total_stake")

    def __init__(self, entries: Iterable[tuple[bytes, int]]) -> None:
        items = sorted(entries)
        if not items:
            raise InvalidValidatorSet("validator set is empty")
        if len(items) > MAX_VALIDATORS:
            raise InvalidValidatorSet(f"more than {MAX_VALIDATORS} validators")
        cumulative: list[int] = []
        running = 0
        index: dict[bytes, int] = {}
        for position, (validator, stake) in enumerate(items):
            if not isinstance(validator, bytes) or not validator:
                raise InvalidValidatorSet("validator ids must be non-empty bytes")
            if isinstance(stake, bool) or not isinstance(stake, int) or stake <= 0:
                raise InvalidValidatorSet(f"stake of {validator.hex()} must be a positive int")
            if validator in index:
                raise InvalidValidatorSet(f"duplicate validator {validator.hex()}")
            index[validator] = position
            running += stake
            cumulative.append(running)
        self.ids: tuple[bytes, ...] = tuple(v for v, _ in items)
        self.stakes: tuple[int, ...] = tuple(s for _, s in items)
        self.total_stake = running
        self.cumulative = tuple(cumulative)
        self._index = index

    @classmethod
    def from_mapping(cls, stakes: Mapping[bytes, int]) -> ValidatorSet:
        """Build a set from ``{validator id: stake}``."""
        return cls(stakes.items())

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, validator: object) -> bool:
        return validator in self._index

    def stake_of(self, validator: bytes) -> int:
        """Stake of ``validator``, 0 when it is not in the set."""
        position = self._index.get(validator)
        return 0 if position is None else self.stakes[position]

    def at_stake_offset(self, offset: int) -> bytes:
        """The validator owning stake unit ``offset`` in ``[0, total_stake)``."""
        if not 0 <= offset < self.total_stake:
            raise InvalidValidatorSet(f"stake offset {offset} out of range")
        return self.ids[bisect_right(self.cumulative, offset)]
