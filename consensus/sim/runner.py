"""Event-driven simulation of a whole network of engines in one process.

Events sit in a calendar queue: one FIFO list per virtual millisecond and a heap of the
distinct milliseconds, i.e. ordered by (virtual ms, insertion sequence). The order is total,
so one seed always gives the same run and the same trace hash.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field

from consensus.decisions import NO_OUTPUT, Output
from consensus.engine import Engine
from consensus.errors import ConsensusError, UnknownParent
from consensus.evidence import EquivocationDetector, SignedHeader
from consensus.proposer import proposer_for, slot_at, slot_start
from consensus.sim.adversary import Adversary, BlockRegistry
from consensus.sim.config import Partition, SimConfig, draw_stakes
from consensus.validators import ValidatorSet

QUERY, CHITS, BLOCK, TIMER, PROPOSE = range(5)
GENESIS = hashlib.sha256(b"ogpu-sim-genesis").digest()


@dataclass
class RunResult:
    """What one seeded run measured."""

    config: SimConfig
    finalized_min: int = 0
    finalized_median: int = 0
    finalized_max: int = 0
    lagging_nodes: int = 0
    end_time_ms: int = 0
    reached_target: bool = False
    stalled: bool = False
    conflicting_finalizations: int = 0
    messages: int = 0
    votes: int = 0
    polls: int = 0
    evidence: int = 0
    finality_ms: list[int] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    longest_gap_ms: int = 0
    first_finality_at_ms: int | None = None
    dropped_blocks: int = 0
    byzantine_stake_pct: float = 0.0
    offline_stake_pct: float = 0.0
    trace_hash: str = ""


def _pick_by_stake(order: list[int], stakes: list[int], budget: int) -> list[int]:
    """Take nodes in ``order`` while their stake stays within ``budget``."""
    chosen: list[int] = []
    used = 0
    for index in order:
        if used + stakes[index] <= budget:
            chosen.append(index)
            used += stakes[index]
    return chosen


class Simulation:
    """One seeded run; call ``run()`` once."""

    def __init__(self, config: SimConfig) -> None:
        config.validate()
        self.config = config
        rng = random.Random(config.seed)
        self.rng = rng
        n = config.n
        self.ids = [hashlib.sha256(b"validator" + i.to_bytes(4, "big")).digest()[:20]
                    for i in range(n)]
        self.index = {v: i for i, v in enumerate(self.ids)}
        stakes = draw_stakes(n, config.stake, rng)
        self.vset = ValidatorSet(zip(self.ids, stakes, strict=True))
        total = self.vset.total_stake
        order = list(range(n))
        rng.shuffle(order)
        byz = _pick_by_stake(order, stakes, total * config.byzantine_pct // 100)
        byz_set = set(byz)
        rest = [i for i in order if i not in byz_set]
        offline = _pick_by_stake(rest, stakes, total * config.offline_pct // 100)
        offline_set = set(offline)
        self.byzantine = [i in byz_set for i in range(n)]
        self.offline = [i in offline_set for i in range(n)]
        self.honest = [i for i in range(n) if i not in byz_set and i not in offline_set]
        self.engines: list[Engine | None] = [None] * n
        for i in self.honest:
            self.engines[i] = Engine(
                self.ids[i], config.params, validators=self.vset, last_accepted_id=GENESIS,
                last_accepted_height=0, rng=random.Random(rng.getrandbits(64)))
        self.detectors = {i: EquivocationDetector() for i in self.honest}
        side = list(range(n))
        rng.shuffle(side)
        self.group = [0] * n
        for position, i in enumerate(side):
            self.group[i] = 1 if position < n * 50 // 100 else 0
        self.partitions: list[tuple[Partition, list[int]]] = []
        for part in config.partitions:
            cut = [0] * n
            for position, i in enumerate(side):
                cut[i] = 1 if position * 100 < n * part.fraction_pct else 0
            self.partitions.append((part, cut))
        self.registry = BlockRegistry(GENESIS)
        self.adversary = Adversary(config.strategy, self.registry,
                                   random.Random(rng.getrandbits(64)))
        self.preference = {i: GENESIS for i in self.honest}
        self.adversary.honest_preferences[GENESIS] = len(self.honest)
        self.buckets: dict[int, list[tuple[int, int, int, int, bytes]]] = {}
        self.times: list[int] = []
        # Latency is uniform over [min, max] in 1/65536 steps, loss a 32-bit threshold.
        self.latency_min = config.latency_min_ms
        self.latency_span = config.latency_max_ms - config.latency_min_ms + 1
        self.loss_threshold = config.loss_ppm * 2**32 // 1_000_000
        self.now = 0
        self.next_proposers: dict[bytes, tuple[int, ...]] = {}
        self.finalized_at: dict[int, bytes] = {}
        self.finalized_height = [0] * n
        self.added_at_polls: list[dict[bytes, int]] = [{} for _ in range(n)]
        self.result = RunResult(
            config, byzantine_stake_pct=100 * sum(stakes[i] for i in byz) / total,
            offline_stake_pct=100 * sum(stakes[i] for i in offline) / total)
        self.trace = hashlib.sha256()
        self.last_progress = 0
        self.timer_at: list[int] = [-1] * n
        self.reached_target_count = 0
        self.median_reached_at: int | None = None
        # Every node starts with genesis: a vote for it from a node that has not moved on yet
        # can make one that has fetch it, and genesis has no parent or proposer to hand out.
        self.seen: list[set[bytes]] = [{GENESIS} for _ in range(n)]
        self.block_proposer: dict[bytes, int] = {}
        self.evidence_seen: set[tuple[bytes, int]] = set()

    # -- network -------------------------------------------------------------------------

    def _push(self, when: int, kind: int, dst: int, src: int, poll_id: int, block: bytes) -> None:
        # A calendar queue: one list per virtual ms, and a heap of the distinct ms only.
        # Events within one ms keep their insertion order, which makes the run total-ordered.
        bucket = self.buckets.get(when)
        if bucket is None:
            self.buckets[when] = [(kind, dst, src, poll_id, block)]
            heapq.heappush(self.times, when)
        else:
            bucket.append((kind, dst, src, poll_id, block))

    def _send(self, kind: int, dst: int, src: int, poll_id: int, block: bytes) -> None:
        """Send with latency, loss and partitions; lost messages are counted as sent."""
        self.result.messages += 1
        getrandbits = self.rng.getrandbits
        if self.loss_threshold and getrandbits(32) < self.loss_threshold:
            return
        now = self.now
        for part, cut in self.partitions:
            if part.start_ms <= now < part.end_ms and cut[dst] != cut[src]:
                return
        self._push(now + self.latency_min + ((getrandbits(16) * self.latency_span) >> 16),
                   kind, dst, src, poll_id, block)

    def _send_query(self, src: int, recipients: tuple[bytes, ...], poll_id: int,
                    preferred: bytes) -> None:
        """``_send`` of one query to many recipients, with the same random draws in the same
        order; on a lossless, uncut network written out because it is the simulator's
        hottest loop."""
        index = self.index
        if self.loss_threshold or self.partitions:
            for dst_id in recipients:
                self._send(QUERY, index[dst_id], src, poll_id, preferred)
            return
        getrandbits = self.rng.getrandbits
        base = self.now + self.latency_min
        span = self.latency_span
        buckets = self.buckets
        times = self.times
        self.result.messages += len(recipients)
        for dst_id in recipients:
            when = base + ((getrandbits(16) * span) >> 16)
            bucket = buckets.get(when)
            if bucket is None:
                buckets[when] = [(QUERY, index[dst_id], src, poll_id, preferred)]
                heapq.heappush(times, when)
            else:
                bucket.append((QUERY, index[dst_id], src, poll_id, preferred))

    # -- engine glue ---------------------------------------------------------------------

    def _absorb(self, node: int, out: Output) -> None:
        engine = self.engines[node]
        if engine is None:  # pragma: no cover - only honest nodes run engines
            return
        for decision in out.decisions:
            self.trace.update(b"%d %d %d " % (self.now, node, decision.accepted)
                              + decision.block_id)
            if decision.accepted:
                self._on_accept(node, decision.block_id, decision.height, engine)
        for query in out.queries:
            self._send_query(node, query.recipients, query.poll_id, query.preferred_id)
            deadline = self.now + self.config.params.poll_timeout
            if self.timer_at[node] < self.now:
                self.timer_at[node] = deadline
                self._push(deadline, TIMER, node, node, 0, b"")
        for fetch in out.fetches:
            if fetch.block_id in self.registry.height:
                src = self.index[fetch.to]
                self._send(BLOCK, node, src, 0, fetch.block_id)
        preference = engine.tree.preference
        old = self.preference[node]
        if preference != old:
            counts = self.adversary.honest_preferences
            counts[old] -= 1
            counts[preference] += 1
            self.preference[node] = preference

    def _on_accept(self, node: int, block_id: bytes, height: int, engine: Engine) -> None:
        result = self.result
        if result.first_finality_at_ms is None:
            result.first_finality_at_ms = self.now
        first = self.finalized_at.setdefault(height, block_id)
        if first != block_id:
            result.conflicting_finalizations += 1
        result.finality_ms.append(self.now - self.registry.time[block_id])
        added = self.added_at_polls[node].pop(block_id, engine.polls_applied)
        result.rounds.append(engine.polls_applied - added)
        if self.finalized_height[node] < self.config.target_blocks <= height:
            self.reached_target_count += 1
            if self.median_reached_at is None and 2 * self.reached_target_count >= len(
                    self.honest):
                self.median_reached_at = self.now
        self.finalized_height[node] = height
        if height > result.finalized_max:
            result.finalized_max = height
            result.longest_gap_ms = max(result.longest_gap_ms, self.now - self.last_progress)
            self.last_progress = self.now
        self.detectors[node].prune(height - 1)

    def _give_block(self, node: int, block_id: bytes) -> None:
        engine = self.engines[node]
        if engine is None or block_id in self.seen[node]:
            return
        registry = self.registry
        chain = [block_id]
        floor = engine.tree.last_accepted_height
        while True:
            parent = registry.parent[chain[-1]]
            if engine.tree.is_known(parent) or registry.height[parent] <= floor:
                break
            chain.append(parent)
        seen = self.seen[node]
        for bid in reversed(chain):
            # Gossip must not loop: a block is handled and relayed once per node, even one
            # the tree forgets because it is below the finalised height.
            if bid in seen:  # every block the tree knows went through `seen` first
                continue
            seen.add(bid)
            height = registry.height[bid]
            self.added_at_polls[node][bid] = engine.polls_applied
            proposer = self.block_proposer[bid]
            parent_id = registry.parent[bid]
            slot = slot_at(registry.time[parent_id], registry.time[bid],
                           self.config.slot_window_ms)
            evidence = self.detectors[node].observe(
                SignedHeader(self.ids[proposer], height, parent_id, slot, bid, bid, b""))
            if evidence is not None:
                self.evidence_seen.add((evidence.proposer, evidence.height))
            try:
                out = engine.add_block(bid, registry.parent[bid], height, self.now)
            except UnknownParent:  # pragma: no cover - ancestors were added above
                return
            except ConsensusError:
                self.result.dropped_blocks += 1  # over the processing limit, or malformed
                return
            self._absorb(node, out)
            self._maybe_schedule_proposal(node, bid)
            self._relay(node, bid)

    def _relay(self, node: int, block_id: bytes) -> None:
        """Gossip: an honest node forwards a block it just learned to a few random peers,
        which is how both halves of an equivocation reach everyone."""
        n = self.config.n
        for _ in range(self.config.gossip_fanout):
            peer = self.rng.randrange(n)
            if peer != node:
                self._send(BLOCK, peer, node, 0, block_id)

    # -- proposals -----------------------------------------------------------------------

    def _slot_proposers(self, parent: bytes) -> tuple[int, ...]:
        cached = self.next_proposers.get(parent)
        if cached is None:
            height = self.registry.height[parent] + 1
            cached = tuple(self.index[proposer_for(self.config.chain_id, height, s, self.vset)]
                           for s in range(self.config.proposer_slots))
            self.next_proposers[parent] = cached
        return cached

    def _schedule_proposal(self, proposer: int, parent: bytes, slot: int) -> None:
        opens = slot_start(self.registry.time[parent], slot, self.config.slot_window_ms)
        self._push(max(self.now + self.config.block_delay_ms, opens), PROPOSE, proposer,
                   proposer, slot, parent)

    def _maybe_schedule_proposal(self, node: int, parent: bytes) -> None:
        for slot, proposer in enumerate(self._slot_proposers(parent)):
            if proposer == node:
                self._schedule_proposal(node, parent, slot)

    def _create_block(self, proposer: int, parent: bytes, variant: int) -> bytes:
        height = self.registry.height[parent] + 1
        block_id = hashlib.sha256(b"%d %d %d " % (height, proposer, variant) + parent).digest()
        if block_id not in self.registry.height:
            self.registry.add(block_id, parent, height, self.now)
            self.block_proposer[block_id] = proposer
        return block_id

    def _on_propose(self, node: int, parent: bytes, slot: int) -> None:
        config = self.config
        opens = slot_start(self.registry.time[parent], slot, config.slot_window_ms)
        if not opens <= self.now < opens + config.slot_window_ms:
            return  # the slot has passed; a later slot's proposer takes over
        if self.offline[node]:
            return
        n = config.n
        if self.byzantine[node]:
            if not self.adversary.equivocates:
                return
            left = self._create_block(node, parent, 0)
            right = self._create_block(node, parent, 1)
            self._schedule_next_slots(left)
            self._schedule_next_slots(right)
            for dst in range(n):
                if dst != node:
                    self._send(BLOCK, dst, node, 0, left if self.group[dst] else right)
            return
        engine = self.engines[node]
        if engine is None or engine.tree.preference != parent:
            return
        block_id = self._create_block(node, parent, 0)
        self._give_block(node, block_id)
        for dst in range(n):
            if dst != node:
                self._send(BLOCK, dst, node, 0, block_id)

    def _schedule_next_slots(self, parent: bytes) -> None:
        """Byzantine proposers build on their own blocks without waiting for delivery."""
        for slot, proposer in enumerate(self._slot_proposers(parent)):
            if self.byzantine[proposer]:
                self._schedule_proposal(proposer, parent, slot)

    # -- main loop -----------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run until every honest node finalised ``target_blocks`` or time runs out."""
        config = self.config
        for node in range(config.n):
            self._maybe_schedule_proposal(node, GENESIS)
        times = self.times
        buckets = self.buckets
        engines = self.engines
        ids = self.ids
        result = self.result
        honest = self.honest
        adversary = self.adversary
        byzantine = self.byzantine
        trees = [None if engine is None else engine.tree for engine in engines]
        send = self._send
        getrandbits = self.rng.getrandbits
        heappush = heapq.heappush
        heappop = heapq.heappop
        latency_min = self.latency_min
        span = self.latency_span
        # Honest answers are sent inline (see ``_send``) unless loss or partitions apply.
        plain_network = not self.loss_threshold and not self.partitions
        max_time_ms = config.max_time_ms
        n_honest = len(honest)
        votes = answers = 0
        done = False
        next_stall_check = 0
        while times and not done:
            when = heappop(times)
            if when > max_time_ms:
                break
            self.now = when
            if when >= next_stall_check:
                next_stall_check = when + 100
                if self._should_stop(when):
                    break
            bucket = buckets.pop(when)
            answer_base = when + latency_min
            for kind, dst, src, poll_id, block in bucket:
                if kind == CHITS:
                    engine = engines[dst]
                    if engine is not None:
                        votes += 1
                        out = engine.on_chits(ids[src], poll_id, block, when)
                        if out is not NO_OUTPUT:
                            self._absorb(dst, out)
                elif kind == QUERY:
                    tree = trees[dst]
                    if tree is not None:
                        # An honest answer is the preference (Engine.on_query), inlined here:
                        # this is the simulator's hottest line. Same draws as ``_send``.
                        if plain_network:
                            answers += 1
                            at = answer_base + ((getrandbits(16) * span) >> 16)
                            event = (CHITS, src, dst, poll_id, tree.preference)
                            target = buckets.get(at)
                            if target is None:
                                buckets[at] = [event]
                                heappush(times, at)
                            else:
                                target.append(event)
                        else:
                            send(CHITS, src, dst, poll_id, tree.preference)
                    elif byzantine[dst] and adversary.answers:
                        asker = engines[src]
                        if asker is not None:
                            answer = adversary.answer(block, asker.last_accepted_height, when)
                            send(CHITS, src, dst, poll_id, answer)
                elif kind == BLOCK:
                    self._give_block(dst, block)
                elif kind == TIMER:
                    self._on_timer(dst, when)
                else:
                    self._on_propose(dst, block, poll_id)
            done = self.reached_target_count >= n_honest
        result.votes += votes
        result.messages += answers
        return self._finish()

    def _should_stop(self, when: int) -> bool:
        """Stop on a network-wide stall (no honest node finalised a new height for
        ``stall_ms``), or ``lag_ms`` after half the honest nodes reached the target, so that
        one slow node cannot keep a run going forever; it is reported as lagging."""
        stall_ms = self.config.stall_ms
        if self.median_reached_at is not None:
            return when - self.median_reached_at > self.config.lag_ms
        if when - self.last_progress > stall_ms:
            self.result.stalled = True
            return True
        return False

    def _on_timer(self, node: int, when: int) -> None:
        engine = self.engines[node]
        self.timer_at[node] = -1
        if engine is None:
            return
        self._absorb(node, engine.on_timeout(when))
        deadline = engine.next_deadline()
        if deadline is not None and self.timer_at[node] < when:
            self.timer_at[node] = max(deadline, when + 1)
            self._push(self.timer_at[node], TIMER, node, node, 0, b"")

    def _finish(self) -> RunResult:
        result = self.result
        heights = sorted(self.finalized_height[i] for i in self.honest) or [0]
        result.finalized_min = heights[0]
        result.finalized_median = heights[(len(heights) - 1) // 2]
        result.finalized_max = heights[-1]
        result.lagging_nodes = sum(h < self.config.target_blocks for h in heights)
        result.end_time_ms = self.now
        result.reached_target = result.finalized_min >= self.config.target_blocks
        if result.finalized_median < self.config.target_blocks:
            result.stalled = True
        result.polls = sum(e.polls_applied for e in self.engines if e is not None)
        result.evidence = len(self.evidence_seen)
        result.trace_hash = self.trace.hexdigest()
        return result


def run(config: SimConfig) -> RunResult:
    """Run one seeded simulation."""
    return Simulation(config).run()
