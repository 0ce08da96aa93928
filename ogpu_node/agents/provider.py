"""The provider agent: registers this node as a GPU provider, bids, runs awarded tasks, commits.

After every finalised block it looks at the open tasks:

* **bidding**: bids on a task the chain lets it bid on (`why_not_bid`: the chain's own rule,
  `rules.bid_eligibility`, then its price floor is within the task's maximum, it can finish
  within the task's execution time at its benchmark, it runs fewer than `max_concurrent` tasks).
  It bids its floor: the auction pays the second price, so asking one's true cost is the best
  strategy. The sealed bid's price and salt are kept in the node's store (`secrets.py`) before
  the bid is sent, so a restart does not lose the reveal.
* **revealing**: reveals its sealed bids.
* **benchmark**: a measured one (no declared `benchmark`) is measured on the provider's `cpus`
  at start, again once start-up is over and then every `benchmark_refresh_s` while idle, and
  registered again when it moved.
* **pools**: joins an open pool whose price per request covers its floor for the pool's largest
  batch (bonding the pool's minimum), and races every request it is drawn for: the inference
  runs in a worker thread and the first result on chain is paid.
* **running, awarded to us**: fetches the client's uploaded inputs when the spec names a file
  (reporting them missing, `ReportMissingInputs`, when no peer serves them within
  INPUTS_FETCH_ATTEMPTS tries or they are not what the spec asks for: the committee checks the
  report and, if it stands, the client's collateral is ours), then
  runs the workload in a child process (`gpu.worker_process`: a spare is kept started, so a
  job does not wait for an interpreter; killed at once when the task stops being ours, a crash
  cannot take the node down; pinned to the policy's `cpus` when set, so that a CPU
  workload and the node keep off each other's cores; `process=False` runs it in a worker
  thread instead),
  publishes progress about once a second, stores each checkpoint (and the output) as a blob as
  soon as the worker makes it (served to verifiers and the client over `/ogpu/blob/1`) and
  commits the result before the deadline. A
  task that leaves the running state (cancelled, timed out) stops its worker. Every file of the
  result is sealed for the client under a fresh ephemeral key of the attempt
  (`ogpu_node.result_crypto`), which the agent gives to the committee's members when they ask
  (`result_keys.py`) and releases on chain (`ReleaseResult`) once the result is accepted: that
  release is what pays it. A task the worker refuses before it starts
  (`workloads.limits.check_runnable`: more memory than our device has, or over a protocol limit) or
  fails to run is given back at once (`ReturnTask`, with the `ReturnReason` the worker's error
  names): that costs `return_penalty_bps` of the collateral, where letting the deadline pass
  would cost all of it.

`fault` is test-only fault injection for the devnet and end-to-end tests: `corrupt` perturbs
every checkpoint (one element of a matrix product, every row of an inference) before committing,
`vanish` never commits, `false_report` reports the inputs of a task that has uploaded inputs
missing without trying to fetch them.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import trio

from gpu.artifacts import Sealer, checkpoint_chain, decode_arrays, encode_arrays
from gpu.cpus import on_cpus
from gpu.device import Device, detect
from gpu.device_bench import benchmark_score
from gpu.errors import GpuError, WorkloadCancelled
from gpu.worker_process import Workers, workers_for
from gpu.workloads import WorkloadResult, run_workload
from ogpu_node.address import address_to_text
from ogpu_node.agents.closing import Closing
from ogpu_node.agents.decisions import Decision, DecisionLog, split_reason
from ogpu_node.agents.model_files import ModelFiles, check_in_worker
from ogpu_node.agents.result_keys import serve_result_keys
from ogpu_node.agents.secrets import AgentSecrets
from ogpu_node.agents.task_files import FilesUnusable, TaskFiles, fetch_task_files
from ogpu_node.agents.wallet import NodeWallet
from ogpu_node.blobs import file_id
from ogpu_node.config import PROVIDER_FAULTS
from ogpu_node.errors import OgpuError
from ogpu_node.ledger import State
from ogpu_node.ledger.errors import InvalidTransaction
from ogpu_node.ledger.market.auction import bid_commitment
from ogpu_node.ledger.market.payloads import (
    CommitBid,
    CommitResult,
    JoinPool,
    PoolResult,
    RegisterProvider,
    ReleaseResult,
    ReportMissingInputs,
    ReturnTask,
    RevealBid,
)
from ogpu_node.ledger.market.pools import request_spec
from ogpu_node.ledger.market.records import (
    LIVE_REQUESTS,
    Model,
    Pool,
    PoolRequest,
    RequestStatus,
    ReturnReason,
    Task,
    TaskResult,
    TaskStatus,
    device_model,
    key_commitment,
)
from ogpu_node.ledger.market.records import Device as DeviceRecord
from ogpu_node.ledger.market.rules import bid_eligibility
from ogpu_node.node.node import Node
from ogpu_node.result_crypto import ResultKey, ephemeral_public, new_ephemeral, provider_key
from ogpu_node.types import Address, Hash32
from ogpu_node.workloads.kinds import WorkloadSpec, decode_bound_spec, decode_spec
from ogpu_node.workloads.limits import DeviceMemoryTooSmall, SpecOverLimit
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.net import NetTrainSpec
from ogpu_node.workloads.spec import (
    InferSpec,
    InvalidSpec,
    TrainSpec,
    WorkloadKind,
    workload_kind_name,
)
from p2p.network import TaskStatus as StartedStatus

log = logging.getLogger("ogpu.provider")

FAULTS = PROVIDER_FAULTS

BENCHMARK_CHANGE = 5
"""A measured benchmark is registered again when it moved by more than 1/BENCHMARK_CHANGE."""
CLIENT_FILE_FAULTS = frozenset({"inputs_malformed", "model_refused", "model_mismatch"})
"""Codes of a run's errors that are the client's files' doing (inputs the model fails on, a
model the runtime refuses): reported (`ReportMissingInputs`), not returned at a penalty."""
INPUTS_FETCH_ATTEMPTS = 5
INPUTS_RETRY_S = 1.5
MAX_BENCHMARKS_SHOWN = 16
"""Latest device measures kept for `agent_status`."""
TIME_MARGIN = 0.5
"""Bid only when the work fits in this share of the task's execution time at our benchmark."""


