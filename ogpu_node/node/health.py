"""Why a node is unhealthy: one function from what the node sees to a list of coded reasons.

`health_reasons` is the one rule behind `node_health`, `/health` (503 with the reasons as JSON)
and `ogpu-node status`. Each reason has a stable code from `node_api.HEALTH_CODES` (for
monitoring to match on) and a sentence with the numbers (for the operator to read).
`AgentStates` is where the market agents a node runs report whether they run now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gpu.worker_usage import WorkerUsage
from ogpu_node.node_api import HealthReason

if TYPE_CHECKING:
    from gpu.device import Device

BLOB_FULL_FRACTION = 0.95
"""The blob store counts as full from this share of its limit: past it, every new file must
evict another, and one the chain still needs cannot be (uploads and results are refused)."""


class AgentReport(Protocol):
    """An agent that can describe itself for `agent_status` (the provider agent)."""

    def status_report(self) -> dict[str, Any]: ...


class AgentStates:
    """The market agents this node was configured to run and whether each runs now (set by
    `node.run.supervised`: false between a crash and its restart); the provider agent itself,
    once started, for `agent_status`; each agent's workers' usage and the device they run on,
    for `/metrics`."""

    def __init__(self) -> None:
        self.running: dict[str, bool] = {}
        self.provider: AgentReport | None = None
        self.workers: dict[str, WorkerUsage] = {}
        self.device: Device | None = None

    def set_running(self, name: str, running: bool) -> None:
        self.running[name] = running

    def report(self) -> dict[str, Any]:
        """`agent_status`'s answer: which agents run, and the provider agent's own report."""
        return {"running": dict(sorted(self.running.items())),
                "provider": self.provider.status_report() if self.provider else None}


@dataclass(frozen=True)
class HealthInputs:
    """What the node sees, as `health_reasons` needs it."""

    syncing: bool
    height: int
    target: int | None
    """The height validators with a quorum of stake have finalised (`Sync.target`), if known."""
    peers: int
    idle_s: float
    """Seconds since the last block was finalised."""
    healthy_finality_s: float
    seen_stake: int
    total_stake: int
    stake_ok: bool
    """Whether `seen_stake` is enough for consensus to finalise."""
    needed_percent: int
    blob_used: int | None
    """Bytes in the blob store (None: the node has none)."""
    blob_limit: int
    agents: dict[str, bool]


def health_reasons(seen: HealthInputs) -> list[HealthReason]:
    """Every reason the node is unhealthy (empty: healthy), in the order an operator should fix
    them: connectivity first, then what it causes."""
    reasons = []
    if seen.peers == 0 and seen.seen_stake < seen.total_stake:
        reasons.append(HealthReason("no_peers", "no peers: connected to no other node"))
    behind = 0 if seen.target is None else max(0, seen.target - seen.height)
    if seen.syncing or behind > 1:
        reasons.append(HealthReason(
            "syncing", f"not synced: {behind} blocks behind peers" if behind
            else "not synced: catching up with peers"))
    if seen.idle_s > seen.healthy_finality_s:
        reasons.append(HealthReason("not_finalising",
                                    f"no block finalised for {math.floor(seen.idle_s)} s"))
    if not seen.stake_ok:
        percent = seen.seen_stake * 100 // max(1, seen.total_stake)
        reasons.append(HealthReason(
            "stake_unseen", f"sees validators with {percent}% of stake, needs "
                            f"{seen.needed_percent}%"))
    if seen.blob_used is not None and seen.blob_used >= BLOB_FULL_FRACTION * seen.blob_limit:
        reasons.append(HealthReason(
            "blob_store_full", f"blob store full: {seen.blob_used} of {seen.blob_limit} bytes"))
    for name, running in sorted(seen.agents.items()):
        if not running:
            reasons.append(HealthReason("agent_not_running", f"{name} agent not running"))
    return reasons
