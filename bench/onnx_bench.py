"""`scripts/bench onnx`: registered models' numbers (see `gpu.onnx_run`, `gpu.verify`).

(a) the tolerance calibration: for the three example models of `tests/gpu/onnx_examples.py`
    (an MLP, a CNN on the 8 x 8 digits, a transformer-style block), the largest difference per
    row, relative to the row's largest output (max_j |a_j - b_j| / max_j |ref_j|, the measure
    `verify_model_inference` bounds), between the provider's settings and: other thread counts,
    other graph optimisation levels, other chunkings (the whole batch at once, rows in 7s, one
    row at a time), NumPy float32 (another implementation: OpenBLAS, NumPy's own reductions
    and transcendental functions), and the float64 NumPy reference; "bit-exact" says whether
    every row came out identical.
(b) throughput of the digits CNN through `run_model` (inputs checked, chunks, encoding, file
    id) against a bare ONNX Runtime session with the same settings running the same chunks.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from gpu.device import cpu_device
from gpu.inputs import check_inputs, encode_inputs
from gpu.onnx_models import inspect_model
from gpu.onnx_run import (
    LoadedModel,
    load_model,
    model_feed,
    run_chunks,
    run_model,
    session_options,
    session_threads,
)
from ogpu_node.blobs import file_id
from ogpu_node.types import Hash32
from ogpu_node.workloads.limits import MODEL_CHUNK_ROWS
from ogpu_node.workloads.models import ModelInferSpec
from tests.gpu.onnx_examples import EXAMPLES, Example

Outputs = list[npt.NDArray[np.floating]]
LEVELS = {"disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
          "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}


def spec_for(example: Example, rows: int, seed: int) -> tuple[ModelInferSpec, bytes,
                                                               dict[str, npt.NDArray[np.generic]]]:
    info = inspect_model(example.model)
    arrays = example.inputs(rows, seed)
    unbound = ModelInferSpec(Hash32(bytes(32)), rows, bytes(32), info)
    raw = encode_inputs(unbound, arrays)
    return replace(unbound, inputs=bytes(file_id(raw))), raw, arrays


def loaded_with(example: Example, threads: int,
                level: ort.GraphOptimizationLevel | None = None) -> LoadedModel:
    options = session_options(threads)
    if level is not None:
        options.graph_optimization_level = level
    session = ort.InferenceSession(example.model, options, providers=["CPUExecutionProvider"])
    return LoadedModel(file_id(example.model), inspect_model(example.model), session, 0)


def chunked(loaded: LoadedModel, arrays: dict[str, npt.NDArray[np.float32]], rows: int,
            size: int) -> Outputs:
    """Outputs computed `size` rows at a time (a single row padded, as `run_rows` does)."""
    parts: list[Outputs] = []
    for begin in range(0, rows, size):
        end = min(rows, begin + size)
        names = [t.name for t in loaded.info.outputs]
        outs = loaded.session.run(names, model_feed(loaded.info, arrays, begin, end))
        parts.append([np.asarray(o[:end - begin]) for o in outs])
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


def unpadded_rows(loaded: LoadedModel, arrays: dict[str, npt.NDArray[np.float32]],
                  rows: int) -> Outputs:
    """Each row run alone, without the padding `run_rows` adds: what the padding avoids."""
    names = [t.name for t in loaded.info.outputs]
    parts = []
    for i in range(rows):
        feed = {k: v[:1] for k, v in model_feed(loaded.info, arrays, i, i + 1).items()}
        parts.append(loaded.session.run(names, feed))
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


def relative(a: Outputs, b: Outputs, ref: Outputs) -> float:
    worst = 0.0
    for x, y, r in zip(a, b, ref, strict=True):
        scale = np.abs(r).max(axis=1)
        worst = max(worst, float((np.abs(x.astype(np.float64) - y).max(axis=1) / scale).max()))
    return worst


def part_a(rows: int) -> None:
    print(f"(a) tolerance calibration: max over {rows} rows of max|diff| / max|ref64| per row")
    print(f"{'model':12} {'compared with the provider settings':38} {'relative':>10} "
          f"{'bit-exact':>9}")
    threads = session_threads()
    for name, make in EXAMPLES.items():
        example = make()
        spec, raw, arrays = spec_for(example, rows, seed=7)
        named = check_inputs(spec, raw)
        base_loaded = loaded_with(example, threads)
        base = run_chunks(base_loaded, named, rows)
        ref64 = [example.reference(arrays, np.float64)[t.name] for t in base_loaded.info.outputs]
        ref32 = [example.reference(arrays, np.float32)[t.name] for t in base_loaded.info.outputs]
        variants: dict[str, Outputs] = {
            f"{t} thread(s)": run_chunks(loaded_with(example, t), named, rows)
            for t in sorted({1, 2} - {threads})}
        variants |= {f"level {lv}": run_chunks(loaded_with(example, threads, level), named, rows)
                     for lv, level in LEVELS.items()}
        variants |= {f"chunks of {size}": chunked(base_loaded, named, rows, size)
                     for size in (rows, 7, 1)}
        variants["rows alone, unpadded"] = unpadded_rows(base_loaded, named, rows)
        variants["numpy float32"] = ref32
        variants["float64 reference"] = ref64
        for label, other in variants.items():
            exact = all(np.array_equal(x, y) for x, y in zip(base, other, strict=True))
            print(f"{name:12} {label:38} {relative(base, other, ref64):10.2e} {exact!s:>9}")


def part_b(rows: int, repeats: int) -> None:
    example = EXAMPLES["digits_cnn"]()
    spec, raw, _ = spec_for(example, rows, seed=3)
    device = cpu_device()
    loaded = load_model(example.model, spec.model_info, device)
    named = check_inputs(spec, raw)
    feeds = [model_feed(loaded.info, named, b, min(rows, b + MODEL_CHUNK_ROWS))
             for b in range(0, rows, MODEL_CHUNK_ROWS)]

    def bare() -> None:
        for feed in feeds:
            loaded.session.run(None, feed)

    def workload() -> None:
        run_model(spec, example.model, device, inputs=raw)

    print(f"\n(b) digits CNN, {rows} rows, {session_threads()} thread(s), best of {repeats}")
    results = {}
    for label, call in (("bare ONNX Runtime session", bare), ("run_model", workload)):
        call()
        best = min(_timed(call) for _ in range(repeats))
        results[label] = rows / best
        print(f"{label:28} {rows / best:12,.0f} rows/s")
    share = results["run_model"] / results["bare ONNX Runtime session"]
    print(f"{'run_model / bare':28} {share:12.1%}")


def _timed(call: Callable[[], None]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench onnx")
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--throughput-rows", type=int, default=32_768)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    part_a(args.rows)
    part_b(args.throughput_rows, args.repeats)
    return 0
