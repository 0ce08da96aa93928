"""Model inference tasks (workload kind 4) on the example models, for the run and verify tests."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from gpu.inputs import encode_inputs
from gpu.onnx_models import inspect_model
from ogpu_node.blobs import file_id
from ogpu_node.types import Hash32
from ogpu_node.workloads.models import ModelInferSpec
from tests.gpu.onnx_examples import Example


@dataclass(frozen=True)
class Task:
    """A bound spec with its model file, inputs file and input arrays."""

    example: Example
    spec: ModelInferSpec
    inputs: bytes
    arrays: dict[str, npt.NDArray[np.generic]]

    @property
    def model(self) -> bytes:
        return self.example.model


def task_for(example: Example, batch: int, seed: int = 1) -> Task:
    info = inspect_model(example.model)
    arrays = example.inputs(batch, seed)
    unbound = ModelInferSpec(Hash32(file_id(example.model)), batch, bytes(32), info)
    raw = encode_inputs(unbound, arrays)
    return Task(example, replace(unbound, inputs=bytes(file_id(raw))), raw, arrays)
