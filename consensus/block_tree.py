"""The Snowman block tree: processing blocks under the last accepted block.

Each block that has processing children holds one Snowflake instance over them. A vote for a
block counts for all its processing ancestors; the preference is the leaf reached by following
each instance's preference from the last accepted block. Finalising a child of the last
accepted block accepts it and rejects its siblings and their descendants.
"""

from __future__ import annotations

from consensus.decisions import Decision
from consensus.errors import InvalidBlock, ProcessingLimitExceeded, UnknownParent
from consensus.params import Parameters
from consensus.sampling import RandomSource, uniform_below
from consensus.snowflake import Snowflake


class _Node:
    __slots__ = ("block_id", "children", "height", "parent_id", "snowflake")

    def __init__(self, block_id: bytes, parent_id: bytes, height: int) -> None:
        self.block_id = block_id
        self.parent_id = parent_id
        self.height = height
        self.children: list[bytes] = []
        self.snowflake: Snowflake | None = None


class BlockTree:
    """Processing blocks and their Snowflake instances; see the module docstring."""

    def __init__(self, params: Parameters, last_accepted_id: bytes, last_accepted_height: int
                 ) -> None:
        params.verify()
        if last_accepted_height < 0:
            raise InvalidBlock("last accepted height must be >= 0")
        self._params = params
        self._root = _Node(last_accepted_id, b"", last_accepted_height)
        self._nodes: dict[bytes, _Node] = {last_accepted_id: self._root}
        # Rejected blocks above the last accepted height, so that their late children are
        # rejected at once; at or below that height the height rule covers them.
        self._rejected: dict[bytes, int] = {}
        self.preference = last_accepted_id

    @property
    def last_accepted_id(self) -> bytes:
        """Id of the last finalised block."""
        return self._root.block_id

    @property
    def last_accepted_height(self) -> int:
        """Height of the last finalised block."""
        return self._root.height

    @property
    def processing_count(self) -> int:
        """Number of blocks neither accepted nor rejected."""
        return len(self._nodes) - 1

    def is_processing(self, block_id: bytes) -> bool:
        """Whether ``block_id`` is in the tree and undecided."""
        return block_id in self._nodes and block_id != self._root.block_id

    def is_known(self, block_id: bytes) -> bool:
        """Whether ``block_id`` is processing, last accepted, or remembered as rejected."""
        return block_id in self._nodes or block_id in self._rejected

    def height_of(self, block_id: bytes) -> int | None:
        """Height of a processing or last accepted block, None otherwise."""
        node = self._nodes.get(block_id)
        return None if node is None else node.height

    def confidence_of(self, parent_id: bytes) -> int:
        """Confidence of the Snowflake instance over ``parent_id``'s children (0 if none)."""
        node = self._nodes.get(parent_id)
        if node is None or node.snowflake is None:
            return 0
        return node.snowflake.confidence

    def add(self, block_id: bytes, parent_id: bytes, height: int) -> list[Decision]:
        """Add a block under a known parent.

        Returns ``[rejected]`` when the block can never be accepted (its parent was rejected
        or conflicts with the finalised chain), ``[]`` otherwise, also for a duplicate.
        Raises ``UnknownParent`` when the parent must be fetched first, ``InvalidBlock`` for a
        wrong height, ``ProcessingLimitExceeded`` when the tree is full.
        """
        if block_id in self._nodes or block_id in self._rejected:
            return []
        root = self._root
        parent = self._nodes.get(parent_id)
        if parent is None:
            if height - 1 <= root.height or parent_id in self._rejected:
                if height > root.height:
                    self._rejected[block_id] = height
                return [Decision(False, block_id, height)]
            raise UnknownParent(block_id, parent_id)
        if height != parent.height + 1:
            raise InvalidBlock(
                f"block {block_id.hex()} has height {height}, parent has {parent.height}"
            )
        if self.processing_count >= self._params.max_processing:
            raise ProcessingLimitExceeded(
                f"{self.processing_count} blocks processing (limit {self._params.max_processing})"
            )
        self._nodes[block_id] = _Node(block_id, parent_id, height)
        parent.children.append(block_id)
        if parent.snowflake is None:
            parent.snowflake = Snowflake(self._params, block_id)
        self._update_preference()
        return []

    def record_poll(self, votes: list[tuple[bytes, int]], total: int, rng: RandomSource
                    ) -> list[Decision]:
        """Apply one finished poll: ``votes`` are ``(block id, weight)`` out of ``total``.

        Votes for unknown or decided blocks count as no vote. ``rng`` breaks split polls (see
        ``_split_choice``). Returns the decisions taken, accepted blocks in height order.
        """
        nodes = self._nodes
        root = self._root
        support: dict[bytes, int] = {}
        for block_id, weight in votes:
            node = nodes.get(block_id)
            while node is not None and node is not root:
                support[node.block_id] = support.get(node.block_id, 0) + weight
                node = nodes.get(node.parent_id)
        params = self._params
        on_path: set[bytes] = set()
        # Only instances on the voted path can change preference; when none does and
        # nothing is accepted, the preferred tip stays the same.
        moved = False
        node = root
        while node.children:
            snowflake = node.snowflake
            if snowflake is None:  # pragma: no cover - a parent always gets one
                raise InvalidBlock("processing parent without a Snowflake instance")
            best, best_weight, fork_weight = _heaviest_child(node.children, support)
            previous = snowflake.preference
            if snowflake.record_poll(best, best_weight, total):
                if snowflake.preference != previous:
                    moved = True
                on_path.add(node.block_id)
                node = nodes[best]
                continue
            # Split poll: enough weight answered on this fork, but no child reached
            # alpha_preference. Query-all polls have no sampling noise, so a symmetric split
            # (or Byzantine nodes echoing each asker) would last forever; a support-weighted
            # random move, as in Slush, lets honest nodes drift to one side. Only while the
            # weight not counted against our preference (its votes, missing answers, votes
            # for blocks we lack) cannot give it alpha_preference: otherwise this node may
            # belong to a quorum that finalised it elsewhere, and leaving on a draw forks.
            against = fork_weight - support.get(snowflake.preference, 0)
            if (best_weight > 0 and params.passes(params.alpha_preference, fork_weight, total)
                    and not params.passes(params.alpha_preference, total - against, total)):
                snowflake.adopt(_split_choice(node.children, support, fork_weight, rng))
                moved = True
            break
        for other in nodes.values():
            instance = other.snowflake
            # ``Snowflake.record_unsuccessful_poll`` written out (once per instance per poll).
            if instance is not None and not instance.finalized and other.block_id not in on_path:
                instance.confidence = 0
        decisions = self._accept_finalized()
        if moved or decisions:
            self._update_preference()
        return decisions

    def _accept_finalized(self) -> list[Decision]:
        decisions: list[Decision] = []
        while (snowflake := self._root.snowflake) is not None and snowflake.finalized:
            root = self._root
            chosen = snowflake.preference
            for child in sorted(root.children):
                if child != chosen:
                    decisions.extend(self._reject_subtree(child))
            del self._nodes[root.block_id]
            self._root = self._nodes[chosen]
            decisions.append(Decision(True, chosen, self._root.height))
        if decisions:
            floor = self._root.height
            self._rejected = {b: h for b, h in self._rejected.items() if h > floor}
        return decisions

    def _reject_subtree(self, block_id: bytes) -> list[Decision]:
        decisions: list[Decision] = []
        stack = [block_id]
        while stack:
            node = self._nodes.pop(stack.pop())
            self._rejected[node.block_id] = node.height
            decisions.append(Decision(False, node.block_id, node.height))
            stack.extend(sorted(node.children, reverse=True))
        return decisions

    def _update_preference(self) -> None:
        node = self._root
        while node.snowflake is not None:
            node = self._nodes[node.snowflake.preference]
        self.preference = node.block_id


def _split_choice(children: list[bytes], support: dict[bytes, int], fork_weight: int,
                  rng: RandomSource) -> bytes:
    """A child drawn with probability support/fork_weight, children taken in id order."""
    point = uniform_below(rng, fork_weight)
    for child in sorted(children):
        point -= support.get(child, 0)
        if point < 0:
            return child
    raise InvalidBlock("split choice out of range")  # pragma: no cover - weights sum up


def _heaviest_child(children: list[bytes], support: dict[bytes, int]) -> tuple[bytes, int, int]:
    """(child with the most support, its support, support of all children); ties: lowest id."""
    best = b""
    best_weight = -1
    fork_weight = 0
    for child in children:
        weight = support.get(child, 0)
        fork_weight += weight
        if weight > best_weight or (weight == best_weight and child < best):
            best, best_weight = child, weight
    return best, best_weight, fork_weight
