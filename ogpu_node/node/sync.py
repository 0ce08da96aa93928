"""Catching up with the network: range sync of finalised blocks, and the status loop driving it.

`Sync.serve` is the status loop: every `status_interval_s` it refreshes the peer table through the
status exchange (`peers.py`), then, while the most advanced peer is more than one block ahead,
fetches finalised blocks from it with `/ogpu/range/1` (`MAX_RANGE_BLOCKS` or `MAX_RANGE_BYTES` per
response), applies and commits them one by one (each goes through the node's `on_commit`, as a
block finalised by consensus does) and, when it stops, hands over to `on_done` (the node rechecks
the mempool and restarts consensus from the new head). `syncing` is true meanwhile: the node
does not propose, does not fetch the unknown blocks that peers' queries name, rechecks the
mempool only at the end, and reports itself unhealthy. `on_range_request` serves other nodes'
syncs.

Limitation: finality is taken from one peer (the blocks themselves are checked: signatures,
roots); a stake-majority check of the frontier is to come.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio
import trio.lowlevel

from ogpu_node.chain import Chain
from ogpu_node.encoding import decode, encode
from ogpu_node.errors import OgpuError
from ogpu_node.ledger import Block, State, Validator
from ogpu_node.node import messages as m
from ogpu_node.node.peers import PeerTable, StatusExchange
from p2p.errors import P2PError
from p2p.network import Network

log = logging.getLogger("ogpu.node")

OnCommit = Callable[[Block, State, tuple[Validator, ...]], None]
"""Called after each block is committed, with the validators before it."""


class Sync:
    """The status loop and range sync (see the module's docstring)."""

    def __init__(self, chain: Chain, network: Network, peers: PeerTable,
                 status_exchange: StatusExchange, *, status_interval_s: float,
                 request_timeout_s: float, on_commit: OnCommit, on_done: Callable[[], None]
                 ) -> None:
        self.chain = chain
        self.network = network
        self.peers = peers
        self.status_exchange = status_exchange
        self.status_interval_s = status_interval_s
        self.request_timeout_s = request_timeout_s
        self.on_commit = on_commit
        self.on_done = on_done
        self.syncing = False

    async def serve(self) -> None:
        """The status loop, until cancelled: learn peers' heights and validators; sync when
        behind."""
        while True:
            await self.status_exchange.refresh()
            await self.catch_up()
            await trio.sleep(self.status_interval_s)

    async def catch_up(self) -> None:
        """Fetch finalised blocks from the most advanced peer while we are more than one behind."""
        best_peer = self.peers.most_advanced()
        if best_peer is None:
            return
        peer, best = best_peer
        if best.height <= self.chain.state.height + 1:
            return
        self.syncing = True
        started, start_height = trio.current_time(), self.chain.state.height
        try:
            while self.chain.state.height < best.height:
                start = self.chain.state.height + 1
                count = min(m.MAX_RANGE_BLOCKS, best.height - start + 1)
                with trio.fail_after(self.request_timeout_s * 5):
                    raw = await self.network.request(peer, m.PROTO_RANGE,
                                                     encode(m.RangeRequest(start, count)))
                response = decode(m.RangeResponse, raw)
                if not response.blocks:
                    return
                for block_raw in response.blocks:
                    block = decode(Block, block_raw)
                    old = self.chain.state.validators
                    state = self.chain.apply_and_commit(block)
                    self.on_commit(block, state, old)
                await trio.lowlevel.checkpoint()
        except (P2PError, OgpuError, trio.TooSlowError) as exc:
            log.info("sync from %s stopped: %r", peer, exc)
        finally:
            self.syncing = False
            synced = self.chain.state.height - start_height
            seconds = trio.current_time() - started
            log.info("synced %d blocks in %.3f s from %s", synced, seconds, peer)
            self.on_done()

    async def on_range_request(self, peer: str, data: bytes) -> bytes:
        """`/ogpu/range/1`: our finalised blocks from the height asked, as many as asked or as fit
        in `MAX_RANGE_BYTES`."""
        request = decode(m.RangeRequest, data)
        blocks: list[bytes] = []
        size = 0
        for height in range(request.start_height, request.start_height + request.count):
            raw = self.chain.store.block_by_height(height)
            if raw is None or size + len(raw) > m.MAX_RANGE_BYTES:
                break
            blocks.append(raw)
            size += len(raw)
        return encode(m.RangeResponse(tuple(blocks)))
