"""``python -m consensus.sim``: run seeded simulations, print a table, write JSON.

Examples::

    python -m consensus.sim --n 100 --byzantine 20 --strategy adaptive --seeds 10
    python -m consensus.sim --sweep-n 4,20 --sweep-byzantine 0,5,10,20,25 \\
        --sweep-offline 0,10,20 --seeds 100 --blocks 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from consensus.params import Parameters
from consensus.sim.config import (
    SIM_POLL_TIMEOUT_MS,
    STAKE_DISTRIBUTIONS,
    STRATEGIES,
    Partition,
    SimConfig,
)
from consensus.sim.report import format_table, summarize
from consensus.sim.runner import run


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def _partition(text: str) -> Partition:
    parts = [int(p) for p in text.split(":")]
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError("partition is START_MS:END_MS[:FRACTION_PCT]")
    return Partition(*parts)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="python -m consensus.sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20, help="validators")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1, help="number of consecutive seeds")
    p.add_argument("--stake", choices=STAKE_DISTRIBUTIONS, default="equal")
    p.add_argument("--byzantine", type=int, default=0, help="Byzantine stake percent")
    p.add_argument("--strategy", choices=STRATEGIES, default="adaptive")
    p.add_argument("--offline", type=int, default=0, help="offline stake percent")
    p.add_argument("--latency", default="20:80", help="MIN_MS:MAX_MS, uniform")
    p.add_argument("--loss-ppm", type=int, default=0, help="message loss, per million")
    p.add_argument("--partition", type=_partition, action="append", default=[],
                   help="START_MS:END_MS[:PCT] network cut that heals at END_MS")
    p.add_argument("--blocks", type=int, default=100, help="finalised blocks to reach")
    p.add_argument("--max-time-ms", type=int, default=600_000)
    p.add_argument("--stall-ms", type=int, default=20_000,
                   help="stop as stalled after this long without a new finalised block")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--alpha-preference", type=int, default=15)
    p.add_argument("--alpha-confidence", type=int, default=15)
    p.add_argument("--beta", type=int, default=20)
    p.add_argument("--concurrent-polls", type=int, default=4)
    p.add_argument("--poll-timeout-ms", type=int, default=SIM_POLL_TIMEOUT_MS)
    p.add_argument("--sweep-n", type=_ints, help="comma list: run every combination")
    p.add_argument("--sweep-byzantine", type=_ints, default=None)
    p.add_argument("--sweep-offline", type=_ints, default=None)
    p.add_argument("--json", type=Path, help="write the rows as JSON here")
    return p


def configs_from_args(args: argparse.Namespace) -> list[SimConfig]:
    """Every configuration (one per table row) the arguments ask for."""
    low, high = (int(v) for v in args.latency.split(":"))
    params = Parameters(k=args.k, alpha_preference=args.alpha_preference,
                        alpha_confidence=args.alpha_confidence, beta=args.beta,
                        concurrent_polls=args.concurrent_polls,
                        poll_timeout=args.poll_timeout_ms)
    base = SimConfig(
        n=args.n, seed=args.seed, params=params, stake=args.stake,
        byzantine_pct=args.byzantine, strategy=args.strategy, offline_pct=args.offline,
        latency_min_ms=low, latency_max_ms=high, loss_ppm=args.loss_ppm,
        partitions=tuple(args.partition), target_blocks=args.blocks,
        max_time_ms=args.max_time_ms, stall_ms=args.stall_ms,
    )
    ns = args.sweep_n or [args.n]
    byzantine = args.sweep_byzantine if args.sweep_byzantine is not None else [args.byzantine]
    offline = args.sweep_offline if args.sweep_offline is not None else [args.offline]
    return [replace(base, n=n, byzantine_pct=b, offline_pct=o)
            for n in ns for b in byzantine for o in offline]


def run_rows(configs: list[SimConfig], seeds: int) -> list[dict[str, Any]]:
    """Run ``seeds`` consecutive seeds of each configuration and summarise each."""
    rows = []
    for config in configs:
        results = [run(replace(config, seed=config.seed + s)) for s in range(seeds)]
        rows.append(summarize(results))
        print(format_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (1 if any run finalised conflicts)."""
    args = build_parser().parse_args(argv)
    configs = configs_from_args(args)
    for config in configs:
        config.validate()
    rows = run_rows(configs, args.seeds)
    print(format_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if any(row["conflicting_finalizations"] for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
