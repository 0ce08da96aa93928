"""The `Network` over py-libp2p: TCP, Noise, yamux, GossipSub and framed request/response streams.

Choices, each passed to the library explicitly rather than trusted to its defaults
(`shared/design.md` §8 lists the measured reasons):

- **Security: Noise only.** The library's default table also accepts plaintext, secio and TLS.
- **Muxer: yamux only.** One connection per peer (`ConnectionConfig(max_connections_per_peer=1)`:
  the default of 3 adds a fixed 250 ms to every dial).
- **Identity: Ed25519**, from the 32-byte seed of the node key file (`ogpu_node.keys`), so the peer
  id is a pure function of the key file (`peer_id_from_seed`).
- **GossipSub** with every setting in `GossipConfig` (see its docstring for why each value).
- **Requests** use one libp2p protocol id per application protocol, length-prefixed frames
  (`p2p.framing`) with a limit per protocol, and keep idle streams for reuse (a reused stream
  answers in well under a millisecond on loopback; a new one costs a multistream negotiation).
- **Bootstrap**: one task per bootstrap address keeps a connection to it, redialling with
  exponential backoff and jitter while it is down.

Lifecycle: `await nursery.start(net.serve)` builds the host, listens, starts pubsub and returns;
cancelling the nursery disconnects every peer, closes the host and stops pubsub's seen-message
cache thread, so nothing outlives `serve`.
"""

from __future__ import annotations

import logging
import math
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import multiaddr as ma  # type: ignore[import-untyped]
import trio
from libp2p import new_host
from libp2p.abc import (
    IHost,
    INetConn,
    INetStream,
    INetwork,
    INotifee,
    IRawConnection,
    ISecureConn,
)
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import THandler, TProtocol
from libp2p.exceptions import BaseLibp2pError, ValidationError
from libp2p.io.abc import ReadWriteCloser
from libp2p.network.config import ConnectionConfig
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.protocol_muxer.exceptions import ProtocolNotSupportedError
from libp2p.protocol_muxer.multiselect_client import MultiselectClient
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import DefaultMaxMessageSize, OutBoundQueueSize
from libp2p.pubsub.score import ScoreParams, TopicScoreParams
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from libp2p.transport.exceptions import SecurityUpgradeFailure
from libp2p.transport.tcp.tcp import TCP, TCPListener

from p2p.connection_settings import ConnectionSettings
from p2p.errors import (
    FrameTooLarge,
    InvalidPeerAddress,
    MalformedFrame,
    NetworkClosed,
    P2PError,
    PeerBanned,
    PeerUnavailable,
    ProtocolNotSupported,
    RequestFailed,
    TruncatedFrame,
)
from p2p.framing import (
    BufferedReads,
    ReadSome,
    encode_frame,
    encode_rate_limited,
    encode_too_large,
    read_frame,
)
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

log = logging.getLogger(__name__)

SEED_BYTES = 32
_TRANSPORT_ERRORS = (BaseLibp2pError, OSError, trio.BrokenResourceError, trio.ClosedResourceError)


# --- identity ------------------------------------------------------------------------------


