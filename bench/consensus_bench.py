"""Consensus simulator benchmark: 2,000 validators to 100 finalised blocks on one core.

Runs a small baseline (100 validators, 20 blocks) and the target network in the same process,
prints a table, and writes JSON. The simulator is single-threaded: ``cpu_s`` (process CPU
time) is the time on one core and decides pass/fail; ``wall_s`` is also reported because on a
shared machine it can be larger.

    python bench/consensus_bench.py [--n 2000] [--blocks 100] [--seed 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from consensus.sim.config import SimConfig
from consensus.sim.runner import run

DEFAULT_OUT = Path("bench/results/consensus.json")
LIMIT_S = 60.0


def measure(name: str, config: SimConfig) -> dict[str, Any]:
    """Run one simulation and time it with a monotonic clock."""
    start, cpu_start = time.perf_counter(), time.process_time()
    result = run(config)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return {
        "case": name,
        "validators": config.n,
        "target_blocks": config.target_blocks,
        "finalised_blocks_min": result.finalized_min,
        "reached_target": result.reached_target,
        "conflicting_finalizations": result.conflicting_finalizations,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "virtual_ms": result.end_time_ms,
        "votes": result.votes,
        "votes_per_s": round(result.votes / cpu),
        "messages": result.messages,
        "messages_per_s": round(result.messages / cpu),
        "polls": result.polls,
        "trace_hash": result.trace_hash,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of the measured rows."""
    header = (f"{'case':<10}{'validators':>11}{'blocks':>8}{'cpu s':>8}{'wall s':>9}"
              f"{'votes':>11}{'votes/s':>10}{'msgs/s':>10}{'conflicts':>10}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['case']:<10}{r['validators']:>11}{r['finalised_blocks_min']:>8}"
            f"{r['cpu_s']:>8.2f}{r['wall_s']:>9.2f}{r['votes']:>11}{r['votes_per_s']:>10}"
            f"{r['messages_per_s']:>10}{r['conflicting_finalizations']:>10}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 when the target run finished within the limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    if not args.skip_baseline:
        rows.append(measure("baseline", SimConfig(n=100, seed=args.seed, target_blocks=20)))
    target = measure("target", SimConfig(n=args.n, seed=args.seed, target_blocks=args.blocks))
    rows.append(target)
    ok = target["reached_target"] and target["cpu_s"] < LIMIT_S
    print(format_table(rows))
    print(f"target: {args.n} validators to {args.blocks} finalised blocks in "
          f"{target['cpu_s']:.2f} s of one core ({target['wall_s']:.2f} s wall; limit "
          f"{LIMIT_S:.0f} s): {'PASS' if ok else 'FAIL'}; votes/s are per CPU second")
    report = {
        "python": sys.version.split()[0],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "machine": platform.machine(),
        "limit_s": LIMIT_S,
        "pass": ok,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
