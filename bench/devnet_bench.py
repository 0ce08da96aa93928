"""`scripts/bench devnet`: a 5-validator devnet of real processes on this machine.

Measures, as a table and JSON:
  finality latency  one transfer at a time, submitted -> seen final by every node (WebSocket
                    block subscriptions on all nodes); goal p50 <= 200 ms, p99 <= 1 s
  throughput        transfers offered at --rate for --duration s: finalised per second, and
                    accepted transfers that never finalised; goal >= 1,000/s, none lost
  sync              a fresh node catching up from genesis; goal >= 1,000 blocks/s
  RPC reads         account_get calls per second on one node; goal >= 3,000/s
  idle memory       RSS per node process; goal <= 200 MB
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from bench.report import pass_fail, print_table, write_json
from ogpu_node import devnet
from ogpu_node.address import address_to_text
from ogpu_node.genesis import dev_account_key
from ogpu_node.ledger import Transfer, sign_transaction
from ogpu_node.sdk import RpcCallError
from ogpu_node.sdk.sync_client import rpc_call
from ogpu_node.types import Amount


class BlockWatch:
    """Finalised-block notifications from every node: when each node saw each transaction."""

    def __init__(self, nodes: int) -> None:
        self.nodes = nodes
        self.seen: dict[str, dict[int, float]] = defaultdict(dict)
        self.all_seen: dict[str, trio.Event] = defaultdict(trio.Event)

    async def follow(self, index: int, url: str, task_status: Any = trio.TASK_STATUS_IGNORED
                     ) -> None:
        ws_url = url.replace("http://", "ws://") + "/ws"
        async with open_websocket_url(ws_url, max_message_size=16 * 1024 * 1024) as ws:
            await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1,
                                              "method": "sub_subscribe",
                                              "params": {"kind": "blocks"}}))
            task_status.started()
            while True:
                message = json.loads(await ws.get_message())
                params = message.get("params")
                if not params or "result" not in params:
                    continue
                now = time.perf_counter()
                block = params["result"]
                for tx_hash in block["txs"]:
                    seen = self.seen[tx_hash]
                    seen[index] = now
                    if len(seen) == self.nodes:
                        self.all_seen[tx_hash].set()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure_latency(urls: list[str], watch: BlockWatch, chain_id: str, count: int
                          ) -> list[float]:
    latencies = []
    sender, recipient = dev_account_key(0), dev_account_key(1)
    async with httpx.AsyncClient(timeout=30) as client:
        nonce = await _nonce(client, urls[0], address_to_text(sender.address))
        for i in range(count):
            tx = sign_transaction(sender, chain_id=chain_id, nonce=nonce + i, fee=1_000,
                                  payload=Transfer(recipient.address, Amount(1 + i)))
            start = time.perf_counter()
            await _call(client, urls[i % len(urls)], "tx_send", {"tx": tx.encoded.hex()})
            with trio.fail_after(30):
                await watch.all_seen[tx.hash.hex()].wait()
            latencies.append((max(watch.seen[tx.hash.hex()].values()) - start) * 1000)
    return latencies


async def _call(client: httpx.AsyncClient, url: str, method: str, params: Any) -> Any:
    reply = (await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                          "params": params})).json()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


async def _nonce(client: httpx.AsyncClient, url: str, address: str) -> int:
    return int((await _call(client, url, "account_get", {"address": address}))["nonce"])


async def _all_final(client: httpx.AsyncClient, urls: list[str], addresses: list[str],
                     want: list[int]) -> bool:
    """Whether every node has every sender's account nonce at its wanted value."""
    for url in urls:
        for address, nonce in zip(addresses, want, strict=True):
            if await _nonce(client, url, address) < nonce:
                return False
    return True


