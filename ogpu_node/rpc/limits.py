"""Per-client limits, each bounded in the clients it tracks: a token bucket of calls
(`ClientRateLimiter`) and a rolling window of uploaded bytes (`UploadQuota`).

Time comes in as an argument (the server passes `trio.current_time()`), so tests drive it with
trio's `MockClock` and the arithmetic is checked without waiting.
"""

from __future__ import annotations

import math
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


UPLOAD_WINDOW_SLOTS = 16
"""An upload quota's window is counted in this many slots: bytes leave it a slot at a time."""


class UploadQuota:
    """Bytes each client may upload in a rolling window of `window_s` seconds, by client key,
    the `max_clients` most recently seen kept.

    The window is counted in `UPLOAD_WINDOW_SLOTS` slots of `window_s / UPLOAD_WINDOW_SLOTS`
    seconds, so a client's state is at most that many numbers however many calls it makes;
    bytes count for between `window_s` less one slot and `window_s`. A forgotten client comes
    back with nothing counted (see `ClientRateLimiter`).
    """

    def __init__(self, quota_bytes: int, window_s: float, max_clients: int) -> None:
        self.quota_bytes = quota_bytes
        self.window_s = window_s
        self.max_clients = max_clients
        self._slot_s = window_s / UPLOAD_WINDOW_SLOTS
        self._clients: OrderedDict[str, dict[int, int]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.quota_bytes > 0

    def charge(self, client: str, nbytes: int, now: float) -> float:
        """Count `nbytes` against `client`'s quota: 0.0 when they fit, else (nothing counted)
        the seconds until they will (`inf` when they never can: more than the quota)."""
        if not self.enabled:
            return 0.0
        if nbytes > self.quota_bytes:
            return math.inf
        current = math.floor(now / self._slot_s)
        slots = self._clients.get(client)
        if slots is None:
            slots = self._clients[client] = {}
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        for slot in [s for s in slots if s <= current - UPLOAD_WINDOW_SLOTS]:
            del slots[slot]
        excess = sum(slots.values()) + nbytes - self.quota_bytes
        if excess <= 0:
            slots[current] = slots.get(current, 0) + nbytes
            return 0.0
        wait = 0.0
        for slot in sorted(slots):  # the oldest leave the window first
            if excess <= 0:
                break
            excess -= slots[slot]
            wait = (slot + UPLOAD_WINDOW_SLOTS) * self._slot_s - now
        return wait

    def __len__(self) -> int:
        return len(self._clients)