@dataclass(frozen=True)
class ProviderPolicy:
    price_floor: int
    stake: int
    max_concurrent: int = 1
    device: str = "auto"
    benchmark: int = 0
    """Declared GFLOP/s; 0 measures the device at start, and again later (below)."""
    benchmark_settle_s: float = 20.0
    """A measured benchmark is measured again this long after start, when start-up is over."""
    benchmark_refresh_s: float = 1_800.0
    """... and then this often, each time only while no workload runs here (0: measured at start
    only)."""
    fault: str = "none"
    process: bool = True
    """Run task workloads in a child process (see `gpu.worker_process`), else in a thread."""
    cpus: frozenset[int] = frozenset()
    """The CPUs those child processes run on (empty: the node's)."""


def why_not_bid(task: Task, state: State, me: Address, policy: ProviderPolicy, benchmark: int,
                busy: int) -> str | None:
    """Why this provider does not bid on `task`, as a code (None: it bids): first the chain's
    own code
    (`rules.bid_eligibility`, so that no bid sent here is refused), then the agent's: it bids
    its floor, which the reveal would refuse above the task's maximum; the work must fit in the
    execution time at its benchmark; it must have a free place under `max_concurrent`."""
    code = bid_eligibility(state.params, me, state.providers.get(me), task)
    if code is not None:
        return code
    if policy.price_floor > task.max_price:
        return "price_floor_above_max_price"
    if task.work_units / max(1, benchmark) > task.exec_ms / 1000 * TIME_MARGIN:
        return "too_slow_for_exec_time"
    if busy >= policy.max_concurrent:
        return "at_concurrent_limit"
    return None


