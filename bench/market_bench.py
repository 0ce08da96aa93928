"""`scripts/bench market`: the GPU task market's costs, measured against baselines in the same run.

(a) end-to-end time of a training task of about --e2e-seconds of compute through a devnet of
    real processes (submission until the client sees it settled: auction, provider compute,
    committee verification) against the same workload run locally in this process (goal
    overhead <= 10%). In a real network the provider's device is its own; here it shares this
    machine with 4 validators and the committee's checks, and the table also times the local
    run again beside the idle devnet: what that sharing alone costs. `--pin-cpus` gives the
    provider's workload processes a CPU of their own (its node's `provider_cpus`), the nodes
    and their checks the others (`cpus`), and runs the local runs on the provider's CPU. On a
    2-CPU machine that keeps the nodes off the workload but crowds 4 nodes and 3 checks onto
    one CPU: measured 194% end to end with the verification at 16 s, against 153% and 6 s
    shared.
(b) verification cost as a fraction of the task's compute (goal <= 2%): Freivalds with r = 20
    against the n = 4096 product (a second row adds what both sides pay around it: generating
    A and B from the seed, and the provider's encoding and hashing of C), and training verified
    by replaying 1 or 2 of 100 checkpoint intervals plus the final metrics against the whole
    training run, both including the dataset generation and the hashing of fetched checkpoints.
    Freivalds must read A, B and C once (12 n^2 bytes) against 2 n^3 flops of the product, so
    its fraction is about 6 * (FLOP/s) / (bytes/s) / n: ~5% at n = 4096 on a CPU with a
    200 GFLOP/s BLAS and ~5 GB/s per core, falling as 1/n.
(c) workload speed against the library baseline (goal >= 90%): `run_matmul`'s product against a
    bare `a @ b` of the device's module (NumPy BLAS on the CPU, CuPy/cuBLAS on a GPU) on the same
    inputs, and training steps per second against a bare array-module implementation of the same
    SGD step. The table also shows the whole workload (inputs, encoding, hashing) for context.

(d) inference on a registered ONNX model (`bench.model_bench`; a wide MLP, 4.2 MFLOP per row,
    so that a request is compute rather than blocks): 12 requests of 32,768 rows, each with
    inputs of its own, sent at once to a pool on a 4-validator devnet (the model registered and
    the pool opened by a client account, half the answers checked by a committee), timed from
    the first request sent until the last answer is on chain, against a bare ONNX Runtime
    session with the provider's `session_options` over the same rows (the mean of runs before
    and after the devnet) and `run_workload` of the same specs in this process (goal >= 90% of
    the bare rows/s). Also the provider node's CPU seconds over the run and the latency of a
    request sent alone. Measured here (2 CPUs): 47%. What bounds it: every request costs two
    transactions and their blocks plus fetching its 8 MiB of inputs from the client's node
    (a request sent alone: 6.0 s to its answer against 1.4 s of compute), and the provider
    shares the 2 CPUs with 3 validators and the committee's checks (each a worker that loads
    the model and reads the whole inputs file); the provider node used 33 CPU seconds where
    `run_workload` here used 26.
(e) training a CNN of the client's own architecture (kind 5: conv 16, pool, conv 32, dense on
    the 8 x 8 digits, Adam): `run_workload`'s steps per second (its compute phase) against a
    bare array-module implementation of the same steps (`BareCnn`: im2col convolutions, max
    pooling, dense, softmax cross-entropy, Adam over a flat buffer, the same arithmetic to
    1e-5, tested) at batch 32 and 128 (goal >= 90%).
(f) verification cost of the new kinds (goal <= 2%): `verify_model_inference` of the verifier
    policy's default sample of rows against the whole inference task of 65,536 rows, both
    loading the model (each runs in a worker process of its own) and, for context, both with
    the session cached; for the wide MLP and for the digits CNN, whose rows are so cheap (0.18
    MFLOP) that the check's fixed costs bound it: loading the model and reading the whole
    inputs file (`check_inputs`), both shown. And `verify_training` of a kind-5 result with
    the policy's default intervals (1 of 100) plus the metrics, against its training run.

Numba compiles the CPU kernels on first use (or loads them from its cache): that warm-up is
timed separately and excluded from (c), as a provider pays it once per process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.market_common import (
    GOAL_SPEED_RATIO,
    GOAL_VERIFY_FRACTION,
    PartResult,
    settle,
    timed,
)
from bench.model_bench import MODEL_PARTS, add_arguments
from bench.report import pass_fail, print_table, write_json
from gpu.artifacts import decode_arrays
from gpu.cpu_kernels import kernels_for, warm_up
from gpu.cpus import format_cpu_list, on_cpus
from gpu.data import dataset, init_weights, layers_to_device, matmul_inputs
from gpu.device import BLAS_THREAD_VARIABLES, Array, Device, detect
from gpu.device_bench import benchmark_score
from gpu.verify import freivalds_vectors, verify_matmul, verify_training
from gpu.workloads import WorkloadResult, matmul_product, run_workload
from ogpu_node import devnet
from ogpu_node.encoding import encode
from ogpu_node.genesis import dev_account_key, load_template
from ogpu_node.ledger.market.payloads import SubmitTask
from ogpu_node.market_demo import Client
from ogpu_node.polling import wait_until
from ogpu_node.sdk import RpcCallError, SyncSubscription
from ogpu_node.sdk.sync_client import rpc_call
from ogpu_node.workloads.spec import MAX_CHECKPOINT_INTERVAL, MatmulSpec, TrainSpec

FREIVALDS_ROUNDS = 20


def bench_train_spec(steps: int = 6400, checkpoints: int = 100) -> TrainSpec:
    """The training task of parts (b) and (c): 100 checkpoints of 64 steps by default."""
    return TrainSpec(seed=42, n_features=64, hidden=(256, 256), n_classes=10, n_samples=8192,
                     batch=128, steps=steps, lr_micros=50_000,
                     checkpoint_every=max(1, steps // checkpoints))


def e2e_train_spec(steps: int) -> TrainSpec:
    """Part (a)'s task: an MLP 64-1024-1024-10 at batch 512 with 50 checkpoints (a member's
    replay of one interval is 2% of the work; each checkpoint costs the provider about 25 ms to
    encode, hash and store here)."""
    return TrainSpec(seed=7, n_features=64, hidden=(1024, 1024), n_classes=10, n_samples=8192,
                     batch=512, steps=steps, lr_micros=20_000,
                     checkpoint_every=max(1, min(steps // 50, MAX_CHECKPOINT_INTERVAL)))


def part_a(args: argparse.Namespace, device: Device) -> PartResult:
    """A training task of about 30 s of compute submitted through a 4-validator devnet of real
    processes (one provider, every validator a verifier), timed from submission until the
    client sees it settled, against `run_workload` of the same spec in this process: run
    before the devnet starts and again after it stops, since a shared machine's speed drifts
    (the baseline is their mean)."""
    layout = cpu_layout(args.pin_cpus)
    with on_cpus(layout.provider):
        spec = e2e_train_spec(args.e2e_steps or _steps_for(args.e2e_seconds, device))
    local, before_s = _run_locally(spec, device, layout.provider)
    part = PartResult(f"(a) end-to-end through a devnet (training task; {layout.describe()})",
                      ["measure", "seconds", "share of local", "goal", ""])
    root = Path(tempfile.mkdtemp(prefix="ogpu-bench-market-"))
    try:
        template = load_template()
        template["params"] = {**template["params"], "bid_window_ms": 2_000,
                              "reveal_window_ms": 2_000}
        (root / "template.json").write_text(json.dumps(template))
        base = devnet.free_port_base(12)
        net = root / "net"
        net.mkdir()
        devnet.create(net, 4, base_p2p=base, base_rpc=base + 6, providers=1,
                      # no second benchmark measure: it would run beside the timed workloads
                      node_settings=layout.node_settings(4, {1: {
                          "provider_device": device.kind, "provider_benchmark_refresh_s": 0}}),
                      template=root / "template.json")
        devnet.start(net)
        devnet.wait_healthy(net)
        url = devnet.rpc_url(net / "node0")
        wait_until(lambda: rpc_call(url, "provider_list")["count"] >= 1,
                   "the provider to register")
        settle(devnet.rpc_url(net / "node1"))
        _, beside_s = _run_locally(spec, device, layout.provider)  # beside the idle nodes
        client = Client(url, dev_account_key(3))
        submitted = time.perf_counter()
        task_id = client.send(SubmitTask(spec.KIND, encode(spec), 2_000_000, 0, 900_000,
                                         1_800_000)).hex()
        task = _closed_view(url, task_id)
        e2e_s = time.perf_counter() - submitted
        worker_s = _provider_compute_s(net / "node1" / "node.log")
    finally:
        devnet.stop(root / "net")
    _, after_s = _run_locally(spec, device, layout.provider)
    local_s = (before_s + after_s) / 2
    if task["closeReason"] == "completed" and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"the task closed {task['closeReason']} ({task.get('why')}): the devnet's homes "
              f"and logs are kept in {net}")
    created, awarded = task["createdMs"], task["awardedMs"] or task["createdMs"]
    result_ms = task["resultMs"] or awarded
    closed_ms = task["phaseEndMs"]
    overhead = e2e_s / local_s - 1
    ok = task["closeReason"] == "completed" and overhead <= 0.10
    part.rows += [
        ["local run_workload (baseline: the mean of the two below)", f"{local_s:.2f}", "100%",
         "", ""],
        ["  before the devnet started", f"{before_s:.2f}", f"{before_s / local_s:.0%}", "", ""],
        ["  after the devnet stopped", f"{after_s:.2f}", f"{after_s / local_s:.0%}", "", ""],
        ["  the same beside the idle devnet", f"{beside_s:.2f}",
         f"{beside_s / local_s:.0%}", "", ""],
        ["devnet: submission -> settled, as the client sees it", f"{e2e_s:.2f}",
         f"{e2e_s / local_s:.0%}", "<= 110%", pass_fail(ok)],
        ["  the protocol: the above less the provider's workload",
         f"{e2e_s - worker_s:.2f}" if worker_s else "?",
         f"{(e2e_s - worker_s) / local_s:.0%}" if worker_s else "", "", ""],
        ["  bidding + reveal (block time)", f"{(awarded - created) / 1000:.2f}", "", "", ""],
        ["  award -> result committed (provider compute, block time)",
         f"{(result_ms - awarded) / 1000:.2f}", f"{(result_ms - awarded) / 1000 / local_s:.0%}",
         "", ""],
        ["    of which the workload itself (the provider's log)",
         f"{worker_s:.2f}" if worker_s else "?",
         f"{worker_s / local_s:.0%}" if worker_s else "", "", ""],
        ["  result -> settled (verification, block time)",
         f"{(closed_ms - result_ms) / 1000:.2f}", "", "", ""],
    ]
    part.results = {"spec": str(spec), "work_units": spec.work_units(),
                    "cpu_layout": layout.describe(), "local_s": local_s,
                    "local_runs_s": [before_s, after_s],
                    "local_beside_devnet_s": beside_s,
                    "local_compute_s": local.compute_seconds, "e2e_s": e2e_s,
                    "overhead": overhead, "close_reason": task["closeReason"],
                    "bidding_s": (awarded - created) / 1000,
                    "provider_s": (result_ms - awarded) / 1000,
                    "provider_workload_s": worker_s,
                    "protocol_s": e2e_s - worker_s if worker_s else None,
                    "verification_s": (closed_ms - result_ms) / 1000,
                    "verdicts": task["verdicts"], "pass": ok}
    return part


def _run_locally(spec: TrainSpec, device: Device, cpus: frozenset[int]
                 ) -> tuple[WorkloadResult, float]:
    """`run_workload` of `spec` in this process, on `cpus`, and the seconds it took."""
    with on_cpus(cpus):
        start = time.perf_counter()
        result = run_workload(spec, device)
        return result, time.perf_counter() - start


@dataclass(frozen=True)
class CpuLayout:
    """Part (a)'s CPUs: the provider's workloads (and the local runs) on `provider`, the nodes
    and their checks on `nodes`; both empty when every process may run anywhere."""

    provider: frozenset[int] = frozenset()
    nodes: frozenset[int] = frozenset()

    def describe(self) -> str:
        if not self.provider:
            return "every process on every CPU"
        return (f"provider workload and local runs on CPU {format_cpu_list(self.provider)}, nodes "
                f"and checks on CPU {format_cpu_list(self.nodes)}")

    def node_settings(self, nodes: int, extra: dict[int, dict[str, object]]
                      ) -> dict[int, dict[str, object]]:
        """`extra` plus each node's `cpus` and the provider's (node 1's) `provider_cpus`."""
        if not self.provider:
            return extra
        node_cpus = format_cpu_list(self.nodes)
        settings = {i: {**extra.get(i, {}), "cpus": node_cpus} for i in range(nodes)}
        settings[1]["provider_cpus"] = format_cpu_list(self.provider)
        return settings


def cpu_layout(pin: bool) -> CpuLayout:
    """With `pin`, the last CPU this process may use for the provider, the others for the
    nodes; else (or with a single CPU, or where CPUs cannot be pinned) all shared."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2:
        return CpuLayout()
    return CpuLayout(frozenset(cpus[-1:]), frozenset(cpus[:-1]))


def _closed_view(url: str, task_id: str) -> dict[str, Any]:
    """The task's view once it closes, followed over a WebSocket subscription (polling would
    cost the 2-core machine the nodes share some of the CPU being measured)."""
    with SyncSubscription(url, {"kind": "task", "taskId": task_id}, idle_timeout=900) as views:
        for view in views:
            if view["status"] == "closed":
                return dict(view)
    raise RpcCallError(f"the subscription to task {task_id} ended before it closed")


def _steps_for(seconds: float, device: Device) -> int:
    """Training steps of part (a)'s task that take about `seconds` of compute on `device`
    (timed on a short run of the same spec)."""
    probe = e2e_train_spec(50)
    run_workload(replace(probe, steps=5, checkpoint_every=5), device)  # warm-up
    per_step = run_workload(probe, device).phases["compute"] / probe.steps
    return max(50, round(seconds / per_step / 50) * 50)


def _provider_compute_s(log: Path) -> float | None:
    """The workload time the provider logged ("... after X s of compute"), if it did."""
    found = re.findall(r"after ([0-9.]+) s of compute", log.read_text(errors="replace"))
    return float(found[-1]) if found else None


def part_b(args: argparse.Namespace, device: Device) -> PartResult:
    """Verification cost against the task's compute."""
    part = PartResult("(b) verification cost / task compute",
                      ["check", "task s", "verify s", "fraction %", "goal", ""])
    spec = MatmulSpec(args.matmul_n, seed=1)
    result = run_workload(spec, device)
    inputs = matmul_inputs(spec, device)
    check = verify_matmul(spec, result.output, FREIVALDS_ROUNDS, np.random.default_rng(1),
                          device, inputs)
    whole = verify_matmul(spec, result.output, FREIVALDS_ROUNDS, np.random.default_rng(2),
                          device)
    if not (check.ok and whole.ok):
        raise SystemExit(f"honest matmul rejected: {check.reason} / {whole.reason}")
    product = result.phases["compute"]
    frac = check.seconds / product
    goal = f"<= {100 * GOAL_VERIFY_FRACTION:.0f}%"
    part.rows.append([f"matmul n={spec.n}: Freivalds r={FREIVALDS_ROUNDS} vs the product",
                      product, check.seconds, 100 * frac, goal,
                      pass_fail(frac <= GOAL_VERIFY_FRACTION)])
    a, b = inputs
    c = device.asarray(decode_arrays(result.output)[0][1])
    x1 = device.asarray(freivalds_vectors(spec.n, 1, np.random.default_rng(3)))
    floor = min(timed(device, lambda: (a @ (b @ x1), c @ x1)) for _ in range(3))
    part.rows.append(["  floor: one pass over A, B and C (memory bandwidth, r=1)", product,
                      floor, 100 * floor / product, "(info)", ""])
    part.rows.append(["  whole: regenerate A, B + check vs generate + multiply + encode + hash",
                      result.compute_seconds, whole.seconds,
                      100 * whole.seconds / result.compute_seconds, "(info)", ""])
    part.results["matmul"] = {"n": spec.n, "rounds": FREIVALDS_ROUNDS,
                              "product_s": product, "check_s": check.seconds, "fraction": frac,
                              "task_s": result.compute_seconds, "task_phases": result.phases,
                              "verify_whole_s": whole.seconds,
                              "fraction_whole": whole.seconds / result.compute_seconds,
                              "floor_one_pass_s": floor, "floor_fraction": floor / product}

    tspec = bench_train_spec(args.train_steps)
    trained = run_workload(tspec, device)
    part.results["train"] = {"spec": tspec.to_fields(), "task_s": trained.compute_seconds,
                             "task_phases": trained.phases, "metrics": trained.metrics}
    count = tspec.checkpoint_count
    for intervals in (1, 2):
        verdict = verify_training(tspec, trained.checkpoints, trained.checkpoint_ids,
                                  trained.checkpoint_root, trained.metrics, intervals,
                                  np.random.default_rng(intervals), device)
        if not verdict.ok:
            raise SystemExit(f"honest training rejected: {verdict.reason}")
        frac = verdict.seconds / trained.compute_seconds
        part.rows.append([f"train {tspec.steps} steps: {intervals} of {count} intervals + "
                          "metrics", trained.compute_seconds, verdict.seconds, 100 * frac,
                          f"<= {100 * GOAL_VERIFY_FRACTION:.0f}%",
                          pass_fail(frac <= GOAL_VERIFY_FRACTION)])
        part.results["train"][f"verify_{intervals}_s"] = verdict.seconds
        part.results["train"][f"fraction_{intervals}"] = frac
    return part


