"""Settings of the RPC server: where it listens and every limit it enforces.

Each limit is a named field (principle 4: limits on everything); `RpcConfig` refuses a set of
values that cannot work, naming each problem.
"""

from __future__ import annotations

from dataclasses import dataclass

from ogpu_node.blobs import MAX_CHUNK_BYTES
from ogpu_node.errors import OgpuError

MIB = 1024 * 1024
GIB = 1024 * MIB


class RpcConfigError(OgpuError):
    """RPC settings that cannot work; the message lists every problem."""


@dataclass(frozen=True)
class RpcConfig:
    """RPC server settings. Durations are seconds, sizes bytes."""

    listen: str = "127.0.0.1:8545"
    """`host:port` (`[v6]:port` for IPv6); port 0 picks a free port, reported by `serve_rpc`."""
    max_body_bytes: int = 12 * MIB
    """Largest HTTP request body; a larger one gets 413 without being read to its end. The
    default fits one `blob_put` of `max_upload_bytes` (base64 adds a third)."""
    max_batch: int = 100
    """Most calls in one batch; a larger batch gets one -32600 error."""
    max_connections: int = 256
    """Most HTTP requests in progress plus open WebSockets at once (503 / -32004 beyond)."""
    ws_max_message_bytes: int = MIB
    """Largest WebSocket message accepted (the connection is closed with 1009 beyond)."""
    ws_max_subscriptions: int = 32
    """Most live subscriptions of one WebSocket connection."""
    ws_max_pending: int = 32
    """Most requests of one WebSocket connection being answered at once."""
    ws_send_queue: int = 256
    """Outgoing messages buffered per connection; a client that lets it fill is disconnected."""
    rate_limit_per_s: float = 100.0
    """Calls per second each client (IP address) may make on average; 0 turns limiting off."""
    rate_limit_burst: int = 200
    """Calls a client may make at once after being idle (the token bucket's size)."""
    rate_limit_clients: int = 10_000
    """Clients tracked by the rate limiter and by the upload quota; the least recently seen are
    forgotten beyond."""
    send_and_wait_default_s: float = 30.0
    """How long `tx_sendAndWait` waits when the call names no timeout."""
    send_and_wait_max_s: float = 120.0
    """The longest timeout a `tx_sendAndWait` call may name."""
    max_block_range: int = 100
    """Most blocks one `chain_getBlockRange` call returns."""
    max_upload_bytes: int = 8 * MIB
    """Largest file one `blob_put` stores (decoded bytes)."""
    uploads: bool = True
    """Whether `blob_put`, `blob_putChunk` and `blob_putManifest` are served; off, each answers
    -32011 (a node whose RPC is public but whose store should hold only what the chain needs)."""
    upload_quota_bytes: int = 5 * GIB
    """Bytes each client (IP address) may upload in any `upload_window_s` (-32012 beyond); 0
    turns the quota off. The default fits the largest file (4 GiB) and its manifest."""
    upload_window_s: float = 3_600.0
    """The upload quota's rolling window."""
    max_task_list: int = 200
    """Most tasks one `task_list` call returns."""
    keep_alive_s: float = 5.0
    """How long an idle HTTP keep-alive connection stays open."""

    def __post_init__(self) -> None:
        problems = self.check()
        if problems:
            raise RpcConfigError("invalid RPC settings: " + "; ".join(problems))

    def check(self) -> list[str]:
        """Every violated invariant, as readable reasons (empty when the settings are valid)."""
        problems = []
        try:
            split_listen(self.listen)
        except RpcConfigError as exc:
            problems.append(str(exc))
        for name in ("max_body_bytes", "max_batch", "max_connections", "ws_max_message_bytes",
                     "ws_max_subscriptions", "ws_max_pending", "ws_send_queue",
                     "rate_limit_burst", "rate_limit_clients", "max_block_range",
                     "max_upload_bytes", "max_task_list"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.rate_limit_per_s < 0:
            problems.append("rate_limit_per_s must be 0 (off) or positive")
        if not 0 < self.send_and_wait_default_s <= self.send_and_wait_max_s:
            problems.append("send_and_wait_default_s must be within 0..send_and_wait_max_s")
        if self.keep_alive_s <= 0:
            problems.append("keep_alive_s must be positive")
        smallest = max(self.max_upload_bytes, MAX_CHUNK_BYTES)  # one call of each upload fits
        if self.upload_quota_bytes < 0 or 0 < self.upload_quota_bytes < smallest:
            problems.append("upload_quota_bytes must be 0 (off) or at least max_upload_bytes "
                            "and one chunk")
        if self.upload_window_s <= 0:
            problems.append("upload_window_s must be positive")
        return problems


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` as (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise RpcConfigError(f"listen must be host:port with a port in 0..65535, got {listen!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)
