"""Registered models' files for the agents: fetched by the file id the chain registered (so the
weights are the registered ones, not just the architecture), checked once against the
registered info (`gpu.onnx_models.inspect_model`), and kept for the next task.

The chain cannot read a model's file, so its registered `ModelInfo` is the registrant's claim
(`ledger/market/registry.py`). An agent believes it only once the file gives the same info: a
provider does not bid on a task, nor join a pool, whose model failed the check (`refusal`),
and it reports the task's files malformed if the check fails after the award; a committee
member checks the file the same way before it checks a result. A file that does not give its
info never will (a file id names fixed bytes): the refusal is remembered. A file that cannot be
fetched now may be served later: that is not remembered.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict

import trio

from ogpu_node.agents.task_files import Fetch, FilesUnusable
from ogpu_node.blobs import BlobError, FileTooLarge
from ogpu_node.ledger.market.records import Model
from ogpu_node.types import Hash32

KEPT_MODEL_BYTES = 512 * 1024 * 1024
"""Model files kept in memory between tasks (at least the last one fetched, whatever its size)."""


class ModelFiles:
    """Checked model files by model id (a few, least recently used dropped first)."""

    def __init__(self, fetch: Fetch, kept_bytes: int = KEPT_MODEL_BYTES) -> None:
        self._fetch = fetch
        self._kept_bytes = kept_bytes
        self._files: OrderedDict[Hash32, bytes] = OrderedDict()
        self._refused: dict[Hash32, str] = {}
        self._checking: set[Hash32] = set()

    async def warm_up(self) -> None:
        """Import the inspection's libraries now (`onnx`: about a second), not in the first
        check, which must end within a task's bid window."""
        await trio.to_thread.run_sync(importlib.import_module, "gpu.onnx_models")

    def refusal(self, model_id: Hash32) -> str | None:
        """Why the model's file is not usable, as far as is known (None: checked and usable,
        or not checked yet: see `checked`)."""
        return self._refused.get(model_id)

    def checked(self, model_id: Hash32) -> bool:
        return model_id in self._files or model_id in self._refused

    async def check(self, model_id: Hash32, model: Model) -> None:
        """Fetch and check the file now (a provider's background check before it bids); the
        outcome is what `refusal` and `checked` say. Never raises."""
        if model_id in self._checking:
            return
        self._checking.add(model_id)
        try:
            await self.get(model_id, model)
        except FilesUnusable:
            pass
        finally:
            self._checking.discard(model_id)

    async def get(self, model_id: Hash32, model: Model) -> bytes:
        """The model's file, checked; `FilesUnusable` ("inputs_missing": cannot be fetched now;
        "inputs_malformed": not the file the registered info describes)."""
        found = self._files.get(model_id)
        if found is not None:
            self._files.move_to_end(model_id)
            return found
        if model_id in self._refused:
            raise FilesUnusable("inputs_malformed", self._refused[model_id])
        try:
            data = await self._fetch(model.file_id, model.info.file_bytes)
        except FileTooLarge as exc:
            self._refused[model_id] = f"model_mismatch: larger than its registered size: {exc}"
            raise FilesUnusable("inputs_malformed", self._refused[model_id]) from exc
        except BlobError as exc:
            raise FilesUnusable("inputs_missing", f"the model's file: {exc}") from exc
        from gpu.onnx_models import ModelRefused, inspect_model  # onnx: 0.9 s to import

        try:
            info = await trio.to_thread.run_sync(inspect_model, data)
        except ModelRefused as exc:
            info = None
            reason = str(exc)
        else:
            reason = "model_mismatch: the file does not give the registered info"
        if info != model.info:
            self._refused[model_id] = reason
            raise FilesUnusable("inputs_malformed", reason)
        self._keep(model_id, data)
        return data

    def _keep(self, model_id: Hash32, data: bytes) -> None:
        self._files[model_id] = data
        while len(self._files) > 1 and sum(map(len, self._files.values())) > self._kept_bytes:
            self._files.popitem(last=False)
