"""Per-peer request rate limits, misbehaviour penalties and timed bans, shared by both networks.

- **Rate limits.** Each (peer, protocol) has a token bucket (`Limits.request_rate`, or the
  protocol's entry in `Limits.request_rates`): a request that finds it empty is refused at once,
  before any handler runs (the asker gets `RateLimited`), and the refusal is an offence.
- **Penalties.** `report(peer, offence)` adds the offence's weight (a named setting of `Limits`)
  to the peer's penalty, which halves every `Limits.penalty_half_life_s`. The network reports
  framing errors and refusals itself; the node reports what only it can judge (invalid blocks,
  transaction batches, messages).
- **Bans.** A penalty reaching `Limits.ban_threshold` bans the peer for `Limits.ban_s`: the
  network disconnects it, refuses its connections, streams and gossip, and does not dial it. A
  ban ends by itself; the penalty starts again from zero.

Time is trio's clock (`trio.current_time()`), so a `MockClock` drives refills, decay and expiry.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from p2p.network import Limits, NetworkStats

log = logging.getLogger(__name__)


class Offence(Enum):
    """What a peer can be reported for; each has a weight in `Limits` (`penalty_for`)."""

    INVALID_BLOCK = "invalid_block"
    """A block that fails validation on its own (not merely unknown parent or stale)."""
    INVALID_TX_BATCH = "invalid_tx_batch"
    """A transaction batch that does not decode, or holds a transaction with a bad signature."""
    INVALID_MESSAGE = "invalid_message"
    """Any other message that is invalid on its own; also a gossip message a topic validator
    rejected (reported by the network against the peer that forwarded it)."""
    INVALID_FRAME = "invalid_frame"
    """An oversize or malformed request/response frame (reported by the network)."""
    RATE_LIMITED = "rate_limited"
    """A request refused by the rate limit (reported by the network)."""


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


@dataclass(frozen=True, slots=True)
class Ban:
    """A peer banned now: seconds until the ban ends, and the offence that tipped it."""

    peer_id: str
    remaining_s: float
    offence: Offence


class PeerGuard:
    """Buckets, penalties and bans of one node's peers (see the module docstring).

    `on_ban(peer)` is called once when a ban starts (the network disconnects the peer there),
    `on_unban(peer)` when it ends. The tables are bounded by `Limits.max_tracked_peers`: idle
    buckets, faded penalties and, last, the bans that end soonest are forgotten first.
    """

    def __init__(
        self,
        limits: Limits,
        stats: NetworkStats,
        *,
        on_ban: Callable[[str], None],
        on_unban: Callable[[str], None] = lambda peer: None,
    ) -> None:
        self._limits = limits
        self._stats = stats
        self._on_ban = on_ban
        self._on_unban = on_unban
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        """(peer, protocol) -> (tokens, time of that count)."""
        self._penalties: dict[str, tuple[float, float]] = {}
        """peer -> (penalty, time of that value)."""
        self._bans: dict[str, tuple[float, Offence]] = {}
        """peer -> (time the ban ends, offence that tipped it)."""
        self._changed = trio.Event()

    # --- rate limits ----------------------------------------------------------------------

    def admit_request(self, peer_id: str, protocol: str) -> bool:
        """Take a token of (`peer_id`, `protocol`); False (counted, and reported as
        `RATE_LIMITED`) when the bucket is empty."""
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
        self.report(peer_id, Offence.RATE_LIMITED)
        return False

    def _forget_full_buckets(self, now: float) -> None:
        for (peer, protocol), (tokens, since) in list(self._buckets.items()):
            rate = self._limits.request_rate_for(protocol)
            if tokens + (now - since) * rate.per_s >= rate.burst:
                del self._buckets[(peer, protocol)]

    # --- penalties and bans ---------------------------------------------------------------

    def penalty(self, peer_id: str) -> float:
        """The peer's penalty now (0 for a peer never reported, or banned)."""
        value, since = self._penalties.get(peer_id, (0.0, 0.0))
        return self._decayed(value, trio.current_time() - since)

    def _decayed(self, value: float, elapsed: float) -> float:
        return value * math.pow(0.5, max(0.0, elapsed) / self._limits.penalty_half_life_s)

    def report(self, peer_id: str, offence: Offence) -> bool:
        """Add `offence`'s weight to the peer's penalty, ban it if that reaches the threshold;
        returns whether the peer is banned now."""
        if self.is_banned(peer_id):
            return True
        self._stats.offences_reported += 1
        now = trio.current_time()
        penalty = self.penalty(peer_id) + self._limits.penalty_for(offence)
        log.info("peer %s: %s (penalty %.1f of %.1f)", peer_id, offence.value, penalty,
                 self._limits.ban_threshold)
        if penalty < self._limits.ban_threshold:
            self._penalties[peer_id] = (penalty, now)
            if len(self._penalties) > self._limits.max_tracked_peers:
                self._forget_faded_penalties(now)
            return False
        self.ban(peer_id, offence)
        return True

    def _forget_faded_penalties(self, now: float) -> None:
        faint = self._limits.ban_threshold / 100
        for peer, (value, since) in list(self._penalties.items()):
            if self._decayed(value, now - since) < faint:
                del self._penalties[peer]

    def ban(self, peer_id: str, offence: Offence) -> None:
        """Ban `peer_id` for `Limits.ban_s` now (counted, logged, `on_ban` called)."""
        now = trio.current_time()
        if len(self._bans) >= self._limits.max_tracked_peers and peer_id not in self._bans:
            soonest = min(self._bans, key=lambda peer: self._bans[peer][0])
            self._lift(soonest)
        self._bans[peer_id] = (now + self._limits.ban_s, offence)
        self._penalties.pop(peer_id, None)
        for key in [key for key in self._buckets if key[0] == peer_id]:
            del self._buckets[key]
        self._stats.peers_banned += 1
        log.warning("peer %s banned for %.0f s (%s)", peer_id, self._limits.ban_s, offence.value)
        self._wake()
        self._on_ban(peer_id)

    def is_banned(self, peer_id: str) -> bool:
        """Whether `peer_id` is banned now (a ban that has ended is lifted here)."""
        entry = self._bans.get(peer_id)
        if entry is None:
            return False
        if entry[0] > trio.current_time():
            return True
        self._lift(peer_id)
        return False

    def banned(self) -> list[Ban]:
        """The bans in force, sorted by peer id."""
        self._lift_ended()
        now = trio.current_time()
        return [Ban(peer, until - now, offence)
                for peer, (until, offence) in sorted(self._bans.items())]

    def _lift(self, peer_id: str) -> None:
        if self._bans.pop(peer_id, None) is not None:
            log.info("ban of peer %s ended", peer_id)
            self._on_unban(peer_id)

    def _lift_ended(self) -> None:
        now = trio.current_time()
        for peer in [peer for peer, (until, _) in self._bans.items() if until <= now]:
            self._lift(peer)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def lift_bans_when_due(self) -> None:
        """Run until cancelled, lifting each ban when it ends (so that `on_unban` runs on
        time even if nobody asks about the peer)."""
        while True:
            self._lift_ended()
            changed = self._changed
            ends = min((until for until, _ in self._bans.values()), default=math.inf)
            with trio.move_on_at(ends):
                await changed.wait()


__all__ = ["Ban", "Offence", "PeerGuard", "RequestRate"]
