"""Running a registered ONNX model (workload kind 4) with ONNX Runtime, repeatably.

`run_model(spec, model_file, device, ...)` checks the file against the spec's registered info
(`gpu.onnx_models.inspect_model`; `ModelMismatch` when they differ), checks the uploaded inputs
(`gpu.inputs.check_inputs`: one float32 array per model input, int64 inputs as whole numbers),
runs them in chunks of `MODEL_CHUNK_ROWS` rows with progress and cancelling, and returns the
artifact of one float32 array per model output, named as the output. Its metrics hold
`runtime_fingerprint()` (`FINGERPRINT_METRIC`): verifiers whose fingerprint is the same compare
bit for bit, the others within the tolerance of `gpu.verify` (see `verify_model_inference`).

**Repeatable settings** (`session_options`): the same inputs give the same bytes on every run
with the same fingerprint, whatever the chunk a row falls in.

- Execution provider: `CPUExecutionProvider`; `CUDAExecutionProvider` on device 0 when the
  device is a CUDA one and the installed runtime has it (onnxruntime-gpu), with TF32 off (it
  would put results outside the tolerance), cuDNN's heuristic algorithm choice instead of a
  timed search (a search can pick a different algorithm on every load) and a same-as-requested
  arena.
- `intra_op_num_threads` = the CPUs this process may run on (a provider pins its workers to
  its `provider_cpus`), at most `MAX_ORT_THREADS`: the runtime's CPU kernels split a product
  or a reduction by output element, never inside one sum, so the count does not change the bits
  (measured: 1 and 2 threads give identical outputs on all three test models), but it is in
  the fingerprint all the same, since nothing promises that for every kernel. Threads do not
  spin while idle (`allow_spinning` 0): on a provider they share the machine with its node.
- `inter_op_num_threads` 1 and `ORT_SEQUENTIAL`: one operator at a time, in graph order.
- `graph_optimization_level` `ORT_ENABLE_ALL`: with the layout transformations (NCHWc
  convolutions) the digits CNN runs 3.2x faster than with `ORT_ENABLE_EXTENDED` on an AVX-512
  CPU; they depend on the CPU's instruction set, which the fingerprint holds.
- The session's CPU arena on: without it, the blocks each run allocates and frees fragment
  glibc's heap (its mmap threshold adapts upwards), and a run's peak RSS grew with the batch
  and varied between runs (the digits CNN on 60,000 rows: 38-43 MiB, over the count); with
  it one chunk's blocks are kept and reused (33 MiB, the same every run), and freed with the
  session (`clear_sessions`, or eviction from the cache). The count in `workloads.limits`
  (`_model_infer_bytes`) bounds the measured peak.
- A chunk of one row runs as two copies of it: the runtime's reductions take another path when
  the leading dimension is 1 (measured on the transformer block's ReduceMean: a different last
  bit), so no row is ever computed alone, by a provider or a verifier.

Sessions are cached by model file id (`MAX_CACHED_SESSIONS`): a pool serves the same model
often, and loading a large model takes seconds.

A model that the runtime cannot load is refused (`ModelRefused`); one that fails on some rows
(an index out of range in a Gather, an integer division by zero) fails on those rows' inputs,
which is the client's doing: `InputsError` naming the chunk of rows.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from gpu.artifacts import encode_arrays
from gpu.device import Device
from gpu.inputs import InputsError, uploaded_inputs
from gpu.onnx_models import ModelMismatch, ModelRefused, inspect_model
from gpu.workloads import Progress, ShouldStop, WorkloadResult, _Pacer, _result
from ogpu_node.blobs import file_id
from ogpu_node.hashing import digest
from ogpu_node.types import Hash32
from ogpu_node.workloads.limits import MODEL_CHUNK_ROWS
from ogpu_node.workloads.models import FINGERPRINT_METRIC, ElemType, ModelInferSpec, ModelInfo
from ogpu_node.workloads.spec import check_spec

MAX_ORT_THREADS = 16
"""Intra-operator threads of one session, at most."""
MAX_CACHED_SESSIONS = 2
GRAPH_OPTIMIZATION = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
MIN_RUN_ROWS = 2
"""A chunk runs at least this many rows (a single row is repeated; see the module docstring)."""
ISA_FLAGS = frozenset({
    "sse3", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq",
    "avx512cd", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",  # x86-64
    "asimd", "asimddp", "asimdhp", "fphp", "sve", "sve2", "i8mm", "bf16",  # arm64
})
"""The CPU features the runtime's kernels (MLAS) choose their code by."""