async def measure_throughput(urls: list[str], chain_id: str, senders: int, rate: int,
                             duration: float) -> dict[str, Any]:
    """Offer `rate` transfers/s for `duration` s, spread over the nodes, then wait until every
    node has finalised them all. Each sender's transfers have consecutive nonces, so a node has
    finalised all of a sender's accepted transfers exactly when its account nonce has reached
    the count: that is checked on every node, and nothing else is needed to count losses."""
    total = int(rate * duration)
    keys = [dev_account_key(10 + i) for i in range(senders)]
    addresses = [address_to_text(k.address) for k in keys]
    print(f"  signing {total:,} transfers from {senders} senders ...", flush=True)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20)
                                 ) as client:
        first = [await _nonce(client, urls[0], a) for a in addresses]
        nonces = list(first)
        txs = []
        for n in range(total):
            s = n % senders
            txs.append((s, sign_transaction(keys[s], chain_id=chain_id, nonce=nonces[s],
                                            fee=1_000,
                                            payload=Transfer(dev_account_key(1).address,
                                                             Amount(1)))))
            nonces[s] += 1
        batch_size = max(1, rate // 20)  # 20 batches a second, spread over the nodes
        accepted = [0] * senders
        refused = 0
        start = time.perf_counter()
        print(f"  offering {rate:,}/s for {duration:.0f} s ...", flush=True)
        for b, begin in enumerate(range(0, total, batch_size)):
            await trio.sleep_until(_at(start, b / 20))
            batch = txs[begin:begin + batch_size]
            body = [{"jsonrpc": "2.0", "id": i, "method": "tx_send",
                     "params": {"tx": tx.encoded.hex()}} for i, (_, tx) in enumerate(batch)]
            replies = await _post_batch(client, urls[b % len(urls)], body)
            for (sender, _), reply in zip(batch, sorted(replies, key=lambda r: r["id"]),
                                          strict=True):
                error = reply.get("error")
                # A retried batch finds its own transactions already pending: accepted.
                if error and (error.get("data") or {}).get("code") != "already_known":
                    refused += 1
                else:
                    accepted[sender] += 1
        offered_s = time.perf_counter() - start
        # Refused transfers leave nonce gaps: only a sender's prefix before its first refusal
        # can finalise; with no refusals (the normal case) that is everything accepted.
        want = [first[s] + accepted[s] for s in range(senders)]
        done_at: float | None = None
        deadline = time.perf_counter() + 300
        while time.perf_counter() < deadline:
            if await _all_final(client, urls, addresses, want):
                done_at = time.perf_counter()
                break
            await trio.sleep(0.2)
        finalized = sum([await _nonce(client, urls[0], a) for a in addresses]) - sum(first)
    elapsed = (done_at or time.perf_counter()) - start
    return {"offered": total, "offered_rate": total / offered_s, "accepted": sum(accepted),
            "refused": refused, "finalized": finalized, "lost": sum(accepted) - finalized,
            "finalized_per_s": finalized / elapsed, "elapsed_s": elapsed,
            "all_final_on_every_node": done_at is not None}


async def _post_batch(client: httpx.AsyncClient, url: str, body: list[Any]) -> list[Any]:
    """POST a batch, retrying once when the keep-alive connection was closed under us."""
    try:
        replies: list[Any] = (await client.post(url, json=body)).json()
    except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
        replies = (await client.post(url, json=body)).json()
    return replies


def _at(start_perf: float, offset: float) -> float:
    return trio.current_time() + max(0.0, start_perf + offset - time.perf_counter())


async def measure_rpc_reads(url: str, seconds: float, workers: int) -> float:
    address = address_to_text(dev_account_key(2).address)
    count = 0
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=workers)
                                 ) as client:
        async def worker() -> None:
            nonlocal count
            while True:
                await _call(client, url, "account_get", {"address": address})
                count += 1

        start = time.perf_counter()
        with trio.move_on_after(seconds):
            async with trio.open_nursery() as nursery:
                for _ in range(workers):
                    nursery.start_soon(worker)
        return count / (time.perf_counter() - start)


