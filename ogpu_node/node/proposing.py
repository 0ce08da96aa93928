"""Proposing blocks, on a validator node.

`Proposer.serve` waits for this validator's proposer slot (`consensus.proposer`: a stake-weighted
draw per height and slot; a slot opens the chain's `slot_ms` after the previous one) and
proposes when transactions wait, a market deadline is due (`State.next_market_deadline`) or
`max_block_interval_ms` passed since the parent (so that time-based rules advance). It builds only
on the last finalised block and only when nothing is processing and no sync runs: one height at a
time. A proposal picks the valid candidates (`ledger.builder.select_transactions`, dropping those
a block would refuse through `drop_refused`), is built and signed, recorded by the signing
guard (`equivocation.SigningGuard`: synced to the store before it leaves, so that this
validator never signs another block for that slot, even after a restart; asked again, it sends
the recorded block), handed to consensus and announced on `ogpu/blocks/1`.

`next_timestamp` is the time of a block built now, also used to recheck the mempool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from consensus.proposer import proposer_for, slot_at, slot_start
from ogpu_node.chain import Chain
from ogpu_node.encoding import encode
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Block, State, Transaction, apply_block, build_block
from ogpu_node.ledger.builder import select_transactions
from ogpu_node.ledger.errors import InvalidBlock, InvalidTransaction
from ogpu_node.node import messages as m
from ogpu_node.node.broadcast import Notifier
from ogpu_node.node.consensus_driver import ConsensusDriver
from ogpu_node.node.containment import contained
from ogpu_node.node.equivocation import SigningGuard
from ogpu_node.node.mempool import Mempool
from ogpu_node.node.settings import NodeSettings
from p2p.errors import P2PError
from p2p.network import Network

log = logging.getLogger("ogpu.node")

PROPOSAL_HEADROOM_BYTES = 1024
"""Room left in `MAX_PROPOSAL_BYTES` for the block's header and framing beside its transactions."""


def next_timestamp(state: State, wall_ms: int) -> int:
    """The time of a block built at `wall_ms` on `state` (after its parent's, whatever the
    clock)."""
    return max(wall_ms, state.timestamp + 1)


class Proposer:
    """Proposes on this validator's slots (see the module docstring)."""

    def __init__(self, key: PrivateKey, chain: Chain, network: Network, mempool: Mempool,
                 consensus: ConsensusDriver, *, settings: NodeSettings,
                 wall_ms: Callable[[], int], changed: Notifier, is_syncing: Callable[[], bool],
                 drop_refused: Callable[[Transaction, InvalidTransaction], None]) -> None:
        self.key = key
        self.chain = chain
        self.network = network
        self.mempool = mempool
        self.consensus = consensus
        self.settings = settings
        self.wall_ms = wall_ms
        self.changed = changed
        """Wakes the loop early: a block was added or decided, a transaction came, a sync ended."""
        self.is_syncing = is_syncing
        self.drop_refused = drop_refused
        self.guard = SigningGuard(chain.store)

    async def serve(self) -> None:
        """Propose on our slots until cancelled."""
        me = bytes(self.key.address)
        settings = self.settings
        while True:
            changed = self.changed.event
            state = self.chain.state
            wake_at: float | None = None
            if not self.is_syncing() and not self.consensus.processing:
                now = self.wall_ms()
                # one reading of the clock decides the slot, and the block's time in it: read
                # twice, a slot boundary between the reads made us sign in a slot not ours
                timestamp = next_timestamp(state, now)
                slot = slot_at(state.timestamp, timestamp, state.params.slot_ms)
                holder = proposer_for(state.chain_id.encode(), state.height + 1, slot,
                                      self.consensus.validator_set(state))
                due_at = state.timestamp + settings.max_block_interval_ms
                deadline = state.next_market_deadline  # a market phase ends: pass it on time
                if deadline is not None:
                    due_at = min(due_at, deadline)
                failed = False
                if holder == me and (now >= due_at or any(True for _ in
                                                          self.mempool.candidates(state))):
                    with contained("proposer"):
                        await self._propose(timestamp, slot)
                        continue
                    failed = True  # contained: try again in our next slot, not at once
                next_slot = slot_start(state.timestamp, slot + 1, state.params.slot_ms)
                wake_ms = next_slot if holder != me or failed else min(next_slot, due_at)
                wake_at = trio.current_time() + max(0, wake_ms - now) / 1000
            if wake_at is None:
                await changed.wait()
            else:
                with trio.move_on_at(wake_at):
                    await changed.wait()

    async def _propose(self, timestamp: int, slot: int) -> None:
        """Propose at `timestamp`, in `slot`, which we hold, on the last finalised block."""
        state = self.chain.state
        built: list[State] = []

        def build() -> Block:
            txs, rejected = select_transactions(state, self.mempool.candidates(state),
                                                self.key.address, timestamp,
                                                m.MAX_PROPOSAL_BYTES - PROPOSAL_HEADROOM_BYTES)
            for tx, error in rejected:
                self.drop_refused(tx, error)
            block, new_state = build_block(state, txs, self.key, timestamp)
            built.append(new_state)
            return block

        block, new = self.guard.propose(state.height + 1, slot, build)
        if new:
            self.consensus.add_processing(block, built[0])  # built by us: no check needed
        else:
            log.info("sending the block signed before for height %d, slot %d", block.height,
                     slot)
            if block.header.parent_hash != state.block_hash:
                raise InvalidBlock("the block recorded for this slot is on another parent")
            self.consensus.add_processing(block, apply_block(state, block))
        try:
            await self.network.publish(m.TOPIC_BLOCKS,
                                       encode(m.BlockAnnouncement(block.hash, block.height)))
        except P2PError as exc:  # peers still get it by fetching what our queries name
            log.warning("could not gossip block %d: %s", block.height, exc)
