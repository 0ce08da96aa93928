"""Test-only: a validator node that signs two blocks for each of its proposer slots.

`python -m tests.integration.equivocating_node run --home HOME` is `ogpu-node run` with the
proposer replaced: in each of its slots it signs an empty block and a second one a millisecond
apart (same parent, same slot), bypasses the signing guard, keeps the first for its own
consensus and announces both, serving the second from a side table. Everything else is the
real node. The fault lives here, not in production code.
"""

from __future__ import annotations

from consensus.proposer import slot_at
from ogpu_node.cli import node_cli
from ogpu_node.encoding import decode, encode
from ogpu_node.ledger import build_block
from ogpu_node.node import messages as m
from ogpu_node.node.consensus_driver import ConsensusDriver
from ogpu_node.node.proposing import Proposer

_second_blocks: dict[bytes, bytes] = {}
"""The second block of each equivocation, by id, served on request."""
_serve_block = ConsensusDriver.on_block_request


async def _propose_twice(self: Proposer, timestamp: int, slot: int) -> None:
    state, first_time = self.chain.state, timestamp
    second_time = first_time + 1
    slot_ms = state.params.slot_ms
    if slot_at(state.timestamp, second_time, slot_ms) != slot_at(state.timestamp, first_time,
                                                                  slot_ms):
        second_time = first_time - 1
    first, first_state = build_block(state, [], self.key, first_time)
    if second_time <= state.timestamp:
        self.consensus.add_processing(first, first_state)  # no room for a second one
        await self.network.publish(m.TOPIC_BLOCKS,
                                   encode(m.BlockAnnouncement(first.hash, first.height)))
        return
    second, _ = build_block(state, [], self.key, second_time)
    _second_blocks[bytes(second.hash)] = second.encoded
    self.consensus.add_processing(first, first_state)
    for block in (first, second):
        await self.network.publish(m.TOPIC_BLOCKS,
                                   encode(m.BlockAnnouncement(block.hash, block.height)))


async def _serve_both(self: ConsensusDriver, peer: str, data: bytes) -> bytes:
    block_id = decode(m.BlockRequest, data).block_id
    if block_id in _second_blocks:
        return encode(m.BlockResponse(_second_blocks[block_id]))
    return await _serve_block(self, peer, data)


if __name__ == "__main__":
    Proposer._propose = _propose_twice  # type: ignore[method-assign]
    ConsensusDriver.on_block_request = _serve_both  # type: ignore[method-assign]
    node_cli.main()
