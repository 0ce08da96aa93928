"""Inputs a client uploads instead of a seed: one artifact file (`gpu.artifacts`) whose file id
is the spec's `inputs` field.

What each kind expects, in this order, all float32:

- matmul: "A" and "B", n x n;
- train:  "x", n_samples x n_features, and "labels", n_samples class indices (whole numbers in
  0..n_classes-1, stored as float32: exact below 2**24);
- infer:  "x", batch x n_features of the model;
- train_net: "x", n_samples rows of the input shape (an embedding's: token ids, whole numbers
  below its vocab), and "labels" (cross-entropy: class indices below the output's width) or
  "targets" (MSE: n_samples rows of the output shape);
- model_infer (a registered model): one array per model input, named as the input, batch x
  its row shape; an int64 input is sent as whole numbers within +-2**24 (exact in float32)
  and cast back by the worker (`gpu.onnx_run`).

Every value must be finite. A provider that receives inputs which fail these checks, or cannot
fetch them at all, reports them missing (`ReportMissingInputs`) and the verification committee
runs the same check (`check_inputs`) before anyone is slashed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from gpu.artifacts import decode_arrays, encode_arrays, expect_shapes
from gpu.errors import ArtifactError, GpuError
from ogpu_node.workloads.kinds import WorkloadSpec
from ogpu_node.workloads.limits import (
    ARTIFACT_HEADER_BYTES,
    artifact_bytes,
    dataset_elements,
    input_shapes,
)
from ogpu_node.workloads.models import ElemType, ModelInferSpec
from ogpu_node.workloads.net import LayerKind, LossKind, NetTrainSpec
from ogpu_node.workloads.spec import TrainSpec

HostF32 = npt.NDArray[np.float32]
HEADER_ALLOWANCE = ARTIFACT_HEADER_BYTES
MAX_EXACT_INT = 2**24
"""Whole numbers up to this size are exact in float32: the range of an int64 model input."""


class InputsError(GpuError):
    """Uploaded inputs that are not the file the spec asks for (wrong arrays, shapes, values),
    or inputs the spec names that were not supplied."""

    code = "inputs_malformed"


def inputs_max_bytes(spec: WorkloadSpec) -> int:
    """The size of `spec`'s inputs file (its arrays, `workloads.limits.input_shapes`, plus a header
    that is far smaller than HEADER_ALLOWANCE): fetch no more than this, a larger file cannot be
    the right one."""
    return artifact_bytes(dataset_elements(spec))


def check_inputs(spec: WorkloadSpec, raw: bytes) -> dict[str, HostF32]:
    """The arrays of an uploaded inputs file, by name (read-only views of `raw`); raises
    `InputsError` saying what is wrong."""
    try:
        arrays = decode_arrays(raw)
        expect_shapes(arrays, input_shapes(spec), "inputs")
    except ArtifactError as exc:
        raise InputsError(str(exc)) from exc
    named = dict(arrays)
    for name, array in named.items():
        if not np.isfinite(array).all():
            raise InputsError(f"inputs: array {name!r} holds NaN or infinite values")
    if isinstance(spec, TrainSpec):
        _check_whole(named["labels"], spec.n_classes, "labels")
    if isinstance(spec, NetTrainSpec):
        if spec.loss is LossKind.CROSS_ENTROPY:
            _check_whole(named["labels"], spec.output_shape[0], "labels")
        if spec.layers[0].kind is LayerKind.EMBEDDING:
            _check_whole(named["x"], spec.layers[0].arg("vocab"), "token ids (x)")
    if isinstance(spec, ModelInferSpec):
        for tensor in spec.model_info.inputs:
            values = named[tensor.name]
            if tensor.elem is ElemType.INT64 and not (
                    np.all(np.abs(values) <= MAX_EXACT_INT) and np.all(values == np.floor(values))):
                raise InputsError(f"inputs: {tensor.name!r} is an int64 input: its values must "
                                  f"be whole numbers within +-{MAX_EXACT_INT}")
    return named


def _check_whole(values: HostF32, bound: int, what: str) -> None:
    if not (np.all(values >= 0) and np.all(values < bound)
            and np.all(values == np.floor(values))):
        raise InputsError(f"inputs: {what} must be whole numbers in 0..{bound - 1}")


def uploaded_inputs(spec: WorkloadSpec, raw: bytes | None) -> dict[str, HostF32] | None:
    """The checked uploaded arrays when the spec names an inputs file, None when its inputs come
    from the seed. Raises `InputsError` when the spec names a file and `raw` is None."""
    if not spec.inputs:
        return None
    if raw is None:
        raise InputsError(f"the spec's inputs file {spec.inputs.hex()[:16]}... was not supplied")
    return check_inputs(spec, raw)


def encode_inputs(spec: WorkloadSpec, arrays: Mapping[str, npt.ArrayLike]) -> bytes:
    """The inputs file for `spec` from `arrays` by name (cast to float32), checked as a provider
    will check it; for clients. Raises `InputsError`."""
    wanted = [name for name, _ in input_shapes(spec)]
    if set(arrays) != set(wanted):
        raise InputsError(f"inputs: arrays {sorted(arrays)} where {wanted} were expected")
    try:
        raw = encode_arrays([(name, np.asarray(arrays[name], dtype=np.float32))
                             for name in wanted])
    except (ArtifactError, ValueError, TypeError) as exc:
        raise InputsError(f"inputs: {exc}") from exc
    check_inputs(spec, raw)
    return raw
