"""The network interface the node is written against, and the semantics both implementations share.

Two implementations satisfy `Network`: `p2p.libp2p_host.Libp2pNetwork` (TCP on loopback or LAN,
Noise, yamux, GossipSub) and `p2p.memory.MemoryNetwork` (an in-process hub for unit tests and the
simulator). One conformance suite (`tests/p2p/test_conformance.py`) runs against both.

Semantics:

- **Gossip.** `publish(topic, data)` delivers `data` once to every subscription of `topic` on every
  *other* node that is connected (directly or through the mesh); the publisher's own subscriptions
  do not receive it. Messages over `Limits.max_gossip_bytes` are refused with `FrameTooLarge`.
  `subscribe(topic)` returns a fresh channel; a topic may have several. Each channel buffers
  `Limits.subscription_buffer` messages; a message that finds the buffer full is dropped, logged
  and counted in `stats().gossip_dropped` (a consumer must keep up; nothing is dropped silently).
  Close the channel to stop receiving. `set_topic_validator(topic, fn)` judges each message
  before it is delivered or passed on: a rejected one goes no further, and the peer that
  forwarded it is reported (`INVALID_MESSAGE`) and, on libp2p, also scored down by GossipSub.
- **Requests.** `set_handler(protocol, handler)` serves `protocol`; `request(peer, protocol, data)`
  sends one request and returns the handler's answer. Both sides enforce the protocol's frame
  limit (`Limits.frame_limit`). Failures are typed (`p2p.errors`): `FrameTooLarge` (either side),
  `ProtocolNotSupported`, `RemoteHandlerError` (the handler raised; the serving node keeps
  running), `PeerUnavailable` (`PeerBanned`: this node banned the peer), `RequestFailed`
  (`RateLimited`: the peer refused it at once, over its rate limit), `NetworkClosed`. There is
  no built-in timeout: callers bound requests with `trio.fail_after` / `trio.move_on_after`; a
  cancelled request leaves nothing behind.
- **Hostile peers** (`p2p.peer_guard`). Inbound requests are rate limited per peer and protocol
  (`Limits.request_rate`); `report(peer, offence)` adds to a peer's decaying penalty, and one
  that reaches `Limits.ban_threshold` is disconnected and banned for `Limits.ban_s`: its
  connections, streams and gossip are refused and it is not dialled (`connect` and `request`
  raise `PeerBanned`). The network itself reports refused frames and rate-limited requests.
  `banned()` lists the bans in force.
- **Lifecycle.** Each implementation has `async def serve(*, task_status)` to be started with
  `await nursery.start(net.serve)`: it returns once the node listens, and runs until cancelled,
  then disconnects and releases everything it holds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from p2p.errors import FrameTooLarge, MalformedFrame, RateLimited, RemoteHandlerError
from p2p.framing import (
    DEFAULT_FRAME_LIMIT,
    Status,
    check_limit,
    decode_response,
    decode_too_large,
    encode_handler_error,
    encode_ok,
    encode_too_large,
)
from p2p.peer_guard import Ban, Offence, RequestRate

log = logging.getLogger(__name__)

TaskStatus = Any
"""The type of `serve`'s `task_status`. (`trio.TaskStatus[None]` once the outdated `trio-stubs`
of `trio-typing` no longer shadow trio's own annotations in the environment.)"""

Handler = Callable[[str, bytes], Awaitable[bytes]]
"""`handler(from_peer_id, request) -> response` serving one request/response protocol."""

TopicValidator = Callable[[str, bytes], bool]
"""`validator(origin_peer_id, data) -> valid` judging one gossip message of a topic (see
`Network.set_topic_validator`)."""

MAX_GOSSIP_BYTES = 1024 * 1024 - 64 * 1024
"""Largest gossip payload (960 KiB): GossipSub drops RPCs over 1 MiB, and the envelope (topic,
sender, sequence number, signature, key, signed peer record) must fit beside the data. Larger
objects go by request/response, announced by hash over gossip."""

SUBSCRIPTION_BUFFER = 1024
"""Messages a subscription channel holds before new ones are dropped (and counted)."""

MAX_CONCURRENT_HANDLERS = 64
"""Inbound requests handled at once per node; further requests wait their turn."""

