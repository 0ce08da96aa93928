"""The verifier agent: when this validator is drawn for a task's committee, check the result and
vote; likewise for the sampled requests of inference pools, and for a provider's report that a
client's uploaded inputs are missing.

The checks are `gpu.verify`'s: Freivalds for a matrix product, replay of randomly chosen
checkpoint intervals plus the final metrics for training, re-execution of sampled rows for
inference. Each verifier draws its own random choices, so a committee covers more of the result
than one member, from a seed nobody else can compute (its key's deterministic signature of the
task and attempt): a provider that could predict which intervals, rows or Freivalds vectors will
be checked could compute only those honestly (or, for a matrix product, hide an error in the
null space of the known vectors). A task's output and checkpoints are sealed
(`ogpu_node.result_crypto`): the member first gets the provider's key of the attempt over
`/ogpu/result-key/1` (`result_keys.py`), checked against the result's commitment; a result
whose key nobody gives is rejected as `key_unavailable`, one that does not open under it as
`output_unreadable`. The output and checkpoints come from
peers over `/ogpu/blob/1`, each chunk checked against its id; a result whose files nobody serves
within the verdict window is rejected as `output_unavailable` (a provider cannot withhold its
output and still be paid). A task's uploaded inputs come the same way (the provider, which
fetched them, serves them too).

The files a check reads are fetched first, all at once (for training, the ends of the replayed
intervals only when the provider's device model differs from ours or a replay is not bit-exact:
`_check_training`); the check then runs in a child process
(`gpu.worker_process`, from a pool that keeps a started spare; `process=False` runs it in a
worker thread), so that a replay never holds the node's GIL and stops at once when the result it
checks is no longer waiting for this member's vote.

A report of missing inputs is checked by fetching the inputs and checking them against the spec
(`gpu.inputs.check_inputs`): the member votes *accept* (the report stands: the client withheld
them) when it cannot get valid inputs within FETCH_ATTEMPTS tries, *reject* when it can.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import trio

from gpu.artifacts import MAX_ARTIFACT_BYTES, checkpoint_chain
from gpu.device import Device, detect
from gpu.errors import CheckpointsNeeded, GpuError, WorkloadCancelled
from gpu.verify import Verdict, checkpoints_to_check, model_fingerprint
from gpu.worker_process import Workers, workers_for
from ogpu_node.agents.closing import Closing
from ogpu_node.agents.model_files import ModelFiles, check_in_worker
from ogpu_node.agents.result_keys import ResultKeyUnavailable, fetch_result_key
from ogpu_node.agents.secrets import AgentSecrets
from ogpu_node.agents.task_files import FilesUnusable, TaskFiles, fetch_task_files
from ogpu_node.agents.wallet import NodeWallet
from ogpu_node.blobs import BlobError
from ogpu_node.encoding import pack
from ogpu_node.hashing import digest
from ogpu_node.ledger.errors import InvalidTransaction
from ogpu_node.ledger.market.payloads import RevealVerdict, SealVerdict
from ogpu_node.ledger.market.pools import request_spec
from ogpu_node.ledger.market.records import (
    Check,
    CheckPhase,
    Pool,
    PoolRequest,
    RequestStatus,
    Task,
    TaskStatus,
    device_model,
    key_commitment,
)
from ogpu_node.ledger.market.verification import verdict_seal
from ogpu_node.node.node import Node
from ogpu_node.result_crypto import ResultKey, ResultKeyError
from ogpu_node.types import Address, Hash32
from ogpu_node.workloads.kinds import WorkloadSpec, decode_bound_spec
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.net import NetTrainSpec
from ogpu_node.workloads.spec import InferSpec, MatmulSpec, TrainSpec
from p2p.network import TaskStatus as StartedStatus

log = logging.getLogger("ogpu.verifier")

SECRET_KIND = "verdict"
"""Our sealed votes in the node's store, keyed by claim: kept across restarts until revealed."""
SALT_BYTES = 16
SEED_KIND = "verifier-seed"
"""The signing domain of the verifier's seeds (no transaction or block is signed under it)."""
FETCH_ATTEMPTS = 4
FETCH_RETRY_S = 1.5


