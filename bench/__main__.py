"""`python -m bench NAME [options]`: run one benchmark (see scripts/bench)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "ledger": "bench.ledger_bench",
    "consensus": "bench.consensus_bench",
    "devnet": "bench.devnet_bench",
    "p2p": "bench.p2p_bench",
    "market": "bench.market_bench",
    "rates": "bench.request_rates_bench",
    "onnx": "bench.onnx_bench",
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        print(f"usage: scripts/bench {{{'|'.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[sys.argv[1]])
    code: int = module.main(sys.argv[2:])
    return code


if __name__ == "__main__":
    sys.exit(main())
