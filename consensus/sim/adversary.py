"""Byzantine behaviour, coordinated across all Byzantine nodes with a global view."""

from __future__ import annotations

import random
from collections import Counter

ABSTAIN = b"\x00" * 32
"""An id no block has: voting for it counts as no vote."""


class BlockRegistry:
    """Every block ever created in the run: parent, height, timestamp, children."""

    def __init__(self, genesis_id: bytes) -> None:
        self.parent: dict[bytes, bytes] = {}
        self.height: dict[bytes, int] = {genesis_id: 0}
        self.time: dict[bytes, int] = {genesis_id: 0}
        self.children: dict[bytes, list[bytes]] = {genesis_id: []}

    def add(self, block_id: bytes, parent_id: bytes, height: int, time: int) -> None:
        """Record a new block."""
        self.parent[block_id] = parent_id
        self.height[block_id] = height
        self.time[block_id] = time
        self.children[block_id] = []
        self.children[parent_id].append(block_id)

    def deepest_tip(self, block_id: bytes) -> bytes:
        """Follow the most recently created child down to a leaf."""
        while self.children[block_id]:
            block_id = self.children[block_id][-1]
        return block_id

    def ancestor_at(self, block_id: bytes, height: int) -> bytes | None:
        """The ancestor of ``block_id`` at ``height`` (itself included), if any."""
        while self.height[block_id] > height:
            block_id = self.parent[block_id]
        return block_id if self.height[block_id] == height else None

    def lowest_fork(self, tip: bytes, floor_height: int) -> tuple[bytes, bytes] | None:
        """The lowest ancestor ``a`` of ``tip`` above ``floor_height`` with a sibling:
        returns ``(a, sibling)``; None if ``tip``'s branch is uncontested."""
        found: tuple[bytes, bytes] | None = None
        block = tip
        while block in self.parent and self.height[block] > floor_height:
            siblings = self.children[self.parent[block]]
            if len(siblings) > 1:
                rival = siblings[0] if siblings[0] != block else siblings[1]
                found = (block, rival)
            block = self.parent[block]
        return found


class Adversary:
    """Answers queries to Byzantine nodes according to one strategy.

    All strategies but ``silent`` also equivocate when a Byzantine node proposes, since
    the voting strategies have nothing to pull honest nodes towards without forks.
    """

    def __init__(self, strategy: str, registry: BlockRegistry, rng: random.Random) -> None:
        self.strategy = strategy
        self.registry = registry
        self.rng = rng
        # Honest preferences, kept up to date by the runner, for the adaptive attacker.
        self.honest_preferences: Counter[bytes] = Counter()
        self._support_cache: dict[tuple[bytes, int], int] = {}
        self._cache_time = -1

    @property
    def answers(self) -> bool:
        """Whether Byzantine nodes answer queries at all."""
        return self.strategy != "silent"

    @property
    def equivocates(self) -> bool:
        """Whether Byzantine proposers sign two blocks per height."""
        return self.strategy != "silent"

    def answer(self, asker_preference: bytes, asker_floor: int, now: int) -> bytes:
        """The block a Byzantine node reports to an honest asker."""
        strategy = self.strategy
        if strategy == "equivocate":
            return asker_preference
        fork = self.registry.lowest_fork(asker_preference, asker_floor)
        if fork is None:
            return ABSTAIN
        mine, rival = fork
        rival_tip = self.registry.deepest_tip(rival)
        if strategy == "opposite":
            return rival_tip
        if strategy == "flipflop":
            return rival_tip if self.rng.randrange(2) else asker_preference
        # adaptive: push whichever side has fewer honest supporters, to keep them split.
        if self._support(mine, now) <= self._support(rival, now):
            return asker_preference
        return rival_tip

    def _support(self, block_id: bytes, now: int) -> int:
        bucket = now // 10
        if bucket != self._cache_time:
            self._support_cache.clear()
            self._cache_time = bucket
        key = (block_id, bucket)
        cached = self._support_cache.get(key)
        if cached is not None:
            return cached
        height = self.registry.height[block_id]
        total = 0
        for tip, count in sorted(self.honest_preferences.items()):
            if count and self.registry.ancestor_at(tip, height) == block_id:
                total += count
        self._support_cache[key] = total
        return total
