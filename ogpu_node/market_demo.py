"""The devnet's market demo (part of the README's first command): a customer trains a small
convolutional network on real handwritten digits through the network, registers the trained
model and serves it from a pool, end to end through JSON-RPC, with progress, verification, the
money trail, and the accuracy of the answers the pool gives on digits never trained on.

Everything a client does here it could do with the `ogpu` CLI; this drives the same RPC methods
so that `scripts/devnet` can show the whole life of a task on its own.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np

from gpu.artifacts import decode_arrays
from gpu.inputs import encode_inputs
from gpu.onnx_export import export_onnx
from gpu.onnx_models import inspect_model
from ogpu_node.address import address_to_text
from ogpu_node.cli.market_cli import check_progress
from ogpu_node.datasets import Labelled, digits, split
from ogpu_node.encoding import encode
from ogpu_node.genesis import dev_account_key
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger.market.payloads import (
    ClosePool,
    OpenPool,
    RegisterModel,
    SendRequest,
    SubmitTask,
)
from ogpu_node.ledger.tx import Payload
from ogpu_node.polling import WaitTimeout, wait_until
from ogpu_node.result_crypto import open_answer, open_output
from ogpu_node.sdk import RpcCallError
from ogpu_node.sdk.sync_client import download_file, rpc_call, send_transaction, upload_file
from ogpu_node.types import HASH_LEN, Hash32, format_amount, parse_amount
from ogpu_node.workloads.models import ModelInferSpec, ModelInfo
from ogpu_node.workloads.net import (
    FLATTEN,
    RELU,
    LossKind,
    NetTrainSpec,
    Optimizer,
    OptimizerKind,
    Schedule,
    ScheduleKind,
    conv2d,
    dense,
    max_pool,
)

DEMO_NETWORK = NetTrainSpec(
    seed=2026, input_shape=(1, 8, 8),
    layers=(conv2d(16, 3, padding=1), RELU, max_pool(2), FLATTEN, dense(10)),
    loss=LossKind.CROSS_ENTROPY,
    optimizer=Optimizer(OptimizerKind.ADAM, lr_micros=3_000, beta1_micros=900_000,
                        beta2_micros=999_000),
    schedule=Schedule(ScheduleKind.COSINE, warmup_steps=20, floor_micros=300),
    n_samples=1, val_bps=1_500, batch=32, steps=1_500, checkpoint_every=100,
    inputs=bytes(HASH_LEN))
"""A small convolutional network for the 8x8 digits (n_samples and inputs are set by the
upload): about a second of CPU work."""
HELD_OUT = 0.2
"""Share of the digits kept out of training altogether, for the pool's answers."""
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


def run_training(url: str, client: Client, names: dict[str, str],
                 train: Labelled) -> tuple[NetTrainSpec, bytes] | None:
    """Train the demo's network on `train` through the network; its spec and trained weights
    (opened with the client's key) when the task completed."""
    sized = replace(DEMO_NETWORK, n_samples=len(train))
    raw = encode_inputs(sized, {"x": train.x, "labels": train.labels})
    spec = replace(sized, inputs=upload_file(url, raw))
    max_price = parse_amount("0.01")
    print(f"\nDemo: dev account {CLIENT} trains a convolutional network on {len(train)} "
          f"handwritten digits (8x8, shipped with ogpu-node), {spec.val_bps // 100}% of them "
          f"held for validation: conv 3x3x16, ReLU, max pool, dense 10; Adam, {spec.steps} "
          f"steps; {spec.work_units()} work units at most {format_amount(max_price)} OGPU each")
    task_id = client.send(SubmitTask(spec.KIND, encode(spec), max_price, 0, 120_000, 600_000))
    print(f"  task {task_id.hex()} (inputs uploaded as file {spec.inputs.hex()[:16]}...)")
    started = time.monotonic()
    task = watch_task(url, task_id.hex(), names)
    print(f"  {task['closeReason']} after {time.monotonic() - started:.1f} s; verdicts: " +
          ", ".join(f"{names.get(v['verifier'], _short(v['verifier']))} "
                    f"{'accepted' if v['accept'] else 'rejected'} ({v['reason']})"
                    for v in task["verdicts"]))
    print("  money trail:")
    _print_trail(task["trail"], names)
    if task["closeReason"] != "completed":
        return None
    metrics = task["result"]["metrics"]
    print(f"  validation accuracy {metrics['val_accuracy_bps'] / 100:.2f}% (checked by the "
          f"committee), training loss {metrics['train_loss_micros'] / 1e6:.4f}")
    weights = open_output(client.key, task, download_file(url, task["result"]["outputId"]))
    print(f"  the client opens the trained weights ({len(weights):,} bytes; also: "
          f"ogpu task result {task_id.hex()[:12]}... -o weights.bin --dev-account {CLIENT})")
    return spec, weights