HostArray = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model file checked against its info, with its runtime session."""

    model_id: Hash32
    info: ModelInfo
    session: ort.InferenceSession
    fingerprint: int


def session_threads() -> int:
    """The intra-operator threads a session uses here (see the module docstring)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_ORT_THREADS, cpus))


def session_options(threads: int) -> ort.SessionOptions:
    """The repeatable settings (the module docstring says why each)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = GRAPH_OPTIMIZATION
    options.enable_cpu_mem_arena = True
    options.use_deterministic_compute = True
    options.log_severity_level = 4  # errors come back as exceptions; nothing on stderr
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def execution_providers(device: Device | None) -> list[Any]:
    """CUDA on device 0 for a CUDA device when the runtime has it, else the CPU."""
    if (device is not None and device.kind == "cuda"
            and "CUDAExecutionProvider" in ort.get_available_providers()):
        return [("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0,
                                           "cudnn_conv_algo_search": "DEFAULT",
                                           "arena_extend_strategy": "kSameAsRequested"}),
                "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


@cache
def _cpu_description() -> str:
    """Vendor, family, model and instruction-set features of this CPU."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    flags = sorted(set((fields.get("flags") or fields.get("Features") or "").split())
                   & ISA_FLAGS)
    kind = [fields.get(k, "") for k in ("vendor_id", "cpu family", "model", "CPU implementer",
                                        "CPU part")]
    return f"{platform.machine()} {' '.join(kind)} {' '.join(flags)}"


def runtime_fingerprint(device: Device | None = None, threads: int | None = None) -> int:
    """A 63-bit number naming everything that decides the bits of a model's outputs here: the
    runtime's version, its execution provider (and GPU), the optimisation level, the thread
    count, and the CPU's kind and instruction set. Equal fingerprints: bit-exact results."""
    providers = execution_providers(device)
    first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    gpu = device.name if device is not None and first == "CUDAExecutionProvider" else ""
    text = (f"onnxruntime {ort.__version__}; {first} {gpu}; level {int(GRAPH_OPTIMIZATION)}; "
            f"threads {threads or session_threads()}; cpu {_cpu_description()}")
    return int.from_bytes(digest(b"onnx-runtime", text.encode())[:8], "big") >> 1


_sessions: OrderedDict[tuple[Hash32, str], LoadedModel] = OrderedDict()
_sessions_lock = threading.Lock()


def load_model(model_file: bytes, info: ModelInfo, device: Device | None = None) -> LoadedModel:
    """The session of `model_file` (cached by file id and device), after checking that the file
    gives `info` (`ModelMismatch` when it does not, `ModelRefused` when it cannot be inspected
    or the runtime cannot load it)."""
    model_id = file_id(model_file)
    key = (model_id, device.kind if device is not None else "cpu")
    with _sessions_lock:
        loaded = _sessions.get(key)
        if loaded is not None:
            _sessions.move_to_end(key)
    if loaded is None:
        found = inspect_model(model_file)
        threads = session_threads()
        try:
            session = ort.InferenceSession(model_file, session_options(threads),
                                           providers=execution_providers(device))
        except Exception as exc:  # the runtime's errors have no common base
            raise ModelRefused(f"model_refused: the runtime cannot load it: "
                               f"{str(exc).splitlines()[0][:300]}") from None
        loaded = LoadedModel(model_id, found, session, runtime_fingerprint(device, threads))
        with _sessions_lock:
            _sessions[key] = loaded
            while len(_sessions) > MAX_CACHED_SESSIONS:
                _sessions.popitem(last=False)
    if loaded.info != info:
        raise ModelMismatch(f"model_mismatch: the file gives {_differences(loaded.info, info)}")
    return loaded


def check_model_file(model_file: bytes, info: ModelInfo, device: Device | None = None) -> None:
    """Whether a registered model's file is one this machine can run: it gives `info`
    (`ModelMismatch`), ONNX Runtime loads it and runs a row of zeros through it (`ModelRefused`
    saying why: a file can pass the inspection and use an operator the runtime has no kernel
    for, say `Relu` on int64). What a provider checks before it bids on the model's tasks."""
    loaded = load_model(model_file, info, device)
    zeros = {t.name: np.zeros((1, *t.shape), np.float32) for t in info.inputs}
    try:
        run_rows(loaded, zeros, 0, 1)
    except InputsError as exc:
        raise ModelRefused(f"model_refused: the runtime cannot run a row of zeros: {exc}"
                           ) from None


