"""Aggregate seeded runs into the numbers the issue asks for, as a table and as JSON."""

from __future__ import annotations

import hashlib
from typing import Any

from consensus.sim.runner import RunResult


def percentile(values: list[int], pct: int) -> int:
    """Nearest-rank percentile of integers (0 for an empty list)."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(1, -(-pct * len(ordered) // 100))
    return ordered[rank - 1]


def summarize(results: list[RunResult]) -> dict[str, Any]:
    """One row: pooled over the seeds of one configuration."""
    first = results[0].config
    finality = [v for r in results for v in r.finality_ms]
    rounds = [v for r in results for v in r.rounds]
    decided = sum(min(r.finalized_median, r.config.target_blocks) for r in results)
    messages = sum(r.messages for r in results)
    combined = hashlib.sha256("".join(r.trace_hash for r in results).encode()).hexdigest()
    return {
        "n": first.n,
        "strategy": first.strategy,
        "byzantine_pct_target": first.byzantine_pct,
        "offline_pct_target": first.offline_pct,
        "byzantine_pct": round(max(r.byzantine_stake_pct for r in results), 1),
        "offline_pct": round(max(r.offline_stake_pct for r in results), 1),
        "seeds": len(results),
        "first_seed": first.seed,
        "target_blocks": first.target_blocks,
        "decisions": decided,
        "runs_reaching_target": sum(r.reached_target for r in results),
        "stalls": sum(r.stalled for r in results),
        "runs_with_laggards": sum(r.lagging_nodes > 0 and not r.stalled for r in results),
        "lagging_nodes": sum(r.lagging_nodes for r in results),
        "conflicting_finalizations": sum(r.conflicting_finalizations for r in results),
        "runs_with_conflict": sum(r.conflicting_finalizations > 0 for r in results),
        "finality_ms_p50": percentile(finality, 50),
        "finality_ms_p99": percentile(finality, 99),
        "rounds_p50": percentile(rounds, 50),
        "rounds_p99": percentile(rounds, 99),
        "messages_per_decision": messages // decided if decided else None,
        "votes": sum(r.votes for r in results),
        "evidence": sum(r.evidence for r in results),
        "longest_gap_ms": max(r.longest_gap_ms for r in results),
        "trace_hash": combined,
    }


COLUMNS = (
    ("n", "n"), ("strategy", "byz strategy"), ("byzantine_pct", "byz%"),
    ("offline_pct", "off%"), ("seeds", "seeds"), ("decisions", "decided"),
    ("stalls", "stalls"), ("runs_with_laggards", "lagging runs"),
    ("conflicting_finalizations", "conflicts"),
    ("finality_ms_p50", "final p50 ms"), ("finality_ms_p99", "final p99 ms"),
    ("rounds_p50", "rounds p50"), ("rounds_p99", "rounds p99"),
    ("messages_per_decision", "msgs/decision"), ("evidence", "evidence"),
)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``rows``."""
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(str(row[key]) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)
