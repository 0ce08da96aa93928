"""The devnet's market demo (part of the README's first command): a training task and an
inference pool, end to end through JSON-RPC, with progress, verification and the money trail.

Everything a client does here it could do with the `ogpu` CLI; this drives the same RPC methods
so that `scripts/devnet` can show the whole life of a task on its own.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ogpu_node.address import address_to_text
from ogpu_node.cli.market_cli import check_progress
from ogpu_node.encoding import encode
from ogpu_node.genesis import dev_account_key
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger.market.payloads import ClosePool, OpenPool, SendRequest, SubmitTask
from ogpu_node.ledger.tx import Payload
from ogpu_node.polling import WaitTimeout, wait_until
from ogpu_node.rpc_client import RpcCallError, rpc_call, send_transaction
from ogpu_node.types import Hash32, format_amount, parse_amount
from ogpu_node.workloads.spec import TrainSpec

DEMO_TRAINING = TrainSpec(seed=2026, n_features=64, hidden=(256, 256), n_classes=10,
                          n_samples=4_096, batch=256, steps=3_000, lr_micros=20_000,
                          checkpoint_every=150)
"""About 10 s of CPU work on a laptop core: an MLP classifier on data generated from the seed."""
CLIENT = 2
"""Dev account used as the demo's client (accounts 0 and 1 are the transfer demo's)."""


class DemoError(Exception):
    pass


class Client:
    def __init__(self, url: str, key: PrivateKey) -> None:
        self.url = url
        self.key = key

    def send(self, payload: Payload) -> Hash32:
        """Send `payload` and wait until it is final; `DemoError` if it was refused."""
        receipt = send_transaction(self.url, self.key, payload)
        if receipt["state"] != "finalized":
            raise DemoError(f"transaction refused: {receipt.get('error')}: "
                            f"{receipt.get('reason')}")
        return Hash32(bytes.fromhex(receipt["hash"]))


def _short(address: str | None) -> str:
    return "-" if not address else address[:12] + "..." + address[-4:]


def _print_trail(trail: list[dict[str, Any]], names: dict[str, str]) -> None:
    print(f"    {'event':<32} {'who':<22} {'OGPU':>14}")
    for line in trail:
        who = names.get(line["address"], _short(line["address"]))
        amount = line.get("amountOgpu") or format_amount(int(line["amount"]))
        print(f"    {line['event']:<32} {who:<22} {amount:>14}")


def watch_task(url: str, task_id: str, names: dict[str, str], timeout: float = 300) -> dict[
        str, Any]:
    """Print the task's phases and progress until it closes; returns its final view."""
    last = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task: dict[str, Any] = rpc_call(url, "task_get", {"taskId": task_id})
        status = task["status"]
        if status == "bidding":
            line = f"  bidding: {len(task['bids'])} sealed bid(s)"
        elif status == "revealing":
            revealed = sum(b["revealed"] for b in task["bids"])
            line = f"  revealing: {revealed} of {len(task['bids'])} bids opened"
        elif status == "running":
            pct = (task.get("progressBps") or 0) / 100
            bar = "#" * int(pct / 5) + "." * (20 - int(pct / 5))
            line = (f"  running on {names.get(task['provider'], _short(task['provider']))} "
                    f"(attempt {task['attempt']}, {task.get('priceOgpu')} OGPU/unit) "
                    f"[{bar}] {pct:5.1f}%")
        elif status == "verifying":
            line = f"  verifying: {check_progress(task)}"
        elif status == "releasing":
            line = "  accepted: the provider releases the key that opens the result for you"
        else:
            line = f"  closed: {task['closeReason']}" + (f" ({task['why']})" if task["why"]
                                                           else "")
        if status == "running" and not sys.stdout.isatty():
            line = line.rsplit("[", 1)[0] + f"{int(pct // 25) * 25}%+"  # a line per quarter
        if line != last:
            in_place = status == "running" and sys.stdout.isatty()
            if last.startswith("  running") and not in_place and sys.stdout.isatty():
                print()
            print(line.ljust(100) if in_place else line, end="\r" if in_place else "\n",
                  flush=True)
            last = line
        if status == "closed":
            return task
        time.sleep(0.3)
    raise DemoError(f"task {task_id[:12]} did not close within {timeout:.0f} s")