def register_trained(url: str, client: Client, spec: NetTrainSpec,
                     weights: bytes) -> tuple[Hash32, ModelInfo]:
    """Export the trained network to ONNX and register it as a model."""
    model = export_onnx(spec, weights)
    info = inspect_model(model)
    model_id = client.send(RegisterModel("digits-cnn", Hash32(upload_file(url, model)), info))
    print(f"\nDemo: the client exports the trained network to ONNX ({len(model):,} bytes, "
          f"{info.flops_per_row:,} flops per image) and registers it: model {model_id.hex()}")
    return model_id, info


def run_pool(url: str, client: Client, names: dict[str, str], model_id: Hash32,
             info: ModelInfo, held_out: Labelled, requests: int = 3) -> bool:
    """Serve the registered model from a pool on the held-out digits; True when every request
    was answered."""
    price, budget = parse_amount("0.01"), parse_amount("1")
    print(f"\nDemo: a pool serves the model: {format_amount(price)} OGPU per request, at most "
          "2 racers per request, half the answers checked by a committee")
    pool_id = client.send(OpenPool("", 256, price, budget, 2, 5_000, parse_amount("10"),
                                   20_000, 600_000, model_id=model_id))
    pool = wait_until(lambda: (p := rpc_call(url, "pool_get", {"poolId": pool_id.hex()}))
                      and len(p["subscribers"]) >= 2 and p, "two providers to join the pool",
                      60)
    print("  members: " + ", ".join(f"{names.get(s['address'], _short(s['address']))} "
                                    f"(bond {s['stakeOgpu']} OGPU)" for s in pool["subscribers"]))
    sent: dict[str, np.ndarray] = {}
    for rows in np.array_split(np.arange(len(held_out)), requests):
        spec = ModelInferSpec(model_id, len(rows), bytes(HASH_LEN), info)
        raw = encode_inputs(spec, {info.inputs[0].name: held_out.x[rows]})
        request = client.send(SendRequest(pool_id, 0, len(rows), upload_file(url, raw)))
        sent[request.hex()] = rows
    print(f"  sent {requests} requests: the {len(held_out)} held-out digits, never trained on")

    def finished() -> dict[str, Any] | None:
        view: dict[str, Any] = rpc_call(url, "pool_get", {"poolId": pool_id.hex()})
        done = {r["id"] for r in view["requests"] if r["status"] in ("paid", "rejected",
                                                                      "expired", "unchecked")}
        return view if set(sent) <= done else None

    pool = wait_until(finished, "the requests to be served", 120)
    correct = answered = 0
    for request in pool["requests"]:
        if request["id"] not in sent:
            continue
        checked = " after a committee check" if request["committee"] else ""
        print(f"    request {request['id'][:12]}...: {request['status']}{checked}, won by "
              f"{names.get(request['winner'], _short(request['winner']))}")
        if request["status"] == "paid":
            rows = sent[request["id"]]
            answer = open_answer(client.key, bytes.fromhex(request["id"]),
                                 bytes.fromhex(request["key"]),
                                 download_file(url, request["outputId"]))
            logits = dict(decode_arrays(answer))[info.outputs[0].name]
            correct += int((logits.argmax(axis=1) == held_out.labels[rows]).sum())
            answered += len(rows)
    if answered:
        print(f"  accuracy of the pool's answers on the held-out digits: "
              f"{100 * correct / answered:.2f}% ({correct} of {answered})")
    client.send(ClosePool(pool_id))
    pool = rpc_call(url, "pool_get", {"poolId": pool_id.hex()})
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
        train, held_out = split(digits(), held_out=HELD_OUT, seed=0)
        trained = run_training(url, client, names, train)
        ok = trained is not None
        if trained is not None:
            model_id, info = register_trained(url, client, *trained)
            ok = run_pool(url, client, names, model_id, info, held_out)
        print_providers(url, names)
        return ok
    except (DemoError, WaitTimeout, RpcCallError) as exc:
        print(f"\nmarket demo failed: {exc}", file=sys.stderr)
        return False