class ProviderAgent:
    """Acts as this node's GPU provider (see the module docstring)."""

    def __init__(self, node: Node, policy: ProviderPolicy, device: Device | None = None) -> None:
        if policy.fault not in FAULTS:
            raise OgpuError(f"provider fault must be one of {', '.join(FAULTS)}")
        self.node = node
        self.wallet = NodeWallet(node)
        self.me = Address(self.wallet.address)
        self.policy = policy
        self.device = device
        self.benchmark = policy.benchmark
        self.bids = AgentSecrets(node.chain.store, "bid")
        """(task, attempt) -> [price, salt] of our sealed bid, kept across restarts."""
        self.jobs: dict[tuple[bytes, int], float] = {}
        """(task, attempt) -> progress fraction of the workloads running here."""
        self.started: set[tuple[bytes, int]] = set()
        """(task, attempt) whose workload was started here: each runs once."""
        self.result_keys = AgentSecrets(node.chain.store, "result-key")
        """(task, attempt) -> [our ephemeral key sealing that attempt's result]
        (`ogpu_node.result_crypto`): given to its committee, released once it is accepted;
        kept across restarts."""
        self.models = ModelFiles(self._fetch_client_file, check_in_worker(lambda: self.workers))
        """Registered models' files, checked against their registered info before we bid."""
        self.decisions = DecisionLog()
        """Recent skips with their reasons, bids and outcomes (`agent_status`)."""
        self.benchmarks: deque[tuple[int, int]] = deque(maxlen=MAX_BENCHMARKS_SHOWN)
        """(height, GFLOP/s) of the latest measures of the device."""
        self.closing = Closing()
        """Set when the agent is being cancelled: running workloads stop at once."""
        self.workers: Workers | None = None
        node.agents.provider = self

    async def serve(self, *, task_status: StartedStatus = trio.TASK_STATUS_IGNORED
                    ) -> None:
        if self.device is None:
            self.device = detect(self.policy.device)
        if self.policy.cpus and not self.policy.process:
            log.warning("provider CPUs are set but workloads run in the node's threads "
                        "(provider_process = false): they run on the node's CPUs")
        if not self.benchmark:
            self.benchmark = await self._measure()
        log.info("provider on %s (%s), benchmark %d GFLOP/s, floor %d per unit",
                 self.device.name, self.device.kind, self.benchmark, self.policy.price_floor)
        serve_result_keys(self.node, self._key_for_committee)
        task_status.started()
        with workers_for(self.device, self.policy.process, self.policy.cpus) as self.workers:
            self.node.agents.workers["provider"] = self.workers.usage
            self.node.agents.device = self.device
            async with trio.open_nursery() as nursery, self.node.subscribe_blocks() as blocks:
                nursery.start_soon(self.closing.watch)
                if not self.policy.benchmark and self.policy.benchmark_refresh_s > 0:
                    nursery.start_soon(self._remeasure)
                await self.step(nursery)
                async for _ in blocks:
                    await self.step(nursery)

    async def step(self, nursery: trio.Nursery) -> None:
        """React to the latest finalised state."""
        state = self.node.chain.state
        self._forget_closed(state)
        try:
            await self._register(state)
            for model_id in state.changed_models:  # just registered: check it before a task
                self._check_soon(nursery, state.models[model_id])  # names it (a check can
                # outlast a bid window)
            for task_id in sorted(state.open_tasks):
                await self._act_on(nursery, state, Hash32(task_id), state.tasks[task_id])
            for pool_id, pool in sorted(state.pools.items()):
                if not pool.closed:
                    await self._serve_pool(nursery, state, Hash32(pool_id), pool)
        except InvalidTransaction as exc:
            log.info("provider transaction refused: %s: %s", exc.code, exc)

    async def _remeasure(self) -> None:
        """Measure the device again once start-up is over, then every `benchmark_refresh_s`,
        while no workload of ours runs; a score that moved by more than a fifth is registered
        by the next `step`. The first measure runs while the node starts (its verifier's worker
        loads kernels meanwhile) and, on a shared machine, while other nodes start: a devnet's
        providers registered 9-11 GFLOP/s on a device that does 95."""
        assert self.device is not None
        delay = self.policy.benchmark_settle_s
        while True:
            await trio.sleep(delay)
            if self.jobs or self.me not in self.node.chain.state.providers:
                delay = self.policy.benchmark_settle_s  # busy, or not registered yet: soon
                continue
            delay = self.policy.benchmark_refresh_s
            score = await self._measure()
            if abs(score - self.benchmark) * BENCHMARK_CHANGE > self.benchmark:
                log.info("device benchmark now %d GFLOP/s (registered %d): registering it",
                         score, self.benchmark)
                self.benchmark = score

    async def _measure(self) -> int:
        """The device's benchmark score, measured on the provider's CPUs (at the node's
        priority: the device's capacity, not the share a niced workload gets while the node is
        busy; measured at +10 in a worker, a devnet's providers registered 3-23 GFLOP/s on a
        device that does 80)."""
        device, cpus = self.device, self.policy.cpus
        assert device is not None  # set by `serve`

        def measure() -> int:
            with on_cpus(cpus):
                return benchmark_score(device)

        score = await trio.to_thread.run_sync(measure)
        self.benchmarks.append((self.node.chain.state.height, score))
        return score

    def _forget_closed(self, state: State) -> None:
        """Drop what we remember of tasks and pool requests that are over (a long-running node
        must not grow)."""
        live = set(state.open_tasks) | {bytes(r.request_id) for p in state.pools.values()
                                        for r in p.requests if r.status in LIVE_REQUESTS}
        for secrets in (self.bids, self.result_keys):
            for key in secrets.recorded():
                if key[0] not in live:
                    secrets.forget(key)
        self.started = {k for k in self.started if k[0] in state.open_tasks}
        self.decisions.forget_closed(set(state.open_tasks))

    async def _register(self, state: State) -> None:
        assert self.device is not None
        current = state.providers.get(self.me)
        devices = (DeviceRecord(device_model(self.device.name), self.device.memory_mb),)
        if current is not None and (current.benchmark, current.price_floor, current.devices) == (
                self.benchmark, self.policy.price_floor, devices) and (
                current.stake >= state.params.provider_min_stake):
            return
        have = current.stake if current else 0
        stake = max(0, max(self.policy.stake, state.params.provider_min_stake) - have)
        if await self.wallet.send_once(("register", self.benchmark), RegisterProvider(
                devices, self.benchmark, self.policy.price_floor, stake)):
            log.info("registering as a provider with %d more stake", stake)

    async def _act_on(self, nursery: trio.Nursery, state: State, task_id: Hash32,
                      task: Task) -> None:
        key = (bytes(task_id), task.attempt.number)
        self._note_outcome(state, task_id, task)
        if task.status == TaskStatus.BIDDING:
            reason = why_not_bid(task, state, self.me, self.policy, self.benchmark,
                                 self._busy(state)) or self._model_refusal(nursery, state, task)
            if reason is not None:
                if reason != "already_bid":  # our own bid, recorded as such
                    self._decide(state, task_id, task, *split_reason(reason))
                return
            # a bid sent again (the first was dropped) seals the same price and salt: should
            # the first reach the chain after all, our reveal still matches it
            kept = self.bids.get(key)
            price, salt = kept or (self.policy.price_floor, os.urandom(16))
            if kept is None:  # recorded before the commitment leaves the node
                self.bids.put(key, (price, salt))
            commitment = bid_commitment(task_id, task.attempt.number, self.me, price, salt)
            if await self.wallet.send_once(("bid", key), CommitBid(task_id, commitment)):
                log.info("bid on task %s (attempt %d) at %d per unit", task_id.hex()[:12],
                         task.attempt.number, price)
                self._decide(state, task_id, task, "bid", f"sealed bid at {price} per unit")
        elif task.status == TaskStatus.REVEALING and (kept := self.bids.get(key)):
            mine = next((b for b in task.attempt.bids if b.bidder == self.me), None)
            if mine is not None and not mine.revealed:
                price, salt = kept
                await self.wallet.send_once(("reveal", key), RevealBid(task_id, price, salt))
        elif (task.status == TaskStatus.RELEASING and task.attempt.provider == self.me
              and (ephemeral := self.result_keys.get(key))):
            if await self.wallet.send_once(("release", key), ReleaseResult(
                    task_id, task.attempt.number, ephemeral_public(ephemeral[0]))):
                log.info("task %s accepted: releasing its key to the client", task_id.hex()[:12])
        elif (task.status == TaskStatus.RUNNING and task.attempt.provider == self.me
              and key not in self.started):
            self.started.add(key)
            self.jobs[key] = 0.0
            nursery.start_soon(self._run_job, task_id, task)

    def _decide(self, state: State, task_id: Hash32, task: Task, code: str, text: str) -> None:
        self.decisions.record(Decision(bytes(task_id), task.attempt.number,
                                       workload_kind_name(task.kind), state.height, code, text))

    def _note_outcome(self, state: State, task_id: Hash32, task: Task) -> None:
        """Once an attempt we bid on is awarded: whether we won it, at what price."""
        if task.status in (TaskStatus.BIDDING, TaskStatus.REVEALING) or not any(
                b.bidder == self.me for b in task.attempt.bids):
            return
        if self.decisions.last_code(bytes(task_id), task.attempt.number) in ("won", "lost"):
            return
        if task.attempt.provider == self.me:
            self._decide(state, task_id, task, "won",
                         f"awarded to us at {task.attempt.price} per unit")
        else:
            winner = (address_to_text(task.attempt.provider) if task.attempt.provider
                      else "nobody")
            self._decide(state, task_id, task, "lost",
                         f"awarded to {winner} at {task.attempt.price} per unit")

    def status_report(self) -> dict[str, Any]:
        """Device, benchmark history, running jobs, recent decisions and refused models, for
        `agent_status` (JSON-ready)."""
        device = self.device
        return {
            "address": address_to_text(self.me),
            "device": None if device is None else {
                "kind": device.kind, "name": device.name,
                "memoryMb": device.memory_bytes // 2**20},
            "benchmark": self.benchmark,
            "benchmarkMeasured": not self.policy.benchmark,
            "benchmarks": [{"height": h, "gflops": g} for h, g in self.benchmarks],
            "priceFloor": str(self.policy.price_floor),
            "maxConcurrent": self.policy.max_concurrent,
            "jobs": [{"id": task.hex(), "attempt": attempt, "progress": round(done, 3)}
                     for (task, attempt), done in sorted(self.jobs.items())],
            "decisions": [{"taskId": d.task_id.hex(), "attempt": d.attempt, "kind": d.kind,
                           "height": d.height, "code": d.code, "text": d.text,
                           "outcome": d.is_outcome}
                          for d in reversed(self.decisions.recent())],
            "modelsRefused": [{"fileId": bytes(file).hex(), "code": code, "text": text}
                              for (file, _), reason in sorted(self.models.refused().items())
                              for code, text in [split_reason(reason)]],
        }

    async def _serve_pool(self, nursery: trio.Nursery, state: State, pool_id: Hash32,
                          pool: Pool) -> None:
        """Join pools that pay our floor; race the requests we are drawn for."""
        bond = pool.stake_of(self.me)
        if not bond:
            if pool.model_id is not None and self._model_refusal_of(nursery, state,
                                                                    pool.model_id):
                return
            provider = state.providers.get(self.me)
            largest = PoolRequest(Hash32(bytes(32)), 0, pool.max_batch, 0, 0, (), 0)
            work = request_spec(pool, largest, state.model_info).work_units()
            if (provider is not None and pool.owner != self.me
                    and pool.price >= self.policy.price_floor * work
                    and provider.free_stake >= pool.min_stake
                    and await self.wallet.send_once(("join", pool_id),
                                                    JoinPool(pool_id, pool.min_stake))):
                log.info("joining pool %s (%s at %d per request)", pool_id.hex()[:12],
                         pool.model, pool.price)
            return
        for request in pool.requests:
            key = (bytes(request.request_id), 0)
            if (request.status == RequestStatus.OPEN and self.me in request.racers
                    and key not in self.jobs):
                self.jobs[key] = 0.0
                nursery.start_soon(self._race, pool_id, request)

    def _model_refusal(self, nursery: trio.Nursery, state: State, task: Task) -> str | None:
        """Why we do not bid on a task on a registered model (its file is being checked, or
        failed the check); None for the other kinds."""
        if task.kind != WorkloadKind.MODEL_INFER:
            return None
        spec = decode_spec(task.kind, task.spec)
        assert isinstance(spec, ModelInferSpec)  # the ledger admitted it as kind 4
        return self._model_refusal_of(nursery, state, spec.model)

    def _model_refusal_of(self, nursery: trio.Nursery, state: State,
                          model_id: Hash32) -> str | None:
        model = state.models[model_id]
        if not self.models.checked(model):
            self._check_soon(nursery, model)
            return "model_checking"
        return self.models.refusal(model)

    def _check_soon(self, nursery: trio.Nursery, model: Model) -> None:
        """Check the model's file in the background, unless that is done or under way."""
        if not self.models.checked(model):
            nursery.start_soon(self.models.check, model)

    async def _race(self, pool_id: Hash32, request: PoolRequest) -> None:
        key = (bytes(request.request_id), 0)
        assert self.device is not None
        try:
            state = self.node.chain.state
            pool = state.pools.get(pool_id)
            if pool is None:
                return
            spec = request_spec(pool, request, state.model_info)
            files = await fetch_task_files(spec, self._fetch_client_file, self.models,
                                           state.models)
            # the answer is sealed for the pool's owner (as a task's result is for its client);
            # a race run again (its answer still pending) keeps the key the first one committed
            kept = self.result_keys.get(key)
            ephemeral = bytes(kept[0]) if kept else new_ephemeral()
            if kept is None:
                self.result_keys.put(key, [ephemeral])
            owner = self.node.chain.state.account(pool.owner).public_key
            sealer = provider_key(ephemeral, owner, request.request_id, 0)
            result = await trio.to_thread.run_sync(functools.partial(
                run_workload, spec, self.device, sealer=sealer, inputs=files.inputs,
                model=files.model))
            if self.policy.fault == "vanish":
                return
            if self.policy.fault == "corrupt":
                result = corrupt_result(result, spec, sealer)
            await trio.to_thread.run_sync(self._store, result)
            await self.wallet.send_once(("answer", key), PoolResult(
                pool_id, request.request_id, result.output_id, ephemeral_public(ephemeral)))
        except (GpuError, InvalidSpec, OgpuError) as exc:
            log.error("pool request %s failed here: %s", request.request_id.hex()[:12], exc)
        finally:
            self.jobs.pop(key, None)

    def _busy(self, state: State) -> int:
        """Workloads that hold one of our `max_concurrent` places: pool races, and tasks still
        awarded to us (one cancelled or timed out frees its place at once, while its worker is
        being stopped)."""
        return sum(1 for task_id, attempt in self.jobs
                   if task_id not in state.tasks or self._still_ours(task_id, attempt, state))

    def _still_ours(self, task_id: bytes, attempt: int, state: State | None = None) -> bool:
        task = (state or self.node.chain.state).tasks.get(Hash32(task_id))
        return (task is not None and task.status == TaskStatus.RUNNING
                and task.attempt.provider == self.me and task.attempt.number == attempt)

    async def _run_job(self, task_id: Hash32, task: Task) -> None:
        key = (bytes(task_id), task.attempt.number)
        workers = self.workers
        assert workers is not None  # set while `serve` runs, which starts this
        try:
            spec = decode_bound_spec(task.kind, task.spec, self.node.chain.state.model_info)
            files = await self._task_files(task_id, task, spec)
            if files is None:
                return
            log.info("running task %s: %s", task_id.hex()[:12], spec)
            sealer = self._sealer(task_id, task)

            def on_progress(fraction: float) -> None:
                self.jobs[key] = fraction

            def should_stop() -> bool:
                # called from the worker thread; the finalised state is replaced, never mutated
                return self.closing.set or not self._still_ours(task_id, task.attempt.number)

            # each file of the result is stored as soon as it is made (a fault injection
            # that corrupts the result needs them all first); held from eviction until the
            # result is due, as no state names them before it is committed
            keep_s = max(0, task.phase_end_ms - self.node.chain.state.timestamp) / 1000

            def store_file(data: bytes) -> None:
                self._store_file(data, keep_s)

            store = store_file if self.policy.fault != "corrupt" else None
            result: WorkloadResult | None = None
            failed: ReturnReason | None = None
            malformed = False
            async with trio.open_nursery() as reporters:
                reporters.start_soon(self._report_progress, task_id, task.attempt.number)
                try:
                    result = await trio.to_thread.run_sync(
                        workers.call, "run_workload",
                        {"spec": spec, "sealer": sealer, **files.workload_args()},
                        on_progress, should_stop, store)
                except WorkloadCancelled:
                    log.info("task %s is no longer ours: stopped", task_id.hex()[:12])
                except OgpuError as exc:  # caught here, not as a nursery's exception group
                    if getattr(exc, "code", "") in CLIENT_FILE_FAULTS:
                        # the files passed their checks, yet the run fails on them
                        log.warning("task %s: %s", task_id.hex()[:12], exc)
                        malformed = True
                    else:  # the worker refused the task, the device or the spec failed, or
                        # storing a checkpoint did (store full)
                        log.error("task %s failed here: %s", task_id.hex()[:12], exc)
                        failed = return_reason(exc)
                finally:
                    reporters.cancel_scope.cancel()
            if result is None:
                if malformed and self._still_ours(task_id, task.attempt.number):
                    await self.wallet.send_once(("inputs", key),
                                                ReportMissingInputs(task_id, "inputs_malformed"))
                if failed is not None and self._still_ours(task_id, task.attempt.number):
                    await self.wallet.send_once(("return", key), ReturnTask(task_id, failed))
                    log.warning("returning task %s: %s", task_id.hex()[:12],
                                failed.name.lower())
                return
            await self.node.publish_progress(task_id, task.attempt.number, 10_000)
            if self.policy.fault == "vanish":
                log.warning("fault injection: not committing the result of %s",
                            task_id.hex()[:12])
                return
            if self.policy.fault == "corrupt":
                result = await trio.to_thread.run_sync(corrupt_result, result, spec, sealer)
                log.warning("fault injection: committing a corrupted result of %s",
                            task_id.hex()[:12])
                await trio.to_thread.run_sync(self._store, result)
            if not self._still_ours(task_id, task.attempt.number):
                return
            committed = TaskResult(result.output_id, result.checkpoint_root,
                                   tuple(result.checkpoint_ids),
                                   tuple(sorted(result.metrics.items())),
                                   key_commitment(ephemeral_public(sealer.ephemeral)))
            await self.wallet.send_once(("result", key), CommitResult(task_id, committed))
            log.info("committed the result of task %s after %.1f s of compute",
                     task_id.hex()[:12], result.compute_seconds)
        except (GpuError, InvalidSpec, OgpuError) as exc:
            log.error("task %s failed here: %s", task_id.hex()[:12], exc)
        finally:
            self.jobs.pop(key, None)
            self.bids.forget(key)

    def _sealer(self, task_id: Hash32, task: Task) -> ResultKey:
        """The key sealing this attempt's result: derived from a fresh ephemeral key of ours
        (kept until the task closes) and the client's key (`ogpu_node.result_crypto`)."""
        client = self.node.chain.state.account(task.client).public_key
        key = (bytes(task_id), task.attempt.number)
        kept = self.result_keys.get(key)
        ephemeral = kept[0] if kept else new_ephemeral()
        if kept is None:  # recorded before anything sealed with it leaves the node
            self.result_keys.put(key, [ephemeral])
        return provider_key(ephemeral, client, task_id, task.attempt.number)

    def _key_for_committee(self, target: Hash32, request_id: bytes,
                           attempt: int) -> bytes | None:
        """Our ephemeral key of a result (or pool answer) we committed
        (`result_keys.serve_result_keys` gives it only to the members of its committee)."""
        state = self.node.chain.state
        if request_id:
            pool = state.pools.get(target)
            request = pool.request(request_id) if pool else None
            ours = request is not None and request.winner == self.me
            item = bytes(request_id)
        else:
            task = state.tasks.get(target)
            ours = task is not None and task.attempt.provider == self.me
            item = bytes(target)
        kept = self.result_keys.get((item, attempt)) if ours else None
        return bytes(kept[0]) if kept else None

    async def _task_files(self, task_id: Hash32, task: Task,
                          spec: WorkloadSpec) -> TaskFiles | None:
        """The files the task's spec names (`task_files`), checked; None after reporting them
        missing or malformed (or when the task stopped being ours meanwhile)."""
        reason = "inputs_missing"
        if self.policy.fault != "false_report":
            try:
                return await fetch_task_files(spec, self._fetch_client_file, self.models,
                                              self.node.chain.state.models)
            except FilesUnusable as exc:
                reason = exc.reason
                log.warning("task %s: %s", task_id.hex()[:12], exc)
        else:
            log.warning("fault injection: reporting the inputs of %s missing",
                        task_id.hex()[:12])
        if self._still_ours(task_id, task.attempt.number):
            await self.wallet.send_once(("inputs", (bytes(task_id), task.attempt.number)),
                                        ReportMissingInputs(task_id, reason))
        return None

    async def _fetch_client_file(self, file_id: bytes, max_bytes: int) -> bytes:
        return await self.node.files.fetch_file(file_id, max_bytes,
                                                attempts=INPUTS_FETCH_ATTEMPTS,
                                                retry_s=INPUTS_RETRY_S)

    async def _report_progress(self, task_id: Hash32, attempt: int) -> None:
        key = (bytes(task_id), attempt)
        while True:
            await trio.sleep(1.0)
            if not self._still_ours(task_id, attempt):
                return
            await self.node.publish_progress(task_id, attempt, int(self.jobs.get(key, 0) * 10_000))

    def _store_file(self, data: bytes, keep_s: float = 0.0) -> None:
        if self.node.blobs is None:
            raise OgpuError("a provider needs a blob store")
        self.node.blobs.put_file(data, keep_s)

    def _store(self, result: WorkloadResult) -> None:
        for checkpoint in result.checkpoints:
            self._store_file(checkpoint)
        self._store_file(result.output)


def return_reason(error: OgpuError) -> ReturnReason:
    """Why we give back a task whose run failed with `error`: the limit the worker refused it
    for (`workloads.limits`: each error's `code` is a `ReturnReason` name), else WORKER_FAILED."""
    if isinstance(error, SpecOverLimit | DeviceMemoryTooSmall):
        return ReturnReason[error.code.upper()]
    return ReturnReason.WORKER_FAILED


def corrupt_result(result: WorkloadResult, spec: object, sealer: Sealer) -> WorkloadResult:
    """Fault injection: the same result with wrong numbers (see the module docstring); `sealer`
    opens and seals its files again."""
    if isinstance(spec, TrainSpec | NetTrainSpec):
        rng = np.random.default_rng(0)
        checkpoints = []
        for number, raw in enumerate(result.checkpoints):
            arrays = [(name, (a + rng.normal(0, 1e-2, a.shape)).astype(np.float32))
                      for name, a in decode_arrays(sealer.open(number, raw))]
            checkpoints.append(sealer.seal(number, encode_arrays(arrays)))
        ids = [file_id(c) for c in checkpoints]
        return replace(result, output=checkpoints[-1], output_id=ids[-1],
                       checkpoints=checkpoints, checkpoint_ids=ids,
                       checkpoint_root=checkpoint_chain(ids))
    arrays = [(name, a.copy()) for name, a in decode_arrays(sealer.open(0, result.output))]
    if isinstance(spec, InferSpec | ModelInferSpec):  # every row wrong (say, wrong weights)
        arrays[0][1][:] += np.float32(1.0)
    else:  # one wrong element of C: Freivalds catches it with certainty
        arrays[0][1].flat[0] += 1.0
    output = sealer.seal(0, encode_arrays(arrays))
    return replace(result, output=output, output_id=file_id(output))
