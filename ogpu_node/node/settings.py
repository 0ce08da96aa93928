"""`NodeSettings`: the timings and limits every part of a node reads (consensus parameters,
block interval, request timeouts, gossip pacing, mempool limits, health threshold)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from consensus.params import Parameters
from ogpu_node.node.mempool import MempoolLimits
from ogpu_node.node.settings_checks import refuse_below


@dataclass(frozen=True)
class NodeSettings:
    """Timing and limits of a node. Times in milliseconds unless named otherwise."""

    consensus: Parameters = field(default_factory=lambda: Parameters(poll_timeout=1_000))
    max_block_interval_ms: int = 5_000
    """Propose (possibly empty) blocks at least this often, so that time-based rules advance.
    Market deadlines get a block when due anyway (`State.next_market_deadline`); an empty block
    costs each validator ~120 poll requests, so an idle 4-node devnet used 72% of a core at
    2 s and 30% at 5 s (19-21% since requests read ahead and keep more idle streams)."""
    max_future_drift_ms: int = 3_000
    """A block stamped further ahead of this node's clock is refused."""
    status_interval_s: float = 1.0
    """How often the node asks its peers for their heights (and syncs when behind)."""
    request_timeout_s: float = 2.0
    """How long a request to a peer (block, range, file) waits for its answer."""
    tx_gossip_interval_s: float = 0.01
    """How long submitted transactions are gathered into one gossip batch."""
    mempool: MempoolLimits = field(default_factory=MempoolLimits)
    max_processing_blocks: int = 64
    """Blocks this node holds undecided at once; more proposals are dropped until some are."""
    max_fetches_per_peer: int = 4
    """Block fetches open at once to one peer (a query, an announcement or a vote naming an
    unknown block starts one in the background; more are dropped)."""
    max_fetches: int = 32
    """Block fetches open at once in all (each response can be up to 17 MiB)."""
    fetch_retry_s: float = 5.0
    """A block named by votes is fetched again from a voter at most this often."""
    healthy_finality_s: float = 10.0
    """/health turns 503 when nothing was finalised for this long."""

    def __post_init__(self) -> None:
        # every timing and limit of a node must be positive: 0 would spin, or refuse all
        refuse_below(self, [f.name for f in fields(self) if f.name not in ("consensus",
                                                                           "mempool")])