def measure_sync(root: Path, base_p2p: int, base_rpc: int, nodes: int) -> dict[str, Any]:
    home = devnet.add_follower(root, f"node{nodes}", base_p2p + nodes, base_rpc + nodes)
    target = int(rpc_call(devnet.rpc_url(root / "node0"), "chain_status")["height"])
    start = time.perf_counter()
    devnet.start(root, only=[home.name])
    url = devnet.rpc_url(home)
    height = 0
    while time.perf_counter() - start < 300 and height < target:
        try:
            height = int(rpc_call(url, "chain_status")["height"])
        except RpcCallError:
            height = 0
        time.sleep(0.05)
    # The node logs each catch-up: "synced N blocks in S s" (fetch, verify, apply, commit).
    match = None
    for line in (home / "node.log").read_text().splitlines():
        found = re.search(r"synced (\d+) blocks in ([\d.]+) s", line)
        if found and int(found[1]) > 0:
            match = found
    blocks, seconds = (int(match[1]), float(match[2])) if match else (0, 0.0)
    txs = sum(int(rpc_call(url, "chain_getBlock", {"block": h})["txCount"])
              for h in range(max(1, height - blocks + 1), height + 1)) if blocks else 0
    return {"target_height": target, "reached": height, "synced_blocks": blocks, "synced_txs": txs,
            "sync_seconds": seconds, "blocks_per_s": blocks / seconds if seconds else 0.0,
            "seconds_from_process_start": time.perf_counter() - start}


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    nodes = args.nodes
    base = devnet.free_port_base(2 * (nodes + 2))
    base_p2p, base_rpc = base, base + nodes + 2
    devnet.create(root, nodes, base_p2p=base_p2p, base_rpc=base_rpc,
                  dev_accounts=10 + args.senders, dev_balance="10000")
    pids = devnet.start(root)
    results: dict[str, Any] = {}
    try:
        await trio.to_thread.run_sync(devnet.wait_healthy, root)
        homes = devnet.node_homes(root)
        urls = [devnet.rpc_url(h) for h in homes]
        chain_id = rpc_call(urls[0], "chain_status")["chainId"]
        await trio.sleep(3)
        results["idle_rss_mb"] = {name: rss_mb(pid) for name, pid in sorted(pids.items())}
        watch = BlockWatch(len(urls))
        async with trio.open_nursery() as nursery:
            for i, url in enumerate(urls):
                await nursery.start(watch.follow, i, url)
            print("measuring finality latency ...", flush=True)
            results["latency_ms"] = await measure_latency(urls, watch, chain_id, args.latency_txs)
            nursery.cancel_scope.cancel()
        print("measuring throughput ...", flush=True)
        results["throughput"] = await measure_throughput(urls, chain_id, args.senders,
                                                         args.rate, args.duration)
        print("measuring RPC reads ...", flush=True)
        results["rpc_reads_per_s"] = await measure_rpc_reads(urls[0], args.rpc_seconds, 16)
        results["loaded_rss_mb"] = {name: rss_mb(pid) for name, pid in sorted(pids.items())}
        print("measuring sync of a fresh node ...", flush=True)
        results["sync"] = await trio.to_thread.run_sync(measure_sync, root, base_p2p, base_rpc,
                                                        nodes)
    finally:
        devnet.stop(root)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench devnet")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--latency-txs", type=int, default=50)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--senders", type=int, default=100)
    parser.add_argument("--rpc-seconds", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="Keep the devnet folder.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ogpu-bench-devnet-"))
    try:
        results = trio.run(run, args, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    lat = results["latency_ms"]
    tp = results["throughput"]
    sync = results["sync"]
    idle = max(results["idle_rss_mb"].values())
    p50, p99 = statistics.median(lat), percentile(lat, 0.99)
    rows = [
        ["finality latency p50, ms", p50, "<= 200", pass_fail(p50 <= 200)],
        ["finality latency p99, ms", p99, "<= 1,000", pass_fail(p99 <= 1000)],
        [f"throughput: offered /s ({tp['offered']:,} transfers)", tp["offered_rate"], "", ""],
        ["throughput: finalised on all nodes /s", tp["finalized_per_s"], ">= 1,000",
         pass_fail(tp["finalized_per_s"] >= 1000)],
        ["throughput: accepted but not finalised", tp["lost"], "0", pass_fail(tp["lost"] == 0)],
        ["throughput: refused at submission", tp["refused"], "", ""],
        ["sync of a fresh node, blocks/s", sync["blocks_per_s"], ">= 1,000",
         pass_fail(sync["blocks_per_s"] >= 1000)],
        ["  sync: blocks fetched, verified, applied and committed", sync["synced_blocks"],
         "", ""],
        ["  sync: transactions in them, verified and applied /s",
         sync["synced_txs"] / sync["sync_seconds"] if sync["sync_seconds"] else 0.0, "", ""],
        ["RPC reads (account_get) /s, one node", results["rpc_reads_per_s"], ">= 3,000",
         pass_fail(results["rpc_reads_per_s"] >= 3000)],
        ["idle RSS per node, max MB", idle, "<= 200", pass_fail(idle <= 200)],
        ["RSS per node after load, max MB", max(results["loaded_rss_mb"].values()), "", ""],
    ]
    print_table(f"devnet benchmark ({args.nodes} validators, one 2-core machine)",
                ["measure", "value", "goal", ""], rows)
    write_json("devnet", results | {"args": vars(args) | {"out": str(args.out)}}, args.out)
    return 0
