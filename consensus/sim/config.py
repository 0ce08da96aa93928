"""Simulation settings; every distribution is drawn from one seeded ``random.Random``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from consensus.params import Parameters

SIM_POLL_TIMEOUT_MS = 400
"""About 2.5 round trips at the default 80 ms maximum latency, like an adaptive timeout."""

STRATEGIES = ("silent", "opposite", "flipflop", "equivocate", "adaptive")
STAKE_DISTRIBUTIONS = ("equal", "uniform", "zipf")


@dataclass(frozen=True, slots=True)
class Partition:
    """From ``start_ms`` to ``end_ms`` the network is cut in two; ``fraction_pct`` of nodes
    (by index after a seeded shuffle) are on one side. Messages across the cut are lost."""

    start_ms: int
    end_ms: int
    fraction_pct: int = 50


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulated network. Percentages are of total stake, rounded down to whole nodes."""

    n: int = 20
    seed: int = 0
    params: Parameters = field(
        default_factory=lambda: Parameters(poll_timeout=SIM_POLL_TIMEOUT_MS))
    stake: str = "equal"
    byzantine_pct: int = 0
    strategy: str = "adaptive"
    offline_pct: int = 0
    latency_min_ms: int = 20
    latency_max_ms: int = 80
    loss_ppm: int = 0
    partitions: tuple[Partition, ...] = ()
    target_blocks: int = 100
    max_time_ms: int = 600_000
    stall_ms: int = 20_000
    lag_ms: int = 2_000
    slot_window_ms: int = 1_000
    proposer_slots: int = 8
    block_delay_ms: int = 10
    gossip_fanout: int = 2
    chain_id: bytes = b"ogpu-sim"

    def validate(self) -> None:
        """Raise ``ValueError`` for settings the simulator cannot run."""
        self.params.verify()
        if self.n < 1:
            raise ValueError("n must be >= 1")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}")
        if self.stake not in STAKE_DISTRIBUTIONS:
            raise ValueError(f"stake must be one of {STAKE_DISTRIBUTIONS}")
        if not 0 <= self.byzantine_pct + self.offline_pct <= 100:
            raise ValueError("byzantine_pct + offline_pct must be within 0..100")
        if not 0 < self.latency_min_ms <= self.latency_max_ms:
            raise ValueError("need 0 < latency_min_ms <= latency_max_ms")
        if not 0 <= self.loss_ppm < 1_000_000:
            raise ValueError("loss_ppm must be within 0..999999")
        if min(self.target_blocks, self.max_time_ms, self.slot_window_ms, self.stall_ms) < 1:
            raise ValueError("target_blocks, max_time_ms, slot_window_ms, stall_ms must be >= 1")


def draw_stakes(n: int, distribution: str, rng: random.Random) -> list[int]:
    """Integer stakes in base units (1 OGPU = 10**9)."""
    unit = 10**9
    if distribution == "equal":
        return [1_000 * unit] * n
    if distribution == "uniform":
        return [rng.randint(100, 10_000) * unit for _ in range(n)]
    # zipf: the i-th largest holds 1/(i+1) of the largest, in a seeded order.
    stakes = [(100_000 * unit) // (i + 1) for i in range(n)]
    rng.shuffle(stakes)
    return stakes
