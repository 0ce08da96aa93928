"""Running workloads on a device: matmul, MLP training (with checkpoints), batched inference.

`run_workload(spec, device, inputs=...)` is the one entry point a provider calls (`inputs`: the
raw file the spec's `inputs` field names, see `gpu.inputs`); it returns the encoded
output, its file id, the checkpoints with their ids and hash-chain root, integer metrics and the
time taken. Everything is computed in float32 from inputs that `gpu.data` derives from the spec,
so the same spec on the same device always gives the same bytes, and a verifier on another device
gets results equal within the tolerances stated in `gpu.verify`.

Long runs call `progress(fraction)` now and then and stop with `WorkloadCancelled` as soon as
`should_stop()` returns true; both are called from the thread running the workload.

With a `sealer` (`gpu.artifacts.Sealer`), every file of the result is encrypted as it is made,
and ids, chain root and the files handed out are those of the ciphertexts (metrics are computed
on the plaintext): what a provider publishes is readable only with the result's key.

With a `sink`, each file of the result is handed to it as soon as it is made (a training run's
checkpoints one by one while training goes on, then the output) and the result keeps only ids:
its `checkpoints` is empty and its `output` is b"". A provider stores them meanwhile, instead of
holding every checkpoint in memory and storing them all after the last step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from gpu.artifacts import NamedArray, Sealer, checkpoint_chain, decode_arrays, encode_arrays
from gpu.cpu_kernels import Kernels, kernels_for
from gpu.data import (
    batch_indices,
    dataset,
    infer_inputs,
    init_weights,
    layers_to_device,
    matmul_inputs,
    model_weights,
)
from gpu.device import Array, Device
from gpu.errors import WorkloadCancelled, WorkloadError
from gpu.mlp import (
    Params,
    evaluate,
    forward,
    metrics_from,
    params_from_arrays,
    params_to_host,
    sgd_step,
)
from gpu.net_training import train_net
from ogpu_node.blobs import file_id
from ogpu_node.types import Hash32
from ogpu_node.workloads.kinds import WorkloadSpec
from ogpu_node.workloads.limits import INFER_CHUNK_ROWS, check_runnable
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.net import NetTrainSpec
from ogpu_node.workloads.spec import InferSpec, MatmulSpec, ModelArch, TrainSpec, check_spec

Progress = Callable[[float], None]
ShouldStop = Callable[[], bool]
Sink = Callable[[bytes], None]

MATMUL_MAX_PANELS = 8
MATMUL_MIN_PANEL_ROWS = 1024
"""A matmul is computed in at most 8 row panels of at least 1,024 rows, for progress and
cancelling; smaller panels cost BLAS efficiency (B is packed again for every panel)."""
REPORTS_PER_RUN = 200


@dataclass(frozen=True, slots=True)
class WorkloadResult:
    """What a provider commits and publishes for one task."""

    output: bytes
    """The encoded artifact: C for matmul, the final weights for train, the logits for infer
    (b"" when a sink took it)."""
    output_id: Hash32
    checkpoints: list[bytes]
    """Empty when a sink took them."""
    checkpoint_ids: list[Hash32]
    checkpoint_root: Hash32
    metrics: dict[str, int]
    compute_seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds per phase ("inputs", "compute", "encode"), for benchmarks and logs."""


