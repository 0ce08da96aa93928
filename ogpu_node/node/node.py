"""The node: the facade over its parts, and the one trio task tree they run in.

`Node` implements `ogpu_node.node_api.NodeApi` (RPC and the market agents use it), builds the
parts below with their dependencies, runs their services in its nursery (`serve`) and fans a
committed block out to them (`_after_commit`). Everything is touched only from that tree, so no
locks are needed. The parts, by file:

    consensus_driver.py  ConsensusDriver: the engine, the blocks it decides (`processing`), block
                         checks, polls and fetches, commits; serves /ogpu/query/1, /ogpu/block/1,
                         block announcements; service: the poll timer
    proposing.py         Proposer (validators only): proposals on our slots; service: its loop
    pending_txs.py       PendingTxs: mempool admission, transaction gossip in and out, recheck
                         after blocks; service: the gossip batcher
    peers.py             PeerTable, StatusExchange: who each peer is, validators bound only on
                         a signed claim (identity.py); serves /ogpu/status/2
    sync.py              Sync: range sync toward what a stake majority vouches for
                         (vouching.py); serves /ogpu/range/1, /ogpu/hash/1; service: the
                         status loop
    equivocation.py      SigningGuard (never sign two blocks for a slot), EquivocationWatch
                         (report validators that do)
    containment.py       contained (an unexpected exception ends one input, not the node),
                         report (hostile peers to the network)
    receipts.py          Receipts: transaction receipts and waiting for them
    files.py             Files: blobs stored, served on /ogpu/blob/1, fetched from peers
    task_feed.py         TaskFeed: task progress reports and task change subscriptions

The node itself runs the gossip loops (transactions, block announcements, task progress; each
topic's messages must decode, `GOSSIP_TYPES`), sends equivocation reports, and keeps the block
subscribers and the time of the last finalised block (for health).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from ogpu_node.address import address_to_text
from ogpu_node.blobs import PROTO_BLOB, BlobStore
from ogpu_node.chain import Chain
from ogpu_node.earnings_index import Earning, newest_earnings
from ogpu_node.encoding import Codable, decode, encode
from ogpu_node.errors import OgpuError
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Block, State, Transaction, Validator, sign_transaction
from ogpu_node.ledger.equivocation import ReportEquivocation
from ogpu_node.ledger.errors import InvalidTransaction
from ogpu_node.node import messages as m
from ogpu_node.node.broadcast import Broadcast, Notifier
from ogpu_node.node.consensus_driver import FOLLOWER_ENGINE_ID, ConsensusDriver
from ogpu_node.node.containment import contained
from ogpu_node.node.files import Files
from ogpu_node.node.health import AgentStates, HealthInputs, health_reasons
from ogpu_node.node.mempool import Mempool
from ogpu_node.node.peers import PeerTable, StatusExchange
from ogpu_node.node.pending_txs import PendingTxs
from ogpu_node.node.proposing import Proposer
from ogpu_node.node.receipts import Receipts
from ogpu_node.node.settings import NodeSettings
from ogpu_node.node.sync import Sync
from ogpu_node.node.task_feed import TaskFeed, sign_progress
from ogpu_node.node_api import Health, NodeStatus, PeerInfo, TxReceipt
from ogpu_node.types import ADDRESS_LEN, Address, Hash32
from p2p.errors import P2PError
from p2p.network import Network, TaskStatus

log = logging.getLogger("ogpu.node")


GOSSIP_TYPES: dict[str, type[Codable]] = {
    m.TOPIC_TXS: m.TxBatch, m.TOPIC_BLOCKS: m.BlockAnnouncement, m.TOPIC_PROGRESS: m.TaskProgress}
"""What each gossip topic carries: a message that does not decode is neither delivered nor
passed on, and the peer that forwarded it is reported (`p2p` topic validators)."""


def _decodes(message_type: type[Codable]) -> Callable[[str, bytes], bool]:
    def valid(origin: str, data: bytes) -> bool:
        try:
            decode(message_type, data)
        except OgpuError:
            return False
        return True

    return valid


class Node:
    """A validator or follower node. Implements `ogpu_node.node_api.NodeApi`."""

    def __init__(
        self,
        *,
        chain: Chain,
        network: Network,
        genesis_hash: Hash32,
        validator_key: PrivateKey | None,
        settings: NodeSettings | None = None,
        moniker: str = "node",
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        on_finalized: Callable[[Block, float], None] | None = None,
        blobs: BlobStore | None = None,
        bootstrap_peers: Sequence[str] = (),
    ) -> None:
        self.chain = chain
        self.network = network
        self.genesis_hash = genesis_hash
        self.key = validator_key
        self.settings = settings or NodeSettings()
        self.moniker = moniker
        self.wall_ms = wall_ms
        self.on_finalized = on_finalized
        self.blobs = blobs
        self.bootstrap_peers = tuple(bootstrap_peers)
        """The peers this node dials (told to nodes that join: `p2p_addresses`)."""
        self.files = Files(network, blobs, self.settings.request_timeout_s)
        self.mempool = Mempool(self.settings.mempool)
        self.receipts = Receipts(chain, self.mempool, self.settings.mempool.max_txs)
        self.changed = Notifier()
        """Something a waiting proposal or poll deadline depends on changed: a block was added
        or decided, a transaction arrived, a sync ended."""
        validator = bytes(validator_key.address) if validator_key else b""
        self.peer_table = PeerTable()
        self.status_exchange = StatusExchange(
            chain, network, genesis_hash, validator_key, self.peer_table,
            self.settings.request_timeout_s, self.settings.status_interval_s)
        self.consensus = ConsensusDriver(
            chain, network,
            node_id=validator or FOLLOWER_ENGINE_ID,
            settings=self.settings, wall_ms=wall_ms, peers=self.peer_table, changed=self.changed,
            is_syncing=lambda: self.sync.syncing, on_commit=self._after_commit,
            on_equivocation=self._report_equivocation)
        self.sync = Sync(chain, network, self.peer_table, self.status_exchange,
                         status_interval_s=self.settings.status_interval_s,
                         request_timeout_s=self.settings.request_timeout_s,
                         params=self.settings.consensus,
                         validator_set=self.consensus.validator_set,
                         check_schedule=self.consensus.check_schedule,
                         on_commit=self._after_commit, on_done=self._after_sync)
        self.pending_txs = PendingTxs(
            chain, network, self.mempool, self.receipts,
            proposer=Address(validator or bytes(ADDRESS_LEN)),
            wall_ms=wall_ms, gossip_interval_s=self.settings.tx_gossip_interval_s,
            changed=self.changed, is_syncing=lambda: self.sync.syncing)
        self.proposer = None if validator_key is None else Proposer(
            validator_key, chain, network, self.mempool, self.consensus, settings=self.settings,
            wall_ms=wall_ms, changed=self.changed, is_syncing=lambda: self.sync.syncing,
            drop_refused=self.pending_txs.drop_refused)
        self.last_finalized_at = 0.0  # set when `serve` starts
        self._blocks = Broadcast[Block](256)
        self.tasks = TaskFeed()
        self.agents = AgentStates()
        """The market agents run beside this node (reported by `node_health`, `agent_status`)."""

    # --- finalising ------------------------------------------------------------------------------

    def _after_commit(self, block: Block, state: State, old_validators: tuple[Validator, ...]
                      ) -> None:
        """A block was committed, finalised by consensus or by range sync: tell every part that
        keeps something about it."""
        now = trio.current_time()
        self.last_finalized_at = now
        hashes = [tx.hash for tx in block.txs]
        self.pending_txs.committed(hashes, state)
        latency = self.receipts.finality_latency(hashes, now)
        if self.on_finalized is not None:
            self.on_finalized(block, latency if latency is not None else math.nan)
        self.consensus.committed(block, state, old_validators)
        self.receipts.finalized.notify()
        if state.changed_tasks:
            self.tasks.notify(list(state.changed_tasks))
        self._blocks.publish(block)

    def _after_sync(self) -> None:
        """A range sync stopped: recheck the mempool once on where it got, and restart consensus
        from there."""
        self.pending_txs.recheck(self.chain.state)
        self.consensus.restart()
        self.changed.notify()

    def _report_equivocation(self, report: ReportEquivocation) -> None:
        """Send evidence of a double signature, signed by our validator key (a follower only
        logs it). Every validator that saw it reports; the first report in a block slashes, the
        others are refused there (`evidence_already_applied`) and cost nothing."""
        if self.key is None:
            return
        state = self.chain.state
        tx = sign_transaction(self.key, chain_id=state.chain_id,
                              nonce=self.mempool.next_nonce(self.key.address, state),
                              fee=state.params.min_fee, payload=report)
        try:
            self.pending_txs.submit(tx)
        except InvalidTransaction as exc:
            log.warning("could not send the equivocation report: %s", exc)

    # --- services --------------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Run the node's services until cancelled."""
        self.last_finalized_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            # First: received blocks go to consensus, whose requests run in its nursery.
            await nursery.start(self.consensus.serve)
            net = self.network
            net.set_handler(m.PROTO_STATUS, self.status_exchange.on_status_request)
            net.set_handler(m.PROTO_QUERY, self.consensus.on_query)
            net.set_handler(m.PROTO_BLOCK, self.consensus.on_block_request)
            net.set_handler(m.PROTO_RANGE, self.sync.on_range_request)
            net.set_handler(m.PROTO_HASH, self.sync.on_hash_request)
            if self.blobs is not None:
                net.set_handler(PROTO_BLOB, self.files.on_blob_request)
            for topic, message_type in GOSSIP_TYPES.items():
                net.set_topic_validator(topic, _decodes(message_type))
            nursery.start_soon(self._gossip_loop, m.TOPIC_TXS, self.pending_txs.on_tx_gossip)
            nursery.start_soon(self._gossip_loop, m.TOPIC_BLOCKS, self.consensus.on_block_gossip)
            nursery.start_soon(self._gossip_loop, m.TOPIC_PROGRESS, self._on_progress_gossip)
            nursery.start_soon(self.pending_txs.serve)
            nursery.start_soon(self.sync.serve)
            if self.proposer is not None:
                nursery.start_soon(self.proposer.serve)
            task_status.started()

    async def _gossip_loop(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        channel = await self.network.subscribe(topic)
        async with channel:
            async for message in channel:
                with contained(f"gossip {topic}"):
                    try:
                        handler(message.from_peer, message.data)
                    except OgpuError as exc:
                        log.debug("rejected %s gossip from %s: %s", topic, message.from_peer,
                                  exc)

    def _on_progress_gossip(self, peer: str, data: bytes) -> None:
        self.tasks.accept_progress(decode(m.TaskProgress, data), self.chain.state)

    async def publish_progress(self, task_id: bytes, attempt: int, done_bps: int) -> None:
        """Report this node's progress on a task it was awarded (as its provider)."""
        if self.key is None:
            raise OgpuError("only a node with a key can report progress")
        report = sign_progress(self.key, self.chain.state.chain_id, m.TaskProgress(
            task_id, attempt, self.key.address, min(10_000, max(0, done_bps)), self.wall_ms()))
        if self.tasks.accept_progress(report, self.chain.state):
            try:
                await self.network.publish(m.TOPIC_PROGRESS, encode(report))
            except P2PError as exc:
                log.debug("progress gossip failed: %s", exc)

    def next_nonce(self, address: bytes) -> int:
        """The nonce for a new transaction from `address`, after those already pending."""
        return self.mempool.next_nonce(Address(address), self.chain.state)

    # --- NodeApi ---------------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        state = self.chain.state
        return NodeStatus(
            chain_id=state.chain_id, node_id=self.network.peer_id, moniker=self.moniker,
            height=state.height, head_hash=state.block_hash, state_root=state.root,
            head_time_ms=state.timestamp, syncing=self.sync.syncing,
            peers=len(self.network.peers()),
            validator=address_to_text(self.key.address) if self.key else None,
            mempool_size=len(self.mempool),
        )

    def health(self) -> Health:
        state = self.chain.state
        connected = {p.peer_id for p in self.network.peers()}
        visible = {v for v, peer in self.peer_table.validators.items() if peer in connected}
        if self.key is not None:
            visible.add(bytes(self.key.address))
        vset = self.consensus.validator_set(state)
        seen = sum(vset.stake_of(v) for v in visible)
        params = self.settings.consensus
        idle = trio.current_time() - self.last_finalized_at
        reasons = health_reasons(HealthInputs(
            syncing=self.sync.syncing, height=state.height, target=self.sync.target(),
            peers=len(connected), idle_s=idle,
            healthy_finality_s=self.settings.healthy_finality_s, seen_stake=seen,
            total_stake=vset.total_stake,
            stake_ok=params.passes(params.alpha_confidence, seen, vset.total_stake),
            needed_percent=math.ceil(params.alpha_confidence * 100 / params.k),
            blob_used=self.blobs.used_bytes if self.blobs is not None else None,
            blob_limit=self.blobs.max_bytes if self.blobs is not None else 0,
            agents=dict(self.agents.running)))
        return Health(not reasons, tuple(reasons), {
            "height": state.height, "syncing": self.sync.syncing,
            "seconds_since_finalized": round(idle, 3),
            "visible_stake_percent": seen * 100 // vset.total_stake,
            "peers": len(connected),
        })

    def agent_status(self) -> dict[str, Any]:
        return self.agents.report()

    def earnings(self, address: bytes) -> Iterator[Earning]:
        return newest_earnings(self.chain.store, address)

    def finalized_state(self) -> State:
        return self.chain.state

    def block_by_height(self, height: int) -> Block | None:
        return self.chain.block_at(height)

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        return self.chain.block_by_hash(block_hash)

    def transaction(self, tx_hash: bytes) -> tuple[Transaction, TxReceipt] | None:
        return self.receipts.transaction(tx_hash)

    def tx_receipt(self, tx_hash: bytes) -> TxReceipt:
        return self.receipts.receipt(tx_hash)

    def peers(self) -> list[PeerInfo]:
        out = []
        by_peer = self.peer_table.validator_by_peer()
        for p in self.network.peers():
            validator = by_peer.get(p.peer_id)
            out.append(PeerInfo(p.peer_id, tuple(p.addrs),
                                address_to_text(validator) if validator else None))
        return out

    def genesis_document(self) -> bytes:
        return self.chain.genesis_document()

    def p2p_addresses(self) -> tuple[str, ...]:
        suffix = f"/p2p/{self.network.peer_id}"
        own = [a if a.endswith(suffix) else a + suffix for a in self.network.listen_addrs]
        return tuple(own + [a for a in self.bootstrap_peers if a not in own])

    async def submit_tx(self, tx: Transaction) -> TxReceipt:
        return self.pending_txs.submit(tx)

    async def wait_for_tx(self, tx_hash: bytes) -> TxReceipt:
        return await self.receipts.wait(tx_hash)

    def subscribe_blocks(self) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[Block]]:
        return self._blocks.subscribe()

    def task_progress(self, task_id: bytes, attempt: int) -> int | None:
        return self.tasks.progress_bps(task_id, attempt)

    def subscribe_tasks(self) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[Hash32]]:
        return self.tasks.subscribe()

    def put_file(self, data: bytes) -> Hash32:
        return self.files.put_file(data)

    def put_chunk(self, data: bytes) -> Hash32:
        return self.files.put_chunk(data)

    def put_manifest(self, size: int, chunk_ids: Sequence[bytes]) -> Hash32:
        return self.files.put_manifest(size, chunk_ids)

    async def get_chunk(self, chunk_id: bytes) -> bytes:
        return await self.files.fetch_blob(chunk_id)
