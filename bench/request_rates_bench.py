"""`scripts/bench rates`: the request rates honest peers send each other, to size the limits.

Four validator nodes in this process over libp2p on 127.0.0.1 (real clock), a fifth node that
syncs from them later, and a file fetched between two of them. Every request a node serves is
recorded by (serving node, asking peer, protocol). Phases: idle (empty blocks only), transfer
load, a follower syncing the chain, a file fetch. Per protocol the table gives, over every
(server, asker) pair, the mean and the highest rate in any 1 s and any 100 ms window, and the
smallest token-bucket burst that would have refused nothing at each of a few refill rates
(`p2p.network.Limits.request_rate`), and what the default limits refused or banned (nothing, if
they fit honest traffic).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import trio

from bench.report import print_table, write_json
from ogpu_node.blobs import MAX_CHUNK_BYTES, BlobStore
from ogpu_node.chain import Chain
from ogpu_node.genesis import Genesis, build_genesis, dev_account_key, load_template
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Transfer, sign_transaction
from ogpu_node.node.messages import FRAME_LIMITS
from ogpu_node.node.node import Node
from ogpu_node.storage import ChainStore, MemoryKV
from ogpu_node.types import Amount
from p2p.libp2p_host import Libp2pConfig, Libp2pNetwork, key_pair_from_seed
from p2p.network import Handler, Limits

VALIDATORS = [PrivateKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]
BUCKET_RATES = (50.0, 100.0, 200.0)
"""Refill rates (requests/s) at which the burst a pair needed is reported."""

Served = dict[tuple[str, str, str], list[float]]
"""(serving peer, asking peer, protocol) -> times (trio clock) of the requests served."""


class RecordingNetwork(Libp2pNetwork):
    """A libp2p network that notes when each request is served, and from whom."""

    def __init__(self, seed: bytes, served: Served) -> None:
        super().__init__(key_pair_from_seed(seed), Libp2pConfig(
            limits=Limits(frame_limits=FRAME_LIMITS)))
        self.served = served

    def set_handler(self, protocol: str, handler: Handler) -> None:
        served = self.served
        me = self.peer_id

        async def recorded(peer: str, data: bytes) -> bytes:
            served[(me, peer, protocol)].append(trio.current_time())
            return await handler(peer, data)

        super().set_handler(protocol, recorded)


def wall_ms() -> int:
    return int(time.time() * 1000)


def node_for(index: int, genesis: Genesis, served: Served, blobs: Path | None,
             key: PrivateKey | None) -> Node:
    net = RecordingNetwork(bytes([index + 1]) * 32, served)
    return Node(chain=Chain.open(ChainStore(MemoryKV()), genesis), network=net,
                genesis_hash=genesis.hash, validator_key=key, moniker=f"n{index}",
                wall_ms=wall_ms, blobs=BlobStore(blobs) if blobs else None)


def burst_needed(times: list[float], rate: float) -> int:
    """The smallest bucket size that serves every request of `times` at refill `rate`/s."""
    level, need, last = 0.0, 0, times[0] if times else 0.0
    for t in times:  # level = tokens missing from a bucket that starts full
        level = max(0.0, level - (t - last) * rate) + 1.0
        last = t
        need = max(need, int(level + 0.999999))
    return need


def peak(times: list[float], window: float) -> int:
    """Most requests inside any `window` seconds."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] < t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


GUARD_COUNTERS = ("requests_rate_limited", "offences_reported", "peers_banned", "gossip_rejected")
"""What the default limits did to these honest nodes (all should stay 0)."""


