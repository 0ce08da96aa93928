"""Drawing a task's verification committee by stake, from chain data only.

The seed is the task id, the attempt and the hash of the block before the one that records the
result, so every node draws the same committee and the provider cannot choose it: the block hash
is not known when the provider commits. Members are drawn by stake without replacement; the
provider and the client are never members.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ogpu_node.encoding import pack
from ogpu_node.hashing import digest
from ogpu_node.ledger.market.records import Verdict
from ogpu_node.ledger.state import Validator
from ogpu_node.types import Address


def draw_committee(
    validators: Sequence[Validator], size: int, *, task_id: bytes, attempt: int,
    block_hash: bytes, exclude: Iterable[Address],
) -> tuple[Address, ...]:
    """Up to `size` distinct validators, drawn by stake; fewer when fewer are eligible."""
    skip = set(exclude)
    pool = [(v.address, v.stake) for v in validators if v.address not in skip and v.stake > 0]
    chosen: list[Address] = []
    counter = 0
    while pool and len(chosen) < size:
        seed = digest(b"committee", pack([task_id, attempt, block_hash, counter]))
        counter += 1
        target = int.from_bytes(seed, "big") % sum(stake for _, stake in pool)
        for index, (address, stake) in enumerate(pool):
            if target < stake:
                chosen.append(address)
                del pool[index]
                break
            target -= stake
    return tuple(sorted(chosen))


def quorum_outcome(committee: Sequence[Address], verdicts: Sequence[Verdict]) -> bool | None:
    """True once a majority of the committee accepted, False once a majority rejected, else
    None (keep waiting)."""
    quorum = len(committee) // 2 + 1
    accepts = sum(v.accept for v in verdicts)
    if accepts >= quorum:
        return True
    if len(verdicts) - accepts >= quorum:
        return False
    return None


def outcome_of_votes_cast(verdicts: Sequence[Verdict]) -> bool:
    """At the end of the window: accepted unless more members rejected than accepted (a result
    nobody checked stands)."""
    accepts = sum(v.accept for v in verdicts)
    return len(verdicts) - accepts <= accepts
