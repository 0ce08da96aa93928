"""Catching up with the network: range sync toward what a stake majority vouches for, and the
status loop driving it.

`Sync.serve` is the status loop: every `status_interval_s` it refreshes the peer table through
the status exchange (`peers.py`), then catches up when the height that validators holding
alpha_confidence/k of the stake have finalised (`vouching.vouched_height`, from the heights that
proven validators report; a peer's word counts only if it proved which validator it is) is more
than one block ahead. Blocks come in ranges (`/ogpu/range/1`, `MAX_RANGE_BLOCKS` or
`MAX_RANGE_BYTES` per response) from a vouching validator's peer; before any is committed, the
range must link from our head and end at the block hash such validators agree on at its last
height (`/ogpu/hash/1`, `vouching.vouched_hash`), so a peer that serves a private fork, even one
validly signed by a Byzantine validator, commits nothing. Each block's proposer slot and time are
checked as a live block's are, then it is applied and committed through the node's `on_commit`,
as a block finalised by consensus is. A sync that committed something hands over to `on_done`
(the node rechecks the mempool and restarts consensus from the new head); one that committed
nothing leaves consensus alone. `syncing` is true meanwhile: the node does not propose, does
not fetch the unknown blocks that peers' queries name, rechecks the mempool only at the end, and
reports itself unhealthy. `on_range_request` and `on_hash_request` serve other nodes' syncs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio
import trio.lowlevel

from consensus.params import Parameters
from consensus.validators import ValidatorSet
from ogpu_node.chain import Chain
from ogpu_node.encoding import decode, encode
from ogpu_node.errors import OgpuError
from ogpu_node.ledger import Block, State, Validator
from ogpu_node.node import messages as m
from ogpu_node.node.containment import contained
from ogpu_node.node.peers import PeerTable, StatusExchange
from ogpu_node.node.vouching import vouched_hash, vouched_height
from p2p.errors import P2PError
from p2p.network import Network

log = logging.getLogger("ogpu.node")

OnCommit = Callable[[Block, State, tuple[Validator, ...]], None]
"""Called after each block is committed, with the validators before it."""


class Sync:
    """The status loop and range sync (see the module's docstring)."""

    def __init__(self, chain: Chain, network: Network, peers: PeerTable,
                 status_exchange: StatusExchange, *, status_interval_s: float,
                 request_timeout_s: float, params: Parameters,
                 validator_set: Callable[[State], ValidatorSet],
                 check_schedule: Callable[[State, Block], None],
                 on_commit: OnCommit, on_done: Callable[[], None]) -> None:
        self.chain = chain
        self.network = network
        self.peers = peers
        self.status_exchange = status_exchange
        self.status_interval_s = status_interval_s
        self.request_timeout_s = request_timeout_s
        self.params = params
        self.validator_set = validator_set
        self.check_schedule = check_schedule
        self.on_commit = on_commit
        self.on_done = on_done
        self.syncing = False

    async def serve(self) -> None:
        """The status loop, until cancelled: learn peers' heights and validators; sync when
        behind."""
        while True:
            with contained("status and sync"):
                await self.status_exchange.refresh()
                await self.catch_up()
            await trio.sleep(self.status_interval_s)

    def target(self) -> int | None:
        """The height a stake majority has finalised, if we know of one."""
        return vouched_height(self.peers.validator_heights(),
                              self.validator_set(self.chain.state), self.params)

    async def catch_up(self) -> None:
        """Sync while the vouched height is more than one block ahead of ours."""
        target = self.target()
        if target is None or target <= self.chain.state.height + 1:
            return
        self.syncing = True
        started, start_height = trio.current_time(), self.chain.state.height
        failed: set[str] = set()
        try:
            while self.chain.state.height < target:
                if not await self._sync_range(target, failed):
                    break
                await trio.lowlevel.checkpoint()
        except (P2PError, OgpuError, trio.TooSlowError) as exc:
            log.info("sync stopped: %r", exc)
        finally:
            self.syncing = False
            synced = self.chain.state.height - start_height
            seconds = trio.current_time() - started
            log.info("synced %d blocks in %.3f s toward height %d", synced, seconds, target)
            if synced:
                self.on_done()

    async def _sync_range(self, target: int, failed: set[str]) -> bool:
        """Fetch, check and commit the next range toward `target`; False when no vouching
        peer served one that the majority's hash confirms. A peer that failed once in this
        sync (no answer, or blocks the majority did not finalise) is not asked again in it."""
        start = self.chain.state.height + 1
        count = min(m.MAX_RANGE_BLOCKS, target - start + 1)
        heights = self.peers.validator_heights()
        vset = self.validator_set(self.chain.state)
        # the largest stake first (a liar costs one request, and can be one only once per
        # sync); bindings exist only for validators of the set (`PeerTable.prove`)
        vouchers = sorted(((vset.stake_of(v), heights[v], peer)
                           for v, peer in self.peers.validators.items()
                           if heights.get(v, 0) >= start and peer not in failed), reverse=True)
        for _, _, peer in vouchers:
            blocks = await self._fetch_range(peer, start, count)
            if not blocks:
                failed.add(peer)
                continue
            want = await self._vouched_hash(blocks[-1].height)
            problem = _chain_problem(blocks, self.chain.state.block_hash, start, want)
            if problem is not None:
                log.warning("peer %s served blocks %d..%d that %s", peer, start,
                            blocks[-1].height, problem)
                failed.add(peer)
                continue
            for block in blocks:
                parent = self.chain.state
                self.check_schedule(parent, block)
                state = self.chain.apply_and_commit(block)
                self.on_commit(block, state, parent.validators)
            return True
        return False

    async def _fetch_range(self, peer: str, start: int, count: int) -> list[Block]:
        try:
            with trio.fail_after(self.request_timeout_s * 5):
                raw = await self.network.request(peer, m.PROTO_RANGE,
                                                 encode(m.RangeRequest(start, count)))
            return [decode(Block, b) for b in decode(m.RangeResponse, raw).blocks]
        except (P2PError, OgpuError, trio.TooSlowError) as exc:
            log.info("range %d+%d from %s failed: %r", start, count, peer, exc)
            return []

    async def _vouched_hash(self, height: int) -> bytes | None:
        """The hash at `height` that validators holding alpha_confidence/k of the stake give."""
        answers: dict[bytes, bytes] = {}

        async def ask(validator: bytes, peer: str) -> None:
            try:
                with trio.fail_after(self.request_timeout_s):
                    raw = await self.network.request(peer, m.PROTO_HASH,
                                                     encode(m.HashRequest(height)))
                answers[validator] = decode(m.HashResponse, raw).block_hash
            except (P2PError, OgpuError, trio.TooSlowError):
                return

        async with trio.open_nursery() as nursery:
            for validator, peer in self.peers.validators.items():
                nursery.start_soon(ask, validator, peer)
        return vouched_hash(answers, self.validator_set(self.chain.state), self.params)

    async def on_hash_request(self, peer: str, data: bytes) -> bytes:
        """`/ogpu/hash/1`: the hash of our finalised block at the height asked, if we have it."""
        request = decode(m.HashRequest, data)
        return encode(m.HashResponse(self.chain.store.block_hash_at(request.height) or b""))

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


def _chain_problem(blocks: list[Block], head: bytes, start: int, want: bytes | None
                   ) -> str | None:
    """Why `blocks` are not the majority's chain from our `head` (None: they are): each must
    follow the one before from height `start` on, and the last must be the block `want`."""
    if want is None:
        return "no stake majority vouches for"
    parent = head
    for offset, block in enumerate(blocks):
        if block.height != start + offset or block.header.parent_hash != parent:
            return f"do not link at height {start + offset}"
        parent = block.hash
    if parent != want:
        return "end at a block the stake majority did not finalise"
    return None
