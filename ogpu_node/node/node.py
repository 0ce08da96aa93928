"""The node: the consensus engine driven by the network, blocks finalised into the chain.

One `Node` lives in one trio task tree (`serve`). Everything it owns — chain, mempool, processing
blocks, engine — is touched only from that tree, so no locks are needed. Services:

    _proposer_loop    propose on our proposer slot when transactions wait or the interval is up
    _gossip_loops     receive transaction batches and block proposals
    _tx_publisher     batch and pace outgoing transaction gossip
    _timer_loop       expire late polls (time passed in to the engine)
    Sync.serve        learn peers' heights and validators; sync when behind (sync.py, peers.py)

Network handlers answer consensus queries and single blocks; status (peers.py), block ranges
(sync.py) and blobs (files.py) are answered by those parts.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import trio
import trio.lowlevel

from consensus.decisions import Output
from consensus.engine import Engine
from consensus.errors import ConsensusError
from consensus.proposer import proposer_for, slot_at, slot_start
from consensus.validators import ValidatorSet
from ogpu_node.address import address_to_text
from ogpu_node.blobs import PROTO_BLOB, BlobStore
from ogpu_node.chain import Chain
from ogpu_node.encoding import decode, encode
from ogpu_node.errors import OgpuError
from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Block, State, Transaction, Validator, apply_block, build_block
from ogpu_node.ledger.builder import select_transactions
from ogpu_node.ledger.errors import InvalidBlock, InvalidTransaction
from ogpu_node.ledger.tx import decode_transaction
from ogpu_node.node import messages as m
from ogpu_node.node.broadcast import Broadcast
from ogpu_node.node.files import Files
from ogpu_node.node.mempool import EarlierNonceRejected, Mempool
from ogpu_node.node.peers import PeerTable, StatusExchange
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
        self.processing: dict[bytes, tuple[Block, State]] = {}
        """Blocks handed to consensus and not yet decided, each with the state after it."""
        self.peer_table = PeerTable()
        self.status_exchange = StatusExchange(
            chain, network, genesis_hash, bytes(validator_key.address) if validator_key else b"",
            self.peer_table, self.settings.request_timeout_s)
        self.sync = Sync(chain, network, self.peer_table, self.status_exchange,
                         status_interval_s=self.settings.status_interval_s,
                         request_timeout_s=self.settings.request_timeout_s,
                         on_commit=self._after_commit, on_done=self._after_sync)
        self.last_finalized_at = 0.0  # set when `serve` starts
        self._validator_sets: dict[tuple[Validator, ...], ValidatorSet] = {}
        self._fetched: OrderedDict[bytes, float] = OrderedDict()
        self._changed = trio.Event()
        self._outgoing_txs: list[bytes] = []
        self._txs_to_gossip = trio.Event()
        self._blocks = Broadcast[Block](256)
        self._nursery: trio.Nursery | None = None
        self.tasks = TaskFeed()
        self.engine = self._new_engine()

    # --- engine ----------------------------------------------------------------------------------

    @property
    def node_id(self) -> bytes:
        return bytes(self.key.address) if self.key else digest(b"follower", b"")[:20]

    def _validator_set(self, state: State) -> ValidatorSet:
        """The consensus view of `state`'s active set (cached: it changes only at epochs)."""
        vset = self._validator_sets.get(state.validators)
        if vset is None:
            if len(self._validator_sets) > 4:
                self._validator_sets.clear()
            vset = ValidatorSet((bytes(v.address), v.stake) for v in state.validators)
            self._validator_sets[state.validators] = vset
        return vset

    def _new_engine(self) -> Engine:
        state = self.chain.state
        # The shell owns randomness: the engine gets a source seeded per node and height.
        seed = digest(b"engine-rng", self.node_id + state.block_hash)
        return Engine(self.node_id, self.settings.consensus,
                      validators=self._validator_set(state),
                      last_accepted_id=state.block_hash, last_accepted_height=state.height,
                      rng=random.Random(seed))

    def _now(self) -> int:
        return int(trio.current_time() * 1000)

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _handle(self, output: Output) -> None:
        for decision in output.decisions:
            if decision.accepted:
                self._accept(decision.block_id)
            else:
                self.processing.pop(decision.block_id, None)
        assert self._nursery is not None
        for query in output.queries:
            for recipient in query.recipients:
                self._nursery.start_soon(self._send_query, recipient, query.poll_id,
                                         query.preferred_id)
        for fetch in output.fetches:
            peer = self.peer_table.peer_of(fetch.to)
            if peer is not None and self._should_fetch(fetch.block_id):
                self._nursery.start_soon(self._fetch_block, peer, fetch.block_id)
        if output.decisions:
            self._signal()

    def _accept(self, block_id: bytes) -> None:
        entry = self.processing.pop(block_id, None)
        if entry is None:
            # Range sync can commit a block while the engine still processes it (the sync's
            # `_after_commit` drops it from `processing`); the engine's late acceptance of a block
            # we already hold is no news. Anything else means the engine and the chain disagree:
            # start the engine again from the chain rather than stop the node.
            if self.chain.store.block_by_hash(block_id) is None:
                log.warning("engine accepted unknown block %s: restarting the engine",
                            block_id.hex()[:16])
                self.engine = self._new_engine()
                self.processing.clear()
            return
        block, state = entry
        old_validators = self.chain.state.validators
        self.chain.commit(block, state)
        self._after_commit(block, state, old_validators)

    def _after_commit(self, block: Block, state: State, old_validators: tuple[object, ...]) -> None:
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
        # Blocks at or below the new height can no longer be accepted.
        for other_id, (other, _) in list(self.processing.items()):
            if other.height <= block.height:
                del self.processing[other_id]
        if state.validators != old_validators:
            self.engine = self._new_engine()
            self.processing.clear()
        self.receipts.finalized.notify()
        if state.changed_tasks:
            self.tasks.notify(list(state.changed_tasks))
        self._blocks.publish(block)

    # --- blocks ----------------------------------------------------------------------------------

    def _parent_state(self, parent_hash: bytes) -> State | None:
        if parent_hash == self.chain.state.block_hash:
            return self.chain.state
        entry = self.processing.get(parent_hash)
        return entry[1] if entry else None

    def _check_schedule(self, parent: State, block: Block) -> None:
        h = block.header
        if h.timestamp > self.wall_ms() + self.settings.max_future_drift_ms:
            raise InvalidBlock("timestamp too far in the future")
        slot = slot_at(parent.timestamp, h.timestamp, self.settings.slot_ms)
        expected = proposer_for(parent.chain_id.encode(), h.height, slot,
                                self._validator_set(parent))
        if expected != bytes(h.proposer):
            raise InvalidBlock(f"proposer {address_to_text(h.proposer)} does not hold slot {slot}")

    def receive_block(self, raw: bytes) -> Block | None:
        """Validate a proposal and hand it to consensus; returns it if it is new and valid.

        Raises `OgpuError` subclasses for bad blocks (the caller logs and counts them).
        """
        block = decode(Block, raw)
        block_id = block.hash
        if block_id in self.processing or block.height <= self.chain.state.height:
            return None
        if len(self.processing) >= self.settings.max_processing_blocks:
            raise InvalidBlock("too many processing blocks")
        parent = self._parent_state(block.header.parent_hash)
        if parent is None:
            return None  # unknown parent: the status loop's sync catches up if we are behind
        self._check_schedule(parent, block)
        self._add_processing(block, apply_block(parent, block))
        return block

    def _add_processing(self, block: Block, state: State) -> None:
        """Hand a valid block (and the state after it) to consensus."""
        self.processing[block.hash] = (block, state)
        try:
            output = self.engine.add_block(block.hash, block.header.parent_hash, block.height,
                                           self._now())
        except ConsensusError as exc:
            self.processing.pop(block.hash, None)
            raise InvalidBlock(f"consensus refused the block: {exc}") from exc
        self._handle(output)
        self._signal()

    async def _propose(self) -> None:
        assert self.key is not None
        state = self.chain.state
        timestamp = self._next_timestamp(state)
        txs, rejected = select_transactions(state, self.mempool.candidates(state),
                                            self.key.address, timestamp,
                                            m.MAX_PROPOSAL_BYTES - 1024)
        for tx, error in rejected:
            self._drop_refused(tx, error)
        block, new_state = build_block(state, txs, self.key, timestamp)
        self._add_processing(block, new_state)  # built by us: no need to validate it again
        try:
            await self.network.publish(m.TOPIC_BLOCKS,
                                       encode(m.BlockAnnouncement(block.hash, block.height)))
        except P2PError as exc:  # peers still get it by fetching what our queries name
            log.warning("could not gossip block %d: %s", block.height, exc)

    def _should_fetch(self, block_id: bytes) -> bool:
        """Fetch a block named by a vote at most once per `fetch_retry_s`: a peer that lags
        keeps voting for a block we decided long ago, and refetching it each poll would spin."""
        now = trio.current_time()
        last = self._fetched.get(block_id)
        if last is not None and now - last < self.settings.fetch_retry_s:
            return False
        self._fetched[block_id] = now
        self._fetched.move_to_end(block_id)
        while len(self._fetched) > 4096:
            self._fetched.popitem(last=False)
        return True

    def _next_timestamp(self, state: State) -> int:
        """The time of a block built now on `state` (after its parent's, whatever the clock)."""
        return max(self.wall_ms(), state.timestamp + 1)

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
        _, rejected = select_transactions(state, heads, proposer, self._next_timestamp(state))
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
        net = self.network
        net.set_handler(m.PROTO_STATUS, self.status_exchange.on_status_request)
        net.set_handler(m.PROTO_QUERY, self._on_query)
        net.set_handler(m.PROTO_BLOCK, self._on_block_request)
        net.set_handler(m.PROTO_RANGE, self.sync.on_range_request)
        if self.blobs is not None:
            net.set_handler(PROTO_BLOB, self.files.on_blob_request)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._gossip_loop, m.TOPIC_TXS, self._on_tx_gossip)
            nursery.start_soon(self._gossip_loop, m.TOPIC_BLOCKS, self._on_block_gossip)
            nursery.start_soon(self._gossip_loop, m.TOPIC_PROGRESS, self._on_progress_gossip)
            nursery.start_soon(self._tx_publisher)
            nursery.start_soon(self._timer_loop)
            nursery.start_soon(self.sync.serve)
            if self.key is not None:
                nursery.start_soon(self._proposer_loop)
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
        self._signal()

    def _on_block_gossip(self, peer: str, data: bytes) -> None:
        announcement = decode(m.BlockAnnouncement, data)
        if (announcement.block_id in self.processing
                or announcement.height != self.chain.state.height + 1
                or not self._should_fetch(announcement.block_id)):
            return  # known, or not buildable on our last finalised block (sync handles it)
        assert self._nursery is not None
        self._nursery.start_soon(self._fetch_block, peer, announcement.block_id)

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

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.engine.next_deadline()
            if deadline is None:
                await self._changed.wait()
                continue
            with trio.move_on_at(deadline / 1000) as scope:
                await self._changed.wait()
            if scope.cancelled_caught:
                # Woken by the deadline itself: ms rounding must not make it look early.
                self._handle(self.engine.on_timeout(max(self._now(), deadline)))

    async def _proposer_loop(self) -> None:
        assert self.key is not None
        me = bytes(self.key.address)
        settings = self.settings
        while True:
            changed = self._changed
            state = self.chain.state
            wake_at: float | None = None
            if not self.sync.syncing and not self.processing:
                now = self.wall_ms()
                slot = slot_at(state.timestamp, now, settings.slot_ms)
                holder = proposer_for(state.chain_id.encode(), state.height + 1, slot,
                                      self._validator_set(state))
                due_at = state.timestamp + settings.max_block_interval_ms
                deadline = state.next_market_deadline  # a market phase ends: pass it on time
                if deadline is not None:
                    due_at = min(due_at, deadline)
                if holder == me and (now >= due_at or any(True for _ in
                                                          self.mempool.candidates(state))):
                    await self._propose()
                    continue
                next_slot = slot_start(state.timestamp, slot + 1, settings.slot_ms)
                wake_ms = next_slot if holder != me else min(next_slot, due_at)
                wake_at = trio.current_time() + max(0, wake_ms - now) / 1000
            if wake_at is None:
                await changed.wait()
            else:
                with trio.move_on_at(wake_at):
                    await changed.wait()

    def _after_sync(self) -> None:
        """A range sync stopped: recheck the mempool once on where it got, and restart consensus
        from there."""
        self._recheck(self.chain.state)
        self.engine = self._new_engine()
        self.processing.clear()
        self._signal()

    async def _send_query(self, validator: bytes, poll_id: int, block_id: bytes) -> None:
        engine = self.engine  # the poll id is this engine's: drop the answer if it was replaced
        peer = self.peer_table.peer_of(validator)
        entry = self.processing.get(block_id)
        height = entry[0].height if entry else self.chain.state.height
        try:
            if peer is None:
                raise P2PError("no connection to this validator")
            with trio.fail_after(self.settings.request_timeout_s):
                raw = await self.network.request(peer, m.PROTO_QUERY,
                                                 encode(m.Query(poll_id, block_id, height)))
            chits = decode(m.Chits, raw)
        except (P2PError, OgpuError, trio.TooSlowError):
            # No answer is no vote when the poll's deadline passes. Reporting the failure at
            # once would let polls that cannot succeed (too much stake unreachable) spin.
            return
        if engine is self.engine:
            self._handle(engine.on_chits(validator, poll_id, chits.preferred_id, self._now()))

    async def _fetch_block(self, peer: str, block_id: bytes) -> None:
        try:
            with trio.fail_after(self.settings.request_timeout_s):
                raw = await self.network.request(peer, m.PROTO_BLOCK,
                                                 encode(m.BlockRequest(block_id)))
            response = decode(m.BlockResponse, raw)
            if response.block:
                self.receive_block(response.block)
        except (P2PError, OgpuError, trio.TooSlowError) as exc:
            log.debug("fetching block %s from %s failed: %s", block_id.hex()[:12], peer, exc)

    # --- request handlers -----------------------------------------------------------------------

    async def _on_query(self, peer: str, data: bytes) -> bytes:
        query = decode(m.Query, data)
        known = query.block_id in self.processing or query.height <= self.chain.state.height
        if not known and not self.sync.syncing and self._should_fetch(query.block_id):
            await self._fetch_block(peer, query.block_id)
        return encode(m.Chits(self.engine.preference))

    async def _on_block_request(self, peer: str, data: bytes) -> bytes:
        request = decode(m.BlockRequest, data)
        entry = self.processing.get(request.block_id)
        if entry is not None:
            return encode(m.BlockResponse(entry[0].encoded))
        return encode(m.BlockResponse(self.chain.block_bytes(request.block_id) or b""))

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
        vset = self._validator_set(state)
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
        self._signal()
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