async def run(idle_s: float, load_s: float, tps: int, file_mib: int, blob_dir: Path
              ) -> tuple[Served, dict[str, tuple[float, float]], dict[str, int]]:
    genesis = build_genesis(load_template(), [(f"v{i}", k.public_key.raw)
                                              for i, k in enumerate(VALIDATORS)],
                            genesis_time_ms=wall_ms(), dev_accounts=4)
    served: Served = defaultdict(list)
    phases: dict[str, tuple[float, float]] = {}
    nodes = [node_for(i, genesis, served, blob_dir / f"n{i}", VALIDATORS[i]) for i in range(4)]
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.network.serve)  # type: ignore[attr-defined]
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                await a.network.connect(b.network.listen_addrs[0])
        for node in nodes:
            await nursery.start(node.serve)
        start = trio.current_time()
        await trio.sleep(idle_s)
        phases["idle"] = (start, trio.current_time())

        start, sent = trio.current_time(), 0
        while trio.current_time() - start < load_s:
            # each dev account sends through its own node (one sender's nonces stay in order)
            sender = sent % 4
            tx = sign_transaction(dev_account_key(sender), chain_id=genesis.chain_id,
                                  nonce=sent // 4, fee=1_000,
                                  payload=Transfer(dev_account_key(0).address, Amount(1)))
            await nodes[sender].submit_tx(tx)
            sent += 1
            await trio.sleep(1 / tps)
        await nodes[sender].wait_for_tx(tx.hash)
        phases["load"] = (start, trio.current_time())

        start = trio.current_time()
        follower = node_for(4, genesis, served, None, None)
        await nursery.start(follower.network.serve)  # type: ignore[attr-defined]
        for node in nodes:
            await follower.network.connect(node.network.listen_addrs[0])
        await nursery.start(follower.serve)
        target = nodes[0].chain.state.height
        while follower.chain.state.height < target:
            await follower.receipts.finalized.wait()
        phases["sync"] = (start, trio.current_time())

        assert nodes[0].blobs is not None
        start = trio.current_time()
        file_id = nodes[0].blobs.put_file(random.Random(1).randbytes(file_mib * MAX_CHUNK_BYTES))
        await nodes[1].files.fetch_file(file_id)
        phases["fetch"] = (start, trio.current_time())
        guard = {name: sum(getattr(node.network.stats(), name) for node in [*nodes, follower])
                 for name in GUARD_COUNTERS}
        nursery.cancel_scope.cancel()
    return served, phases, guard


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench rates", description=__doc__)
    parser.add_argument("--idle", type=float, default=20.0, help="idle seconds")
    parser.add_argument("--load", type=float, default=20.0, help="seconds of transfers")
    parser.add_argument("--tps", type=int, default=100, help="transfers offered per second")
    parser.add_argument("--file-mib", type=int, default=32, help="size of the fetched file")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        served, phases, guard = trio.run(run, args.idle, args.load, args.tps, args.file_mib,
                                         Path(tmp))
    by_protocol: dict[str, list[list[float]]] = defaultdict(list)
    for (_, _, protocol), times in served.items():
        by_protocol[protocol].append(sorted(times))
    rows, results = [], {}
    for protocol, pairs in sorted(by_protocol.items()):
        spans = [max(t[-1] - t[0], 1.0) for t in pairs]
        row = {
            "pairs": len(pairs),
            "requests": sum(len(t) for t in pairs),
            "mean_per_s": max(len(t) / s for t, s in zip(pairs, spans, strict=True)),
            "peak_10s_per_s": max(peak(t, 10.0) for t in pairs) / 10,
            "peak_1s": max(peak(t, 1.0) for t in pairs),
            "peak_100ms": max(peak(t, 0.1) for t in pairs),
        } | {f"burst_at_{r:g}": max(burst_needed(t, r) for t in pairs) for r in BUCKET_RATES}
        results[protocol] = row
        rows.append([protocol, *row.values()])
    print_table("Requests served per (node, asking peer), highest over pairs",
                ["protocol", "pairs", "requests", "mean/s", "peak 10 s /s", "peak 1 s",
                 "peak 100 ms", *[f"burst @{r:g}/s" for r in BUCKET_RATES]], rows)
    print_table("Phases", ["phase", "seconds"],
                [[name, end - start] for name, (start, end) in phases.items()])
    print_table("Default limits against these honest nodes (all nodes summed)",
                ["counter", "count"], [[name, count] for name, count in guard.items()])
    write_json("request_rates", {"protocols": results, "guard": guard, "phases": {
        name: end - start for name, (start, end) in phases.items()}}, args.out)
    return 0