ClaimKey = tuple[bytes, bytes, int, int]


@dataclass(frozen=True)
class Claim:
    """What a committee checks: a task's result or report (`request_id` empty) or a pool
    request's answer (`target` the pool), at one attempt and check round."""

    target: Hash32
    request_id: bytes
    attempt: int
    check: Check

    @property
    def key(self) -> ClaimKey:
        return (bytes(self.target), self.request_id, self.attempt, self.check.round)

    def __str__(self) -> str:
        if self.request_id:
            return f"pool request {self.request_id.hex()[:12]} (round {self.check.round})"
        return (f"task {self.target.hex()[:12]} attempt {self.attempt} "
                f"(round {self.check.round})")


@dataclass(frozen=True)
class VerifierPolicy:
    intervals: int = 1
    freivalds_rounds: int = 20
    samples: int = 8
    device: str = "auto"
    process: bool = True
    """Run checks in a child process (see `gpu.worker_process`), else in a thread."""


class VerifierAgent:
    """Checks the results this validator is drawn to check, and votes."""

    def __init__(self, node: Node, policy: VerifierPolicy, device: Device | None = None
                 ) -> None:
        self.node = node
        self.wallet = NodeWallet(node)
        self.policy = policy
        self.device = device
        self.checking: set[ClaimKey] = set()
        self.votes: dict[ClaimKey, tuple[bool, str, bytes]] = {}
        """Our vote on each claim we check, and its salt (also kept in the node's store)."""
        self.secrets = AgentSecrets(node.chain.store, SECRET_KIND)
        self.workers: Workers | None = None
        self.closing = Closing()
        self.models = ModelFiles(self._fetch, check_in_worker(lambda: self.workers))
        """Registered models' files, checked against their registered info."""

    async def serve(self, *, task_status: StartedStatus = trio.TASK_STATUS_IGNORED
                    ) -> None:
        if self.device is None:
            self.device = detect(self.policy.device)
        task_status.started()
        with workers_for(self.device, self.policy.process) as self.workers:
            self.node.agents.workers["verifier"] = self.workers.usage
            self.node.agents.device = self.device
            async with trio.open_nursery() as nursery, self.node.subscribe_blocks() as blocks:
                nursery.start_soon(self.closing.watch)
                self.step(nursery)
                async for _ in blocks:
                    self.step(nursery)

    def step(self, nursery: trio.Nursery) -> None:
        state = self.node.chain.state
        me = Address(self.wallet.address)
        claims: list[tuple[Claim, Callable[[Claim], Awaitable[Verdict]]]] = []
        for task_id in sorted(state.open_tasks):
            task = state.tasks[task_id]
            if (task.status in (TaskStatus.VERIFYING, TaskStatus.CHECKING_INPUTS)
                    and task.attempt.check is not None and me in task.attempt.check.committee):
                claims.append((Claim(Hash32(task_id), b"", task.attempt.number, task.attempt.check),
                               functools.partial(self._check_task, task)))
        for pool_id, pool in sorted(state.pools.items()):
            for request in pool.requests:
                if (request.status == RequestStatus.VERIFYING and request.check is not None
                        and me in request.check.committee):
                    claims.append((Claim(Hash32(pool_id), bytes(request.request_id), 0,
                                         request.check),
                                   functools.partial(self._check_request, pool, request)))
        live = {claim.key for claim, _ in claims}
        self.votes = {k: v for k, v in self.votes.items() if k in live}
        for key in self.secrets.recorded():  # also those kept from before a restart
            if tuple(key) not in live:
                self.secrets.forget(key)
        for claim, check in claims:
            self._act(nursery, claim, check, me)

    def _act(self, nursery: trio.Nursery, claim: Claim,
             check: Callable[[Claim], Awaitable[Verdict]], me: Address) -> None:
        """Check and seal while the committee seals; reveal once it reveals."""
        vote = claim.check.vote_of(me)
        if claim.check.phase == CheckPhase.SEALING and vote is None:
            if claim.key not in self.checking:
                self.checking.add(claim.key)
                nursery.start_soon(self._check_and_seal, claim, check)
        elif claim.check.phase == CheckPhase.REVEALING and vote is not None and not vote.revealed:
            sealed = self._sealed(claim)
            if sealed is None:
                log.error("%s: our sealed vote is lost; it cannot be revealed", claim)
                return
            accept, reason, salt = sealed
            nursery.start_soon(self._send, ("reveal", claim.key), RevealVerdict(
                claim.target, claim.request_id, claim.attempt, claim.check.round, accept,
                reason, salt))

    async def _check_and_seal(self, claim: Claim,
                              check: Callable[[Claim], Awaitable[Verdict]]) -> None:
        """Check the claim (once: a verdict kept from before a restart is sealed again), keep
        the vote and its salt in the node's store, then send the seal."""
        try:
            sealed = self._sealed(claim)
            if sealed is None:
                start = trio.current_time()
                verdict = await check(claim)
                log.info("%s: %s (%s, %.2f s; %.2f s with fetching files)", claim,
                         verdict.reason, verdict.checked, verdict.seconds,
                         trio.current_time() - start)
                sealed = (verdict.ok, verdict.code, os.urandom(SALT_BYTES))
                self.votes[claim.key] = sealed
                self.secrets.put(claim.key, (int(verdict.ok), verdict.code, sealed[2]))
            accept, reason, salt = sealed
            seal = verdict_seal(claim.target, claim.request_id, claim.attempt, claim.check.round,
                                Address(self.wallet.address), accept, reason, salt)
            await self._send(("seal", claim.key), SealVerdict(
                claim.target, claim.request_id, claim.attempt, claim.check.round, seal))
        except WorkloadCancelled:
            log.info("%s moved on: check stopped", claim)
        except GpuError as exc:  # no vote on a check that broke here; tried again next block
            log.error("%s: the check failed here: %s", claim, exc)
        finally:
            self.checking.discard(claim.key)

    def _sealed(self, claim: Claim) -> tuple[bool, str, bytes] | None:
        """Our vote on `claim` and its salt, from memory or the node's store."""
        sealed = self.votes.get(claim.key)
        if sealed is None:
            kept = self.secrets.get(claim.key)
            if kept is None:
                return None
            accept, reason, salt = kept
            sealed = self.votes[claim.key] = (bool(accept), str(reason), bytes(salt))
        return sealed

    async def _send(self, action: object, payload: SealVerdict | RevealVerdict) -> None:
        try:
            await self.wallet.send_once(action, payload)
        except InvalidTransaction as exc:
            log.info("verdict refused: %s: %s", exc.code, exc)

    async def _check_task(self, task: Task, claim: Claim) -> Verdict:
        return await self.check(claim.target, task)

    async def _check_request(self, pool: Pool, request: PoolRequest, claim: Claim) -> Verdict:
        """Re-run sampled rows of a pool request's answer (sealed for the pool's owner: the
        winner gives this member its key, as for a task's result)."""
        assert self.device is not None and request.output_id is not None
        state = self.node.chain.state
        spec = request_spec(pool, request, state.model_info)
        rng = self._rng(request.request_id, 0)
        try:
            files = await fetch_task_files(spec, self._fetch, self.models, state.models)
        except FilesUnusable as exc:
            return Verdict(False, f"inputs_unavailable: {exc}", "fetch", 0.0)
        owner_key = state.account(pool.owner).public_key
        try:
            key = await fetch_result_key(self.node, claim.target, claim.request_id, 0,
                                         key_commitment(request.key), owner_key,
                                         attempts=FETCH_ATTEMPTS, retry_s=FETCH_RETRY_S)
        except ResultKeyUnavailable as exc:
            return Verdict(False, f"key_unavailable: {exc}", "fetch key", 0.0)
        try:
            output = key.open(0, await self._fetch(request.output_id))
        except ResultKeyError as exc:
            return Verdict(False, f"output_unreadable: {exc}", "fetch", 0.0)
        except BlobError as exc:
            return Verdict(False, f"output_unavailable: {exc}", "fetch", 0.0)
        if isinstance(spec, ModelInferSpec):  # an answer carries no runtime fingerprint
            return await self._check_model(spec, files, output, 0, rng)
        return await self._run_check("verify_inference", dict(
            spec=spec, output_bytes=output, samples=self.policy.samples, rng=rng))

    async def _check_model(self, spec: ModelInferSpec, files: TaskFiles, output: bytes,
                           fingerprint: int, rng: np.random.Generator,
                           task_id: Hash32 | None = None, task: Task | None = None) -> Verdict:
        """Run `policy.samples` rows of a registered model's inference again and compare."""
        rows = rng.choice(spec.batch, size=min(self.policy.samples, spec.batch), replace=False)
        return await self._run_check("verify_model_inference", dict(
            spec=spec, model_file=files.model, inputs=files.inputs, output=output,
            rows_to_check=sorted(int(r) for r in rows), fingerprint=fingerprint),
            task_id, task)

    async def check(self, task_id: Hash32, task: Task) -> Verdict:
        """Fetch what the check needs, then run it (`_run_check`)."""
        spec = decode_bound_spec(task.kind, task.spec, self.node.chain.state.model_info)
        if task.status == TaskStatus.CHECKING_INPUTS:
            return await self.check_inputs_report(spec)
        assert self.device is not None and task.attempt.result is not None
        result, policy = task.attempt.result, self.policy
        rng = self._rng(task_id, task.attempt.number)
        try:
            files = await fetch_task_files(spec, self._fetch, self.models,
                                           self.node.chain.state.models)
        except FilesUnusable as exc:
            return Verdict(False, f"inputs_unavailable: {exc}", "fetch", 0.0)
        uploaded = files.inputs
        client = self.node.chain.state.account(task.client).public_key
        try:
            key = await fetch_result_key(self.node, task_id, b"", task.attempt.number,
                                         result.key_commitment, client,
                                         attempts=FETCH_ATTEMPTS, retry_s=FETCH_RETRY_S)
        except ResultKeyUnavailable as exc:
            return Verdict(False, f"key_unavailable: {exc}", "fetch key", 0.0)
        try:
            if isinstance(spec, TrainSpec | NetTrainSpec):
                return await self._check_training(task_id, task, spec, rng, files, key)
            try:
                output = key.open(0, await self._fetch(result.output_id))
            except ResultKeyError as exc:
                return Verdict(False, f"output_unreadable: {exc}", "fetch", 0.0)
            if isinstance(spec, MatmulSpec):
                return await self._run_check("verify_matmul", dict(
                    spec=spec, c_bytes=output, rounds=policy.freivalds_rounds, rng=rng,
                    uploaded=uploaded), task_id, task)
            if isinstance(spec, ModelInferSpec):
                try:
                    fingerprint = model_fingerprint(dict(result.metrics))
                except ValueError as exc:
                    return Verdict(False, f"metrics_mismatch: {exc}", "metrics", 0.0)
                return await self._check_model(spec, files, output, fingerprint, rng, task_id,
                                               task)
            assert isinstance(spec, InferSpec)
            return await self._run_check("verify_inference", dict(
                spec=spec, output_bytes=output, samples=policy.samples, rng=rng,
                uploaded=uploaded), task_id, task)
        except BlobError as exc:
            return Verdict(False, f"output_unavailable: {exc}", "fetch", 0.0)

    async def _check_training(self, task_id: Hash32, task: Task,
                              spec: TrainSpec | NetTrainSpec, rng: np.random.Generator,
                              files: TaskFiles, key: ResultKey) -> Verdict:
        """Replay intervals and recompute the metrics. On the provider's kind of device (the
        same device model) a replay is bit-exact, so the intervals' ends are fetched only if a
        replay does not hash to its committed id (`CheckpointsNeeded`): a third less to fetch
        with one interval."""
        assert self.device is not None and task.attempt.result is not None
        result, intervals = task.attempt.result, self.policy.intervals
        ids = result.checkpoint_ids
        awarded = task.attempt.provider
        provider = self.node.chain.state.providers.get(awarded) if awarded else None
        same_device = provider is not None and any(
            d.model == device_model(self.device.name) for d in provider.devices)
        broken = checkpoint_chain(ids) != result.checkpoint_root
        fetched: dict[int, bytes] = {}
        for ends in (False, True) if same_device else (True,):
            wanted = checkpoints_to_check(spec, intervals, rng, ends=ends)
            if broken or any(i >= len(ids) for i in wanted):
                wanted = []  # a broken chain: the check rejects it before reading any
            missing = [i for i in wanted if i not in fetched]
            checkpoints = await self.node.files.fetch_files(
                [ids[i] for i in missing], MAX_ARTIFACT_BYTES, attempts=FETCH_ATTEMPTS,
                retry_s=FETCH_RETRY_S)
            fetched.update(zip(missing, checkpoints, strict=True))
            try:
                return await self._run_check("verify_training", dict(
                    spec=spec, checkpoints=fetched, checkpoint_ids=ids,
                    checkpoint_root=result.checkpoint_root, metrics=dict(result.metrics),
                    intervals=intervals, rng=copy.deepcopy(rng), uploaded=files.inputs,
                    sealer=key, weights=files.weights),
                    task_id, task)
            except CheckpointsNeeded as exc:
                log.info("task %s: %s; fetching the intervals' ends", task_id.hex()[:12], exc)
        raise AssertionError("a check given every checkpoint it reads needs no more")

    async def check_inputs_report(self, spec: WorkloadSpec) -> Verdict:
        """Check a provider's report that the client's inputs are missing or malformed: the
        verdict is *ok* (the report stands) when this member cannot get valid inputs either."""
        start = trio.current_time()
        try:
            files = await fetch_task_files(spec, self._fetch, self.models,
                                           self.node.chain.state.models)
        except FilesUnusable as exc:
            return Verdict(True, str(exc), "fetch and check inputs", trio.current_time() - start)
        if isinstance(spec, ModelInferSpec):  # inputs the model fails on pass the static check
            ran = await self._run_check("model_inputs_run", dict(
                spec=spec, model_file=files.model, inputs=files.inputs))
            if not ran.ok:
                return Verdict(True, ran.reason, "fetch inputs and run the model",
                               trio.current_time() - start)
        return Verdict(False, "inputs_available: fetched and well-formed",
                       "fetch and check inputs", trio.current_time() - start)

    async def _run_check(self, job: str, kwargs: dict[str, object], task_id: Hash32 | None = None,
                         task: Task | None = None) -> Verdict:
        """A `gpu.verify` check in a worker process (or thread); it stops (`WorkloadCancelled`)
        when the task it checks no longer waits for this member's verdict, and raises
        `GpuError` when the worker process died."""
        assert self.workers is not None  # set while `serve` runs, which starts this

        def should_stop() -> bool:  # called from the worker thread
            if self.closing.set:
                return True
            if task_id is None or task is None:
                return False
            now = self.node.chain.state.tasks.get(task_id)
            return (now is None or now.status != task.status
                    or now.attempt.number != task.attempt.number)

        verdict: Verdict = await trio.to_thread.run_sync(
            self.workers.call, job, kwargs, None, should_stop)
        return verdict

    def _rng(self, item_id: bytes, attempt: int) -> np.random.Generator:
        """This verifier's own random choices for one result: nobody without its key can
        compute them (see the module docstring); the same after a restart, different for every
        member."""
        return np.random.default_rng(int.from_bytes(self.seed(item_id, attempt)[:16], "big"))

    def seed(self, item_id: bytes, attempt: int) -> bytes:
        signature = self.wallet.key.sign(self.node.chain.state.chain_id, SEED_KIND,
                                         pack([bytes(item_id), attempt]))
        return digest(b"verifier-seed", signature)

    async def _fetch(self, file_id: bytes, max_bytes: int = MAX_ARTIFACT_BYTES) -> bytes:
        return await self.node.files.fetch_file(file_id, max_bytes, attempts=FETCH_ATTEMPTS,
                                                retry_s=FETCH_RETRY_S)