REQUEST_RATE = RequestRate(per_s=100.0, burst=200)
"""Requests one peer may send on one protocol: 200 at once, refilled at 100 a second. Measured
honest peaks (`scripts/bench rates`, 4 validators on libp2p, idle, 100 transfers/s offered, a
follower syncing, a 32 MiB file fetched): consensus queries to one peer at most 44 in a second
and 21 in 100 ms (the burst a 50/s bucket needs: 17), status 1/s, a file's chunks 25/s (33 in
1.3 s); block and range requests one at a time. So an honest peer stays at least 4x under."""

PENALTY_HALF_LIFE_S = 300.0
"""A peer's penalty halves every 5 minutes."""
BAN_THRESHOLD = 100.0
"""A penalty reaching this bans the peer."""
BAN_S = 600.0
"""How long a ban lasts (10 minutes); then the peer may connect again, its penalty at zero."""
INVALID_BLOCK_PENALTY = 60.0
"""Two invalid blocks within 3 minutes ban a peer (60 + 60 x 0.5^(175/300) = 100)."""
INVALID_TX_BATCH_PENALTY = 30.0
INVALID_MESSAGE_PENALTY = 30.0
INVALID_FRAME_PENALTY = 30.0
"""Four invalid batches, messages or frames within about 3 minutes ban a peer."""
RATE_LIMITED_PENALTY = 1.0
"""Some 100 refused requests in a burst ban a peer, or more than ~14 a minute kept up (the
steady penalty of r refusals a second is r x 433)."""
MAX_TRACKED_PEERS = 4096
"""Peers (or peer and protocol pairs) whose buckets, penalties or bans are remembered."""

