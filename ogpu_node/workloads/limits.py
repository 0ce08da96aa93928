"""What a workload needs to run, and the protocol's limits on it: one set of numbers that the
ledger checks at submission (`ledger/market/checks.py`) and the worker checks again before it
starts (`gpu.workloads.run_workload`), so that a task the chain accepts is one a provider with a
large enough device can run.

Every spec kind answers the same questions (`needs`):

- `dataset_elements`: elements of its input arrays, the ones a client may upload instead of a
  seed (`input_shapes`: A and B; x and labels; x);
- `memory_mb`: the peak memory the workload needs on its device (`memory_needed_mb`, below);
- `work_units`: GFLOP of arithmetic (`spec.work_units()`), what the task is priced by;
- `checkpoint_bytes`: the size of one checkpoint file (training; 0 for the others);
- `result_bytes`: all the files of a result (the checkpoints, or the one output), which the
  provider stores while its result is due and verified.

**Device memory.** `memory_needed_bytes` counts the arrays the workload code allocates, phase by
phase (what stays resident, plus the largest phase that comes and goes), as on a CPU device,
where the device's memory is the host's: the output's encoding and its copies on the way out
(cut into chunks for its file id, sent from the worker to the store) count too; on a GPU those
land in host memory, so the count is a little above what the GPU holds. Measured on the CPU
under `tracemalloc` (`tests/gpu/test_limits.py` checks it for every kind), the count is within
1% of the peak for matmul, inference and training bound by their arrays, and up to a tenth
above it where a phase is counted generously. `memory_needed_mb` adds a margin
(MEMORY_MARGIN_BPS of the count, plus MEMORY_FIXED_MB) for what it leaves out: the device
library's context (CUDA's takes 300-600 MB), its allocator's rounding and cached blocks, BLAS
workspaces, small temporaries (reductions, generators' state), and on a CPU device the worker's
own interpreter and libraries. A job run in the node's own process (`process = false`) also
shares its memory with the node and keeps up to four inference models cached.

The chunk sizes below are the workload's own (imported by `gpu.data`, `gpu.mlp` and
`gpu.workloads`): the memory count depends on them, so they are defined here.

The pure functions `memory_needed_mb(spec)` and `fits_devices(spec, devices)` are what a bid rule
compares with a provider's declared devices (`records.Device.memory_mb`). Nothing here imports
NumPy: the ledger calls it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from ogpu_node.errors import OgpuError
from ogpu_node.workloads.kinds import WorkloadSpec
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.net import NetTrainSpec
from ogpu_node.workloads.spec import (
    TEACHER_HIDDEN,
    InferSpec,
    InvalidSpec,
    MatmulSpec,
    TrainSpec,
    check_spec,
    mlp_weight_count,
)

MIB = 1024 * 1024
F32_BYTES = 4

MAX_DATASET_ELEMENTS = 2**29
"""Input elements of one task: 2 GiB of float32, what a matmul at `MAX_MATMUL_N` reads; half of
`gpu.artifacts.MAX_ARTIFACT_BYTES`, so the largest data set fits one uploaded file."""
MAX_MEMORY_MB = 16 * 1024
"""Device memory one task may need (`memory_needed_mb`, margin included): every task fits a
16 GiB device (the common data-centre GPU's floor; a CPU provider's RAM); larger work is split
into tasks (a smaller batch, fewer or narrower layers)."""
MAX_WORK_UNITS = 10**8
"""GFLOP of one task: 25 minutes of an H100's or H200's float32 peak (67 TFLOP/s), a day of a
CPU doing 1 TFLOP/s. It bounds what a failed, returned or timed-out attempt wastes and how long
a task holds its collateral. (The result limit below already keeps training under 1.7e8: its
checkpoints, at most one per `MAX_CHECKPOINT_INTERVAL` steps, must fit MAX_RESULT_BYTES.)"""
MAX_CHECKPOINT_BYTES = 2**30
"""One checkpoint file (all weights of a training run: 256M float32 parameters): a member who
checks an interval fetches its start and the final checkpoint, and maybe its end."""
MAX_RESULT_BYTES = 8 * 2**30
"""All the files of one result: below the default blob store (10 GiB,
`ogpu_node.blobs.DEFAULT_MAX_STORE_BYTES`), so a provider on defaults holds a whole run's
checkpoints while its result is due and checked."""

MEMORY_MARGIN_BPS = 2_500
"""Added to the counted peak: 25% of it (allocator rounding and caching, small temporaries)."""
MEMORY_FIXED_MB = 1_024
"""... and 1 GiB whatever the task (the device library's context, BLAS workspaces, the worker's
interpreter and libraries on a CPU device)."""
ARTIFACT_HEADER_BYTES = 4_096
"""Bound on an artifact's header (`gpu.artifacts`): a result or inputs file is its arrays'
bytes plus less than this."""

LABEL_CHUNK_ROWS = 65_536
"""A generated training set is labelled this many rows at a time (in float64)."""
EVAL_CHUNK_ROWS = 8_192
"""The final evaluation of a training run runs this many rows at a time."""
INFER_CHUNK_ROWS = 4_096
"""An inference runs this many rows at a time."""
MODEL_CHUNK_ROWS = 1_024
"""A registered model's inference runs this many rows at a time."""


