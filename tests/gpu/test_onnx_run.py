"""Running registered ONNX models (workload kind 4): the right values, the same bytes whatever
the chunking, progress and cancelling, the model file checked against its registered info, the
inputs checked, and the same result from a worker process."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import helper

from gpu.artifacts import decode_arrays
from gpu.device import Device, cuda_device
from gpu.errors import WorkloadCancelled, WorkloadError
from gpu.inputs import InputsError, encode_inputs
from gpu.onnx_models import ModelMismatch, ModelRefused, inspect_model
from gpu.onnx_run import (
    MAX_CACHED_SESSIONS,
    clear_sessions,
    load_model,
    runtime_fingerprint,
    session_threads,
)
from gpu.worker_process import Worker
from gpu.workloads import WorkloadResult, run_workload
from ogpu_node.blobs import file_id
from ogpu_node.workloads.limits import MODEL_CHUNK_ROWS
from ogpu_node.workloads.models import FINGERPRINT_METRIC
from tests.gpu.conftest import require_ort_cuda
from tests.gpu.onnx_examples import EXAMPLES, TOKENS, VOCAB
from tests.gpu.onnx_tasks import Task, task_for

HONEST_RTOL = 1e-5
"""Measured against float64: 1.1e-6 at most (`scripts/bench onnx`)."""
BATCH = 2 * MODEL_CHUNK_ROWS + 1  # two full chunks and a last one of a single row


@pytest.fixture(scope="module", params=list(EXAMPLES))
def task(request: pytest.FixtureRequest) -> Task:
    return task_for(EXAMPLES[request.param](), BATCH)


@pytest.fixture(scope="module")
def result(task: Task, device: Device) -> WorkloadResult:
    return run_workload(task.spec, device, inputs=task.inputs, model=task.model)


def outputs(result: WorkloadResult) -> dict[str, np.ndarray]:
    return dict(decode_arrays(result.output))


def test_the_outputs_are_the_models_within_float32_error(task: Task,
                                                         result: WorkloadResult) -> None:
    got = outputs(result)
    want = task.example.reference(task.arrays, np.float64)
    assert list(got) == [t.name for t in task.spec.model_info.outputs]
    for name, value in want.items():
        assert got[name].shape == value.shape and got[name].dtype == np.float32
        scale = np.abs(value).max(axis=1, keepdims=True)
        assert np.all(np.abs(got[name] - value) <= HONEST_RTOL * scale)


def test_a_result_carries_the_runtime_fingerprint(result: WorkloadResult, device: Device) -> None:
    assert result.metrics == {FINGERPRINT_METRIC: runtime_fingerprint(device)}
    assert 0 < result.metrics[FINGERPRINT_METRIC] < 2**63
    assert result.output_id == file_id(result.output) and result.checkpoints == []


def test_every_row_comes_out_the_same_whatever_chunk_it_falls_in(
        task: Task, result: WorkloadResult, device: Device) -> None:
    again = run_workload(task.spec, device, inputs=task.inputs, model=task.model)
    assert again.output == result.output
    full = outputs(result)
    for begin, end in ((0, 1), (MODEL_CHUNK_ROWS - 3, MODEL_CHUNK_ROWS + 4), (BATCH - 1, BATCH)):
        part = task_for(task.example, end - begin, seed=1)
        part = replace(part, arrays={k: v[begin:end] for k, v in task.arrays.items()})
        raw = encode_inputs(part.spec, part.arrays)
        spec = replace(part.spec, inputs=bytes(file_id(raw)))
        rows = outputs(run_workload(spec, device, inputs=raw, model=task.model))
        for name, value in rows.items():
            assert np.array_equal(value, full[name][begin:end]), (name, begin, end)


def test_progress_is_reported_by_chunk_and_a_stop_is_obeyed(task: Task, device: Device) -> None:
    reports: list[float] = []
    run_workload(task.spec, device, reports.append, inputs=task.inputs, model=task.model)
    assert reports == sorted(reports) and reports[-1] == 1.0 and len(reports) == 3
    seen: list[float] = []
    with pytest.raises(WorkloadCancelled):
        run_workload(task.spec, device, seen.append, lambda: bool(seen), inputs=task.inputs,
                     model=task.model)
    assert seen == [MODEL_CHUNK_ROWS / BATCH]


def test_a_file_that_is_not_the_registered_model_is_refused(device: Device) -> None:
    task = task_for(EXAMPLES["mlp"](), 8)
    with pytest.raises(ModelRefused, match=r"^model_refused: "):
        run_workload(task.spec, device, inputs=task.inputs, model=task.model[:-1] + b"\0")
    cnn = EXAMPLES["digits_cnn"]().model
    with pytest.raises(ModelMismatch, match=r"^model_mismatch: the file gives file_bytes"):
        run_workload(task.spec, device, inputs=task.inputs, model=cnn)
    changed = replace(task.spec, info=replace(task.spec.model_info, flops_per_row=1))
    with pytest.raises(ModelMismatch, match=r"flops_per_row 34684, registered 1$"):
        run_workload(changed, device, inputs=task.inputs, model=task.model)
    with pytest.raises(WorkloadError, match="needs its model file"):
        run_workload(task.spec, device, inputs=task.inputs)
    # the info does not bind the weights: the model's file id does (the blob store checks it)
    other_weights = EXAMPLES["mlp"](seed=9).model
    run_workload(task.spec, device, inputs=task.inputs, model=other_weights)


def test_a_model_the_runtime_cannot_load_is_refused(device: Device) -> None:
    # float32 in and out, but Relu on int64: inspection accepts it, ONNX Runtime has no kernel
    nodes = [helper.make_node("Cast", ["x"], ["i"], to=onnx.TensorProto.INT64),
             helper.make_node("Gelu", ["i"], ["g"]),
             helper.make_node("Cast", ["g"], ["y"], to=onnx.TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", onnx.TensorProto.FLOAT, ["N", 4])], [helper.make_tensor_value_info(
            "y", onnx.TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    data = model.SerializeToString()
    with pytest.raises(ModelRefused):
        load_model(data, inspect_model(data), device)


def test_int64_inputs_must_be_whole_numbers_in_range_and_valid_for_the_model(
        device: Device) -> None:
    task = task_for(EXAMPLES["transformer"](), 4)
    tokens = task.arrays["tokens"].copy()
    tokens[2, 3] = 0.5
    with pytest.raises(InputsError, match="'tokens' is an int64 input: its values must be "
                                          "whole numbers"):
        encode_inputs(task.spec, {"tokens": tokens})
    tokens[2, 3] = VOCAB  # a whole number, but past the embedding table
    raw = encode_inputs(task.spec, {"tokens": tokens})
    spec = replace(task.spec, inputs=bytes(file_id(raw)))
    with pytest.raises(InputsError, match=r"the model fails on rows 0\.\.3: .*Gather"):
        run_workload(spec, device, inputs=raw, model=task.model)
    assert tokens.shape == (4, TOKENS)


def test_sessions_are_cached_by_file_and_the_cache_is_bounded(device: Device) -> None:
    clear_sessions()
    mlp, cnn, block = (EXAMPLES[n]() for n in ("mlp", "digits_cnn", "transformer"))
    first = load_model(mlp.model, inspect_model(mlp.model), device)
    assert load_model(mlp.model, first.info, device) is first
    for example in (cnn, block):
        load_model(example.model, inspect_model(example.model), device)
    assert MAX_CACHED_SESSIONS == 2
    assert load_model(mlp.model, first.info, device) is not first  # evicted, loaded again
    clear_sessions()


def test_the_fingerprint_names_the_settings_that_decide_the_bits(device: Device) -> None:
    here = runtime_fingerprint(device)
    assert here == runtime_fingerprint(device, session_threads())
    assert runtime_fingerprint(device, session_threads() + 1) != here


def test_a_worker_process_computes_the_same_bytes(device: Device) -> None:
    task = task_for(EXAMPLES["digits_cnn"](), 40)
    here = run_workload(task.spec, device, inputs=task.inputs, model=task.model)
    there: WorkloadResult = Worker("cpu").call(
        "run_workload", {"spec": task.spec, "inputs": task.inputs, "model": task.model})
    assert there.output_id == here.output_id and there.metrics == here.metrics
    with pytest.raises(ModelMismatch):  # the child's refusal comes back with its type
        Worker("cpu").call("run_workload", {"spec": task.spec, "inputs": task.inputs,
                                            "model": EXAMPLES["mlp"]().model})


@pytest.mark.cuda
def test_on_a_cuda_device_the_outputs_are_within_the_tolerance_of_the_cpu(
        device: Device) -> None:
    require_ort_cuda()
    gpu = cuda_device()
    assert gpu is not None
    task = task_for(EXAMPLES["digits_cnn"](), 300)
    on_gpu = run_workload(task.spec, gpu, inputs=task.inputs, model=task.model)
    on_cpu = run_workload(task.spec, device, inputs=task.inputs, model=task.model)
    assert on_gpu.metrics != on_cpu.metrics  # another fingerprint: compared with tolerance
    got, want = outputs(on_gpu)["logits"], outputs(on_cpu)["logits"]
    assert np.all(np.abs(got - want) <= 1e-4 * np.abs(want).max(axis=1, keepdims=True) + 1e-6)
