"""`scripts/bench market` parts (d), (e) and (f): inference on a registered ONNX model through
a pool, training a convolutional network of the client's own architecture, and what verifying
each costs. The module docstring of `bench.market_bench` says what each part measures against.

(d) uses a wide MLP (`tests.gpu.onnx_examples.mlp` with a hidden layer of `--mlp-hidden`
16,384: 64 -> 16,384 -> 64 -> 10, 4.2 MFLOP and 256 bytes of inputs per row, an 8 MiB file)
rather than the digits CNN (0.18 MFLOP per row, ~850,000 rows/s here): a request of the CNN's
largest batch is 80 ms of compute, so a pool of it measures blocks and file transfers, not the
provider; the MLP's request of 32,768 rows is about a second of compute on 2 CPUs.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.market_common import (
    GOAL_SPEED_RATIO,
    GOAL_VERIFY_FRACTION,
    PartResult,
    settle,
    timed,
)
from bench.report import pass_fail
from gpu.device import Array, Device
from gpu.inputs import check_inputs, encode_inputs
from gpu.nn.data import net_dataset
from gpu.onnx_models import inspect_model
from gpu.onnx_run import (
    clear_sessions,
    execution_providers,
    load_model,
    model_feed,
    session_options,
    session_threads,
)
from gpu.verify import verify_model_inference, verify_training
from gpu.workloads import run_workload
from ogpu_node import devnet
from ogpu_node.address import address_to_text
from ogpu_node.agents.verifier import VerifierPolicy
from ogpu_node.blobs import file_id
from ogpu_node.datasets import digits
from ogpu_node.encoding import decode
from ogpu_node.genesis import dev_account_key
from ogpu_node.ledger import sign_transaction
from ogpu_node.ledger.market.payloads import OpenPool, PoolResult, RegisterModel, SendRequest
from ogpu_node.market_demo import Client
from ogpu_node.polling import wait_until
from ogpu_node.sdk import RpcCallError, SyncSubscription
from ogpu_node.sdk.sync_client import rpc_call, upload_file
from ogpu_node.types import Hash32, ogpu
from ogpu_node.workloads.limits import MODEL_CHUNK_ROWS
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.net import (
    ADAM_EPS,
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
from ogpu_node.workloads.spec import MAX_BATCH
from tests.gpu.onnx_examples import Example, digits_cnn, mlp

CLIENT_ACCOUNT = 3
"""The dev account that registers the model and owns the pool (part a's client)."""
POOL_SAMPLE_BPS = 5_000
"""Half the pool's answers checked by a committee, as in the devnet's demo pool."""
ANSWERED = ("answered", "verifying", "paid", "unchecked")
"""Request statuses once a racer's answer is on chain (`rejected`: answered, and wrong)."""
LATENCY_REQUESTS = 3
POOL_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))
"""The 2 x 2 max pool's window offsets, in the order a tie is broken (the first wins)."""


# --- (d) inference on a registered model ---------------------------------------------------


@dataclass(frozen=True)
class InferRequest:
    """One request's uploaded inputs and its spec as the ledger binds it."""

    spec: ModelInferSpec
    inputs: bytes


def infer_requests(example: Example, rows: int, count: int, first_seed: int = 0
                   ) -> list[InferRequest]:
    """`count` requests of `rows` rows on `example`, each with inputs of its own."""
    info = inspect_model(example.model)
    out = []
    for seed in range(first_seed, first_seed + count):
        unbound = ModelInferSpec(Hash32(file_id(example.model)), rows, bytes(32), info)
        raw = encode_inputs(unbound, example.inputs(rows, seed))
        out.append(InferRequest(replace(unbound, inputs=bytes(file_id(raw))), raw))
    return out


def bare_session(example: Example, device: Device) -> ort.InferenceSession:
    """An ONNX Runtime session with the provider's settings (`gpu.onnx_run.session_options`)."""
    return ort.InferenceSession(example.model, session_options(session_threads()),
                                providers=execution_providers(device))