class SpecOverLimit(InvalidSpec):
    """A spec that passes its own field checks but needs more than a protocol limit allows."""

    code = "over_limit"


class DatasetTooLarge(SpecOverLimit):
    code = "dataset_too_large"


class MemoryTooLarge(SpecOverLimit):
    code = "memory_too_large"


class WorkTooLarge(SpecOverLimit):
    code = "work_too_large"


class CheckpointTooLarge(SpecOverLimit):
    code = "checkpoint_too_large"


class ResultTooLarge(SpecOverLimit):
    code = "result_too_large"


class DeviceMemoryTooSmall(OgpuError):
    """A task within the protocol's limits that needs more memory than this device has (a
    refusal of this machine's, like `gpu.errors.WorkloadError`, raised before `gpu/` starts)."""

    code = "device_memory"


@dataclass(frozen=True, slots=True)
class Needs:
    """What a spec needs (see the module docstring)."""

    dataset_elements: int
    memory_mb: int
    work_units: int
    checkpoint_bytes: int
    result_bytes: int


@dataclass(frozen=True, slots=True)
class Limit:
    """One protocol limit: the `Needs` field it bounds, its maximum, the error for a spec over
    it (whose `code` names it) and the unit it is counted in."""

    field: str
    maximum: int
    error: type[SpecOverLimit]
    unit: str


LIMITS = (
    Limit("dataset_elements", MAX_DATASET_ELEMENTS, DatasetTooLarge, "input elements"),
    Limit("memory_mb", MAX_MEMORY_MB, MemoryTooLarge, "MB of device memory"),
    Limit("work_units", MAX_WORK_UNITS, WorkTooLarge, "work units"),
    Limit("checkpoint_bytes", MAX_CHECKPOINT_BYTES, CheckpointTooLarge, "bytes per checkpoint"),
    Limit("result_bytes", MAX_RESULT_BYTES, ResultTooLarge, "bytes of result files"),
)
"""Every limit `check_limits` applies, in the order it checks them."""


class HasMemory(Protocol):
    """A device as declared (`records.Device`, `gpu.device.DeviceInfo`) or detected
    (`gpu.device.Device`)."""

    @property
    def memory_mb(self) -> int: ...


def input_shapes(spec: WorkloadSpec) -> list[tuple[str, tuple[int, ...]]]:
    """The named arrays, with their shapes, that a workload reads: generated from the seed, or
    the client's uploaded inputs file (`gpu.inputs`)."""
    if isinstance(spec, MatmulSpec):
        return [("A", (spec.n, spec.n)), ("B", (spec.n, spec.n))]
    if isinstance(spec, TrainSpec):
        return [("x", (spec.n_samples, spec.n_features)), ("labels", (spec.n_samples,))]
    if isinstance(spec, ModelInferSpec):
        return [(t.name, (spec.batch, *t.shape)) for t in spec.model_info.inputs]
    if isinstance(spec, NetTrainSpec):
        return spec.input_arrays()
    return [("x", (spec.batch, spec.arch.n_features))]


def dataset_elements(spec: WorkloadSpec) -> int:
    """Elements of the spec's input arrays."""
    return sum(math.prod(shape) for _, shape in input_shapes(spec))


def param_count(widths: tuple[int, ...]) -> int:
    """Weights and biases of an MLP of layer `widths`: the elements of one checkpoint."""
    return mlp_weight_count(widths) + sum(widths[1:])


def artifact_bytes(elements: int) -> int:
    """Upper bound of the size of an artifact of `elements` float32 values."""
    return ARTIFACT_HEADER_BYTES + F32_BYTES * elements


def _output_elements(elements: int) -> int:
    """An output of `elements` leaving the workload: its encoding, and the copy of it cut into
    1 MiB chunks to compute its file id (`ogpu_node.blobs.file_id`); the copy sent on from the
    worker to the store is made after the chunks are freed."""
    return 2 * elements