def bare_sgd_steps(x: Array, y: Array, params: list[tuple[Array, Array]], steps: int,
                   batch: int, lr: float, xp: Any, rng: np.random.Generator) -> None:
    """The baseline: the same SGD step written plainly with the array module."""
    n = x.shape[0]
    rows = xp.arange(batch)
    for _ in range(steps):
        idx = xp.asarray(rng.integers(0, n, size=batch))
        acts = [x[idx]]
        labels = y[idx]
        for w, b in params[:-1]:
            acts.append(xp.maximum(acts[-1] @ w + b, 0))
        z = acts[-1] @ params[-1][0] + params[-1][1]
        e = xp.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        p[rows, labels] -= 1
        d = p / batch
        for layer in range(len(params) - 1, -1, -1):
            w, b = params[layer]
            dw = acts[layer].T @ d
            db = d.sum(axis=0)
            if layer > 0:
                d_next = (d @ w.T) * (acts[layer] > 0)
            w -= lr * dw
            b -= lr * db
            if layer > 0:
                d = d_next


def matmul_speed(n: int, device: Device) -> tuple[float, float]:
    """Best seconds of our panelled product and of a bare `a @ b`, interleaved."""
    a, b = matmul_inputs(MatmulSpec(n, seed=2), device)
    a @ b  # warm-up
    ours, bare = [], []
    for _ in range(3 if n <= 2048 else 2):
        ours.append(timed(device, lambda: matmul_product(a, b, device)))
        bare.append(timed(device, lambda: a @ b))
    return min(ours), min(bare)