def bare_inference_s(session: ort.InferenceSession, example: Example,
                     requests: list[InferRequest]) -> float:
    """Seconds a bare session takes over every request's rows, MODEL_CHUNK_ROWS at a time, from
    arrays already in memory (no file decoding, checking, encoding or hashing)."""
    info = requests[0].spec.model_info
    feeds = []
    for request in requests:
        arrays = example.inputs(request.spec.batch, 0)  # the same shapes; values do not matter
        feeds += [model_feed(info, arrays, b, min(request.spec.batch, b + MODEL_CHUNK_ROWS))
                  for b in range(0, request.spec.batch, MODEL_CHUNK_ROWS)]
    start = time.perf_counter()
    for feed in feeds:
        session.run(None, feed)
    return time.perf_counter() - start


def workload_inference_s(example: Example, requests: list[InferRequest], device: Device
                         ) -> tuple[float, float]:
    """Wall and CPU seconds of `run_workload` over every request (inputs file decoded and
    checked, chunks, outputs encoded and hashed), the model's session cached after the first."""
    wall, cpu = time.perf_counter(), time.process_time()
    for request in requests:
        run_workload(request.spec, device, inputs=request.inputs, model=example.model)
    return time.perf_counter() - wall, time.process_time() - cpu


def part_d(args: argparse.Namespace, device: Device) -> PartResult:
    """Provider throughput on a registered model through a pool on a 4-validator devnet of real
    processes, against a bare ONNX Runtime session and `run_workload` in this process."""
    example = mlp(hidden=args.mlp_hidden)
    info = inspect_model(example.model)
    rows, count = args.infer_rows, args.infer_requests
    requests = infer_requests(example, rows, count)
    total = rows * count
    session = bare_session(example, device)
    bare_inference_s(session, example, requests[:1])  # warm-up
    bare_before = bare_inference_s(session, example, requests)
    run_workload(requests[0].spec, device, inputs=requests[0].inputs, model=example.model)
    workload_s, workload_cpu = workload_inference_s(example, requests, device)
    pool = _pool_run(args, device, example, requests)
    bare_after = bare_inference_s(session, example, requests)
    bare_s = (bare_before + bare_after) / 2
    bare_rate = total / bare_s
    pool_rate = total / pool["span_s"]
    ok = pool["all_answered"] and pool_rate >= GOAL_SPEED_RATIO * bare_rate
    part = PartResult(
        f"(d) ONNX inference: MLP 64-{args.mlp_hidden}-64-10 ({info.flops_per_row / 1e6:.1f} "
        f"MFLOP/row), {count} requests of {rows:,} rows, {session_threads()} ORT thread(s)",
        ["measure", "rows/s", "seconds", "share of bare", "goal", ""])
    goal = f">= {100 * GOAL_SPEED_RATIO:.0f}%"
    part.rows += [
        ["bare ONNX Runtime session (baseline: mean of before/after)", bare_rate, bare_s,
         "100%", "", ""],
        ["  before the devnet started", total / bare_before, bare_before,
         f"{bare_s / bare_before:.0%}", "", ""],
        ["  after the devnet stopped", total / bare_after, bare_after,
         f"{bare_s / bare_after:.0%}", "", ""],
        ["run_workload in this process (check inputs, run, encode, hash)", total / workload_s,
         workload_s, f"{bare_s / workload_s:.0%}", "", ""],
        ["pool on a devnet: first request sent -> last answer on chain", pool_rate,
         pool["span_s"], f"{pool_rate / bare_rate:.0%}", goal, pass_fail(ok)],
        ["  provider node's CPU seconds over that span (run_workload here: "
         f"{workload_cpu:.1f})", "", pool["provider_cpu_s"], "", "", ""],
        ["  first answer on chain (request block -> answer block, block time)", "",
         pool["first_answer_s"], "", "", ""],
        [f"  request -> answer latency p50, {LATENCY_REQUESTS} requests one at a time "
         "(client clock)", "", pool["latency_p50_s"], "", "", ""],
        ["    the same in block time (request's block -> answer's block)", "",
         pool["latency_blocks_p50_s"], "", "", ""],
        ["    run_workload of one request here", rows / (workload_s / count),
         workload_s / count, "", "", ""],
    ]
    part.results = {"model": f"mlp 64-{args.mlp_hidden}-64-10", "model_bytes": len(example.model),
                    "flops_per_row": info.flops_per_row, "rows_per_request": rows,
                    "requests": count, "ort_threads": session_threads(),
                    "bare_s": bare_s, "bare_runs_s": [bare_before, bare_after],
                    "bare_rows_per_s": bare_rate, "workload_s": workload_s,
                    "workload_cpu_s": workload_cpu, "workload_rows_per_s": total / workload_s,
                    "pool_rows_per_s": pool_rate, "ratio": pool_rate / bare_rate, **pool,
                    "pass": ok}
    return part