def key_pair_from_seed(seed: bytes) -> KeyPair:
    """The libp2p Ed25519 key pair of a 32-byte node-key seed (`PrivateKey.secret_bytes()`)."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
    return create_new_key_pair(seed)


def peer_id_from_seed(seed: bytes) -> str:
    """The text peer id a node with this node-key seed will have (no host is started)."""
    return ID.from_pubkey(key_pair_from_seed(seed).public_key).to_base58()


def parse_peer_id(peer_id: str) -> ID:
    """A libp2p peer id from its base58 text; `InvalidPeerAddress` if it does not parse."""
    try:
        return ID.from_base58(peer_id)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidPeerAddress(f"not a peer id: {peer_id!r}") from exc


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Every GossipSub and pubsub setting, chosen so that no message is dropped in normal use.

    - Mesh degree D=6 (low 4, high 12): go-libp2p's values; a devnet of a few nodes meshes fully.
    - Heartbeat 1 s, first after 0.1 s: mesh repair and IHAVE gossip every second.
    - Adaptive gossip **off**: on small meshes it stretches the heartbeat to 30-60 s.
    - Spam protection **off**: it caps each topic at 10 msg/s per peer and drops the rest
      silently. Rates are limited where messages are made (batched transactions, one block per
      slot) and misbehaviour is the node's to punish (invalid transactions, slashing).
    - Eclipse protection **off**: it reasons about peer IP diversity, and every devnet peer
      shares 127.0.0.1 (and py-libp2p 0.8.1 never learns peer IPs, below).
    - Peer scoring **on** for misbehaviour only, so an honest peer's score stays 0:
      - P4 invalid messages: a message a topic validator rejects costs its forwarder
        `invalid_message_weight` (10) per message, up to `invalid_message_cap` (100) messages,
        decaying x`invalid_message_decay` (0.99) per heartbeat (a half-life of 69 s).
      - P5 behaviour: the library's own penalties (IHAVE/IWANT floods +5, GRAFT during
        backoff +10, equivocation +100) count beyond `behaviour_penalty_threshold` (10) at
        `behaviour_penalty_weight` (1), decaying x0.99 per heartbeat.
      - P6 application score: minus our penalty of the peer (`p2p.peer_guard`), weight
        `app_specific_weight` (1): what the node reports costs gossip and mesh places too.
      - P1-P3 **off**: positive credit would let a busy peer buy invalid messages back, the
        library's P1 counts mesh joins rather than time, and nothing feeds its P3.
      - P7 IP colocation **off** (`ip_colocation_weight` 0: the devnet relaxation). In 0.8.1
        it does nothing anyway: the router records a peer's IP before the peer's stream is
        registered and reads `muxed_conn.conn.remote_addr`, which yamux lacks, so no IP is
        ever recorded (checked). Were it fixed, the loopback devnet would penalise every peer
        once more than `ip_colocation_threshold` (10) share 127.0.0.1; nodes with addresses
        of their own (network namespaces) can turn it on.
      - Thresholds: below `gossip_threshold` (-10) no IHAVE gossip to or from the peer, below
        `publish_threshold` (-50) its messages are dropped unvalidated and ours not sent to it,
        below `graylist_threshold` (-80) its GRAFTs are refused and it leaves our mesh. The
        library never disconnects on score; the disconnect is our ban
        (`Limits.ban_threshold`), fed by the same rejections (`Network.report`).
    - Peer exchange off (peers come from the bootstrap list), no direct peers.
    - Seen-message cache 120 s (duplicates inside it are dropped: the exactly-once guarantee);
      message ids are (origin, sequence number); messages are signed and checked (strict).
    - Inbound RPC limit 1 MiB (GossipSub's split limit; `Limits.max_gossip_bytes` keeps payloads
      under it); at most 100 subscriptions per peer and per RPC.
    - Library rate limits on IWANT/IHAVE (10/s per peer), GRAFT-after-PRUNE (10 s) kept at the
      library's values, but set here so they are visible.
    - `publish` waits (polling every 2 ms, at most `publish_wait_s`) while a peer's outbound queue
      (32 RPCs in the library) is above `queue_high_water`, instead of overflowing it.
    """

    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    fanout_ttl_s: int = 60
    gossip_window: int = 3
    gossip_history: int = 5
    heartbeat_initial_delay_s: float = 0.1
    heartbeat_interval_s: int = 1
    direct_connect_initial_delay_s: float = 0.1
    direct_connect_interval_s: int = 300
    do_px: bool = False
    px_peers_count: int = 16
    prune_back_off_s: int = 60
    unsubscribe_back_off_s: int = 10
    max_idontwant_messages: int = 10
    adaptive_gossip_enabled: bool = False
    spam_protection_enabled: bool = False
    max_messages_per_topic_per_second: float = 10.0
    eclipse_protection_enabled: bool = False
    min_mesh_diversity_ips: int = 1
    max_pending_messages_per_peer: int = 100
    pending_messages_ttl_s: float = 30.0
    max_iwant_requests_per_second: float = 10.0
    max_ihave_messages_per_second: float = 10.0
    graft_flood_threshold_s: float = 10.0
    invalid_message_weight: float = 10.0
    invalid_message_cap: float = 100.0
    invalid_message_decay: float = 0.99
    behaviour_penalty_weight: float = 1.0
    behaviour_penalty_threshold: float = 10.0
    behaviour_penalty_decay: float = 0.99
    app_specific_weight: float = 1.0
    ip_colocation_weight: float = 0.0
    ip_colocation_threshold: int = 10
    gossip_threshold: float = -10.0
    publish_threshold: float = -50.0
    graylist_threshold: float = -80.0
    accept_px_threshold: float = 10.0
    seen_ttl_s: int = 120
    seen_sweep_interval_s: int = 60
    strict_signing: bool = True
    max_inbound_rpc_size: int = DefaultMaxMessageSize
    max_subscriptions_per_rpc: int = 100
    max_subscriptions_per_peer: int = 100
    max_concurrent_validators: int = 10
    validation_cache_ttl_s: int = 300
    validation_cache_size: int = 1000
    validation_timeout_s: float = 5.0
    allowed_topics: frozenset[str] | None = None
    queue_high_water: int = OutBoundQueueSize * 3 // 4
    publish_wait_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.degree_low <= self.degree <= self.degree_high:
            raise ValueError("mesh degrees must satisfy 0 < degree_low <= degree <= degree_high")
        for name in ("invalid_message_weight", "invalid_message_cap", "behaviour_penalty_weight",
                     "behaviour_penalty_threshold", "app_specific_weight",
                     "ip_colocation_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0 (penalties are subtracted)")
        for name in ("invalid_message_decay", "behaviour_penalty_decay"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")
        if self.ip_colocation_threshold < 1:
            raise ValueError("ip_colocation_threshold must be at least 1")
        if not (self.graylist_threshold < self.publish_threshold <= self.gossip_threshold <= 0):
            raise ValueError("thresholds must satisfy graylist < publish <= gossip <= 0")
        if self.accept_px_threshold < 0:
            raise ValueError("accept_px_threshold must be >= 0")

    def score_params(self, app_score: Callable[[ID], float] | None = None) -> ScoreParams:
        """The library's score parameters (see the class docstring); `app_score(peer)` is P6."""
        off = TopicScoreParams(weight=0.0, cap=0.0, decay=1.0)
        return ScoreParams(
            p1_time_in_mesh=off,
            p2_first_message_deliveries=off,
            p3_mesh_message_deliveries=off,
            p4_invalid_messages=TopicScoreParams(
                weight=self.invalid_message_weight,
                cap=self.invalid_message_cap,
                decay=self.invalid_message_decay,
            ),
            p5_behavior_penalty_weight=self.behaviour_penalty_weight,
            p5_behavior_penalty_decay=self.behaviour_penalty_decay,
            p5_behavior_penalty_threshold=self.behaviour_penalty_threshold,
            p6_appl_slack_weight=self.app_specific_weight if app_score else 0.0,
            p6_appl_slack_decay=1.0,  # P6 is recomputed at every use: nothing to decay
            p7_ip_colocation_weight=self.ip_colocation_weight,
            p7_ip_colocation_threshold=self.ip_colocation_threshold,
            publish_threshold=self.publish_threshold,
            gossip_threshold=self.gossip_threshold,
            graylist_threshold=self.graylist_threshold,
            accept_px_threshold=self.accept_px_threshold,
            app_specific_score_fn=app_score,
        )


@dataclass(frozen=True, slots=True)
class Libp2pConfig:
    """Where to listen, whom to keep connected to, and the limits and timings of one node."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    """0 picks a free port; `listen_addrs` reports the one bound."""
    bootstrap: tuple[str, ...] = ()
    """Multiaddrs with `/p2p/<id>` to stay connected to (our own address is skipped)."""
    limits: Limits = field(default_factory=Limits)
    gossip: GossipConfig = field(default_factory=GossipConfig)
    connection: ConnectionSettings = field(default_factory=ConnectionSettings)
    """Timings and connection counts (the operator's `p2p_*` settings)."""


# --- the host ------------------------------------------------------------------------------


class _Pubsub(Pubsub):
    """Pubsub whose deliveries go to our subscription hub, not to the library's 32-slot
    channels (which drop silently when full), and which tells us of every message a topic
    validator rejects, cached verdicts included (the library only scores those down)."""

    on_message: Any = None
    on_invalid: Any = None

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        if self.on_message is not None:
            self.on_message(publish_message)

    async def validate_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        try:
            await super().validate_msg(msg_forwarder, msg)
        except ValidationError:
            if self.on_invalid is not None:
                self.on_invalid(msg_forwarder)
            raise


class _TrackedTCP(TCP):
    """TCP that remembers its sockets, so that shutdown closes any the library leaves open.

    Measured: when nodes shut down together, py-libp2p 0.8.1 sometimes drops a connection
    whose peer closed first without closing its socket (a ResourceWarning at collection).
    """

    def __init__(self) -> None:
        super().__init__()
        self.sockets: list[trio.SocketStream] = []

    def _track(self, conn: object) -> None:
        self.sockets = [s for s in self.sockets if s.socket.fileno() != -1]
        for _ in range(3):
            if isinstance(conn, trio.SocketStream):
                self.sockets.append(conn)
                return
            conn = getattr(conn, "stream", None)

    async def dial(self, maddr: ma.Multiaddr) -> IRawConnection:
        conn = await super().dial(maddr)
        self._track(conn)
        return conn

    def create_listener(self, handler_function: THandler) -> TCPListener:
        async def tracked(conn: ReadWriteCloser) -> None:
            self._track(conn)
            await handler_function(conn)

        return super().create_listener(tracked)

    def close_all(self) -> None:
        for stream in self.sockets:
            if stream.socket.fileno() != -1:
                stream.socket.close()
        self.sockets.clear()


class _ConnectionWatch(INotifee):
    """Wakes tasks waiting for a peer's last connection to close."""

    def __init__(self) -> None:
        self._gone: dict[ID, trio.Event] = {}

    async def wait_disconnected(self, network: INetwork, peer: ID) -> None:
        event = self._gone.setdefault(peer, trio.Event())
        if not network.get_connections(peer):
            return
        await event.wait()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if not network.get_connections(peer) and peer in self._gone:
            self._gone.pop(peer).set()

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: ma.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: ma.Multiaddr) -> None:
        pass


@dataclass(slots=True)
class _Running:
    host: IHost
    pubsub: _Pubsub
    gossipsub: GossipSub
    nursery: trio.Nursery
    watch: _ConnectionWatch


class Libp2pNetwork:
    """A libp2p node implementing `p2p.network.Network` (see the module docstring)."""

    def __init__(self, key_pair: KeyPair, config: Libp2pConfig | None = None) -> None:
        self._key_pair = key_pair
        self._config = config or Libp2pConfig()
        self._limits = self._config.limits
        self._id = ID.from_pubkey(key_pair.public_key)
        self._stats = NetworkStats()
        self._subs = SubscriptionHub(self._limits, self._stats)
        self._handlers: dict[str, Handler] = {}
        self._handler_slots = trio.Semaphore(self._limits.max_concurrent_handlers)
        self._idle: dict[tuple[ID, str], list[tuple[float, INetStream]]] = {}
        self._run: _Running | None = None
        self._rng = random.Random()
        self._recent: OrderedDict[bytes, None] = OrderedDict()
        self._guard = PeerGuard(
            self._limits, self._stats, on_ban=self._on_ban, on_unban=self._on_unban
        )
        self._validators: dict[str, TopicValidator] = {}

    @classmethod
    def from_seed(cls, seed: bytes, config: Libp2pConfig | None = None) -> Libp2pNetwork:
        """A node whose identity is the node-key seed (32 bytes)."""
        return cls(key_pair_from_seed(seed), config)

    # --- lifecycle ---

    async def serve(self, *, task_status: TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, start pubsub and the bootstrap keepers, report ready; run until cancelled,
        then shut down cleanly (peers disconnected, host closed, cache thread stopped)."""
        if self._run is not None:
            raise RuntimeError("this network is already serving")
        tcp = _TrackedTCP()
        listen = ma.Multiaddr(f"/ip4/{self._config.listen_host}/tcp/{self._config.listen_port}")
        host = self._make_host(tcp, listen)
        _disable_auto_connector(host)
        _refuse_banned_peers(host, self._guard, self._stats)
        gossipsub = self._make_gossipsub()
        pubsub = self._make_pubsub(host, gossipsub)
        watch = _ConnectionWatch()
        host.get_network().register_notifee(watch)
        for protocol in self._handlers:
            self._register(host, protocol)
        for topic in self._validators:
            self._register_validator(pubsub, topic)
        try:
            async with (
                host.run([listen]),
                background_trio_service(pubsub),
                background_trio_service(gossipsub),
            ):
                await pubsub.wait_until_ready()
                try:
                    async with trio.open_nursery() as nursery:
                        self._run = _Running(host, pubsub, gossipsub, nursery, watch)
                        for ban in self._guard.banned():  # bans from an earlier run
                            pubsub.blacklisted_peers.add(parse_peer_id(ban.peer_id))
                        nursery.start_soon(self._guard.lift_bans_when_due)
                        for addr in self._config.bootstrap:
                            nursery.start_soon(self._keep_connected, addr)
                        task_status.started()
                        await trio.sleep_forever()
                finally:
                    self._run = None
                    with trio.CancelScope(shield=True) as cleanup:
                        cleanup.deadline = (trio.current_time()
                                            + self._config.connection.shutdown_timeout_s)
                        await self._close_host(host)
        finally:
            tcp.close_all()
            pubsub.seen_messages.stop()
            self._subs.close()
            self._idle.clear()

    async def _close_host(self, host: IHost) -> None:
        for streams in self._idle.values():
            for _, stream in streams:
                await _reset_quietly(stream)
        for peer in list(host.get_connected_peers()):
            try:
                await host.disconnect(peer)
            except _TRANSPORT_ERRORS as exc:
                log.debug("disconnecting %s at shutdown: %r", peer, exc)
        await host.close()

    def _require_running(self) -> _Running:
        if self._run is None:
            raise NetworkClosed("the libp2p network is not running")
        return self._run

    def _make_host(self, tcp: TCP, listen: ma.Multiaddr) -> IHost:
        c = self._config.connection
        noise_key = create_new_x25519_key_pair().private_key
        return new_host(
            key_pair=self._key_pair,
            sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(self._key_pair, noise_privkey=noise_key)},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            listen_addrs=[listen],
            connection_config=ConnectionConfig(
                max_connections_per_peer=1,
                max_connections=c.max_connections,
                high_watermark=c.max_connections,
                low_watermark=c.min_connections,
                min_connections=c.min_connections,
                dial_timeout=c.dial_timeout_s,
            ),
            enable_mDNS=False,
            enable_upnp=False,
            transports=[tcp],
            enable_quic=False,
            enable_tcp=True,
            bootstrap=None,
        )

    def _make_gossipsub(self) -> GossipSub:
        g = self._config.gossip
        router = GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
            degree=g.degree,
            degree_low=g.degree_low,
            degree_high=g.degree_high,
            direct_peers=None,
            time_to_live=g.fanout_ttl_s,
            gossip_window=g.gossip_window,
            gossip_history=g.gossip_history,
            heartbeat_initial_delay=g.heartbeat_initial_delay_s,
            heartbeat_interval=g.heartbeat_interval_s,
            direct_connect_initial_delay=g.direct_connect_initial_delay_s,
            direct_connect_interval=g.direct_connect_interval_s,
            do_px=g.do_px,
            px_peers_count=g.px_peers_count,
            prune_back_off=g.prune_back_off_s,
            unsubscribe_back_off=g.unsubscribe_back_off_s,
            score_params=g.score_params(self._app_score),
            max_idontwant_messages=g.max_idontwant_messages,
            adaptive_gossip_enabled=g.adaptive_gossip_enabled,
            spam_protection_enabled=g.spam_protection_enabled,
            max_messages_per_topic_per_second=g.max_messages_per_topic_per_second,
            eclipse_protection_enabled=g.eclipse_protection_enabled,
            min_mesh_diversity_ips=g.min_mesh_diversity_ips,
            my_extensions=None,
            max_pending_messages_per_peer=g.max_pending_messages_per_peer,
            pending_messages_ttl=g.pending_messages_ttl_s,
        )
        router.max_iwant_requests_per_second = g.max_iwant_requests_per_second
        router.max_ihave_messages_per_second = g.max_ihave_messages_per_second
        router.graft_flood_threshold = g.graft_flood_threshold_s
        return router

    def _make_pubsub(self, host: IHost, router: GossipSub) -> _Pubsub:
        g = self._config.gossip
        pubsub = _Pubsub(
            host,
            router,
            seen_ttl=g.seen_ttl_s,
            sweep_interval=g.seen_sweep_interval_s,
            strict_signing=g.strict_signing,
            max_concurrent_validator_count=g.max_concurrent_validators,
            validation_cache_ttl=g.validation_cache_ttl_s,
            validation_cache_size=g.validation_cache_size,
            validation_timeout=g.validation_timeout_s,
            max_subscriptions_per_rpc=g.max_subscriptions_per_rpc,
            max_subscriptions_per_peer=g.max_subscriptions_per_peer,
            max_inbound_rpc_size=g.max_inbound_rpc_size,
            allowed_topics=g.allowed_topics,
        )
        pubsub.on_message = self._on_gossip
        pubsub.on_invalid = self._on_invalid_gossip
        return pubsub

    def _app_score(self, peer: ID) -> float:
        """GossipSub's application score (P6) of `peer`: minus its penalty here, so peers
        reported for anything lose gossip and mesh places before they are banned."""
        return -self._guard.penalty(peer.to_base58())

    # --- identity and peers ---

    @property
    def peer_id(self) -> str:
        return self._id.to_base58()

    @property
    def listen_addrs(self) -> list[str]:
        if self._run is None:
            return []
        return [str(addr) for addr in self._run.host.get_addrs()]

    def peers(self) -> list[PeerInfo]:
        if self._run is None:
            return []
        host = self._run.host
        result = []
        for peer in host.get_connected_peers():
            if self._guard.is_banned(peer.to_base58()):
                continue  # being disconnected
            try:
                addrs = tuple(str(a) for a in host.get_peerstore().addrs(peer))
            except (BaseLibp2pError, KeyError):  # PeerStoreError is a KeyError: peer just left
                addrs = ()
            result.append(PeerInfo(peer.to_base58(), addrs))
        return sorted(result, key=lambda p: p.peer_id)

    def stats(self) -> NetworkStats:
        return self._stats

    # --- hostile peers ---

    def report(self, peer_id: str, offence: Offence) -> bool:
        if parse_peer_id(peer_id) == self._id:
            raise InvalidPeerAddress("a node cannot report itself")
        return self._guard.report(peer_id, offence)

    def banned(self) -> list[Ban]:
        return self._guard.banned()

    def _on_ban(self, peer_id: str) -> None:
        """Drop a banned peer: its gossip at once (pubsub's blacklist), its connection soon."""
        run = self._run
        if run is None:
            return
        peer = parse_peer_id(peer_id)
        # Not `add_to_blacklist`: its teardown task races our disconnect and, when the peer is
        # gone first, dies of a KeyError that stops pubsub (py-libp2p 0.8.1). The set alone
        # drops the peer's messages; the disconnect removes it from pubsub.
        run.pubsub.blacklisted_peers.add(peer)
        run.nursery.start_soon(self._disconnect, run, peer)

    def _on_unban(self, peer_id: str) -> None:
        if self._run is not None:
            self._run.pubsub.remove_from_blacklist(parse_peer_id(peer_id))

    async def _disconnect(self, run: _Running, peer: ID) -> None:
        for key in [key for key in self._idle if key[0] == peer]:
            for _, stream in self._idle.pop(key):
                await _reset_quietly(stream)
        try:
            await run.host.disconnect(peer)
        except _TRANSPORT_ERRORS as exc:
            log.debug("disconnecting banned peer %s: %r", peer, exc)

    async def connect(self, multiaddr: str) -> str:
        run = self._require_running()
        try:
            info = info_from_p2p_addr(ma.Multiaddr(multiaddr))
        except (ValueError, TypeError, BaseLibp2pError) as exc:
            raise InvalidPeerAddress(f"not a multiaddr with /p2p/<id>: {multiaddr!r}") from exc
        if info.peer_id == self._id:
            raise InvalidPeerAddress("a node cannot connect to itself")
        if self._guard.is_banned(info.peer_id.to_base58()):
            raise PeerBanned(f"peer {info.peer_id} is banned")
        network = run.host.get_network()
        if isinstance(network, Swarm):
            # The swarm refuses for 60 s to dial a peer whose last dial failed (a restart, a
            # ban that has ended); a connect is meant, and the keepers back off themselves.
            network.unblock_peer(info.peer_id)
        try:
            await run.host.connect(info)
        except _TRANSPORT_ERRORS as exc:
            raise PeerUnavailable(f"cannot connect to {multiaddr}: {exc}") from exc
        return info.peer_id.to_base58()

    async def _keep_connected(self, multiaddr: str) -> None:
        """Stay connected to one bootstrap peer: redial with backoff whenever it is gone."""
        run = self._require_running()
        try:
            peer = info_from_p2p_addr(ma.Multiaddr(multiaddr)).peer_id
        except (ValueError, TypeError, BaseLibp2pError):
            log.error("bootstrap address %r has no valid /p2p/<id>; ignored", multiaddr)
            return
        if peer == self._id:
            return
        delay = self._config.connection.reconnect_initial_s
        while True:
            if run.host.get_network().get_connections(peer):
                delay = self._config.connection.reconnect_initial_s
                await run.watch.wait_disconnected(run.host.get_network(), peer)
                continue
            try:
                with trio.fail_after(self._config.connection.dial_timeout_s):
                    await self.connect(multiaddr)
                log.info("connected to bootstrap peer %s", peer)
                continue
            except (P2PError, trio.TooSlowError) as exc:
                log.debug("bootstrap peer %s unreachable (%r); retry in %.2fs", peer, exc, delay)
            await trio.sleep(delay * self._rng.uniform(0.5, 1.0))
            delay = min(delay * 2, self._config.connection.reconnect_max_s)

    # --- gossip ---

    def _on_gossip(self, message: rpc_pb2.Message) -> None:
        origin = ID(message.from_id)
        if origin == self._id:
            return
        message_id = bytes(message.from_id) + bytes(message.seqno)
        if message_id in self._recent:
            return
        self._recent[message_id] = None
        if len(self._recent) > self._config.connection.dedup_window:
            self._recent.popitem(last=False)
        for topic in message.topicIDs:
            self._subs.deliver(GossipMessage(origin.to_base58(), topic, bytes(message.data)))

    def set_topic_validator(self, topic: str, validator: TopicValidator | None) -> None:
        if validator is None:
            self._validators.pop(topic, None)
        else:
            self._validators[topic] = validator
        if self._run is not None:
            self._register_validator(self._run.pubsub, topic)

    def _register_validator(self, pubsub: Pubsub, topic: str) -> None:
        validator = self._validators.get(topic)
        if validator is None:
            pubsub.remove_topic_validator(topic)
            return

        def check(forwarder: ID, message: rpc_pb2.Message) -> bool:
            origin = ID(message.from_id)
            if origin == self._id:
                return True  # our own publish: not judged, as no node judges its own
            return gossip_is_valid(
                validator, GossipMessage(origin.to_base58(), topic, bytes(message.data))
            )

        pubsub.set_topic_validator(topic, check, False)

    def _on_invalid_gossip(self, forwarder: ID) -> None:
        self._stats.gossip_rejected += 1
        if forwarder != self._id:
            self._guard.report(forwarder.to_base58(), Offence.INVALID_MESSAGE)

    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        run = self._require_running()
        channel = self._subs.add(topic)
        await run.pubsub.subscribe(topic)
        return channel

    async def publish(self, topic: str, data: bytes) -> None:
        run = self._require_running()
        check_gossip_size(data, self._limits)
        await self._wait_for_queue_room(run.pubsub)
        await run.pubsub.publish(topic, bytes(data))
        self._stats.gossip_published += 1

    async def _wait_for_queue_room(self, pubsub: Pubsub) -> None:
        g = self._config.gossip
        deadline = trio.current_time() + g.publish_wait_s
        while any(len(q) >= g.queue_high_water for q in pubsub.peer_queues.values()):
            if trio.current_time() >= deadline:
                log.warning("publishing with a full outbound queue; a slow peer may miss it")
                return
            await trio.sleep(0.002)

    async def wait_for_topic_peers(self, topic: str, peer_ids: Iterable[str]) -> None:
        run = self._require_running()
        for text in peer_ids:
            peer = parse_peer_id(text)
            await run.pubsub.wait_for_peer(peer, timeout=math.inf)
            await run.pubsub.wait_for_subscription(peer, topic, timeout=math.inf)
            if self._subs.is_subscribed(topic):
                await run.gossipsub.wait_for_mesh(peer, topic, timeout=math.inf)

    async def wait_disconnected(self, peer_id: str) -> None:
        run = self._require_running()
        await run.watch.wait_disconnected(run.host.get_network(), parse_peer_id(peer_id))

    # --- requests: serving side ---

    def set_handler(self, protocol: str, handler: Handler) -> None:
        if not protocol.startswith("/"):
            raise ValueError(f"protocol ids start with '/': {protocol!r}")
        self._handlers[protocol] = handler
        if self._run is not None:
            self._register(self._run.host, protocol)

    def _register(self, host: IHost, protocol: str) -> None:
        async def on_stream(stream: INetStream) -> None:
            await self._serve_stream(protocol, stream)

        host.set_stream_handler(TProtocol(protocol), on_stream)

    async def _serve_stream(self, protocol: str, stream: INetStream) -> None:
        """Answer requests on one inbound stream until the peer closes it or it idles out."""
        peer = stream.muxed_conn.peer_id.to_base58()
        if self._guard.is_banned(peer):
            self._stats.banned_refused += 1
            await _reset_quietly(stream)
            return
        limit = self._limits.frame_limit(protocol)
        read_some = BufferedReads(_reader(stream)).read_some
        try:
            while True:
                with trio.move_on_after(self._config.connection.stream_idle_timeout_s):
                    request = await read_frame(read_some, limit)
                    if request is None or self._guard.is_banned(peer):
                        break
                    if not self._guard.admit_request(peer, protocol):
                        await stream.write(encode_frame(encode_rate_limited(), limit + 1))
                        continue
                    async with self._handler_slots:
                        response = await answer_request(
                            self._handlers[protocol], peer, request, limit, self._stats
                        )
                    await stream.write(encode_frame(response, limit + 1))
                    continue
                break  # idle timeout
            await stream.close()
        except FrameTooLarge as exc:
            self._stats.frames_refused += 1
            log.warning("%s frame of %d bytes from %s (limit %d)", protocol, exc.size, peer, limit)
            self._guard.report(peer, Offence.INVALID_FRAME)
            # Answer, then half-close rather than reset: a reset can overtake the answer. The
            # unread body stays bounded by the muxer's receive window until the caller resets.
            try:
                await stream.write(encode_frame(encode_too_large(exc.size, limit), limit + 1))
                await stream.close()
            except _TRANSPORT_ERRORS:
                await _reset_quietly(stream)
        except MalformedFrame as exc:
            self._stats.frames_refused += 1
            log.warning("malformed %s frame from %s: %s", protocol, peer, exc)
            if not isinstance(exc, TruncatedFrame):
                self._guard.report(peer, Offence.INVALID_FRAME)
            await _reset_quietly(stream)
        except _TRANSPORT_ERRORS as exc:
            log.debug("%s stream from %s broke: %r", protocol, peer, exc)
            await _reset_quietly(stream)

    # --- requests: calling side ---

    async def request(self, peer_id: str, protocol: str, data: bytes) -> bytes:
        run = self._require_running()
        peer = parse_peer_id(peer_id)
        limit = self._limits.frame_limit(protocol)
        try:
            frame = encode_frame(bytes(data), limit)
        except FrameTooLarge:
            self._stats.frames_refused += 1
            raise
        if self._guard.is_banned(peer_id):
            raise PeerBanned(f"peer {peer_id} is banned")
        self._stats.requests_sent += 1
        try:
            return await self._request(run, peer, protocol, frame, limit)
        except _BadResponse as exc:
            self._stats.frames_refused += 1
            self._guard.report(peer_id, Offence.INVALID_FRAME)
            raise exc.error from exc.error.__cause__

    async def _request(
        self, run: _Running, peer: ID, protocol: str, frame: bytes, limit: int
    ) -> bytes:
        peer_id = peer.to_base58()
        for attempt in range(2):
            async with self._stream(run, peer, protocol) as (stream, reused, keep):
                try:
                    body = await self._exchange(stream, frame, limit)
                except TruncatedFrame as exc:
                    raise RequestFailed(f"request to {peer_id} failed: {exc}") from exc
                except (FrameTooLarge, MalformedFrame) as exc:
                    raise _BadResponse(exc) from exc
                except _StaleStream as exc:
                    if reused and attempt == 0:
                        continue  # an idle stream the peer had closed: retry on a fresh one
                    raise RequestFailed(f"request to {peer_id} failed: {exc}") from exc.__cause__
                try:
                    result = result_of_response(body, limit)
                except FrameTooLarge as exc:
                    if not exc.remote:  # an answer over our limit: the peer's fault
                        raise _BadResponse(exc) from exc
                    raise  # the peer resets the stream after TOO_LARGE: do not keep it
                except MalformedFrame as exc:
                    raise _BadResponse(exc) from exc
                except P2PError:
                    keep.append(True)
                    raise
                keep.append(True)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(self, stream: INetStream, frame: bytes, limit: int) -> bytes:
        """Write one request frame and read the response body."""
        read_some = _reader(stream)
        got = [0]

        async def counting(n: int) -> bytes:
            chunk = await read_some(n)
            got[0] += len(chunk)
            return chunk

        reads = BufferedReads(counting)
        try:
            await stream.write(frame)
            body = await read_frame(reads.read_some, limit + 1)
        except _TRANSPORT_ERRORS as exc:
            if got[0] == 0:
                raise _StaleStream(repr(exc)) from exc
            raise RequestFailed(f"stream broke mid-response: {exc!r}") from exc
        if body is None:
            raise _StaleStream("stream closed by the peer")
        if reads.pending:
            raise _BadResponse(RequestFailed(f"{reads.pending} bytes arrived after the response"))
        return body

    @asynccontextmanager
    async def _stream(
        self, run: _Running, peer: ID, protocol: str
    ) -> AsyncIterator[tuple[INetStream, bool, list[bool]]]:
        """A request stream to `peer`: an idle pooled one if any, else a new one. On exit it
        goes back to the pool if the body appended to `keep`, else it is reset."""
        key = (peer, protocol)
        stream, reused = await self._checkout(key), True
        if stream is None:
            stream, reused = await self._open_stream(run, peer, protocol), False
        keep: list[bool] = []
        try:
            yield stream, reused, keep
        finally:
            if keep and self._run is run:
                await self._checkin(key, stream)
            else:
                with trio.CancelScope(shield=True):
                    await _reset_quietly(stream)

    async def _checkout(self, key: tuple[ID, str]) -> INetStream | None:
        """The most recently used idle stream of `key` that is fresh enough, if any."""
        idle = self._idle.get(key)
        cutoff = trio.current_time() - self._config.connection.pool_idle_s
        while idle:
            since, stream = idle.pop()
            if since >= cutoff and not getattr(stream, "is_closed", True):
                return stream
            # Too old: the serving side may be closing it right now; do not race it.
            await _reset_quietly(stream)
        return None

    async def _checkin(self, key: tuple[ID, str], stream: INetStream) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < self._limits.max_idle_streams:
            idle.append((trio.current_time(), stream))
        else:
            await _reset_quietly(stream)

    async def _open_stream(self, run: _Running, peer: ID, protocol: str) -> INetStream:
        try:
            stream = await run.host.get_network().new_stream(peer)
        except _TRANSPORT_ERRORS as exc:
            raise PeerUnavailable(f"cannot open a stream to {peer.to_base58()}: {exc}") from exc
        self._stats.streams_opened += 1
        ok = False
        try:
            communicator = MultiselectCommunicator(stream)
            client = MultiselectClient()
            await client.handshake(communicator)
            await client.try_select(communicator, TProtocol(protocol))
            stream.set_protocol(TProtocol(protocol))
            ok = True
            return stream
        except ProtocolNotSupportedError as exc:
            raise ProtocolNotSupported(
                f"peer {peer.to_base58()} does not serve {protocol}"
            ) from exc
        except _TRANSPORT_ERRORS as exc:
            raise RequestFailed(f"negotiating {protocol} with {peer.to_base58()}: {exc}") from exc
        finally:
            if not ok:
                with trio.CancelScope(shield=True):
                    await _reset_quietly(stream)


def _disable_auto_connector(host: IHost) -> None:
    """Switch off the swarm's auto-connector, which no setting can disable.

    It redials every peer in the peerstore while fewer than its watermark are connected,
    including peers that are shutting down, and a dial cancelled mid-upgrade leaks its socket.
    Connections here are this module's business: explicit `connect` and the bootstrap keepers.
    """
    connector = getattr(host.get_network(), "auto_connector", None)
    if connector is not None:

        async def no_auto_dial() -> None:
            return None

        connector.maybe_connect = no_auto_dial


class _BadResponse(Exception):
    """A response that breaks the framing rules: `error` is raised, the peer is reported."""

    def __init__(self, error: P2PError) -> None:
        super().__init__(str(error))
        self.error = error


def _refuse_banned_peers(host: IHost, guard: PeerGuard, stats: NetworkStats) -> None:
    """Refuse connections of banned peers right after the security handshake, the first point
    where the peer id is known: py-libp2p's connection gate filters by IP only, and every
    devnet peer shares 127.0.0.1."""
    swarm = host.get_network()
    if not isinstance(swarm, Swarm):
        raise TypeError(f"expected py-libp2p's Swarm, got {type(swarm).__name__}")
    upgrader = swarm.upgrader
    upgrade = upgrader.upgrade_security

    async def gated(
        raw_conn: IRawConnection, is_initiator: bool, peer_id: ID | None = None
    ) -> ISecureConn:
        secured: ISecureConn = await upgrade(raw_conn, is_initiator, peer_id)
        remote = secured.get_remote_peer()
        if guard.is_banned(remote.to_base58()):
            stats.banned_refused += 1
            await secured.close()
            raise SecurityUpgradeFailure(f"peer {remote} is banned")
        return secured

    upgrader.upgrade_security = gated  # type: ignore[method-assign]


class _StaleStream(Exception):
    """A stream that failed before any byte of the response: safe to retry on a fresh one."""


def _reader(stream: INetStream) -> ReadSome:
    async def read_some(n: int) -> bytes:
        try:
            return bytes(await stream.read(n))
        except EOFError:
            return b""

    return read_some


async def _reset_quietly(stream: INetStream) -> None:
    try:
        await stream.reset()
    except _TRANSPORT_ERRORS as exc:
        log.debug("stream reset failed: %r", exc)


__all__ = [
    "GossipConfig",
    "Libp2pConfig",
    "Libp2pNetwork",
    "key_pair_from_seed",
    "parse_peer_id",
    "peer_id_from_seed",
]