def clear_sessions() -> None:
    """Drop the cached sessions (their memory goes back at once)."""
    with _sessions_lock:
        _sessions.clear()


def _differences(found: ModelInfo, registered: ModelInfo) -> str:
    fields = [f for f in ModelInfo.__dataclass_fields__ if getattr(found, f) !=
              getattr(registered, f)]
    return "; ".join(f"{f} {getattr(found, f)!r}, registered {getattr(registered, f)!r}"
                     for f in fields)[:600]


def model_feed(info: ModelInfo, arrays: Mapping[str, HostArray], begin: int,
               end: int) -> dict[str, HostArray]:
    """Rows `begin:end` of the checked input arrays as the session takes them: int64 inputs
    cast from their whole-number float32, a single row repeated (`MIN_RUN_ROWS`)."""
    feed: dict[str, HostArray] = {}
    for tensor in info.inputs:
        rows = arrays[tensor.name][begin:end]
        if tensor.elem is ElemType.INT64:
            rows = rows.astype(np.int64)
        if end - begin < MIN_RUN_ROWS:
            rows = np.concatenate([rows] * MIN_RUN_ROWS)
        feed[tensor.name] = rows
    return feed


def run_rows(loaded: LoadedModel, arrays: Mapping[str, HostArray], begin: int,
             end: int) -> list[npt.NDArray[np.float32]]:
    """The model's outputs (float32, in the info's order) for rows `begin:end` of `arrays`.
    Raises `InputsError` when the model fails on these rows' inputs."""
    names = [t.name for t in loaded.info.outputs]
    try:
        outputs = loaded.session.run(names, model_feed(loaded.info, arrays, begin, end))
    except Exception as exc:  # the runtime's errors have no common base
        raise InputsError(f"inputs: the model fails on rows {begin}..{end - 1}: "
                          f"{str(exc).splitlines()[0][:300]}") from None
    return [np.asarray(out[:end - begin], dtype=np.float32) for out in outputs]


def run_chunks(loaded: LoadedModel, arrays: Mapping[str, HostArray], rows: int,
               pacer: _Pacer | None = None) -> list[npt.NDArray[np.float32]]:
    """The outputs of all `rows` rows, computed MODEL_CHUNK_ROWS at a time."""
    outputs = [np.empty((rows, *t.shape), dtype=np.float32) for t in loaded.info.outputs]
    for begin in range(0, rows, MODEL_CHUNK_ROWS):
        end = min(rows, begin + MODEL_CHUNK_ROWS)
        for out, chunk in zip(outputs, run_rows(loaded, arrays, begin, end), strict=True):
            out[begin:end] = chunk
        if pacer is not None:
            pacer.tick(end, force=True)
    return outputs


def run_model(spec: ModelInferSpec, model_file: bytes, device: Device | None = None,
              progress: Progress | None = None, should_stop: ShouldStop | None = None,
              inputs: bytes | None = None) -> WorkloadResult:
    """Run registered model `model_file` on the spec's uploaded `inputs` (see the module
    docstring); the output is one float32 array per model output. Raises `ModelMismatch`,
    `ModelRefused`, `InputsError` or `WorkloadCancelled`."""
    check_spec(spec)
    start = time.perf_counter()
    arrays = uploaded_inputs(spec, inputs)
    if arrays is None:  # a model's inputs are always an uploaded file
        raise InputsError("a registered model's inputs must be an uploaded file")
    loaded = load_model(model_file, spec.model_info, device)
    t_inputs = time.perf_counter()
    outputs = run_chunks(loaded, arrays, spec.batch, _Pacer(spec.batch, progress, should_stop))
    t_compute = time.perf_counter()
    named: Sequence[tuple[str, npt.NDArray[np.float32]]] = [
        (t.name, out) for t, out in zip(loaded.info.outputs, outputs, strict=True)]
    output = encode_arrays(named)
    del named, outputs
    phases = {"inputs": t_inputs - start, "compute": t_compute - t_inputs,
              "encode": time.perf_counter() - t_compute}
    return _result(output, file_id(output), [], [], {FINGERPRINT_METRIC: loaded.fingerprint},
                   phases, start)


__all__ = ["LoadedModel", "check_model_file", "load_model", "run_model", "run_rows",
           "runtime_fingerprint", "session_options"]