def _pool_run(args: argparse.Namespace, device: Device, example: Example,
              requests: list[InferRequest]) -> dict[str, Any]:
    """Register the model, open a pool on it, send every request at once and time the answers;
    then send LATENCY_REQUESTS more one at a time."""
    root = Path(tempfile.mkdtemp(prefix="ogpu-bench-model-"))
    net = root / "net"
    net.mkdir()
    base = devnet.free_port_base(12)
    devnet.create(net, 4, base_p2p=base, base_rpc=base + 6, providers=1,
                  node_settings={1: {"provider_device": device.kind,
                                     "provider_benchmark_refresh_s": 0}})
    all_answered = False
    try:
        pids = devnet.start(net)
        devnet.wait_healthy(net)
        url = devnet.rpc_url(net / "node0")
        wait_until(lambda: rpc_call(url, "provider_list")["count"] >= 1,
                   "the provider to register")
        client = Client(url, dev_account_key(CLIENT_ACCOUNT))
        info = requests[0].spec.model_info
        model_id = client.send(RegisterModel("bench-mlp", Hash32(upload_file(url, example.model)),
                                             info))
        rows = requests[0].spec.batch
        pool_id = client.send(OpenPool("", rows, ogpu(1), ogpu(1_000), 1, POOL_SAMPLE_BPS,
                                       ogpu(10), 300_000, 1_800_000, model_id=model_id))
        wait_until(lambda: rpc_call(url, "pool_get", {"poolId": pool_id.hex()})["subscribers"],
                   "the provider to join the pool (it checks the model's file first)", 120)
        extra = infer_requests(example, rows, LATENCY_REQUESTS, first_seed=len(requests))
        for request in [*requests, *extra]:
            upload_file(url, request.inputs)
        settle(devnet.rpc_url(net / "node1"))
        provider_cpu = _cpu_seconds(pids["node1"])
        start = time.perf_counter()
        ids = _send_requests(url, client, pool_id, requests)
        seen = _wait_answered(url, pool_id, ids)
        span = max(t for t, _ in seen.values()) - start
        provider_cpu = _cpu_seconds(pids["node1"]) - provider_cpu
        latencies, block_latencies = [], []
        for request in extra:
            sent = time.perf_counter()
            (rid,) = _send_requests(url, client, pool_id, [request])
            latencies.append(_wait_answered(url, pool_id, [rid])[rid][0] - sent)
            block_latencies.append(_answer_block_latency(url, pool_id, rid))
        view = rpc_call(url, "pool_get", {"poolId": pool_id.hex()})
        statuses = {r["id"]: r["status"] for r in view["requests"]}
        all_answered = all(statuses.get(i) in ANSWERED for i in ids)
        created = min(r["createdMs"] for r in view["requests"] if r["id"] in ids)
        first = min(_answer_block_ms(url, pool_id, created, ids).values())
        return {"span_s": span, "provider_cpu_s": provider_cpu,
                "first_answer_s": (first - created) / 1000,
                "latency_p50_s": statistics.median(latencies),
                "latency_blocks_p50_s": statistics.median(block_latencies),
                "latencies_s": latencies, "sample_bps": POOL_SAMPLE_BPS,
                "statuses": sorted(statuses.get(i, "?") for i in ids),
                "all_answered": all_answered}
    finally:
        devnet.stop(net)
        if all_answered and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"the devnet's homes and logs are kept in {net}")


