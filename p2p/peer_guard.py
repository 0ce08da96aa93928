"""Per-peer request rate limits, shared by both networks.

Each (peer, protocol) has a token bucket (`Limits.request_rate`, or the protocol's entry in
`Limits.request_rates`): a request that finds it empty is refused at once, before any handler
runs (the asker gets `RateLimited`).

Time is trio's clock (`trio.current_time()`), so a `MockClock` drives refills.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from p2p.network import Limits, NetworkStats

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RequestRate:
    """A token bucket: `burst` requests at once, refilled at `per_s` requests a second."""

    per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_s) and self.per_s > 0):
            raise ValueError("a request rate must be a positive finite number per second")
        if self.burst < 1:
            raise ValueError("a request burst must be at least 1")


class PeerGuard:
    """The request buckets of one node's peers (see the module docstring). The table is bounded
    by `Limits.max_tracked_peers`: buckets that are full again are forgotten."""

    def __init__(self, limits: Limits, stats: NetworkStats) -> None:
        self._limits = limits
        self._stats = stats
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        """(peer, protocol) -> (tokens, time of that count)."""

    # --- rate limits ----------------------------------------------------------------------

    def admit_request(self, peer_id: str, protocol: str) -> bool:
        """Take a token of (`peer_id`, `protocol`); False (counted) when the bucket is empty."""
        rate = self._limits.request_rate_for(protocol)
        now = trio.current_time()
        key = (peer_id, protocol)
        tokens, since = self._buckets.get(key, (float(rate.burst), now))
        tokens = min(float(rate.burst), tokens + (now - since) * rate.per_s)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self._limits.max_tracked_peers:
                self._forget_full_buckets(now)
            return True
        self._buckets[key] = (tokens, now)
        self._stats.requests_rate_limited += 1
        log.debug("request of %s on %s refused: rate limit", peer_id, protocol)
        return False

    def _forget_full_buckets(self, now: float) -> None:
        for (peer, protocol), (tokens, since) in list(self._buckets.items()):
            rate = self._limits.request_rate_for(protocol)
            if tokens + (now - since) * rate.per_s >= rate.burst:
                del self._buckets[(peer, protocol)]


__all__ = ["PeerGuard", "RequestRate"]
