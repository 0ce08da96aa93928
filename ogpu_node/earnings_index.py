"""An index of who was paid or slashed when: the money trails' lines by address and block time.

A task's (or pool's) money trail says who got or lost what, but not when: the chain keeps the
lines, not their block. Earnings by hour, day or epoch need the time, so each committed block
adds, for every trail line it appended that pays or takes from someone (`EARNING_KINDS`), an
entry under the line's address, its block time and height. The entries are derived from the
finalised states alone, so every node that commits the same blocks writes the same index; they
are written in the block's own atomic commit (`Chain.commit`), so a crash leaves none missing;
they live beside the state records under their own prefix and are no part of the state root
(consensus neither reads nor commits them). A node whose store predates the index has entries
only for the blocks it committed since.

Key: `b"e" + address + u64be(block time ms) + id + u16be(line number)`; value: msgpack
`[height, kind, amount]`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ogpu_node.encoding import pack, unpack
from ogpu_node.ledger import State
from ogpu_node.ledger.market.records import MAX_TRAIL, Movement
from ogpu_node.storage import ChainStore

PREFIX = b"e"
EARNING_KINDS = {"payment": "paid", "client_collateral_to_provider": "paid",
                 "verifier_fee": "fee", "provider_slashed": "slashed"}
"""Trail events that pay an address (for work, as compensation, as a verifier) or take from
it (a slash), by kind. `provider_get`'s totals use the same table."""
KINDS = ("paid", "fee", "slashed")


@dataclass(frozen=True)
class Earning:
    """One indexed trail line."""

    address: bytes
    time_ms: int
    height: int
    source: bytes
    """The task or pool whose trail holds the line."""
    kind: str
    amount: int


def index_entries(old: State, new: State) -> dict[bytes, bytes]:
    """The entries for the trail lines that the block from `old` to `new` appended."""
    entries: dict[bytes, bytes] = {}
    for source, before, after, pinned in _changed_trails(old, new):
        for number in range(len(after) - appended(before, after, pinned), len(after)):
            line = after[number]
            kind = EARNING_KINDS.get(line.event)
            if kind is not None and line.amount:
                key = (PREFIX + bytes(line.address) + new.timestamp.to_bytes(8, "big")
                       + source + number.to_bytes(2, "big"))
                entries[key] = pack([new.height, kind, line.amount])
    return entries


def appended(before: Sequence[Movement], after: Sequence[Movement], pinned: int) -> int:
    """How many lines at the end of `after` a block appended to `before`.

    A trail at `MAX_TRAIL` lines drops its oldest as it grows (a task's keeps its first, the
    escrow: `pinned` = 1; a pool's keeps none), so the count is not a difference of lengths:
    it is the least k for which `after` less its last k lines ends as `before` does. (A trail
    repeating the same lines could match with a k too small: lines are then missed, never
    counted twice.)"""
    grown = len(after) - len(before)
    if len(after) < MAX_TRAIL:
        return max(0, grown)
    for k in range(max(0, grown), len(after) - pinned + 1):
        kept = after[pinned:len(after) - k]
        if len(kept) <= len(before) - pinned and (
                not kept or list(before[len(before) - len(kept):]) == list(kept)):
            return k
    return 0


def _changed_trails(old: State, new: State) -> Iterator[
        tuple[bytes, tuple[Movement, ...], tuple[Movement, ...], int]]:
    for task_id in new.changed_tasks:
        was = old.tasks.get(task_id)
        yield bytes(task_id), was.trail if was else (), new.tasks[task_id].trail, 1
    for pool_id in new.changed_pools:
        pool = old.pools.get(pool_id)
        yield bytes(pool_id), pool.trail if pool else (), new.pools[pool_id].trail, 0


def read_earnings(store: ChainStore, address: bytes) -> list[Earning]:
    """Every indexed line of `address`, oldest first."""
    return list(_earnings(store, address, newest_first=False))


def newest_earnings(store: ChainStore, address: bytes) -> Iterator[Earning]:
    """The indexed lines of `address`, newest first, read as they are consumed: a reader that
    wants recent periods stops early instead of reading the address's whole history."""
    return _earnings(store, address, newest_first=True)


def _earnings(store: ChainStore, address: bytes, *, newest_first: bool) -> Iterator[Earning]:
    prefix = PREFIX + address
    for key, raw in store.state_items(prefix, reverse=newest_first):
        rest = key[len(prefix):]
        height, kind, amount = unpack(raw)
        yield Earning(address, int.from_bytes(rest[:8], "big"), height, rest[8:-2], kind,
                      amount)