def run_training(url: str, client: Client, names: dict[str, str]) -> bool:
    spec = DEMO_TRAINING
    max_price = parse_amount("0.01")
    print(f"\nDemo: dev account {CLIENT} submits a training task: MLP {spec.n_features}-"
          f"{'-'.join(map(str, spec.hidden))}-{spec.n_classes}, {spec.steps} SGD steps, "
          f"{spec.work_units()} work units (GFLOP), at most "
          f"{format_amount(max_price)} OGPU per unit")
    task_id = client.send(SubmitTask(spec.KIND, encode(spec), max_price, 0, 120_000, 600_000))
    print(f"  task {task_id.hex()}")
    started = time.monotonic()
    task = watch_task(url, task_id.hex(), names)
    print(f"  {task['closeReason']} after {time.monotonic() - started:.1f} s; verdicts: " +
          ", ".join(f"{names.get(v['verifier'], _short(v['verifier']))} "
                    f"{'accepted' if v['accept'] else 'rejected'} ({v['reason']})"
                    for v in task["verdicts"]))
    if task["result"]:
        metrics = task["result"]["metrics"]
        print(f"  result: final loss {metrics.get('loss_micros', 0) / 1e6:.4f}, accuracy "
              f"{metrics.get('accuracy_bps', 0) / 100:.2f}%, output file "
              f"{task['result']['outputId'][:16]}... (sealed for the client: "
              f"ogpu task result {task_id.hex()} -o out.bin --dev-account {CLIENT})")
    print("  money trail:")
    _print_trail(task["trail"], names)
    return bool(task["closeReason"] == "completed")


def run_pool(url: str, client: Client, names: dict[str, str], requests: int = 6) -> bool:
    price, budget = parse_amount("0.01"), parse_amount("1")
    print(f"\nDemo: dev account {CLIENT} opens an inference pool for model mlp-small: "
          f"{format_amount(price)} OGPU per request, budget {format_amount(budget)} OGPU, "
          "at most 2 racers per request, half the results checked by a committee")
    pool_id = client.send(OpenPool("mlp-small", 256, price, budget, 2, 5_000,
                                   parse_amount("10"), 20_000, 600_000)).hex()
    pool = wait_until(lambda: (p := rpc_call(url, "pool_get", {"poolId": pool_id}))
                 and len(p["subscribers"]) >= 2 and p, "two providers to join the pool", 60)
    print("  members: " + ", ".join(f"{names.get(s['address'], _short(s['address']))} "
                                    f"(bond {s['stakeOgpu']} OGPU)" for s in pool["subscribers"]))
    sent = [client.send(SendRequest(bytes.fromhex(pool_id), seed, 64)).hex()  # type: ignore[arg-type]
            for seed in range(requests)]
    print(f"  sent {requests} requests of 64 inputs each")

    def finished() -> dict[str, Any] | None:
        view: dict[str, Any] = rpc_call(url, "pool_get", {"poolId": pool_id})
        done = {r["id"] for r in view["requests"] if r["status"] in ("paid", "rejected",
                                                                      "expired", "unchecked")}
        return view if set(sent) <= done else None

    pool = wait_until(finished, "the requests to be served", 120)
    for request in pool["requests"]:
        if request["id"] in sent:
            checked = " after a committee check" if request["committee"] else ""
            print(f"    request {request['id'][:12]}...: {request['status']}{checked}, won by "
                  f"{names.get(request['winner'], _short(request['winner']))}")
    client.send(ClosePool(bytes.fromhex(pool_id)))  # type: ignore[arg-type]
    pool = rpc_call(url, "pool_get", {"poolId": pool_id})
    print(f"  pool closed: {pool['served']} served, {pool['rejected']} rejected, "
          f"{pool['expired']} expired; paid {pool['paidOgpu']} OGPU to providers")
    _print_trail(pool["trail"], names)
    return bool(pool["served"] == requests)


def print_providers(url: str, names: dict[str, str]) -> None:
    """Each provider's record as the chain now has it (`ogpu provider status` has more)."""
    print("\nproviders now (a measured benchmark is measured again once start-up is over):")
    for p in rpc_call(url, "provider_list")["providers"]:
        print(f"  {names.get(p['address'], _short(p['address']))}: benchmark "
              f"{p['benchmark']} GFLOP/s, {p['completed']} completed, {p['failed']} failed, "
              f"reputation {p['reputationBps'] / 100:g}%, flags {', '.join(p['flags']) or 'none'}")


def run_market_demo(url: str, validator_names: dict[str, str], providers: int) -> bool:
    """The training task and the pool through the node at `url`; True when both went as
    planned.

    `validator_names` names validator addresses in the output; `providers` is how many of them
    run the provider agent."""
    names = {**validator_names,
             address_to_text(dev_account_key(CLIENT).address): f"client (dev {CLIENT})"}
    try:
        listed = wait_until(lambda: (view := rpc_call(url, "provider_list"))["count"] >= providers
                       and view, "the providers to register", 90)
        print(f"\n{listed['count']} providers registered: " + ", ".join(
            f"{names.get(p['address'], _short(p['address']))} {p['benchmark']} GFLOP/s"
            for p in listed["providers"]))
        client = Client(url, dev_account_key(CLIENT))
        ok = run_training(url, client, names)
        ok = run_pool(url, client, names) and ok
        print_providers(url, names)
        return ok
    except (DemoError, WaitTimeout, RpcCallError) as exc:
        print(f"\nmarket demo failed: {exc}", file=sys.stderr)
        return False
