"""The operator's knobs of the libp2p host: timings and connection counts (config keys `p2p_` +
each field, `ogpu_node/config.py`). Kept apart from `libp2p_host.py` so that reading the
configuration imports no libp2p."""

from __future__ import annotations

from dataclasses import dataclass, fields

from p2p.errors import P2PError


class InvalidConnectionSettings(P2PError):
    """A connection setting out of its bounds; `field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Timings and connection counts of one node's libp2p host."""

    reconnect_initial_s: float = 0.25
    """First wait before a lost bootstrap peer is dialled again (doubling after each failure)."""
    reconnect_max_s: float = 30.0
    """Longest wait between two dials of a lost bootstrap peer."""
    dial_timeout_s: float = 10.0
    """How long one dial (TCP, Noise, yamux) may take."""
    stream_idle_timeout_s: float = 300.0
    """An inbound request stream idle this long is closed by the serving side."""
    pool_idle_s: float = 60.0
    """An idle outbound stream older than this is closed rather than reused."""
    shutdown_timeout_s: float = 5.0
    """How long closing the host may take before it is abandoned."""
    max_connections: int = 128
    """Connections above this are pruned by the library."""
    min_connections: int = 8
    """The library's connection pruner keeps at least this many, and caps inbound ones by it.
    (Its auto-connector is replaced by a no-op: connections come from `connect` and the
    bootstrap keepers only.)"""
    dedup_window: int = 65536
    """Message ids remembered to deliver each gossip message once even if the library (which
    checks and marks its seen-cache across an await) lets a duplicate through."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise InvalidConnectionSettings(f.name, f"{f.name} must be above 0")
        if self.reconnect_initial_s > self.reconnect_max_s:
            raise InvalidConnectionSettings(
                "reconnect_initial_s", "reconnect_initial_s must not exceed reconnect_max_s")
        if self.min_connections > self.max_connections:
            raise InvalidConnectionSettings(
                "min_connections", "min_connections must not exceed max_connections")
