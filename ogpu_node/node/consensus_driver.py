"""Consensus driving: the sans-I/O engine (`consensus/`) fed by the network, its outputs turned
into requests and commits.

`ConsensusDriver` owns the engine and the blocks it is deciding (`processing`: each block with the
state after it). It checks a received block (decodes, parent last finalised or processing,
proposer holds the slot of the timestamp, `apply_block`) before handing it to the engine
(`receive_block`, `add_processing`); turns the engine's queries into `/ogpu/query/1` requests,
its fetches and block announcements (`on_block_gossip`) into `/ogpu/block/1` requests; commits an
accepted block to the chain and reports it through `on_commit`; and answers queries
(`on_query`) and block requests (`on_block_request`). Its service (`serve`) is the timer loop,
which expires late polls (time is passed in to the engine), and the nursery its requests run in.
The engine is rebuilt from the chain (`restart`) after a sync, on a change of validators, or
when it accepts a block the chain does not know.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Callable

import trio

from consensus.decisions import Output
from consensus.engine import Engine
from consensus.errors import ConsensusError
from consensus.proposer import proposer_for, slot_at
from consensus.validators import ValidatorSet
from ogpu_node.address import address_to_text
from ogpu_node.chain import Chain
from ogpu_node.encoding import decode, encode
from ogpu_node.errors import OgpuError
from ogpu_node.hashing import digest
from ogpu_node.ledger import Block, State, Validator, apply_block
from ogpu_node.ledger.equivocation import ReportEquivocation
from ogpu_node.ledger.errors import InvalidBlock
from ogpu_node.ledger.header import BlockHeader
from ogpu_node.node import messages as m
from ogpu_node.node.broadcast import Notifier
from ogpu_node.node.containment import contained, report
from ogpu_node.node.equivocation import EquivocationWatch
from ogpu_node.node.peers import PeerTable
from ogpu_node.node.settings import NodeSettings
from p2p.errors import P2PError
from p2p.network import Network, TaskStatus
from p2p.peer_guard import Offence

log = logging.getLogger("ogpu.node")

FOLLOWER_ENGINE_ID = digest(b"follower", b"")[:20]
"""The engine's own id on a node without a validator key (no validator has it)."""
MAX_FETCH_TIMES = 4096
"""(block, peer) pairs whose last fetch time is remembered (for `NodeSettings.fetch_retry_s`)."""
MAX_CACHED_VALIDATOR_SETS = 4
"""Consensus views of validator sets kept (the set changes only at epochs)."""


class TooFarAhead(InvalidBlock):
    """A block timestamped beyond our clock's allowed drift (it may be valid a moment later)."""


