"""Prometheus metrics of one node, in a registry of its own.

Each `NodeMetrics` owns a `CollectorRegistry` (never the process-global one), so several nodes can
run in one test process without their series colliding. The node updates the chain, consensus,
peer and mempool metrics; the RPC server updates the `ogpu_rpc_*` ones. Label values come from
fixed sets only (an unknown RPC method is counted as `unknown`), so a client cannot grow the
number of series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields, replace

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ogpu_node.rpc.market_metrics import LocalSources, MarketCollector
from p2p.network import NetworkStats

FINALITY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 120.0)
POLL_OUTCOMES = ("finished", "expired", "failed")
UNKNOWN_METHOD = "unknown"
"""The `method` label of calls whose method name is not one of the server's."""
RPC_OUTCOMES = ("ok", "error", "rate_limited")
P2P_COUNTERS = {
    "gossip_published": ("ogpu_p2p_gossip_published", "Gossip messages this node published."),
    "gossip_delivered": ("ogpu_p2p_gossip_delivered", "Gossip messages delivered to the node."),
    "gossip_dropped": ("ogpu_p2p_gossip_dropped",
                       "Gossip messages dropped because a subscription's buffer was full."),
    "gossip_rejected": ("ogpu_p2p_gossip_rejected",
                        "Gossip messages a topic validator rejected (their forwarders reported)."),
    "requests_sent": ("ogpu_p2p_requests_sent", "Requests this node sent to peers."),
    "requests_served": ("ogpu_p2p_requests_served", "Requests from peers this node answered."),
    "handler_errors": ("ogpu_p2p_handler_errors",
                       "Requests whose handler failed (answered with an error)."),
    "frames_refused": ("ogpu_p2p_frames_refused", "Frames refused as oversize or malformed."),
    "streams_opened": ("ogpu_p2p_streams_opened",
                       "Request streams opened (against requests sent: how well they are reused)."),
    "requests_rate_limited": ("ogpu_p2p_requests_rate_limited",
                              "Requests from peers refused by the per-peer rate limit."),
    "offences_reported": ("ogpu_p2p_offences_reported", "Offences counted against peers."),
    "peers_banned": ("ogpu_p2p_peers_banned", "Peers banned for misbehaviour."),
    "banned_refused": ("ogpu_p2p_banned_refused",
                       "Connections, streams and requests of banned peers refused."),
}
"""`NetworkStats` field -> (counter name without `_total`, help)."""
REJECTIONS = ("body_too_large", "batch_too_large", "too_many_connections", "rate_limited",
              "too_many_subscriptions", "too_many_pending", "slow_consumer", "upload_quota")