def train_speed(spec: TrainSpec, device: Device) -> tuple[float, float]:
    """Best steps per second of `train` (its compute phase) and of the bare step, interleaved."""
    ours, bare = [], []
    x, y = dataset(spec, device)
    for _ in range(2):  # best of two: the machine is shared
        result = run_workload(spec, device)
        ours.append(spec.steps / result.phases["compute"])
        bare.append(spec.steps / _time_bare_training(spec, x, y, device))
    return max(ours), max(bare)


def _time_bare_training(spec: TrainSpec, x: Array, y: Array, device: Device) -> float:
    params = layers_to_device(init_weights(spec), device)
    return timed(device, lambda: bare_sgd_steps(x, y, params, spec.steps, spec.batch,
                                                 spec.learning_rate, device.xp,
                                                 np.random.default_rng(0)))


def part_c(args: argparse.Namespace, device: Device) -> PartResult:
    """Workload speed against the library baseline on the same device."""
    part = PartResult("(c) workload speed / library baseline",
                      ["workload", "ours", "baseline", "ratio %", "goal", ""])
    lib = "cuBLAS (cupy)" if device.kind == "cuda" else "NumPy BLAS"
    goal = f">= {100 * GOAL_SPEED_RATIO:.0f}%"
    for n in args.sizes:
        ours, bare = matmul_speed(n, device)
        whole = run_workload(MatmulSpec(n, seed=2), device)
        gflops = 2 * n**3 / 1e9
        ratio = bare / ours
        part.rows.append([f"matmul n={n}, GFLOP/s vs bare a @ b ({lib})", gflops / ours,
                          gflops / bare, 100 * ratio, goal, pass_fail(ratio >= GOAL_SPEED_RATIO)])
        part.rows.append([f"  whole run_matmul n={n} (inputs, product, encode, hash), s",
                          whole.compute_seconds, "", "", "", ""])
        part.results[f"matmul_{n}"] = {"ours_s": ours, "bare_s": bare, "ratio": ratio,
                                       "whole_s": whole.compute_seconds,
                                       "whole_phases": whole.phases}
    for hidden, batch in ((256, 128), (1024, 512)):
        spec = TrainSpec(seed=5, n_features=64, hidden=(hidden, hidden), n_classes=10,
                         n_samples=8192, batch=batch, steps=args.speed_steps, lr_micros=50_000,
                         checkpoint_every=max(1, args.speed_steps // 10))
        ours, bare = train_speed(spec, device)
        ratio = ours / bare
        part.rows.append([f"train 64-{hidden}-{hidden}-10 batch {batch}, steps/s vs bare "
                          f"{device.xp.__name__} step", ours, bare, 100 * ratio, goal,
                          pass_fail(ratio >= GOAL_SPEED_RATIO)])
        part.results[f"train_h{hidden}_b{batch}"] = {
            "ours_steps_per_s": ours, "bare_steps_per_s": bare, "ratio": ratio,
            "kernels": kernels_for(device).name}
    score = benchmark_score(device, seconds=1.0)
    part.rows.append(["device benchmark score (registration), GFLOP/s", score, "", "", "", ""])
    part.results["benchmark_score_gflops"] = score
    return part


def _set_blas_threads(threads: int, argv: list[str]) -> None:
    """BLAS reads its thread count when NumPy loads, so re-run this process with it set.

    Multithreaded BLAS on small matrices collapses (10x and worse) when another process holds
    a core, because its threads spin-wait on each other; one thread gives repeatable numbers.
    """
    if threads <= 0 or os.environ.get(BLAS_THREAD_VARIABLES[0]) == str(threads):
        return
    env = {**os.environ, **dict.fromkeys(BLAS_THREAD_VARIABLES, str(threads))}
    os.execve(sys.executable, [sys.executable, "-m", "bench.market_bench", *argv], env)


PARTS: dict[str, Callable[[argparse.Namespace, Device], PartResult]] = {
    "a": part_a, "b": part_b, "c": part_c, **MODEL_PARTS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench market")
    parser.add_argument("--parts", default="a,b,c", help="comma-separated parts among a..f")
    parser.add_argument("--e2e-seconds", type=float, default=30.0,
                        help="compute time part (a)'s task is sized to on this device")
    parser.add_argument("--e2e-steps", type=int, default=0,
                        help="training steps of part (a)'s task (default: --e2e-seconds)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the devnets' homes and logs of parts (a) and (d) (always kept "
                             "on a failure)")
    parser.add_argument("--pin-cpus", action="store_true",
                        help="part (a): the provider's workload and the local runs on the last "
                             "CPU, the nodes and their checks on the others (default: every "
                             "process on every CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--matmul-n", type=int, default=4096)
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")],
                        default=[2048, 4096])
    parser.add_argument("--train-steps", type=int, default=6400)
    parser.add_argument("--speed-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (default 1: stable timings on a shared machine; "
                             "0 leaves the library default)")
    add_arguments(parser)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    _set_blas_threads(args.threads, sys.argv[1:] if argv is None else argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; choose among {', '.join(PARTS)}")
    device = detect(args.device)
    jit_s = warm_up(device)
    blas_threads = os.environ.get(BLAS_THREAD_VARIABLES[0], "default")
    print(f"device: {device.kind} {device.name}, {device.memory_mb} MiB; BLAS threads "
          f"{blas_threads}; kernels {kernels_for(device).name} "
          f"(JIT warm-up {jit_s:.2f} s, excluded)")
    results: dict[str, Any] = {"device": {"kind": device.kind, "name": device.name,
                                          "memory_mb": device.memory_mb},
                               "kernels": kernels_for(device).name, "jit_warmup_s": jit_s,
                               "blas_threads": blas_threads,
                               "goals": {"verify_fraction": GOAL_VERIFY_FRACTION,
                                         "speed_ratio": GOAL_SPEED_RATIO}}
    for name in parts:
        part = PARTS[name](args, device)
        print_table(part.title, part.headers, part.rows)
        results[name] = part.results
    write_json("market", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