def _send_requests(url: str, client: Client, pool_id: Hash32, requests: list[InferRequest]
                   ) -> list[str]:
    """Send a request per entry at consecutive nonces without waiting for each to be final
    (`Client.send` waits: a block per request); returns the request ids (transaction hashes)."""
    chain_id = rpc_call(url, "chain_status")["chainId"]
    account = rpc_call(url, "account_get", {"address": address_to_text(client.key.address)})
    nonce = int(account["nonce"])
    ids = []
    for i, request in enumerate(requests):
        tx = sign_transaction(client.key, chain_id=chain_id, nonce=nonce + i, fee=1_000,
                              payload=SendRequest(pool_id, i, request.spec.batch,
                                                  request.spec.inputs))
        rpc_call(url, "tx_send", {"tx": tx.encoded.hex()})
        ids.append(tx.hash.hex())
    return ids


def _wait_answered(url: str, pool_id: Hash32, ids: list[str], timeout: float = 600
                   ) -> dict[str, tuple[float, str]]:
    """Per request id: when (this process's clock) a finalised block first showed it answered,
    and its status then. Follows blocks over a WebSocket (polling would take CPU from the
    nodes); a request that expires or is rejected ends the wait with `RpcCallError`."""
    seen: dict[str, tuple[float, str]] = {}
    deadline = time.monotonic() + timeout
    with SyncSubscription(url, {"kind": "blocks"}, idle_timeout=60) as blocks:
        for _ in blocks:
            view = rpc_call(url, "pool_get", {"poolId": pool_id.hex()})
            now = time.perf_counter()
            for request in view["requests"]:
                if request["id"] in ids and request["id"] not in seen:
                    if request["status"] in ("expired", "rejected"):
                        raise RpcCallError(f"request {request['id'][:12]} {request['status']}")
                    if request["status"] in ANSWERED:
                        seen[request["id"]] = (now, request["status"])
            if len(seen) == len(ids) or time.monotonic() > deadline:
                break
    if len(seen) != len(ids):
        raise RpcCallError(f"{len(ids) - len(seen)} requests unanswered after {timeout} s")
    return seen


def _answer_block_ms(url: str, pool_id: Hash32, since_ms: int, ids: list[str]
                     ) -> dict[str, int]:
    """Per request id: the timestamp of the block holding its winning answer (`POOL_RESULT`)."""
    head = rpc_call(url, "chain_status")["height"]
    out: dict[str, int] = {}
    height = head
    while height > 0 and len(out) < len(ids):
        low = max(1, height - 99)
        blocks = rpc_call(url, "chain_getBlockRange", {"from": low, "to": height,
                                                       "fullTxs": True})
        for block in blocks:
            for tx in block["txs"]:
                if tx["kind"] != "pool_result":
                    continue
                answer = decode(PoolResult, bytes.fromhex(tx["payloadHex"]))
                rid = answer.request_id.hex()
                if answer.pool_id == pool_id and rid in ids:
                    out[rid] = min(out.get(rid, block["timestampMs"]), block["timestampMs"])
        if blocks and blocks[0]["timestampMs"] < since_ms:
            break
        height = low - 1
    return out


