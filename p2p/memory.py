"""An in-memory network with the `Network` interface, for unit tests and the simulator.

A `MemoryHub` stands for the wire; `hub.node(name)` makes a `MemoryNetwork` endpoint. Endpoints
connect with `connect(addr)` (addresses look like `/memory/<name>/p2p/<name>`), and behave like the
libp2p network of the same interface: gossip floods through connected subscribers (exactly once
per node, never back to the publisher), requests run the remote handler in the remote node's own
task tree with the same frame limits and typed errors.

Optional imperfection, drawn from one seeded `random.Random` so that a run is reproducible:
`latency=(low, high)` delays every gossip delivery and each leg of a request by a uniform draw
(seconds, on trio's clock: use `trio.testing.MockClock` for virtual time); `loss` drops each gossip
delivery with that probability (requests are not lost: a lost request would only surface as the
caller's timeout).

Rate limits, penalties and bans are the same `p2p.peer_guard.PeerGuard` as libp2p's; a ban
unlinks the two nodes and refuses the peer's links, requests and gossip. Topic validators run
when a message is published, hop by hop along the flood (latency delays the delivery only).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import trio

from p2p.errors import (
    FrameTooLarge,
    InvalidPeerAddress,
    NetworkClosed,
    PeerBanned,
    PeerUnavailable,
    ProtocolNotSupported,
    RequestFailed,
)
from p2p.framing import encode_rate_limited, encode_too_large
from p2p.network import (
    GossipMessage,
    Handler,
    Limits,
    NetworkStats,
    PeerInfo,
    SubscriptionHub,
    TaskStatus,
    TopicValidator,
    answer_request,
    check_gossip_size,
    gossip_is_valid,
    result_of_response,
)
from p2p.peer_guard import Ban, Offence, PeerGuard


class MemoryHub:
    """The shared medium of a set of `MemoryNetwork` nodes."""

    def __init__(
        self, *, seed: int = 0, latency: tuple[float, float] = (0.0, 0.0), loss: float = 0.0
    ) -> None:
        if not 0.0 <= latency[0] <= latency[1]:
            raise ValueError("latency must be (low, high) with 0 <= low <= high")
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        self.rng = random.Random(seed)
        self.latency = latency
        self.loss = loss
        self._nodes: dict[str, MemoryNetwork] = {}
        self._links: dict[str, set[str]] = {}
        self._changed = trio.Event()

    def node(self, name: str | None = None, *, limits: Limits | None = None) -> MemoryNetwork:
        """A new endpoint named `name` (default `node<N>`); it is reachable once it serves."""
        name = name or f"node{len(self._nodes)}"
        if name in self._nodes or "/" in name:
            raise ValueError(f"node name {name!r} is taken or contains '/'")
        node = MemoryNetwork(self, name, limits or Limits())
        self._nodes[name] = node
        return node

    # --- used by the endpoints ---

    def changed(self) -> None:
        """Wake everything waiting for a change of links or subscriptions."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def running(self, name: str) -> MemoryNetwork | None:
        node = self._nodes.get(name)
        return node if node is not None and node.is_running else None

    def link(self, a: str, b: str) -> None:
        self._links.setdefault(a, set()).add(b)
        self._links.setdefault(b, set()).add(a)
        self.changed()

    def unlink(self, a: str, b: str) -> None:
        self._links.get(a, set()).discard(b)
        self._links.get(b, set()).discard(a)
        self.changed()

    def unlink_all(self, a: str) -> None:
        for b in self._links.pop(a, set()):
            self._links.get(b, set()).discard(a)
        self.changed()

    def neighbours(self, a: str) -> list[str]:
        return sorted(self._links.get(a, ()))

    def delay(self) -> float:
        low, high = self.latency
        return low if low == high else self.rng.uniform(low, high)

    def lost(self) -> bool:
        return self.loss > 0.0 and self.rng.random() < self.loss

    def flood(self, message: GossipMessage) -> list[str]:
        """The nodes `message` reaches: subscribed nodes connected to its origin through
        subscribed nodes (the mesh) that accept it, in breadth-first order. Like GossipSub, a
        node that refuses a message (`MemoryNetwork.accepts_gossip`) does not pass it on."""
        reached: list[str] = []
        seen = {message.from_peer}
        frontier = [message.from_peer]
        while frontier:
            following: list[str] = []
            for name in frontier:
                for other in self.neighbours(name):
                    node = self.running(other)
                    if other in seen or node is None or not node.subscribed(message.topic):
                        continue
                    seen.add(other)
                    if node.accepts_gossip(message, via=name):
                        reached.append(other)
                        following.append(other)
            frontier = following
        return reached


