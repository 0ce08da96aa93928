"""The node: the consensus engine driven by the network, blocks finalised into the chain.

One `Node` lives in one trio task tree (`serve`). Everything it owns — chain, mempool, processing
blocks, engine — is touched only from that tree, so no locks are needed. Services:

    Proposer.serve    propose on our proposer slot when transactions wait or the interval is up
                      (proposing.py, validators only)
    _gossip_loops     receive transaction batches and block proposals
    _tx_publisher     batch and pace outgoing transaction gossip
    ConsensusDriver.serve  expire late polls (time passed in to the engine; consensus_driver.py)
    Sync.serve        learn peers' heights and validators; sync when behind (sync.py, peers.py)

Network handlers: consensus queries and single blocks (consensus_driver.py), status (peers.py),
block ranges (sync.py) and blobs (files.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import trio
import trio.lowlevel

from ogpu_node.address import address_to_text
from ogpu_node.blobs import PROTO_BLOB, BlobStore
from ogpu_node.chain import Chain
from ogpu_node.encoding import decode, encode
from ogpu_node.errors import OgpuError
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Block, State, Transaction, Validator
from ogpu_node.ledger.builder import select_transactions
from ogpu_node.ledger.errors import InvalidTransaction
from ogpu_node.ledger.tx import decode_transaction
from ogpu_node.node import messages as m
from ogpu_node.node.broadcast import Broadcast, Notifier
from ogpu_node.node.consensus_driver import FOLLOWER_ENGINE_ID, ConsensusDriver
from ogpu_node.node.files import Files
from ogpu_node.node.mempool import EarlierNonceRejected, Mempool
from ogpu_node.node.peers import PeerTable, StatusExchange
from ogpu_node.node.proposing import Proposer, next_timestamp
from ogpu_node.node.receipts import Receipts
from ogpu_node.node.settings import NodeSettings
from ogpu_node.node.sync import Sync
from ogpu_node.node.task_feed import TaskFeed, sign_progress
from ogpu_node.node_api import Health, NodeStatus, PeerInfo, TxReceipt, TxState
from ogpu_node.types import ADDRESS_LEN, Address, Hash32
from p2p.errors import P2PError
from p2p.network import Network, TaskStatus

log = logging.getLogger("ogpu.node")


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
        self.files = Files(network, blobs, self.settings.request_timeout_s)
        self.mempool = Mempool(self.settings.mempool)
        self.receipts = Receipts(chain, self.mempool, self.settings.mempool.max_txs)
        self.changed = Notifier()
        """Something a waiting proposal or poll deadline depends on changed: a block was added
        or decided, a transaction arrived, a sync ended."""
        validator = bytes(validator_key.address) if validator_key else b""
        self.peer_table = PeerTable()
        self.status_exchange = StatusExchange(
            chain, network, genesis_hash, validator, self.peer_table,
            self.settings.request_timeout_s)
        self.sync = Sync(chain, network, self.peer_table, self.status_exchange,
                         status_interval_s=self.settings.status_interval_s,
                         request_timeout_s=self.settings.request_timeout_s,
                         on_commit=self._after_commit, on_done=self._after_sync)
        self.consensus = ConsensusDriver(
            chain, network,
            node_id=validator or FOLLOWER_ENGINE_ID,
            settings=self.settings, wall_ms=wall_ms, peers=self.peer_table, changed=self.changed,
            is_syncing=lambda: self.sync.syncing, on_commit=self._after_commit)
        self.proposer = None if validator_key is None else Proposer(
            validator_key, chain, network, self.mempool, self.consensus, settings=self.settings,
            wall_ms=wall_ms, changed=self.changed, is_syncing=lambda: self.sync.syncing,
            drop_refused=self._drop_refused)
        self.last_finalized_at = 0.0  # set when `serve` starts
        self._outgoing_txs: list[bytes] = []
        self._txs_to_gossip = trio.Event()
        self._blocks = Broadcast[Block](256)
        self.tasks = TaskFeed()

    # --- finalising ----------------------------------------------------------------------------

    def _after_commit(self, block: Block, state: State, old_validators: tuple[Validator, ...]
                      ) -> None:
        """A block was committed, finalised by consensus or by range sync: tell every part that
        keeps something about it."""
        now = trio.current_time()
        self.last_finalized_at = now
        hashes = [tx.hash for tx in block.txs]
        self.mempool.remove(hashes)
        self.mempool.prune(state)
        if not self.sync.syncing:  # a range sync rechecks once, at its end
            self._recheck(state)
        latency = self.receipts.finality_latency(hashes, now)
        if self.on_finalized is not None:
            self.on_finalized(block, latency if latency is not None else math.nan)
        self.consensus.committed(block, state, old_validators)
        self.receipts.finalized.notify()
        if state.changed_tasks:
            self.tasks.notify(list(state.changed_tasks))
        self._blocks.publish(block)

    def _recheck(self, state: State) -> None:
        """Drop the pending transactions that the next block would refuse, as CometBFT's
        mempool recheck does, for the first one of each sender: a market transaction that came
        too late (a verdict after its task closed, a bid after its window) or a transfer the
        balance no longer covers is refused by every proposer, and since a refused transaction
        does not use its nonce, everything the sender sent after it would wait for ever (a
        provider's bids stuck behind its own late verdict). Those are dropped with it and
        receipted as rejected, so that their senders send them again."""
        heads = self.mempool.heads(state)
        if not heads:
            return
        proposer = Address(self.key.address if self.key else bytes(ADDRESS_LEN))
        timestamp = next_timestamp(state, self.wall_ms())
        _, rejected = select_transactions(state, heads, proposer, timestamp)
        for tx, error in rejected:
            self._drop_refused(tx, error)

    def _drop_refused(self, tx: Transaction, error: InvalidTransaction) -> None:
        """Drop a transaction a block would refuse, and the sender's later ones, which cannot
        follow it (a refused transaction does not use its nonce)."""
        if tx.hash not in self.mempool:  # dropped already, after an earlier one of its sender
            return
        self.receipts.reject(tx.hash, error)
        followers = [later for later in self.mempool.drop_from(tx.sender, tx.nonce)
                     if later.hash != tx.hash]
        for later in followers:
            self.receipts.reject(later.hash, EarlierNonceRejected(
                f"the sender's transaction with nonce {tx.nonce} was refused "
                f"({error.code}): send this one again"))
        if followers:
            log.info("dropped transaction %s of %s (%s) and the %d sent after it",
                     tx.hash.hex()[:12], address_to_text(tx.sender), error.code, len(followers))

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
            if self.blobs is not None:
                net.set_handler(PROTO_BLOB, self.files.on_blob_request)
            nursery.start_soon(self._gossip_loop, m.TOPIC_TXS, self._on_tx_gossip)
            nursery.start_soon(self._gossip_loop, m.TOPIC_BLOCKS, self.consensus.on_block_gossip)
            nursery.start_soon(self._gossip_loop, m.TOPIC_PROGRESS, self._on_progress_gossip)
            nursery.start_soon(self._tx_publisher)
            nursery.start_soon(self.sync.serve)
            if self.proposer is not None:
                nursery.start_soon(self.proposer.serve)
            task_status.started()

    async def _gossip_loop(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        channel = await self.network.subscribe(topic)
        async with channel:
            async for message in channel:
                try:
                    handler(message.from_peer, message.data)
                except OgpuError as exc:
                    log.debug("rejected %s gossip from %s: %s", topic, message.from_peer, exc)

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

    def _on_tx_gossip(self, peer: str, data: bytes) -> None:
        batch = decode(m.TxBatch, data)
        state = self.chain.state
        for raw in batch.txs:
            try:
                self.mempool.add(decode_transaction(raw), state)
            except InvalidTransaction:
                continue
        self.changed.notify()

    async def _tx_publisher(self) -> None:
        while True:
            await self._txs_to_gossip.wait()
            self._txs_to_gossip = trio.Event()
            # Let a burst of submissions gather into few messages.
            await trio.sleep(self.settings.tx_gossip_interval_s)
            while self._outgoing_txs:
                batch = self._outgoing_txs[:m.MAX_TX_BATCH]
                del self._outgoing_txs[:m.MAX_TX_BATCH]
                try:
                    await self.network.publish(m.TOPIC_TXS, encode(m.TxBatch(tuple(batch))))
                except P2PError as exc:
                    log.warning("could not gossip %d transactions: %s", len(batch), exc)

    def _after_sync(self) -> None:
        """A range sync stopped: recheck the mempool once on where it got, and restart consensus
        from there."""
        self._recheck(self.chain.state)
        self.consensus.restart()
        self.changed.notify()

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
        reasons = []
        state = self.chain.state
        if self.sync.syncing:
            reasons.append("syncing")
        idle = trio.current_time() - self.last_finalized_at
        if idle > self.settings.healthy_finality_s:
            reasons.append(f"nothing finalised for {idle:.1f} s")
        connected = {p.peer_id for p in self.network.peers()}
        visible = {v for v, peer in self.peer_table.validators.items() if peer in connected}
        if self.key is not None:
            visible.add(bytes(self.key.address))
        vset = self.consensus.validator_set(state)
        seen = sum(vset.stake_of(v) for v in visible)
        params = self.settings.consensus
        if not params.passes(params.alpha_confidence, seen, vset.total_stake):
            reasons.append(f"sees validators with {seen * 100 // vset.total_stake}% of stake, "
                           f"needs {math.ceil(params.alpha_confidence * 100 / params.k)}%")
        return Health(not reasons, tuple(reasons), {
            "height": state.height, "syncing": self.sync.syncing,
            "seconds_since_finalized": round(idle, 3),
            "visible_stake_percent": seen * 100 // vset.total_stake,
        })

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

    async def submit_tx(self, tx: Transaction) -> TxReceipt:
        try:
            self.mempool.add(tx, self.chain.state)
        except InvalidTransaction as exc:
            self.receipts.reject(tx.hash, exc)
            raise
        self.receipts.submitted(tx.hash, trio.current_time())
        self._outgoing_txs.append(tx.encoded)
        self._txs_to_gossip.set()
        self.changed.notify()
        return TxReceipt(tx.hash, TxState.PENDING)

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