def _answer_block_latency(url: str, pool_id: Hash32, rid: str) -> float:
    view = rpc_call(url, "pool_get", {"poolId": pool_id.hex()})
    created = int(next(r["createdMs"] for r in view["requests"] if r["id"] == rid))
    return (_answer_block_ms(url, pool_id, created, [rid])[rid] - created) / 1000


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` (and its reaped children) has used (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


# --- (e) training a convolutional network --------------------------------------------------


def bench_cnn_spec(batch: int = 32, steps: int = 300, checkpoint_every: int = 30,
                   inputs: bytes = bytes(32)) -> NetTrainSpec:
    """Parts (e) and (f)'s network on the 8 x 8 digits: conv 16 3x3 (pad 1), ReLU, max pool 2,
    conv 32 3x3 (pad 1), ReLU, flatten, dense 10; cross-entropy, Adam at a constant rate."""
    return NetTrainSpec(
        seed=2027, input_shape=(1, 8, 8),
        layers=(conv2d(16, 3, padding=1), RELU, max_pool(2), conv2d(32, 3, padding=1), RELU,
                FLATTEN, dense(10)),
        loss=LossKind.CROSS_ENTROPY,
        optimizer=Optimizer(OptimizerKind.ADAM, lr_micros=2_000, beta1_micros=900_000,
                            beta2_micros=999_000),
        schedule=Schedule(ScheduleKind.CONSTANT),
        n_samples=len(digits().labels), val_bps=2_000, batch=batch, steps=steps,
        checkpoint_every=checkpoint_every, inputs=inputs)


def digits_inputs(spec: NetTrainSpec) -> tuple[NetTrainSpec, bytes]:
    """`spec` bound to the digits as its uploaded inputs file, and the file."""
    data = digits()
    raw = encode_inputs(spec, {"x": data.x, "labels": data.labels})
    return replace(spec, inputs=bytes(file_id(raw))), raw


class BareCnn:
    """The baseline: the same training steps as the engine runs for `bench_cnn_spec`, written
    plainly with the array module: im2col convolutions (forward and backward), max pooling,
    dense, softmax cross-entropy and Adam over one flat parameter buffer; the minibatch drawn
    from one generator (the engine draws each step's from (seed, step))."""

    def __init__(self, spec: NetTrainSpec, x: Array, labels: Array, train_rows: Array,
                 xp: Any) -> None:
        self.xp, self.x, self.labels, self.rows = xp, x, labels, train_rows
        self.batch = spec.batch
        opt = spec.optimizer
        self.lr, self.b1, self.b2 = opt.lr_micros / 1e6, opt.beta1_micros / 1e6, \
            opt.beta2_micros / 1e6
        shapes = [(16, 1, 3, 3), (16,), (32, 16, 3, 3), (32,), (32 * 16, 10), (10,)]
        sizes = [math.prod(s) for s in shapes]
        rng = np.random.default_rng(1)
        flat = np.concatenate([rng.standard_normal(n).astype(np.float32) * 0.1 for n in sizes])
        self.theta = xp.asarray(flat)
        self.grad = xp.zeros_like(self.theta)
        self.m, self.v = xp.zeros_like(self.theta), xp.zeros_like(self.theta)
        offsets = np.cumsum([0, *sizes])
        self.p = [self.theta[a:b].reshape(s) for a, b, s in zip(offsets, offsets[1:], shapes,
                                                                  strict=False)]
        self.g = [self.grad[a:b].reshape(s) for a, b, s in zip(offsets, offsets[1:], shapes,
                                                                 strict=False)]
        self.t = 0

    def _im2col(self, x: Array) -> Array:
        """(n, c, h, w) -> (n*h*w, c*9): 3x3 windows with padding 1, stride 1."""
        n, c, h, w = x.shape
        pad = self.xp.zeros((n, c, h + 2, w + 2), dtype=x.dtype)
        pad[:, :, 1:-1, 1:-1] = x
        cols = self.xp.empty((n, h, w, c, 3, 3), dtype=x.dtype)
        for i in range(3):
            for j in range(3):
                cols[..., i, j] = pad[:, :, i:i + h, j:j + w].transpose(0, 2, 3, 1)
        return cols.reshape(n * h * w, c * 9)

    def _col2im(self, dcols: Array, shape: tuple[int, ...]) -> Array:
        n, c, h, w = shape
        d6 = dcols.reshape(n, h, w, c, 3, 3)
        dx = self.xp.zeros((n, c, h + 2, w + 2), dtype=dcols.dtype)
        for i in range(3):
            for j in range(3):
                dx[:, :, i:i + h, j:j + w] += d6[..., i, j].transpose(0, 3, 1, 2)
        return dx[:, :, 1:-1, 1:-1]

    def _conv(self, x: Array, w: Array, b: Array) -> tuple[Array, Array]:
        n, _, h, wd = x.shape
        cols = self._im2col(x)
        y = cols @ w.reshape(w.shape[0], -1).T
        y += b
        return y.reshape(n, h, wd, w.shape[0]).transpose(0, 3, 1, 2), cols

    def step(self, rng: np.random.Generator) -> None:
        """One step on a minibatch of training rows drawn from `rng`."""
        self.step_on(self.xp.asarray(self.rows[rng.integers(0, len(self.rows), self.batch)]))

    def step_on(self, idx: Array) -> None:
        """One step on data set rows `idx`."""
        xp = self.xp
        k1, b1, k2, b2, wd, bd = self.p
        gk1, gb1, gk2, gb2, gwd, gbd = self.g
        x, labels = self.x[idx], self.labels[idx]
        n = x.shape[0]
        # forward
        c1, cols1 = self._conv(x, k1, b1)
        r1 = xp.maximum(c1, 0)
        p1 = r1[:, :, 0::2, 0::2].copy()
        first = xp.zeros(p1.shape, dtype=xp.int8)  # a tie's first maximum takes the gradient
        for k, (i, j) in enumerate(POOL_OFFSETS[1:], start=1):
            v = r1[:, :, i::2, j::2]
            better = v > p1
            xp.copyto(p1, v, where=better)
            first[better] = k
        c2, cols2 = self._conv(p1, k2, b2)
        r2 = xp.maximum(c2, 0)
        flat = r2.reshape(n, -1)
        z = flat @ wd + bd
        # softmax cross-entropy gradient of the mean loss
        e = xp.exp(z - z.max(axis=1, keepdims=True))
        e *= (1.0 / n) / e.sum(axis=1, keepdims=True)
        e[xp.arange(n), labels] -= 1.0 / n
        # backward
        xp.matmul(flat.T, e, out=gwd)
        gbd[...] = e.sum(axis=0)
        dr2 = (e @ wd.T).reshape(r2.shape) * (r2 > 0)
        dy2 = dr2.transpose(0, 2, 3, 1).reshape(-1, 32)
        xp.matmul(dy2.T, cols2, out=gk2.reshape(32, -1))
        gb2[...] = dy2.sum(axis=0)
        dp1 = self._col2im(dy2 @ k2.reshape(32, -1), p1.shape)
        dr1 = xp.empty_like(r1)
        for k, (i, j) in enumerate(POOL_OFFSETS):
            dr1[:, :, i::2, j::2] = dp1 * (first == k)
        dr1 *= r1 > 0
        dy1 = dr1.transpose(0, 2, 3, 1).reshape(-1, 16)
        xp.matmul(dy1.T, cols1, out=gk1.reshape(16, -1))
        gb1[...] = dy1.sum(axis=0)
        # Adam
        self.t += 1
        self.m *= self.b1
        self.m += (1 - self.b1) * self.grad
        self.v *= self.b2
        self.v += (1 - self.b2) * self.grad * self.grad
        denom = xp.sqrt(self.v) / math.sqrt(1 - self.b2**self.t) + ADAM_EPS
        self.theta -= (self.lr / (1 - self.b1**self.t)) * self.m / denom


def bare_cnn_steps_per_s(spec: NetTrainSpec, raw: bytes, device: Device) -> float:
    """Steps per second of `BareCnn` on the same data, batch and step count."""
    data = net_dataset(spec, device, raw)
    bare = BareCnn(spec, data.x, data.target, data.train_rows, device.xp)
    rng = np.random.default_rng(0)
    bare.step(rng)  # warm-up

    def steps() -> None:
        for _ in range(spec.steps):
            bare.step(rng)

    return spec.steps / timed(device, steps)


def engine_steps_per_s(spec: NetTrainSpec, raw: bytes, device: Device) -> tuple[float, float]:
    """Steps per second of `run_workload` (its compute phase: the steps without inputs,
    checkpoint encoding and metrics), and of the whole run."""
    result = run_workload(spec, device, inputs=raw)
    return spec.steps / result.phases["compute"], spec.steps / result.compute_seconds


def part_e(args: argparse.Namespace, device: Device) -> PartResult:
    """`run_workload(NetTrainSpec)` steps per second against `BareCnn`, interleaved, best of
    `--repeats`."""
    part = PartResult("(e) training a CNN (conv16-pool-conv32-dense on the 8x8 digits, Adam)",
                      ["workload", "ours steps/s", "bare steps/s", "ratio %", "goal", ""])
    goal = f">= {100 * GOAL_SPEED_RATIO:.0f}%"
    for batch in args.cnn_batches:
        spec, raw = digits_inputs(bench_cnn_spec(batch, args.cnn_steps,
                                                 max(1, args.cnn_steps // 10)))
        engine_steps_per_s(replace(spec, steps=10, checkpoint_every=10), raw, device)  # warm-up
        ours, whole, bare = [], [], []
        for _ in range(args.repeats):
            compute, all_of_it = engine_steps_per_s(spec, raw, device)
            ours.append(compute)
            whole.append(all_of_it)
            bare.append(bare_cnn_steps_per_s(spec, raw, device))
        ratio = max(ours) / max(bare)
        part.rows.append([f"batch {batch}, {spec.steps} steps: run_workload compute vs bare "
                          f"{device.xp.__name__}", max(ours), max(bare), 100 * ratio, goal,
                          pass_fail(ratio >= GOAL_SPEED_RATIO)])
        part.rows.append(["  whole run_workload (inputs, 10 checkpoints encoded, metrics)",
                          max(whole), "", 100 * max(whole) / max(bare), "(info)", ""])
        part.results[f"batch_{batch}"] = {"steps": spec.steps, "ours_steps_per_s": ours,
                                          "whole_steps_per_s": whole, "bare_steps_per_s": bare,
                                          "ratio": ratio}
    return part


# --- (f) verification cost -------------------------------------------------------------------


def inference_check_cost(example: Example, rows: int, device: Device, samples: int,
                         cold: bool, repeats: int) -> tuple[float, float]:
    """Best seconds of a `rows`-row inference task (`run_workload`) and of the committee
    member's check of `samples` rows (`verify_model_inference`). `cold`: both load the model
    first (a worker process per job, as the agents run them); else both find its session
    cached."""
    (request,) = infer_requests(example, rows, 1)
    task, check = [], []
    for _ in range(repeats):
        if cold:
            clear_sessions()
        else:
            run_workload(request.spec, device, inputs=request.inputs, model=example.model)
        start = time.perf_counter()
        result = run_workload(request.spec, device, inputs=request.inputs, model=example.model)
        task.append(time.perf_counter() - start)
        if cold:
            clear_sessions()
        chosen = np.random.default_rng(5).choice(rows, size=min(samples, rows), replace=False)
        verdict = verify_model_inference(request.spec, example.model, request.inputs,
                                         result.output, sorted(int(r) for r in chosen),
                                         int(result.metrics["runtime"]), device)
        if not verdict.ok:
            raise SystemExit(f"honest inference rejected: {verdict.reason}")
        check.append(verdict.seconds)
    return min(task), min(check)


def check_profile(example: Example, rows: int, device: Device) -> dict[str, float]:
    """Seconds of the parts of a check that do not depend on the samples: loading the model
    (`inspect_model` and a session) and reading the whole inputs file (`check_inputs`)."""
    (request,) = infer_requests(example, rows, 1)
    clear_sessions()
    start = time.perf_counter()
    load_model(example.model, request.spec.model_info, device)
    loaded = time.perf_counter()
    check_inputs(request.spec, request.inputs)
    return {"load_s": loaded - start, "check_inputs_s": time.perf_counter() - loaded}


def part_f(args: argparse.Namespace, device: Device) -> PartResult:
    """Verification cost of both new kinds as a fraction of the work."""
    policy = VerifierPolicy()
    goal = f"<= {100 * GOAL_VERIFY_FRACTION:.0f}%"
    part = PartResult("(f) verification cost / the work (new kinds)",
                      ["check", "task ms", "verify ms", "fraction %", "goal", ""])
    rows = args.verify_rows
    models = [(f"MLP 64-{args.mlp_hidden}-64-10", mlp(hidden=args.mlp_hidden)),
              ("digits CNN", digits_cnn())]
    for name, example in models:
        for cold in (True, False):
            task_s, check_s = inference_check_cost(example, rows, device, policy.samples, cold,
                                                   args.repeats)
            frac = check_s / task_s
            label = (f"{name}, {rows:,} rows: {policy.samples} sampled rows, model loaded by "
                     "each (a worker per job)" if cold else
                     "  the same with the session cached (model load excluded)")
            part.rows.append([label, 1e3 * task_s, 1e3 * check_s, 100 * frac,
                              goal if cold else "(info)",
                              pass_fail(frac <= GOAL_VERIFY_FRACTION) if cold else ""])
            part.results[f"{example.name}_{'cold' if cold else 'warm'}"] = {
                "rows": rows, "samples": policy.samples, "task_s": task_s, "verify_s": check_s,
                "fraction": frac}
        profile = check_profile(example, rows, device)
        part.rows.append(["  of the check: loading the model (inspect_model + session)", "",
                          1e3 * profile["load_s"], "", "(info)", ""])
        part.rows.append(["  of the check: reading the whole inputs file (check_inputs)", "",
                          1e3 * profile["check_inputs_s"], "", "(info)", ""])
        part.results[f"{example.name}_profile"] = profile
    spec, raw = digits_inputs(bench_cnn_spec(args.cnn_batches[0], args.verify_cnn_steps,
                                             max(1, args.verify_cnn_steps // 100)))
    trained = run_workload(spec, device, inputs=raw)
    verdict = verify_training(spec, trained.checkpoints, trained.checkpoint_ids,
                              trained.checkpoint_root, trained.metrics, policy.intervals,
                              np.random.default_rng(3), device, raw)
    if not verdict.ok:
        raise SystemExit(f"honest training rejected: {verdict.reason}")
    frac = verdict.seconds / trained.compute_seconds
    part.rows.append([f"CNN training, {spec.steps} steps: {policy.intervals} of "
                      f"{spec.checkpoint_count} intervals + metrics",
                      1e3 * trained.compute_seconds, 1e3 * verdict.seconds, 100 * frac, goal,
                      pass_fail(frac <= GOAL_VERIFY_FRACTION)])
    part.results["cnn_training"] = {"steps": spec.steps, "batch": spec.batch,
                                    "checkpoints": spec.checkpoint_count,
                                    "intervals": policy.intervals,
                                    "task_s": trained.compute_seconds,
                                    "task_phases": trained.phases, "verify_s": verdict.seconds,
                                    "fraction": frac, "metrics": trained.metrics}
    return part


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of parts (d), (e) and (f)."""
    parser.add_argument("--mlp-hidden", type=int, default=16_384,
                        help="(d, f) the registered MLP's hidden width")
    parser.add_argument("--infer-rows", type=int, default=32_768,
                        help="(d) rows per pool request")
    parser.add_argument("--infer-requests", type=int, default=12,
                        help="(d) requests sent at once to the pool")
    parser.add_argument("--cnn-batches", type=lambda s: [int(v) for v in s.split(",")],
                        default=[32, 128], help="(e) batch sizes (f uses the first)")
    parser.add_argument("--cnn-steps", type=int, default=400, help="(e) steps per timed run")
    parser.add_argument("--repeats", type=int, default=3,
                        help="(e, f) best of this many (the machine is shared)")
    parser.add_argument("--verify-rows", type=int, default=MAX_BATCH,
                        help="(f) rows of the inference tasks checked")
    parser.add_argument("--verify-cnn-steps", type=int, default=3_000,
                        help="(f) steps of the training run checked (100 checkpoints)")


MODEL_PARTS: dict[str, Callable[[argparse.Namespace, Device], PartResult]] = {
    "d": part_d, "e": part_e, "f": part_f}