def _forward_elements(rows: int, widths: tuple[int, ...]) -> int:
    """A forward pass over `rows` rows holds one layer's output while it makes the next."""
    return rows * max(a + b for a, b in pairwise(widths))


def _matmul_elements(spec: MatmulSpec) -> int:
    # A and B (generated, or views of the uploaded file), C, then C's way out (on a CPU device
    # its host copy is C itself)
    return 3 * spec.n**2 + _output_elements(spec.n**2)


def _backward_elements(b: int, widths: tuple[int, ...]) -> int:
    """The peak of one SGD step's backward pass (`gpu.mlp.sgd_step`) beyond the activations.

    At layer l (widths w_l -> w_l+1) two moments peak: making its weight gradient while the one
    of layer l+1 is still bound, and making the gradient for layer l-1 (and, with array ops,
    a boolean ReLU mask) while the current gradient is alive."""
    layers = list(pairwise(widths))
    peak = 0
    for index, (fan_in, fan_out) in enumerate(layers):
        grad = b * fan_out
        later = layers[index + 1][0] * layers[index + 1][1] if index + 1 < len(layers) else 0
        making_dw = grad + fan_in * fan_out + later
        going_back = grad + fan_in * fan_out + (b * fan_in + b * fan_in // 4 + 1 if index else 0)
        peak = max(peak, making_dw, going_back)
    return peak


def _train_elements(spec: TrainSpec) -> int:
    """Peak float32-sized elements of `gpu.workloads.train` with a sink (as a provider runs it):
    what stays resident, plus the largest of the phases that come and go."""
    s, f, c, b = spec.n_samples, spec.n_features, spec.n_classes, spec.batch
    widths = spec.widths
    params = param_count(widths)
    # x and int32 labels (an upload: x and the float32 labels are views of the file), the
    # weights, and the last checkpoint's encoding (bound until the next one is made)
    resident = s * (f + 2) + 2 * params
    rows = min(s, LABEL_CHUNK_ROWS)
    labelling = (rows * (2 * f + 4 * TEACHER_HIDDEN + 2 * c + 2)  # float64 rows, tanh layer,
                 + 2 * TEACHER_HIDDEN * (f + c))  # logits, argmax; the teacher's float64 weights
    checking = s * f // 4 + 4 * s  # an upload's checks: boolean masks of x and of the labels
    step = (3 * b  # the minibatch's indices (int64) and labels
            + b * f + b * sum(spec.hidden)  # its rows (gathered), the hidden activations
            + _backward_elements(b, widths) + 2 * max(widths))  # gradients; bias gradients
    eval_rows = min(s, EVAL_CHUNK_ROWS)
    evaluating = max(_forward_elements(eval_rows, widths),
                     eval_rows * (3 * c + 8))  # logits and softmax temporaries; the sums
    checkpoint = params  # the next encoding while the last is bound; then its chunks, or the
    # copy sent from the worker to the store
    return resident + max(labelling, checking, step, evaluating, checkpoint)


def _infer_elements(spec: InferSpec) -> int:
    arch = spec.arch
    b, c = spec.batch, arch.n_classes
    chunk = _forward_elements(min(b, INFER_CHUNK_ROWS), arch.widths)
    params = param_count(arch.widths)
    # the inputs and the model's weights (cached on the device), then: the weights as generated
    # while they are copied to the device, or the logits with the larger of one chunk's forward
    # pass and the logits' way out
    return b * arch.n_features + params + max(params, b * c + max(chunk, _output_elements(b * c)))


def _model_infer_bytes(spec: ModelInferSpec) -> int:
    """A registered model's run (`gpu.onnx_run`): the model file, the runtime's weights (its
    copy and the packed copy its matrix kernels make; the file's parse while it loads fits in
    the second), and the uploaded inputs stay; then the larger of checking the inputs (a
    float32 temporary and a boolean mask of them) and running: the outputs with their way out,
    and one chunk's intermediate tensors (all of them, though the runtime reuses buffers) with
    its inputs as fed (cast to int64, a single row repeated).

    Measured as the peak RSS growth of a run in a fresh process (`tests/gpu/test_onnx_limits.py`,
    ONNX Runtime 1.32 with its CPU arena): 0.89 of the count for the digits CNN on 60,000 rows
    (inputs dominate), 0.92 for a 32 MiB MLP (weights), 0.77 for an MLP on 60,000 rows, 0.36
    to 0.50 for the transformer block (its intermediate tensors dominate and are reused)."""
    info = spec.model_info
    b = spec.batch
    chunk = min(b, MODEL_CHUNK_ROWS)
    inputs = b * info.input_bytes_per_row()  # int64 inputs counted at 8 bytes: uploaded at 4
    checking = inputs + inputs // 4
    running = (3 * b * info.output_bytes_per_row()
               + chunk * (info.activation_bytes_per_row + 2 * info.input_bytes_per_row()))
    return info.file_bytes + 2 * info.weight_bytes + inputs + max(checking, running)


def memory_needed_bytes(spec: WorkloadSpec) -> int:
    """The peak bytes the workload's arrays take on its device, counted from the workload code
    (no margin; see the module docstring). Call on a spec without `problems()`."""
    if isinstance(spec, ModelInferSpec):
        return _model_infer_bytes(spec)
    if isinstance(spec, NetTrainSpec):
        return F32_BYTES * spec.memory_elements()
    if isinstance(spec, MatmulSpec):
        elements = _matmul_elements(spec)
    elif isinstance(spec, TrainSpec):
        elements = _train_elements(spec)
    else:
        elements = _infer_elements(spec)
    return F32_BYTES * elements


def memory_needed_mb(spec: WorkloadSpec) -> int:
    """The device memory, in MiB, a device must have to run `spec`: the counted peak plus
    MEMORY_MARGIN_BPS of it plus MEMORY_FIXED_MB. Call on a spec without `problems()`."""
    with_margin = -(-memory_needed_bytes(spec) * (10_000 + MEMORY_MARGIN_BPS) // 10_000)
    return -(-with_margin // MIB) + MEMORY_FIXED_MB


def needs(spec: WorkloadSpec) -> Needs:
    """Everything `spec` needs that a limit bounds. Computed arithmetically, never by listing
    (bounded for any field values); call on a spec without `problems()`."""
    if isinstance(spec, TrainSpec | NetTrainSpec):
        elements = (param_count(spec.widths) if isinstance(spec, TrainSpec)
                    else spec.checkpoint_elements())
        checkpoint = artifact_bytes(elements)
        result = spec.checkpoint_count * checkpoint  # the output is the last checkpoint
    else:
        checkpoint = 0
        if isinstance(spec, ModelInferSpec):
            result = ARTIFACT_HEADER_BYTES + spec.batch * spec.model_info.output_bytes_per_row()
        else:
            out = spec.n**2 if isinstance(spec, MatmulSpec) else spec.batch * spec.arch.n_classes
            result = artifact_bytes(out)
    return Needs(dataset_elements=dataset_elements(spec), memory_mb=memory_needed_mb(spec),
                 work_units=spec.work_units(), checkpoint_bytes=checkpoint, result_bytes=result)


def limit_refusal(spec: WorkloadSpec) -> SpecOverLimit | None:
    """The first protocol limit `spec` is over, as the error to raise; None when it is within
    all of them. Call on a spec without `problems()`."""
    return over_limit(needs(spec))


def over_limit(found: Needs) -> SpecOverLimit | None:
    """`limit_refusal` of what a spec needs, computed already."""
    for limit in LIMITS:
        value = getattr(found, limit.field)
        if value > limit.maximum:
            return limit.error(f"{limit.error.code}: the task needs {value:,} {limit.unit}; "
                               f"the limit is {limit.maximum:,}")
    return None


def check_limits(spec: WorkloadSpec) -> None:
    """Raise the `SpecOverLimit` of the first limit `spec` is over (after `InvalidSpec` for
    its own problems)."""
    check_spec(spec)
    refusal = limit_refusal(spec)
    if refusal is not None:
        raise refusal


def fits_devices(spec: WorkloadSpec, devices: Iterable[HasMemory]) -> bool:
    """Whether one of `devices` has the memory `spec` needs (a task runs on one device).
    Call on a spec without `problems()`."""
    needed = memory_needed_mb(spec)
    return any(device.memory_mb >= needed for device in devices)


def check_runnable(spec: WorkloadSpec, device: HasMemory) -> None:
    """The worker's check before it starts: `check_limits`, then `DeviceMemoryTooSmall` when
    `device` has less memory than `spec` needs. Raises before anything is allocated."""
    check_limits(spec)
    if not fits_devices(spec, (device,)):
        raise DeviceMemoryTooSmall(
            f"device_memory: the task needs {memory_needed_mb(spec):,} MB of device memory; "
            f"this device has {device.memory_mb:,} MB")


LIMIT_CODES = tuple(limit.error.code for limit in LIMITS)
"""The codes of the protocol limits (`SpecOverLimit.code` of each)."""