class ConsensusDriver:
    """The engine, the blocks it decides, and the requests it needs (see the module docstring)."""

    def __init__(self, chain: Chain, network: Network, *, node_id: bytes, settings: NodeSettings,
                 wall_ms: Callable[[], int], peers: PeerTable, changed: Notifier,
                 is_syncing: Callable[[], bool],
                 on_commit: Callable[[Block, State, tuple[Validator, ...]], None],
                 on_equivocation: Callable[[ReportEquivocation], None]) -> None:
        self.chain = chain
        self.network = network
        self.node_id = node_id
        """Our id in the engine: the validator address (a fixed one for followers)."""
        self.settings = settings
        self.wall_ms = wall_ms
        self.peers = peers
        self.changed = changed
        """Notified when a block is added or decided (the timer and proposer loops wait on it)."""
        self.is_syncing = is_syncing
        self.on_commit = on_commit
        """Called after an accepted block is committed, with the validators before it."""
        self.processing: dict[bytes, tuple[Block, State]] = {}
        """Blocks handed to consensus and not yet decided, each with the state after it."""
        self._validator_sets: dict[tuple[Validator, ...], ValidatorSet] = {}
        self._fetched: OrderedDict[tuple[bytes, str], float] = OrderedDict()
        """When each block was last asked of each peer."""
        self._fetches: dict[str, int] = {}
        """Our block fetches open, by peer."""
        self.watch = EquivocationWatch()
        self.on_equivocation = on_equivocation
        """Called with a report of a validator that signed two blocks for one slot."""
        self._nursery: trio.Nursery | None = None
        self.engine = self._new_engine()

    # --- engine ----------------------------------------------------------------------------------

    def validator_set(self, state: State) -> ValidatorSet:
        """The consensus view of `state`'s active set (cached: it changes only at epochs)."""
        vset = self._validator_sets.get(state.validators)
        if vset is None:
            if len(self._validator_sets) > MAX_CACHED_VALIDATOR_SETS:
                self._validator_sets.clear()
            vset = ValidatorSet((bytes(v.address), v.stake) for v in state.validators)
            self._validator_sets[state.validators] = vset
        return vset

    def _new_engine(self) -> Engine:
        state = self.chain.state
        # The shell owns randomness: the engine gets a source seeded per node and height.
        seed = digest(b"engine-rng", self.node_id + state.block_hash)
        return Engine(self.node_id, self.settings.consensus,
                      validators=self.validator_set(state),
                      last_accepted_id=state.block_hash, last_accepted_height=state.height,
                      rng=random.Random(seed))

    def restart(self) -> None:
        """A new engine on the chain's last finalised block; the processing blocks are dropped."""
        self.engine = self._new_engine()
        self.processing.clear()

    def _now(self) -> int:
        return int(trio.current_time() * 1000)

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
            peer = self.peers.peer_of(fetch.to)
            if peer is not None:
                self._fetch_block_from(peer, fetch.block_id)
        if output.decisions:
            self.changed.notify()

    def _accept(self, block_id: bytes) -> None:
        entry = self.processing.pop(block_id, None)
        if entry is None:
            # Range sync can commit a block while the engine still processes it (`committed`
            # drops it from `processing`); the engine's late acceptance of a block we already
            # hold is no news. Anything else means the engine and the chain disagree: start the
            # engine again from the chain rather than stop the node.
            if self.chain.store.block_by_hash(block_id) is None:
                log.warning("engine accepted unknown block %s: restarting the engine",
                            block_id.hex()[:16])
                self.restart()
            return
        block, state = entry
        old_validators = self.chain.state.validators
        self.chain.commit(block, state)
        self.on_commit(block, state, old_validators)

    def committed(self, block: Block, state: State, old_validators: tuple[Validator, ...]
                  ) -> None:
        """`block` was committed (by consensus or by sync): drop what it decided."""
        self.watch.prune(block.height, state)
        # Blocks at or below the new height can no longer be accepted.
        for other_id, (other, _) in list(self.processing.items()):
            if other.height <= block.height:
                del self.processing[other_id]
        if state.validators != old_validators:
            self.restart()

    # --- blocks ----------------------------------------------------------------------------------

    def _header_at(self, block_hash: bytes, height: int) -> BlockHeader | None:
        """The header of a processing or finalised block (None for genesis, which has none)."""
        entry = self.processing.get(block_hash)
        if entry is not None:
            return entry[0].header
        block = self.chain.block_at(height)
        return block.header if block is not None and block.hash == block_hash else None

    def _watch(self, block: Block, parent: State) -> None:
        """Every header we see goes through the equivocation watch (signature checked there);
        a second block for one proposer slot is reported."""
        parent_header = self._header_at(block.header.parent_hash, block.height - 1)
        if parent_header is None:
            return
        report = self.watch.observe(block, parent_header, parent)
        if report is not None:
            log.warning("validator %s signed two blocks for height %d: reporting it",
                        address_to_text(block.header.proposer), block.height)
            self.on_equivocation(report)

    def _watch_late(self, block: Block) -> None:
        """A block at a height we finalised: if its proposer also signed the block we
        finalised there, for the same slot, that is a double signature too."""
        final = self.chain.block_at(block.height)
        if final is None or final.hash == block.hash or final.header.proposer != \
                block.header.proposer:
            return
        state = self.chain.state
        parent_header = self._header_at(final.header.parent_hash, block.height - 1)
        if parent_header is not None:
            self.watch.observe(final, parent_header, state)
            self._watch(block, state)

    def _parent_state(self, parent_hash: bytes) -> State | None:
        if parent_hash == self.chain.state.block_hash:
            return self.chain.state
        entry = self.processing.get(parent_hash)
        return entry[1] if entry else None

    def check_schedule(self, parent: State, block: Block) -> None:
        """A live block's time and proposer: not too far ahead of our clock, and its proposer
        holds the slot of its timestamp (range sync checks synced blocks the same way)."""
        h = block.header
        if h.timestamp > self.wall_ms() + self.settings.max_future_drift_ms:
            raise TooFarAhead("timestamp too far in the future")
        slot = slot_at(parent.timestamp, h.timestamp, parent.params.slot_ms)
        expected = proposer_for(parent.chain_id.encode(), h.height, slot,
                                self.validator_set(parent))
        if expected != bytes(h.proposer):
            raise InvalidBlock(f"proposer {address_to_text(h.proposer)} does not hold slot {slot}")

    def receive_block(self, raw: bytes, sender: str | None = None) -> Block | None:
        """Validate a proposal and hand it to consensus; returns it if it is new and valid.

        Raises `OgpuError` subclasses for bad blocks (the caller logs and counts them); the
        `sender` of a block invalid on its own (it does not decode, or its signature, its
        transactions or its roots fail) is reported to the network.
        """
        try:
            block = decode(Block, raw)
        except OgpuError:
            if sender is not None:
                report(self.network, sender, Offence.INVALID_BLOCK)
            raise
        block_id = block.hash
        if block_id in self.processing:
            return None
        if block.height <= self.chain.state.height:
            self._watch_late(block)
            return None
        if len(self.processing) >= self.settings.max_processing_blocks:
            raise InvalidBlock("too many processing blocks")
        parent = self._parent_state(block.header.parent_hash)
        if parent is None:
            return None  # unknown parent: the status loop's sync catches up if we are behind
        try:
            self.check_schedule(parent, block)
            # only a block in a slot its proposer holds is recorded: one far ahead of our clock
            # (not held against its sender) must not fill the watch
            self._watch(block, parent)
            state = apply_block(parent, block)
        except TooFarAhead:
            raise  # our clock may be the one behind: not held against the sender
        except InvalidBlock:
            if sender is not None:
                report(self.network, sender, Offence.INVALID_BLOCK)
            raise
        self.add_processing(block, state)
        return block

    def add_processing(self, block: Block, state: State) -> None:
        """Hand a valid block (and the state after it) to consensus."""
        self.processing[block.hash] = (block, state)
        try:
            output = self.engine.add_block(block.hash, block.header.parent_hash, block.height,
                                           self._now())
        except ConsensusError as exc:
            self.processing.pop(block.hash, None)
            raise InvalidBlock(f"consensus refused the block: {exc}") from exc
        self._handle(output)
        self.changed.notify()

    def _fetch_block_from(self, peer: str, block_id: bytes) -> bool:
        """Fetch `block_id` from `peer` in the background, unless it was asked of that peer
        within `fetch_retry_s` (a peer that lags keeps voting for a block we decided long ago,
        and refetching it each poll would spin), or that peer already has `max_fetches_per_peer`
        of our fetches open, or we have `max_fetches` in all: a peer naming blocks (in queries,
        announcements or votes) costs a bounded number of requests, each bounded in time and
        size. Only validators' peers are asked (`on_query`, `on_block_gossip`, votes), so
        peers without stake cannot fill the slots. Returns whether it started."""
        now = trio.current_time()
        key = (block_id, peer)
        last = self._fetched.get(key)
        limits = self.settings
        if ((last is not None and now - last < limits.fetch_retry_s)
                or self._fetches.get(peer, 0) >= limits.max_fetches_per_peer
                or sum(self._fetches.values()) >= limits.max_fetches or self._nursery is None):
            return False
        self._fetched[key] = now
        self._fetched.move_to_end(key)
        while len(self._fetched) > MAX_FETCH_TIMES:
            self._fetched.popitem(last=False)
        self._fetches[peer] = self._fetches.get(peer, 0) + 1
        self._nursery.start_soon(self._fetch_block, peer, block_id)
        return True

    # --- service and requests --------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Run the timer loop and the driver's requests until cancelled; ready once blocks may
        be received."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._timer_loop)
            task_status.started()

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.engine.next_deadline()
            if deadline is None:
                await self.changed.wait()
                continue
            with trio.move_on_at(deadline / 1000) as scope:
                await self.changed.wait()
            if scope.cancelled_caught:
                # Woken by the deadline itself: ms rounding must not make it look early.
                with contained("poll timer"):
                    self._handle(self.engine.on_timeout(max(self._now(), deadline)))

    async def _send_query(self, validator: bytes, poll_id: int, block_id: bytes) -> None:
        with contained("consensus query"):
            await self._query(validator, poll_id, block_id)

    async def _query(self, validator: bytes, poll_id: int, block_id: bytes) -> None:
        engine = self.engine  # the poll id is this engine's: drop the answer if it was replaced
        peer = self.peers.peer_of(validator)
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
            with contained("block fetch"):
                try:
                    with trio.fail_after(self.settings.request_timeout_s):
                        raw = await self.network.request(peer, m.PROTO_BLOCK,
                                                         encode(m.BlockRequest(block_id)))
                    response = decode(m.BlockResponse, raw)
                    if response.block:
                        self.receive_block(response.block, peer)
                except (P2PError, OgpuError, trio.TooSlowError) as exc:
                    log.debug("fetching block %s from %s failed: %s", block_id.hex()[:12], peer,
                              exc)
        finally:
            self._fetches[peer] -= 1
            if not self._fetches[peer]:
                del self._fetches[peer]

    def on_block_gossip(self, peer: str, data: bytes) -> None:
        """A proposal announced on `ogpu/blocks/1` by a validator (the message's signed origin
        must be a peer proven to run one): fetch it from the announcer if it is new and builds
        on our last finalised block."""
        announcement = decode(m.BlockAnnouncement, data)
        if (announcement.block_id in self.processing
                or announcement.height != self.chain.state.height + 1
                or not self._is_validator_peer(peer)):
            return  # known, not buildable on our last finalised block (sync handles it), or
            # announced by a peer with no stake, which must not take our fetch slots
        self._fetch_block_from(peer, announcement.block_id)

    async def on_query(self, peer: str, data: bytes) -> bytes:
        """`/ogpu/query/1`: our preference, at once; a block a validator's query names that we
        do not know is fetched from it in the background (pull query), unless we are syncing,
        so that our next answers can count for it. Holding the answer until the fetch ended let
        a peer naming random blocks keep handler slots for a request timeout each."""
        query = decode(m.Query, data)
        known = query.block_id in self.processing or query.height <= self.chain.state.height
        if not known and not self.is_syncing() and self._is_validator_peer(peer):
            self._fetch_block_from(peer, query.block_id)
        return encode(m.Chits(self.engine.preference))

    def _is_validator_peer(self, peer: str) -> bool:
        """Whether `peer` proved it runs a validator of the current set."""
        validator = self.peers.validator_of(peer)
        return validator is not None and self.validator_set(self.chain.state).stake_of(
            validator) > 0

    async def on_block_request(self, peer: str, data: bytes) -> bytes:
        """`/ogpu/block/1`: a processing or finalised block by id, empty when unknown."""
        request = decode(m.BlockRequest, data)
        entry = self.processing.get(request.block_id)
        if entry is not None:
            return encode(m.BlockResponse(entry[0].encoded))
        return encode(m.BlockResponse(self.chain.block_bytes(request.block_id) or b""))
