"""The files a workload reads besides its spec, fetched and checked the same way by a provider
before it runs a task and by a committee member that checks a result, or a provider's report
that they are missing.

They are the client's uploaded inputs (`spec.inputs`, checked by `gpu.inputs.check_inputs`), a
network's initial weights (`NetTrainSpec.init`, checked against the network's parameters by
`gpu.nn.data.uploaded_params`), and the file of the registered model a task runs (fetched by
its registered id and checked against its registered info: `model_files.py`). Each is fetched
with a size bound known before the first byte arrives (`inputs_max_bytes`, the spec's
checkpoint size, the model's registered size), so a client cannot make anyone download more
than its spec implies. A file that cannot be fetched is `inputs_missing`, one that
is not what the spec asks for `inputs_malformed`: the codes a provider reports
(`ReportMissingInputs`) and a committee member judges the report by.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from gpu.inputs import InputsError, check_inputs, inputs_max_bytes
from gpu.nn.data import uploaded_params
from ogpu_node.blobs import BlobError, FileTooLarge
from ogpu_node.errors import OgpuError
from ogpu_node.ledger.market.records import Model
from ogpu_node.types import Hash32
from ogpu_node.workloads.kinds import WorkloadSpec
from ogpu_node.workloads.limits import needs
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.net import NetTrainSpec

if TYPE_CHECKING:
    from ogpu_node.agents.model_files import ModelFiles

Fetch = Callable[[bytes, int], Awaitable[bytes]]
"""Fetch a file by id, refusing one larger than the bound (`node.files.fetch_file`)."""


class FilesUnusable(OgpuError):
    """A file the spec names that cannot be fetched (`reason` "inputs_missing") or is not what
    the spec asks for ("inputs_malformed")."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(f"{reason}: {text}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TaskFiles:
    """The bytes of the files a spec names (None where it names none)."""

    inputs: bytes | None = None
    weights: bytes | None = None
    model: bytes | None = None

    def workload_args(self) -> dict[str, bytes | None]:
        """The keyword arguments `gpu.workloads.run_workload` takes them as."""
        return {"inputs": self.inputs, "weights": self.weights, "model": self.model}


async def fetch_task_files(spec: WorkloadSpec, fetch: Fetch, models: ModelFiles,
                           registry: Mapping[Hash32, Model]) -> TaskFiles:
    """Fetch and check every file `spec` names (a registered model's through `models`, by its
    record in `registry`); raises `FilesUnusable` with the reason."""
    inputs = weights = model = None
    if isinstance(spec, ModelInferSpec):
        record = registry.get(spec.model)
        if record is None:
            raise FilesUnusable("inputs_missing", f"no registered model {spec.model.hex()}")
        model = await models.get(record)
    try:
        if spec.inputs:
            inputs = await fetch(spec.inputs, inputs_max_bytes(spec))
            await trio.to_thread.run_sync(check_inputs, spec, inputs)
        if isinstance(spec, NetTrainSpec) and spec.init:
            weights = await fetch(spec.init, needs(spec).checkpoint_bytes)
            await trio.to_thread.run_sync(uploaded_params, spec, weights)
    except FileTooLarge as exc:
        raise FilesUnusable("inputs_malformed", f"a file is larger than the spec allows: {exc}"
                            ) from exc
    except BlobError as exc:
        raise FilesUnusable("inputs_missing", str(exc)) from exc
    except InputsError as exc:
        raise FilesUnusable("inputs_malformed", str(exc)) from exc
    return TaskFiles(inputs, weights, model)
