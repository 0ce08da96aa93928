"""A small in-memory network of engines whose message delivery the caller controls.

Unit and property tests use it to drive engines through chosen orders, drops and delays;
the event-driven simulator (``consensus.sim.runner``) is the one for large networks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.decisions import Decision, Output
from consensus.engine import Engine
from consensus.errors import UnknownParent


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message in flight: a query (``block_id`` is the asker's preference) or chits."""

    kind: str
    src: bytes
    dst: bytes
    poll_id: int
    block_id: bytes


@dataclass
class LockstepNetwork:
    """Engines plus a mailbox; ``silent`` nodes neither poll nor answer."""

    engines: dict[bytes, Engine]
    silent: frozenset[bytes] = frozenset()
    blocks: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)
    mailbox: list[Envelope] = field(default_factory=list)
    decisions: dict[bytes, list[Decision]] = field(default_factory=dict)
    now: int = 0

    def __post_init__(self) -> None:
        for node in sorted(self.engines):
            self.decisions.setdefault(node, [])

    @property
    def live(self) -> list[bytes]:
        """Nodes that take part, in id order."""
        return [n for n in sorted(self.engines) if n not in self.silent]

    def give_block(self, node: bytes, block_id: bytes) -> None:
        """Deliver ``block_id`` (and any ancestors ``node`` lacks) to ``node``."""
        engine = self.engines[node]
        chain = [block_id]
        while True:
            parent_id, height = self.blocks[chain[-1]]
            if parent_id not in self.blocks or engine.tree.is_known(parent_id):
                break
            if height - 1 <= engine.last_accepted_height:
                break
            chain.append(parent_id)
        for bid in reversed(chain):
            parent_id, height = self.blocks[bid]
            try:
                self._absorb(node, engine.add_block(bid, parent_id, height, self.now))
            except UnknownParent:  # pragma: no cover - the chain above was completed
                return

    def publish(self, block_id: bytes, parent_id: bytes, height: int,
                to: list[bytes] | None = None) -> None:
        """Register a block and hand it to ``to`` (default: every live node)."""
        self.blocks[block_id] = (parent_id, height)
        for node in self.live if to is None else to:
            if node not in self.silent:
                self.give_block(node, block_id)

    def deliver(self, index: int) -> None:
        """Deliver the message at ``index`` of the mailbox."""
        env = self.mailbox.pop(index)
        if env.dst in self.silent:
            return
        engine = self.engines[env.dst]
        if env.kind == "query":
            chits = engine.on_query(env.src, env.poll_id)
            self.mailbox.append(Envelope("chits", env.dst, env.src, env.poll_id,
                                         chits.preferred_id))
        else:
            self._absorb(env.dst, engine.on_chits(env.src, env.poll_id, env.block_id, self.now))

    def drop(self, index: int) -> None:
        """Lose the message at ``index``."""
        self.mailbox.pop(index)

    def flush(self, max_messages: int = 1_000_000) -> None:
        """Deliver everything in FIFO order, including replies, up to ``max_messages``."""
        for _ in range(max_messages):
            if not self.mailbox:
                return
            self.deliver(0)

    def advance(self, delta: int) -> None:
        """Move time forward and let every live engine expire polls and repoll."""
        self.now += delta
        for node in self.live:
            self._absorb(node, self.engines[node].tick(self.now))

    def _absorb(self, node: bytes, out: Output) -> None:
        self.decisions[node].extend(out.decisions)
        for query in out.queries:
            for dst in query.recipients:
                self.mailbox.append(Envelope("query", node, dst, query.poll_id,
                                             query.preferred_id))
        for fetch in out.fetches:
            if fetch.block_id in self.blocks:
                self.give_block(node, fetch.block_id)

    def accepted_chain(self, node: bytes) -> list[bytes]:
        """Ids ``node`` accepted, in order."""
        return [d.block_id for d in self.decisions[node] if d.accepted]
