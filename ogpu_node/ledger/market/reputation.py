"""A provider's reputation and anomaly flags, computed from its on-chain record.

    reputation_bps = BPS x (completed + 1) / (completed + 1 + 3 x failed)

A new provider starts at BPS (full trust, as in a fresh market nobody has a history); each
failure (rejected result or missed deadline) weighs three successes. Flags mark what an operator
or client should look at; they are views, not penalties:

* `slow`: accepted work was delivered at under a quarter of the declared benchmark;
* `failing`: three or more failures in a row;
* `bid_spam`: at least 10 sealed bids, more than half never revealed.
"""

from __future__ import annotations

from ogpu_node.ledger.market.records import Provider
from ogpu_node.ledger.params import BPS

FAIL_WEIGHT = 3
SLOW_FRACTION = 4
FAIL_STREAK_FLAG = 3
BID_SPAM_MIN_BIDS = 10


def reputation_bps(provider: Provider) -> int:
    """Reputation in basis points, 1..BPS."""
    good = provider.completed + 1
    return max(1, BPS * good // (good + FAIL_WEIGHT * provider.failed))


def delivered_gflops(provider: Provider) -> int | None:
    """Work units (GFLOP) per second of block time over accepted results, if any."""
    if not provider.completed or not provider.compute_ms:
        return None
    return provider.work_done * 1000 // provider.compute_ms


def anomaly_flags(provider: Provider) -> list[str]:
    """The anomaly flags that hold for `provider`, in a fixed order."""
    flags = []
    delivered = delivered_gflops(provider)
    if delivered is not None and delivered * SLOW_FRACTION < provider.benchmark:
        flags.append("slow")
    if provider.fail_streak >= FAIL_STREAK_FLAG:
        flags.append("failing")
    if provider.bids >= BID_SPAM_MIN_BIDS and provider.unrevealed * 2 > provider.bids:
        flags.append("bid_spam")
    return flags
