"""The sealed-bid reverse auction: commitments, scoring and the second-price award.

A provider first commits `bid_commitment(...)` (nobody can see its price), then reveals price and
salt. Every revealed bid is scored as its price per work unit divided by the bidder's quality:

    quality_bps = reputation_bps x speed_bps / BPS
    speed_bps   = BPS x 2b / (b + b_max)        b: bidder's benchmark, b_max: fastest bidder's
    score       = price x BPS^2 / (reputation_bps x speed_bps)       (lower is better)

so a faster, more reliable provider may ask a higher price and still win. The winner is paid the
**second price**: the highest price at which its own score would still have beaten the second-best
score (the client's maximum when it was the only bidder), never less than it asked and never more
than the client's maximum. A bidder cannot lower what it is paid by misstating its price, which
makes bidding its true cost the best strategy. All arithmetic is in integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ogpu_node.encoding import pack
from ogpu_node.hashing import digest
from ogpu_node.ledger.market.records import Provider
from ogpu_node.ledger.market.reputation import reputation_bps
from ogpu_node.ledger.params import BPS
from ogpu_node.types import Address, Hash32


def bid_commitment(task_id: bytes, attempt: int, bidder: Address, price: int,
                   salt: bytes) -> Hash32:
    """What a sealed bid commits to; binding the attempt and bidder stops replays and copies."""
    return digest(b"bid", pack([task_id, attempt, bidder, price, salt]))


@dataclass(frozen=True, slots=True)
class ScoredBid:
    bidder: Address
    price: int
    quality_bps: int
    score: int


def score_bids(bids: Sequence[tuple[Address, int, Provider]]) -> list[ScoredBid]:
    """Score (bidder, price, provider record) triples; best first, ties to the lower address."""
    if not bids:
        return []
    fastest = max(1, *(p.benchmark for _, _, p in bids))
    scored = []
    for bidder, price, provider in bids:
        bench = provider.benchmark
        speed = BPS * 2 * bench // (bench + fastest) if bench else 1
        quality = max(1, reputation_bps(provider) * max(1, speed) // BPS)
        scored.append(ScoredBid(bidder, price, quality, price * BPS * BPS // quality))
    return sorted(scored, key=lambda s: (s.score, s.bidder))


def second_price(winner: ScoredBid, runner_up: ScoredBid | None, max_price: int) -> int:
    """Price per work unit paid to `winner` (see the module docstring)."""
    if runner_up is None:
        return max_price
    # the highest price p with p * BPS^2 // quality <= runner_up.score
    highest = ((runner_up.score + 1) * winner.quality_bps - 1) // (BPS * BPS)
    return min(max_price, max(winner.price, highest))
