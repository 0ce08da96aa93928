"""Per-client rate limiting: one token bucket per client, bounded in number.

Time comes in as an argument (the server passes `trio.current_time()`), so tests drive it with
trio's `MockClock` and the arithmetic is checked without waiting.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; each call takes one."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is available."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class ClientRateLimiter:
    """Token buckets by client key, the `max_clients` most recently seen ones kept.

    A forgotten client comes back with a full bucket; with the defaults that takes 10,000 other
    clients in between, which a single host cannot fake on 127.0.0.1.
    """

    def __init__(self, rate_per_s: float, burst: int, max_clients: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def acquire(self, client: str, now: float) -> float:
        """0.0 when `client` may make a call now, else the seconds it should wait."""
        if not self.enabled:
            return 0.0
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = TokenBucket(float(self.burst), self.rate_per_s, float(self.burst), now)
            self._buckets[client] = bucket
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)
