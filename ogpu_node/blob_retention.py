"""Which blob files the chain still needs a node to keep: what the blob store may not evict.

A file is referenced while a task or pool that names it is open, and for `retention_ms` of block
time after it closed, so that a client can still download its results (and a late verifier
its inputs). Task files are the client's uploads its spec names (inputs, a network's initial
weights: `workloads.kinds.client_files`), the result's output and its checkpoints; pool files
are the uploaded inputs and the outputs of the requests its record keeps. A registered model's
file is kept while an open task or pool names the model, and for `retention_ms` after its
registration (providers fetch it then, to check it before any task names it): registrations
cost 1 OGPU each and must not pin a provider's store for ever. A
closed task's close time is its `phase_end_ms` (`_close` sets it to the block time); a pool
request has ended by its `deadline_ms` (a checked request's deadline is reset to its verdict
window's end), so a closed pool keeps each request's files until that deadline plus the
retention.

Uploads that no task names yet are not here: the store's grace period covers them.
"""

from __future__ import annotations

from collections.abc import Callable

from ogpu_node.ledger.market.records import Pool, Task, TaskStatus
from ogpu_node.ledger.state import State
from ogpu_node.types import Hash32
from ogpu_node.workloads.kinds import client_files, decode_spec
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.spec import InvalidSpec, WorkloadKind


def task_files(task: Task) -> list[Hash32]:
    """The file ids a task names: the client's uploads, its result's output and checkpoints."""
    files: list[Hash32] = []
    try:
        uploads = client_files(decode_spec(task.kind, task.spec))
    except InvalidSpec:  # admitted specs decode; a record that does not names no uploads
        uploads = []
    files.extend(Hash32(f) for f in uploads)
    if task.attempt.result is not None:
        files.append(task.attempt.result.output_id)
        files.extend(task.attempt.result.checkpoint_ids)
    return files


def pool_files(pool: Pool, since_ms: int) -> list[Hash32]:
    """The uploaded inputs and outputs of an open pool's requests; of a closed pool's, those
    whose request ended after `since_ms`."""
    kept = [r for r in pool.requests if not pool.closed or r.deadline_ms > since_ms]
    return ([r.output_id for r in kept if r.output_id is not None]
            + [Hash32(r.inputs) for r in kept if r.inputs])


def referenced_file_ids(state: State, retention_ms: int) -> set[Hash32]:
    """Every file an open task or pool of `state` names, and those of the tasks and pools that
    closed less than `retention_ms` before the state's block time.

    Open tasks come from the state's index; closed ones are found by one pass over every task
    record comparing its close time (a spec is decoded only for the tasks kept), so a call costs
    a dictionary scan: the store asks only when it needs room."""
    since_ms = state.timestamp - retention_ms
    files: set[Hash32] = set()
    for task_id in state.open_tasks:
        files.update(task_files(state.tasks[task_id]))
    for task in state.tasks.values():
        if task.status == TaskStatus.CLOSED and task.phase_end_ms > since_ms:
            files.update(task_files(task))
    for pool in state.pools.values():
        files.update(pool_files(pool, since_ms))
    files.update(model_files(state, since_ms))
    return files


def model_files(state: State, since_ms: int) -> set[Hash32]:
    """The files of the models an open task or pool names, and of those registered after
    `since_ms`."""
    named = {model_of(state.tasks[t]) for t in state.open_tasks}
    named |= {pool.model_id for pool in state.pools.values() if not pool.closed}
    files = {state.models[m].file_id for m in named if m is not None and m in state.models}
    files.update(m.file_id for m in state.models.values() if m.registered_ms > since_ms)
    return files


def model_of(task: Task) -> Hash32 | None:
    """The registered model a task runs (None: another kind)."""
    if task.kind != WorkloadKind.MODEL_INFER:
        return None
    try:
        spec = decode_spec(task.kind, task.spec)
    except InvalidSpec:
        return None
    return spec.model if isinstance(spec, ModelInferSpec) else None


class ReferencedFiles:
    """The store's `referenced` provider: `referenced_file_ids` of the node's current finalised
    state, computed once per height (a full store asks on every put it refuses)."""

    def __init__(self, state: Callable[[], State], retention_s: float) -> None:
        self._state = state
        self.retention_ms = round(retention_s * 1000)
        self._height = -1
        self._files: set[Hash32] = set()

    def __call__(self) -> set[Hash32]:
        state = self._state()
        if state.height != self._height:
            self._files = referenced_file_ids(state, self.retention_ms)
            self._height = state.height
        return self._files
