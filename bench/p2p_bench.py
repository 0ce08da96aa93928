"""`scripts/bench p2p`: gossip and request latency between two libp2p hosts on 127.0.0.1.

Baseline in the same run: the same request/response over the in-memory network (no sockets,
no encryption), which shows what the libp2p stack itself costs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import trio

from bench.report import print_table, write_json
from p2p.libp2p_host import Libp2pNetwork
from p2p.memory import MemoryHub
from p2p.network import Network

PAYLOAD = b"x" * 200


async def echo(peer: str, data: bytes) -> bytes:
    return data


async def measure(a: Network, b: Network, rounds: int) -> dict[str, list[float]]:
    await a.connect(b.listen_addrs[0])
    b.set_handler("/bench/echo/1", echo)
    channel = await b.subscribe("bench")
    await a.subscribe("bench")
    with trio.fail_after(30):
        await a.wait_for_topic_peers("bench", [b.peer_id])
    gossip, reused = [], []
    for i in range(rounds):
        start = time.perf_counter()
        await a.publish("bench", b"%08d" % i + PAYLOAD[8:])
        await channel.receive()
        gossip.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    await a.request(b.peer_id, "/bench/echo/1", PAYLOAD)
    first = [(time.perf_counter() - start) * 1000]
    for _ in range(rounds):
        start = time.perf_counter()
        await a.request(b.peer_id, "/bench/echo/1", PAYLOAD)
        reused.append((time.perf_counter() - start) * 1000)
    return {"gossip_ms": gossip, "first_request_ms": first, "request_ms": reused}


async def run(rounds: int) -> dict[str, dict[str, list[float]]]:
    results = {}
    async with trio.open_nursery() as nursery:
        a, b = Libp2pNetwork.from_seed(b"\x01" * 32), Libp2pNetwork.from_seed(b"\x02" * 32)
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        results["libp2p"] = await measure(a, b, rounds)
        hub = MemoryHub()
        ma, mb = hub.node("a"), hub.node("b")
        await nursery.start(ma.serve)
        await nursery.start(mb.serve)
        results["memory"] = await measure(ma, mb, rounds)
        nursery.cancel_scope.cancel()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench p2p")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results = trio.run(run, args.rounds)
    rows = []
    for name, label in (("gossip_ms", "gossip publish -> receive, 200 B"),
                        ("first_request_ms", "request on a new stream"),
                        ("request_ms", "request on a reused stream, 200 B")):
        lib, mem = results["libp2p"][name], results["memory"][name]
        rows.append([label, statistics.median(lib), sorted(lib)[int(len(lib) * 0.9)],
                     statistics.median(mem)])
    print_table("p2p latency on 127.0.0.1, ms (two hosts in one process)",
                ["measure", "libp2p p50", "libp2p p90", "memory p50 (baseline)"], rows)
    write_json("p2p", results, args.out)
    return 0