class MemoryNetwork:
    """One node on a `MemoryHub` (see the module docstring)."""

    def __init__(self, hub: MemoryHub, name: str, limits: Limits) -> None:
        self._hub = hub
        self._name = name
        self._limits = limits
        self._stats = NetworkStats()
        self._subs = SubscriptionHub(limits, self._stats)
        self._handlers: dict[str, Handler] = {}
        self._nursery: trio.Nursery | None = None
        self._handler_slots = trio.Semaphore(limits.max_concurrent_handlers)
        self._guard = PeerGuard(limits, self._stats, on_ban=self._disconnect)
        self._validators: dict[str, TopicValidator] = {}

    # --- lifecycle ---

    @property
    def is_running(self) -> bool:
        return self._nursery is not None

    async def serve(self, *, task_status: TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Become reachable, report ready, run until cancelled, then leave the hub."""
        if self._nursery is not None:
            raise RuntimeError("this node is already serving")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._hub.changed()
                nursery.start_soon(self._guard.lift_bans_when_due)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._hub.unlink_all(self._name)
            self._subs.close()

    def _require_running(self) -> trio.Nursery:
        if self._nursery is None:
            raise NetworkClosed(f"node {self._name} is not running")
        return self._nursery

    # --- identity and peers ---

    @property
    def peer_id(self) -> str:
        return self._name

    @property
    def listen_addrs(self) -> list[str]:
        return [f"/memory/{self._name}/p2p/{self._name}"] if self.is_running else []

    def peers(self) -> list[PeerInfo]:
        return [
            PeerInfo(name, tuple(node.listen_addrs))
            for name in self._hub.neighbours(self._name)
            if (node := self._hub.running(name)) is not None
        ]

    async def connect(self, multiaddr: str) -> str:
        self._require_running()
        parts = multiaddr.split("/")
        if len(parts) != 5 or parts[1] != "memory" or parts[3] != "p2p" or parts[2] != parts[4]:
            raise InvalidPeerAddress(f"not a memory multiaddr with /p2p/<id>: {multiaddr!r}")
        name = parts[4]
        if name == self._name:
            raise InvalidPeerAddress("a node cannot connect to itself")
        if self._guard.is_banned(name):
            raise PeerBanned(f"peer {name} is banned")
        target = self._hub.running(name)
        if target is None:
            raise PeerUnavailable(f"peer {name} is not reachable")
        if target.refuses(self._name):
            raise PeerUnavailable(f"peer {name} refused the connection")
        self._hub.link(self._name, name)
        await trio.lowlevel.checkpoint()
        return name

    def stats(self) -> NetworkStats:
        return self._stats

    # --- hostile peers ---

    def report(self, peer_id: str, offence: Offence) -> bool:
        if peer_id == self._name or "/" in peer_id or not peer_id:
            raise InvalidPeerAddress(f"cannot report {peer_id!r}")
        return self._guard.report(peer_id, offence)

    def banned(self) -> list[Ban]:
        return self._guard.banned()

    def refuses(self, peer_id: str) -> bool:
        """Whether this node refuses `peer_id` (banned); counted."""
        if self._guard.is_banned(peer_id):
            self._stats.banned_refused += 1
            return True
        return False

    def _disconnect(self, peer_id: str) -> None:
        self._hub.unlink(self._name, peer_id)

    # --- gossip ---

    def subscribed(self, topic: str) -> bool:
        return self._subs.is_subscribed(topic)

    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        self._require_running()
        channel = self._subs.add(topic)
        self._hub.changed()
        await trio.lowlevel.checkpoint()
        return channel

    async def publish(self, topic: str, data: bytes) -> None:
        nursery = self._require_running()
        check_gossip_size(data, self._limits)
        self._stats.gossip_published += 1
        message = GossipMessage(self._name, topic, bytes(data))
        for name in self._hub.flood(message):
            if self._hub.lost():
                continue
            delay = self._hub.delay()
            target = self._hub.running(name)
            if target is None:
                continue
            if delay == 0.0:
                target.receive_gossip(message)
            else:
                nursery.start_soon(self._deliver_later, target, message, delay)
        await trio.lowlevel.checkpoint()

    @staticmethod
    async def _deliver_later(target: MemoryNetwork, message: GossipMessage, delay: float) -> None:
        await trio.sleep(delay)
        if target.is_running:
            target.receive_gossip(message)

    def receive_gossip(self, message: GossipMessage) -> None:
        self._subs.deliver(message)

    def accepts_gossip(self, message: GossipMessage, via: str) -> bool:
        """Whether this node takes `message`, forwarded by `via` (and passes it on). A message
        its validator rejects counts against `via`, as GossipSub holds forwarders to account."""
        if self._guard.is_banned(message.from_peer):
            return False
        validator = self._validators.get(message.topic)
        if validator is None or gossip_is_valid(validator, message):
            return True
        self._stats.gossip_rejected += 1
        self._guard.report(via, Offence.INVALID_MESSAGE)
        return False

    def set_topic_validator(self, topic: str, validator: TopicValidator | None) -> None:
        if validator is None:
            self._validators.pop(topic, None)
        else:
            self._validators[topic] = validator

    async def wait_for_topic_peers(self, topic: str, peer_ids: Iterable[str]) -> None:
        wanted = set(peer_ids)
        while True:
            missing = {
                name
                for name in wanted
                if name not in self._hub.neighbours(self._name)
                or (node := self._hub.running(name)) is None
                or not node.subscribed(topic)
            }
            if not missing:
                return
            await self._hub.wait_changed()

    async def wait_disconnected(self, peer_id: str) -> None:
        while peer_id in self._hub.neighbours(self._name):
            await self._hub.wait_changed()

    # --- requests ---

    def set_handler(self, protocol: str, handler: Handler) -> None:
        self._handlers[protocol] = handler

    async def request(self, peer_id: str, protocol: str, data: bytes) -> bytes:
        self._require_running()
        limit = self._limits.frame_limit(protocol)
        if len(data) > limit:
            self._stats.frames_refused += 1
            raise FrameTooLarge(
                f"request of {len(data)} bytes exceeds the limit of {limit}",
                size=len(data),
                limit=limit,
            )
        if self._guard.is_banned(peer_id):
            raise PeerBanned(f"peer {peer_id} is banned")
        if peer_id not in self._hub.neighbours(self._name):
            raise PeerUnavailable(f"not connected to peer {peer_id}")
        target = self._hub.running(peer_id)
        if target is None:
            raise PeerUnavailable(f"peer {peer_id} is not running")
        self._stats.requests_sent += 1
        await self._travel()
        body = await target.serve_request(self._name, protocol, bytes(data))
        await self._travel()
        if not self.is_running:
            raise NetworkClosed(f"node {self._name} stopped during the request")
        try:
            return result_of_response(body, limit)
        except FrameTooLarge as exc:
            if not exc.remote:  # an answer over our limit: the peer's fault
                self._stats.frames_refused += 1
                self._guard.report(peer_id, Offence.INVALID_FRAME)
            raise

    async def _travel(self) -> None:
        delay = self._hub.delay()
        if delay > 0.0:
            await trio.sleep(delay)

    async def serve_request(self, from_peer: str, protocol: str, data: bytes) -> bytes:
        """Run the handler of `protocol` in this node's task tree; the response body."""
        nursery = self._nursery
        if nursery is None:
            raise PeerUnavailable(f"peer {self._name} is not running")
        if self.refuses(from_peer):
            raise RequestFailed(f"peer {self._name} refused the request: banned")
        handler = self._handlers.get(protocol)
        if handler is None:
            raise ProtocolNotSupported(f"peer {self._name} does not serve {protocol}")
        limit = self._limits.frame_limit(protocol)
        if len(data) > limit:
            self._stats.frames_refused += 1
            self._guard.report(from_peer, Offence.INVALID_FRAME)
            return encode_too_large(len(data), limit)
        if not self._guard.admit_request(from_peer, protocol):
            return encode_rate_limited()
        done = trio.Event()
        result: list[bytes] = []

        async def run() -> None:
            try:
                async with self._handler_slots:
                    body = await answer_request(handler, from_peer, data, limit, self._stats)
                result.append(body)
            finally:
                done.set()

        try:
            nursery.start_soon(run)
        except RuntimeError as exc:  # the node is shutting down: its nursery takes no new tasks
            raise PeerUnavailable(f"peer {self._name} is stopping") from exc
        await done.wait()
        if not result:
            raise RequestFailed(f"peer {self._name} stopped while serving the request")
        return result[0]
