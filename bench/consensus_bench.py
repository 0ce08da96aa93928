"""Consensus simulator benchmark: 2,000 validators to 100 finalised blocks on one core.

Runs a small baseline (100 validators, 20 blocks) and the target network in the same process,
prints a table, and writes JSON. The simulator is single-threaded: ``cpu_s`` (process CPU
time) is the time on one core and decides pass/fail; ``wall_s`` is also reported because on a
shared machine it can be larger.

    scripts/bench consensus [--n 2000] [--blocks 100] [--seed 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from bench.report import print_table, write_json
from consensus.sim.config import SimConfig
from consensus.sim.runner import run

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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 when the target run finished within the limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default bench/results/consensus.json)")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    if not args.skip_baseline:
        rows.append(measure("baseline", SimConfig(n=100, seed=args.seed, target_blocks=20)))
    target = measure("target", SimConfig(n=args.n, seed=args.seed, target_blocks=args.blocks))
    rows.append(target)
    ok = target["reached_target"] and target["cpu_s"] < LIMIT_S
    columns = ["case", "validators", "finalised_blocks_min", "cpu_s", "wall_s", "votes",
               "votes_per_s", "messages_per_s", "conflicting_finalizations"]
    print_table("consensus simulator (one core)",
                ["case", "validators", "blocks", "cpu s", "wall s", "votes", "votes/s",
                 "msgs/s", "conflicts"],
                [[r[c] for c in columns] for r in rows])
    print(f"target: {args.n} validators to {args.blocks} finalised blocks in "
          f"{target['cpu_s']:.2f} s of one core ({target['wall_s']:.2f} s wall; limit "
          f"{LIMIT_S:.0f} s): {'PASS' if ok else 'FAIL'}; votes/s are per CPU second")
    write_json("consensus", {"load_average_1m": round(os.getloadavg()[0], 2),
                             "limit_s": LIMIT_S, "pass": ok, "rows": rows}, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