class NodeMetrics:
    """The node's metrics and the Prometheus text that exposes them."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, rpc_methods: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._rpc_methods = frozenset(rpc_methods)
        r = self.registry
        self.height = Gauge("ogpu_chain_height", "Height of the last finalised block.",
                            registry=r)
        self.finality_latency = Histogram(
            "ogpu_finality_latency_seconds",
            "Time from a block's proposal to its finalisation.",
            buckets=FINALITY_BUCKETS, registry=r)
        self.polls = Counter("ogpu_consensus_polls", "Consensus polls by outcome.",
                             ["outcome"], registry=r)
        self.outstanding_polls = Gauge("ogpu_consensus_outstanding_polls",
                                       "Consensus polls in progress.", registry=r)
        self.peers = Gauge("ogpu_p2p_peers", "Connected peers.", registry=r)
        self.mempool_size = Gauge("ogpu_mempool_size", "Transactions waiting in the mempool.",
                                  registry=r)
        self.rpc_requests = Counter("ogpu_rpc_requests", "JSON-RPC calls by method and outcome.",
                                    ["method", "outcome"], registry=r)
        self.rpc_latency = Histogram("ogpu_rpc_request_duration_seconds",
                                     "Time to answer one JSON-RPC call, by method.",
                                     ["method"], buckets=RPC_BUCKETS, registry=r)
        self.rpc_connections = Gauge("ogpu_rpc_connections",
                                     "HTTP requests in progress plus open WebSockets.", registry=r)
        self.rpc_subscriptions = Gauge("ogpu_rpc_subscriptions", "Live WebSocket subscriptions.",
                                       registry=r)
        self.rpc_rejections = Counter("ogpu_rpc_rejections",
                                      "Requests refused by a limit, by limit.", ["reason"],
                                      registry=r)
        self.p2p = {field: Counter(name, text, registry=r)
                    for field, (name, text) in P2P_COUNTERS.items()}
        self._p2p_seen = NetworkStats()
        self.contained = Counter("ogpu_node_contained_errors",
                                 "Unexpected exceptions a node service contained, by service.",
                                 ["service"], registry=r)
        self._contained_seen: dict[str, int] = {}
        for outcome in POLL_OUTCOMES:
            self.polls.labels(outcome)
        for reason in REJECTIONS:
            self.rpc_rejections.labels(reason)

    # --- updated by the node --------------------------------------------------------------------

    def set_height(self, height: int) -> None:
        self.height.set(height)

    def observe_finality(self, seconds: float) -> None:
        self.finality_latency.observe(seconds)

    def count_poll(self, outcome: str, count: int = 1) -> None:
        """Count finished consensus polls; `outcome` is one of `POLL_OUTCOMES`."""
        if outcome not in POLL_OUTCOMES:
            raise ValueError(f"poll outcome must be one of {POLL_OUTCOMES}, got {outcome!r}")
        self.polls.labels(outcome).inc(count)

    def set_outstanding_polls(self, count: int) -> None:
        self.outstanding_polls.set(count)

    def set_peers(self, count: int) -> None:
        self.peers.set(count)

    def set_mempool_size(self, count: int) -> None:
        self.mempool_size.set(count)

    def set_network_stats(self, stats: NetworkStats) -> None:
        """Advance the `ogpu_p2p_*_total` counters to the network's running totals."""
        for field in fields(NetworkStats):
            now, seen = getattr(stats, field.name), getattr(self._p2p_seen, field.name)
            if now > seen:
                self.p2p[field.name].inc(now - seen)
        self._p2p_seen = replace(stats)  # a copy: the network keeps counting in its own

    def set_contained_errors(self, counts: Mapping[str, int]) -> None:
        """Advance `ogpu_node_contained_errors_total` to the node's running counts."""
        for service, count in counts.items():
            seen = self._contained_seen.get(service, 0)
            if count > seen:
                self.contained.labels(service).inc(count - seen)
                self._contained_seen[service] = count

    # --- updated by the RPC server --------------------------------------------------------------

    def add_rpc_methods(self, names: Iterable[str]) -> None:
        """Declare the method names that get their own label value."""
        self._rpc_methods = self._rpc_methods | frozenset(names)

    def method_label(self, method: object) -> str:
        """`method` itself when it is a known method name, else `unknown`."""
        if isinstance(method, str) and method in self._rpc_methods:
            return method
        return UNKNOWN_METHOD

    def observe_rpc(self, method: str, outcome: str, seconds: float) -> None:
        """Count one call and its latency; `method` goes through `method_label`."""
        label = self.method_label(method)
        self.rpc_requests.labels(label, outcome if outcome in RPC_OUTCOMES else "error").inc()
        self.rpc_latency.labels(label).observe(seconds)

    def count_rejection(self, reason: str) -> None:
        """Count a request refused by a limit; `reason` is one of `REJECTIONS`."""
        if reason not in REJECTIONS:
            raise ValueError(f"rejection reason must be one of {REJECTIONS}, got {reason!r}")
        self.rpc_rejections.labels(reason).inc()

    def connection_opened(self) -> None:
        self.rpc_connections.inc()

    def connection_closed(self) -> None:
        self.rpc_connections.dec()

    def subscription_opened(self) -> None:
        self.rpc_subscriptions.inc()

    def subscription_closed(self) -> None:
        self.rpc_subscriptions.dec()

    def watch(self, sources: LocalSources) -> None:
        """Add the market, blob store, worker and device metrics, read from `sources` at each
        scrape (`market_metrics.py`)."""
        self.registry.register(MarketCollector(sources))

    # --- exposition -----------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric in this registry."""
        return generate_latest(self.registry)