class _Pacer:
    """Calls `progress` at most REPORTS_PER_RUN times and checks `should_stop` as often."""

    def __init__(self, total: int, progress: Progress | None, should_stop: ShouldStop | None):
        self.total = max(1, total)
        self.every = max(1, self.total // REPORTS_PER_RUN)
        self.progress = progress
        self.should_stop = should_stop

    def tick(self, done: int, force: bool = False) -> None:
        if not force and done % self.every and done != self.total:
            return
        if self.should_stop is not None and self.should_stop():
            raise WorkloadCancelled(f"stopped after {done} of {self.total}")
        if self.progress is not None:
            self.progress(min(1.0, done / self.total))


def run_workload(spec: WorkloadSpec, device: Device, progress: Progress | None = None,
                 should_stop: ShouldStop | None = None, inputs: bytes | None = None,
                 sink: Sink | None = None, sealer: Sealer | None = None,
                 weights: bytes | None = None, model: bytes | None = None) -> WorkloadResult:
    """Run `spec` on `device` (`sink`, `sealer`: see the module docstring; `weights`: the
    initial weights file a network's training names, `NetTrainSpec.init`; `model`: the file of
    a registered model's inference, `gpu.onnx_run`). Raises `InvalidSpec`, `InputsError`,
    `WorkloadError`, `WorkloadCancelled` (and `ModelRefused` for a model); before anything is
    allocated, `SpecOverLimit` for a spec over a protocol limit and `DeviceMemoryTooSmall` for
    one that needs more memory than `device` has (`workloads.limits.check_runnable`, the numbers the
    ledger checked at submission)."""
    check_runnable(spec, device)
    if isinstance(spec, TrainSpec):
        return train(spec, device, progress, should_stop, inputs, sink, sealer)
    if isinstance(spec, NetTrainSpec):
        return train_net(spec, device, progress, should_stop, inputs, sink, sealer, weights)
    if isinstance(spec, MatmulSpec):
        result = run_matmul(spec, device, progress, should_stop, inputs)
    elif isinstance(spec, ModelInferSpec):
        if model is None:
            raise WorkloadError("a registered model's inference needs its model file")
        from gpu.onnx_run import run_model  # ONNX Runtime loads only for the models' workers

        result = run_model(spec, model, device, progress, should_stop, inputs)
    else:
        result = infer(spec, device, progress, should_stop, inputs)
    if sealer is not None:
        sealed = sealer.seal(0, result.output)
        result = replace(result, output=sealed, output_id=file_id(sealed))
    if sink is None:
        return result
    sink(result.output)
    return replace(result, output=b"")


def _result(output: bytes, output_id: Hash32, checkpoints: list[bytes], ids: list[Hash32],
            metrics: dict[str, int], phases: dict[str, float], start: float) -> WorkloadResult:
    return WorkloadResult(output=output, output_id=output_id, checkpoints=checkpoints,
                          checkpoint_ids=ids, checkpoint_root=checkpoint_chain(ids),
                          metrics=metrics, compute_seconds=time.perf_counter() - start,
                          phases=phases)


def _one_array_result(name: str, compute: Callable[[], Array], device: Device,
                      start: float) -> WorkloadResult:
    """The result whose output is the one array [(name, compute())], without checkpoints; the
    inputs, made since `start`, are already queued on the device."""
    device.synchronize()
    t_inputs = time.perf_counter()
    array = compute()
    device.synchronize()
    t_compute = time.perf_counter()
    output = encode_arrays([(name, device.to_host(array))])
    output_id = file_id(output)
    phases = {"inputs": t_inputs - start, "compute": t_compute - t_inputs,
              "encode": time.perf_counter() - t_compute}
    return _result(output, output_id, [], [], {}, phases, start)


def matmul_product(a: Array, b: Array, device: Device, pacer: _Pacer | None = None) -> Array:
    """C = A @ B in row panels (see MATMUL_MAX_PANELS)."""
    n = a.shape[0]
    rows = max(MATMUL_MIN_PANEL_ROWS, -(-n // MATMUL_MAX_PANELS))
    if rows >= n:
        c = a @ b
        if pacer is not None:
            pacer.tick(n, force=True)
        return c
    c = device.xp.empty((n, b.shape[1]), dtype=a.dtype)
    for start in range(0, n, rows):
        device.xp.matmul(a[start:start + rows], b, out=c[start:start + rows])
        if pacer is not None:
            device.synchronize()
            pacer.tick(min(n, start + rows), force=True)
    return c


def run_matmul(spec: MatmulSpec, device: Device, progress: Progress | None = None,
               should_stop: ShouldStop | None = None,
               inputs: bytes | None = None) -> WorkloadResult:
    """C = A @ B; the output is the artifact [("C", C)]."""
    check_spec(spec)
    start = time.perf_counter()
    a, b = matmul_inputs(spec, device, inputs)
    pacer = _Pacer(spec.n, progress, should_stop)
    return _one_array_result("C", lambda: matmul_product(a, b, device, pacer), device, start)


def run_steps(spec: TrainSpec, params: Params, x: Array, y: Array, from_step: int,
              to_step: int, device: Device, kernels: Kernels,
              on_step: Callable[[int], None] | None = None) -> None:
    """Apply SGD steps `from_step`..`to_step - 1` (0-based) to `params` in place."""
    lr = spec.learning_rate
    for step in range(from_step, to_step):
        idx = device.asarray(batch_indices(spec, step))
        sgd_step(params, x[idx], y[idx], lr, kernels)
        if on_step is not None:
            on_step(step + 1)


def train(spec: TrainSpec, device: Device, progress: Progress | None = None,
          should_stop: ShouldStop | None = None, inputs: bytes | None = None,
          sink: Sink | None = None, sealer: Sealer | None = None) -> WorkloadResult:
    """Train the spec's MLP; checkpoint all weights after each of `spec.checkpoint_steps`
    (sealed by `sealer` when there is one; handed to `sink` as they are made when there is one,
    else kept in the result).

    The output is the last checkpoint (the final weights); metrics are the final mean loss in
    millionths (`loss_micros`) and accuracy in basis points (`accuracy_bps`) on the full dataset.
    """
    check_spec(spec)
    start = time.perf_counter()
    kernels = kernels_for(device)
    x, y = dataset(spec, device, inputs)
    params = layers_to_device(init_weights(spec), device)
    device.synchronize()
    phases = {"inputs": time.perf_counter() - start, "compute": 0.0, "encode": 0.0}
    pacer = _Pacer(spec.steps, progress, should_stop)
    done = 0

    def advance(mark: int) -> None:
        nonlocal done
        run_steps(spec, params, x, y, done, mark, device, kernels, pacer.tick)
        done = mark

    checkpoints, ids = take_checkpoints(spec.checkpoint_steps, advance,
                                        lambda: params_to_host(params, device), device, phases,
                                        sealer, sink)
    t0 = time.perf_counter()
    loss, correct = evaluate(params, x, y, kernels, device.xp)
    phases["evaluate"] = time.perf_counter() - t0
    return _result(checkpoints[-1] if checkpoints else b"", ids[-1], checkpoints, ids,
                   metrics_from(loss, correct, spec.n_samples), phases, start)


def take_checkpoints(marks: Sequence[int], advance: Callable[[int], None],
                     snapshot: Callable[[], list[NamedArray]], device: Device,
                     phases: dict[str, float], sealer: Sealer | None, sink: Sink | None
                     ) -> tuple[list[bytes], list[Hash32]]:
    """A training run's checkpoints: for each of `marks`, `advance(mark)` trains up to that step,
    then `snapshot()` is encoded, sealed by `sealer`, given its id and handed to `sink` (kept
    in the returned list when there is none). Times the phases into `phases`. The one loop
    every training kind runs (MLP, `gpu.net_training`)."""
    checkpoints: list[bytes] = []
    ids: list[Hash32] = []
    for mark in marks:
        t0 = time.perf_counter()
        advance(mark)
        device.synchronize()
        t1 = time.perf_counter()
        raw = encode_arrays(snapshot())
        if sealer is not None:
            raw = sealer.seal(len(ids), raw)
        ids.append(file_id(raw))
        phases["compute"] += t1 - t0
        phases["encode"] += time.perf_counter() - t1
        if sink is None:
            checkpoints.append(raw)
        else:
            t2 = time.perf_counter()
            sink(raw)
            phases["sink"] = phases.get("sink", 0.0) + time.perf_counter() - t2
    return checkpoints, ids


def start_params(spec: TrainSpec, checkpoint_bytes: bytes | None, device: Device) -> Params:
    """Writable params from a checkpoint, or the seed's initial weights when it is None."""
    if checkpoint_bytes is None:
        return layers_to_device(init_weights(spec), device)
    return params_from_arrays(decode_arrays(checkpoint_bytes), spec.widths, device)


def replay(spec: TrainSpec, checkpoint_bytes: bytes | None, from_step: int, to_step: int,
           device: Device, data: tuple[Array, Array] | None = None,
           inputs: bytes | None = None) -> list[NamedArray]:
    """The weights after steps `from_step`..`to_step - 1`, starting from `checkpoint_bytes`
    (None: the initial weights, with `from_step` 0). `data` may pass the dataset already on the
    device (else it comes from the seed or `inputs`). Raises `ArtifactError` for a malformed
    checkpoint."""
    if not 0 <= from_step <= to_step <= spec.steps:
        raise ValueError(f"bad interval {from_step}..{to_step} of {spec.steps} steps")
    if checkpoint_bytes is None and from_step != 0:
        raise ValueError("replay from a step other than 0 needs its checkpoint")
    x, y = data if data is not None else dataset(spec, device, inputs)
    params = start_params(spec, checkpoint_bytes, device)
    run_steps(spec, params, x, y, from_step, to_step, device, kernels_for(device))
    return params_to_host(params, device)


@lru_cache(maxsize=4)
def model_on_device(arch: ModelArch, device: Device) -> Params:
    """A registered model's weights on `device` (cached: a pool serves the same model often)."""
    return layers_to_device(model_weights(arch), device)


def infer_logits(spec: InferSpec, rows: Array, device: Device,
                 pacer: _Pacer | None = None) -> Array:
    """Logits of the spec's model for input `rows`, in chunks of INFER_CHUNK_ROWS rows."""
    params = model_on_device(spec.arch, device)
    kernels = kernels_for(device)
    out = device.xp.empty((rows.shape[0], spec.arch.n_classes), dtype=np.float32)
    for begin in range(0, rows.shape[0], INFER_CHUNK_ROWS):
        end = begin + INFER_CHUNK_ROWS
        out[begin:end] = forward(params, rows[begin:end], kernels)
        if pacer is not None:
            pacer.tick(min(rows.shape[0], end), force=True)
    return out


def infer(spec: InferSpec, device: Device, progress: Progress | None = None,
          should_stop: ShouldStop | None = None, inputs: bytes | None = None) -> WorkloadResult:
    """The logits of the model on the spec's inputs; the output is [("logits", batch x classes)]."""
    check_spec(spec)
    start = time.perf_counter()
    x = infer_inputs(spec, device, inputs)
    model_on_device(spec.arch, device)
    pacer = _Pacer(spec.batch, progress, should_stop)
    return _one_array_result("logits", lambda: infer_logits(spec, x, device, pacer), device,
                             start)


__all__ = ["WorkloadResult", "infer", "replay", "run_matmul", "run_workload",
           "train"]
