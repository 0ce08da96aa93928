"""Registered models' files for the agents: fetched by the file id the chain registered (so the
weights are the registered ones, not just the architecture), checked once, and kept for the next
task.

The chain cannot read a model's file, so its registered `ModelInfo` is the registrant's claim
(`ledger/market/registry.py`). An agent believes it only once the file passed the check
(`gpu.onnx_run.check_model_file`: the file gives the registered info, and ONNX Runtime loads it
and runs a row of zeros through it), which runs in the agent's worker process: a file built to
break `onnx` or the runtime (even in native code) takes down a worker, not the node. A provider
does not bid on a task, nor join a pool, whose model failed the check (`refusal`), and reports
the task's files malformed if the check fails after the award; a committee member checks the
file the same way before it checks a result.

A file that fails never passes (a file id names fixed bytes): the refusal is remembered, by file
and claimed info, so the same file registered again under other ids is not fetched again. A file
that cannot be fetched now may be served later: that is not remembered. One file is fetched and
checked at a time (a block of registrations must not make a provider hold hundreds of them).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

import trio

from gpu.worker_process import Workers
from ogpu_node.agents.task_files import Fetch, FilesUnusable
from ogpu_node.blobs import BlobError, FileTooLarge
from ogpu_node.errors import OgpuError
from ogpu_node.ledger.market.records import Model
from ogpu_node.types import Hash32
from ogpu_node.workloads.models import ModelInfo

KEPT_MODEL_BYTES = 512 * 1024 * 1024
"""Model files kept in memory between tasks (at least the last one fetched, whatever its size)."""

Check = Callable[[bytes, ModelInfo], Awaitable[None]]
"""Check a model's file against its claimed info; raises saying why it is not usable."""
Key = tuple[Hash32, ModelInfo]


def check_in_worker(workers: Callable[[], Workers | None]) -> Check:
    """The file check run by the agent's workers (`workers()`: the pool once the agent runs)."""

    async def check(data: bytes, info: ModelInfo) -> None:
        pool = workers()
        if pool is None:
            raise OgpuError("the agent's workers are not started")
        await trio.to_thread.run_sync(pool.call, "check_model_file",
                                      {"model_file": data, "info": info})

    return check


class ModelFiles:
    """Checked model files by (file id, claimed info); a few, least recently used dropped first."""

    def __init__(self, fetch: Fetch, check: Check, kept_bytes: int = KEPT_MODEL_BYTES) -> None:
        self._fetch = fetch
        self._check = check
        self._kept_bytes = kept_bytes
        self._files: OrderedDict[Key, bytes] = OrderedDict()
        self._refused: dict[Key, str] = {}
        self._checking: set[Key] = set()
        self._one_at_a_time = trio.Lock()

    def refusal(self, model: Model) -> str | None:
        """Why the model's file is not usable, as far as is known (None: checked and usable,
        or not checked yet: see `checked`)."""
        return self._refused.get(_key(model))

    def refused(self) -> dict[Key, str]:
        """Every model file refused here, with why (`model_refused: ...`, `model_mismatch: ...`)."""
        return dict(self._refused)

    def checked(self, model: Model) -> bool:
        key = _key(model)
        return key in self._files or key in self._refused

    async def check(self, model: Model) -> None:
        """Fetch and check the file now (a provider's check before it bids); the outcome is what
        `refusal` and `checked` say. Never raises."""
        key = _key(model)
        if key in self._checking:
            return
        self._checking.add(key)
        try:
            await self.get(model)
        except FilesUnusable:
            pass
        finally:
            self._checking.discard(key)

    async def get(self, model: Model) -> bytes:
        """The model's file, checked; `FilesUnusable` ("inputs_missing": cannot be fetched now;
        "inputs_malformed": not a file the registered info describes, or not one the runtime
        can run)."""
        key = _key(model)
        async with self._one_at_a_time:
            found = self._files.get(key)
            if found is not None:
                self._files.move_to_end(key)
                return found
            if key in self._refused:
                raise FilesUnusable("inputs_malformed", self._refused[key])
            try:
                data = await self._fetch(model.file_id, model.info.file_bytes)
            except FileTooLarge as exc:
                raise self._refuse(key, f"model_mismatch: larger than its registered size: "
                                        f"{exc}") from exc
            except BlobError as exc:
                raise FilesUnusable("inputs_missing", f"the model's file: {exc}") from exc
            try:
                await self._check(data, model.info)
            except Exception as exc:  # the check's refusal, or whatever else the file caused
                reason = str(exc)
                if not reason.startswith(("model_refused", "model_mismatch")):
                    reason = f"model_refused: checking it failed: {type(exc).__name__}: {exc}"
                raise self._refuse(key, reason) from exc
            self._keep(key, data)
            return data

    def _refuse(self, key: Key, reason: str) -> FilesUnusable:
        self._refused[key] = reason
        return FilesUnusable("inputs_malformed", reason)

    def _keep(self, key: Key, data: bytes) -> None:
        self._files[key] = data
        while len(self._files) > 1 and sum(map(len, self._files.values())) > self._kept_bytes:
            self._files.popitem(last=False)


def _key(model: Model) -> Key:
    return (model.file_id, model.info)