MAX_IDLE_STREAMS = 16
"""Idle request streams kept for reuse per (peer, protocol). Consensus keeps up to 4 polls open
but a poll can close before all its queries are answered, so more are in flight to one peer at
times: with 4 kept, a validator of an idle devnet opened ~140 query streams a minute (4 ms of
negotiation each) and the 4 nodes used 25-27% of a core; with 16, only at start and 19%."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Named limits of one node's network. Exceeding one is a typed error, never a crash."""

    default_frame_limit: int = DEFAULT_FRAME_LIMIT
    frame_limits: Mapping[str, int] = field(default_factory=dict)
    """Per-protocol frame limits; protocols not listed get `default_frame_limit`."""
    max_gossip_bytes: int = MAX_GOSSIP_BYTES
    subscription_buffer: int = SUBSCRIPTION_BUFFER
    max_concurrent_handlers: int = MAX_CONCURRENT_HANDLERS
    max_idle_streams: int = MAX_IDLE_STREAMS
    request_rate: RequestRate = REQUEST_RATE
    """Token bucket of each (peer, protocol) for inbound requests."""
    request_rates: Mapping[str, RequestRate] = field(default_factory=dict)
    """Per-protocol buckets; protocols not listed get `request_rate`."""
    penalty_half_life_s: float = PENALTY_HALF_LIFE_S
    ban_threshold: float = BAN_THRESHOLD
    ban_s: float = BAN_S
    invalid_block_penalty: float = INVALID_BLOCK_PENALTY
    invalid_tx_batch_penalty: float = INVALID_TX_BATCH_PENALTY
    invalid_message_penalty: float = INVALID_MESSAGE_PENALTY
    invalid_frame_penalty: float = INVALID_FRAME_PENALTY
    rate_limited_penalty: float = RATE_LIMITED_PENALTY
    max_tracked_peers: int = MAX_TRACKED_PEERS

    def __post_init__(self) -> None:
        check_limit(self.default_frame_limit)
        for limit in self.frame_limits.values():
            check_limit(limit)
        for name in ("max_gossip_bytes", "subscription_buffer", "max_concurrent_handlers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_gossip_bytes > MAX_GOSSIP_BYTES:
            raise ValueError(f"max_gossip_bytes above {MAX_GOSSIP_BYTES} would be dropped")
        if self.max_idle_streams < 0:
            raise ValueError("max_idle_streams must not be negative")
        for rate in (self.request_rate, *self.request_rates.values()):
            if not isinstance(rate, RequestRate):
                raise TypeError(f"request rates are RequestRate, got {type(rate).__name__}")
        for name in ("penalty_half_life_s", "ban_threshold", "ban_s", "max_tracked_peers"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number")
        for offence in Offence:
            penalty = self.penalty_for(offence)
            if not (math.isfinite(penalty) and penalty >= 0):
                raise ValueError(f"the penalty of {offence.value} must be finite and >= 0")

    def frame_limit(self, protocol: str) -> int:
        """The frame limit of `protocol` (request and response payloads alike)."""
        return self.frame_limits.get(protocol, self.default_frame_limit)

    def request_rate_for(self, protocol: str) -> RequestRate:
        """The token bucket of each peer's requests on `protocol`."""
        return self.request_rates.get(protocol, self.request_rate)

    def penalty_for(self, offence: Offence) -> float:
        """The weight `offence` adds to a peer's penalty."""
        return float(getattr(self, f"{offence.value}_penalty"))


@dataclass(frozen=True, slots=True)
class GossipMessage:
    """A gossip message as a subscriber receives it. `from_peer` is the original publisher."""

    from_peer: str
    topic: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A connected peer: its id and the multiaddrs known for it."""

    peer_id: str
    addrs: tuple[str, ...]


@dataclass(slots=True)
class NetworkStats:
    """Counters of one node's network, for metrics."""

    gossip_published: int = 0
    gossip_delivered: int = 0
    gossip_dropped: int = 0
    gossip_rejected: int = 0
    """Gossip messages a topic validator rejected (their forwarders are reported)."""
    requests_sent: int = 0
    requests_served: int = 0
    handler_errors: int = 0
    frames_refused: int = 0
    streams_opened: int = 0
    """Outbound request streams opened (0 where the network has no streams): against
    `requests_sent`, how well idle streams are reused."""
    requests_rate_limited: int = 0
    """Inbound requests refused by the per-peer rate limit (`Limits.request_rate`)."""
    offences_reported: int = 0
    """Offences counted against peers (by `report`, or by the network itself)."""
    peers_banned: int = 0
    """Bans imposed."""
    banned_refused: int = 0
    """Connections, streams and requests of banned peers refused."""


class Network(Protocol):
    """What the node needs from a peer-to-peer network (see the module docstring)."""

    @property
    def peer_id(self) -> str:
        """This node's stable text id (for libp2p, the base58 peer id)."""
        ...

    @property
    def listen_addrs(self) -> list[str]:
        """Multiaddrs others can dial, each ending in `/p2p/<peer_id>`; empty before `serve`."""
        ...

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip `data` on `topic`. Waits while outbound queues are full (back-pressure)."""
        ...

    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Join `topic` and return a channel of the messages other nodes publish on it."""
        ...

    def set_topic_validator(self, topic: str, validator: TopicValidator | None) -> None:
        """Judge every gossip message of `topic` from other nodes before it is delivered or
        passed on (None removes the validator). `validator(origin, data)` returns True to
        accept; False, or an exception (logged), rejects: the message is dropped and the peer
        that forwarded it is reported as `INVALID_MESSAGE`. It runs in the network's task, so
        it must be quick and must not block. Reject only what is invalid on its own
        (undecodable, a bad signature), never what is merely stale or unwanted here: an honest
        peer that judged otherwise would be punished for passing it on. Every node should run
        the same validators for the same reason."""
        ...

    async def wait_for_topic_peers(self, topic: str, peer_ids: Iterable[str]) -> None:
        """Return once a publish on `topic` goes straight to each of `peer_ids` (they are
        connected and subscribed, and in the mesh if this node subscribes too). Bound it with
        `trio.fail_after`."""
        ...

    async def wait_disconnected(self, peer_id: str) -> None:
        """Return once no connection to `peer_id` is left. Bound it with `trio.fail_after`."""
        ...

    def set_handler(self, protocol: str, handler: Handler) -> None:
        """Serve `protocol` with `handler` (replacing any previous one)."""
        ...

    async def request(self, peer_id: str, protocol: str, data: bytes) -> bytes:
        """Send one request and return the answer; failures raise `P2PError` subclasses."""
        ...

    def peers(self) -> list[PeerInfo]:
        """The peers connected now, sorted by id."""
        ...

    async def connect(self, multiaddr: str) -> str:
        """Connect to the peer at `multiaddr` (with `/p2p/<id>`) and return its id."""
        ...

    def stats(self) -> NetworkStats:
        """Counters since start."""
        ...

    def report(self, peer_id: str, offence: Offence) -> bool:
        """Count one `offence` of `peer_id` (weights, decay and threshold in `Limits`); a peer
        whose penalty reaches `Limits.ban_threshold` is disconnected and banned for
        `Limits.ban_s`. Returns whether the peer is banned now. `InvalidPeerAddress` for an id
        that does not parse or is this node's own."""
        ...

    def banned(self) -> list[Ban]:
        """The bans in force, sorted by peer id."""
        ...


# --- semantics shared by the implementations -----------------------------------------------


async def answer_request(
    handler: Handler, from_peer: str, request: bytes, limit: int, stats: NetworkStats
) -> bytes:
    """Run `handler` on one request and return the response body to send back.

    Any `Exception` of the handler becomes a HANDLER_ERROR answer (logged here), an answer over
    `limit` becomes TOO_LARGE: the serving node never dies of a request. Cancellation propagates.
    """
    stats.requests_served += 1
    try:
        response = await handler(from_peer, request)
    except Exception as exc:
        stats.handler_errors += 1
        log.warning("request handler failed for peer %s: %r", from_peer, exc)
        return encode_handler_error(f"{type(exc).__name__}: {exc}")
    if not isinstance(response, bytes | bytearray | memoryview):
        stats.handler_errors += 1
        log.error("request handler returned %s, not bytes", type(response).__name__)
        return encode_handler_error("handler returned a non-bytes answer")
    if len(response) > limit:
        stats.frames_refused += 1
        log.warning("response of %d bytes exceeds the limit of %d", len(response), limit)
        return encode_too_large(len(response), limit)
    return encode_ok(bytes(response))


def result_of_response(body: bytes, limit: int) -> bytes:
    """The answer carried by a response body, or the typed error it reports."""
    status, payload = decode_response(body)
    if status is Status.OK:
        if len(payload) > limit:
            raise FrameTooLarge(
                f"response of {len(payload)} bytes exceeds the limit of {limit}",
                size=len(payload),
                limit=limit,
            )
        return payload
    if status is Status.RATE_LIMITED:
        raise RateLimited("the peer refused the request: rate limited")
    if status is Status.HANDLER_ERROR:
        raise RemoteHandlerError(payload.decode("utf-8", "replace"))
    if status is Status.TOO_LARGE:
        size, remote_limit = decode_too_large(payload)
        raise FrameTooLarge(
            f"peer refused a frame of {size} bytes (its limit is {remote_limit})",
            size=size,
            limit=remote_limit,
            remote=True,
        )
    raise MalformedFrame(f"unhandled response status {status}")  # pragma: no cover


def gossip_is_valid(validator: TopicValidator, message: GossipMessage) -> bool:
    """`validator`'s verdict on `message`; an exception of the validator is a rejection."""
    try:
        return validator(message.from_peer, message.data) is True
    except Exception as exc:
        log.warning("validator of %s raised on a message of %s: %r", message.topic,
                    message.from_peer, exc)
        return False


def check_gossip_size(data: bytes, limits: Limits) -> None:
    """`FrameTooLarge` if `data` is too large to gossip."""
    if len(data) > limits.max_gossip_bytes:
        raise FrameTooLarge(
            f"gossip message of {len(data)} bytes exceeds the limit of {limits.max_gossip_bytes}",
            size=len(data),
            limit=limits.max_gossip_bytes,
        )


class SubscriptionHub:
    """The subscription channels of one node, and delivery into them without blocking."""

    def __init__(self, limits: Limits, stats: NetworkStats) -> None:
        self._limits = limits
        self._stats = stats
        self._channels: dict[str, list[trio.MemorySendChannel[GossipMessage]]] = {}

    def is_subscribed(self, topic: str) -> bool:
        return bool(self._channels.get(topic))

    def add(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        """A new channel for `topic`."""
        send, receive = trio.open_memory_channel[GossipMessage](self._limits.subscription_buffer)
        self._channels.setdefault(topic, []).append(send)
        return receive

    def deliver(self, message: GossipMessage) -> None:
        """Put `message` into every open channel of its topic; count and log what is dropped."""
        channels = self._channels.get(message.topic, [])
        for send in list(channels):
            try:
                send.send_nowait(message)
                self._stats.gossip_delivered += 1
            except trio.WouldBlock:
                self._stats.gossip_dropped += 1
                log.warning("subscription buffer of topic %s full: message dropped", message.topic)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                channels.remove(send)

    def close(self) -> None:
        """End every channel (receivers see end-of-channel)."""
        for channels in self._channels.values():
            for send in channels:
                send.close()
        self._channels.clear()


