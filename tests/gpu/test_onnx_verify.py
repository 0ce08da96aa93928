"""Verifying registered models' results (`verify_model_inference`): honest results from any
settings accepted, cheats rejected, malformed outputs a verdict and never an exception."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from gpu.artifacts import decode_arrays, encode_arrays
from gpu.device import Device
from gpu.inputs import check_inputs
from gpu.onnx_models import ModelMismatch
from gpu.onnx_run import LoadedModel, run_chunks, session_options
from gpu.verify import MODEL_RTOL, Verdict, model_fingerprint, verify_model_inference
from gpu.worker_process import Worker
from gpu.workloads import WorkloadResult, run_workload
from ogpu_node.blobs import file_id
from ogpu_node.workloads.models import FINGERPRINT_METRIC
from tests.gpu.onnx_examples import EXAMPLES
from tests.gpu.onnx_tasks import Task, task_for

BATCH = 300
ALL_ROWS = list(range(BATCH))
FOREIGN = 12345
"""A fingerprint other than ours: the comparison is within tolerance."""


@pytest.fixture(scope="module", params=list(EXAMPLES))
def task(request: pytest.FixtureRequest) -> Task:
    return task_for(EXAMPLES[request.param](), BATCH, seed=4)


@pytest.fixture(scope="module")
def honest(task: Task, device: Device) -> WorkloadResult:
    return run_workload(task.spec, device, inputs=task.inputs, model=task.model)


def check(task: Task, output: bytes, fingerprint: int, rows: list[int] | None = None,
          device: Device | None = None) -> Verdict:
    return verify_model_inference(task.spec, task.model, task.inputs, output,
                                  ALL_ROWS if rows is None else rows, fingerprint, device)


def arrays_of(output: bytes) -> list[tuple[str, np.ndarray]]:
    return [(name, value.copy()) for name, value in decode_arrays(output)]


def with_settings(task: Task, threads: int, level: ort.GraphOptimizationLevel) -> bytes:
    """The output another provider computes with other runtime settings."""
    options = session_options(threads)
    options.graph_optimization_level = level
    session = ort.InferenceSession(task.model, options, providers=["CPUExecutionProvider"])
    loaded = LoadedModel(file_id(task.model), task.spec.model_info, session, 0)
    outs = run_chunks(loaded, check_inputs(task.spec, task.inputs), BATCH)
    return encode_arrays([(t.name, o) for t, o in zip(task.spec.model_info.outputs, outs,
                                                      strict=True)])


# --- honest results -------------------------------------------------------------------------

def test_an_honest_result_passes_bit_for_bit_on_the_same_runtime(
        task: Task, honest: WorkloadResult, device: Device) -> None:
    verdict = check(task, honest.output, honest.metrics[FINGERPRINT_METRIC], device=device)
    assert verdict.ok and verdict.code == "ok", verdict
    assert verdict.checked == f"{BATCH} of {BATCH} rows (bit-exact)"


@pytest.mark.parametrize("level", [ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED])
@pytest.mark.parametrize("threads", [1, 2])
def test_honest_results_from_other_settings_pass_within_tolerance(
        task: Task, threads: int, level: ort.GraphOptimizationLevel) -> None:
    verdict = check(task, with_settings(task, threads, level), FOREIGN)
    assert verdict.ok and verdict.checked.endswith("(within tolerance)"), verdict


def test_another_implementation_in_float32_passes_within_tolerance(task: Task) -> None:
    reference = task.example.reference(task.arrays, np.float32)
    output = encode_arrays([(t.name, reference[t.name].astype(np.float32))
                            for t in task.spec.model_info.outputs])
    assert check(task, output, FOREIGN).ok


def test_a_sample_of_rows_is_enough_and_single_rows_are_checked_alone(
        task: Task, honest: WorkloadResult) -> None:
    ours = honest.metrics[FINGERPRINT_METRIC]
    for rows in ([0], [BATCH - 1], [5, 17, 250]):
        verdict = check(task, honest.output, ours, rows)
        assert verdict.ok and verdict.checked.startswith(f"{len(rows)} of {BATCH} rows"), rows


# --- cheats ---------------------------------------------------------------------------------

def cheat(honest: WorkloadResult, change: Any) -> bytes:
    arrays = arrays_of(honest.output)
    change(arrays[0][1])
    return encode_arrays(arrays)


def test_one_wrong_row_is_caught_when_it_is_sampled(task: Task, honest: WorkloadResult) -> None:
    def nudge(logits: np.ndarray) -> None:
        logits[123] += 10 * MODEL_RTOL * np.abs(logits[123]).max()

    forged = cheat(honest, nudge)
    for fingerprint in (honest.metrics[FINGERPRINT_METRIC], FOREIGN):
        verdict = check(task, forged, fingerprint, [3, 123, 200])
        assert verdict.code == "inference_mismatch" and "first row 123" in verdict.reason
    assert check(task, forged, FOREIGN, [3, 200]).ok  # sampling: unsampled rows go unseen


def test_the_last_bit_counts_on_the_same_runtime(task: Task, honest: WorkloadResult) -> None:
    def flip(logits: np.ndarray) -> None:
        logits.view(np.uint32)[40, 0] ^= 1

    forged = cheat(honest, flip)
    assert not check(task, forged, honest.metrics[FINGERPRINT_METRIC]).ok
    assert check(task, forged, FOREIGN).ok  # within tolerance of another runtime


@pytest.mark.parametrize("how", ["shifted", "zeros", "nan", "half_precision"])
def test_forged_outputs_are_rejected(task: Task, honest: WorkloadResult, how: str) -> None:
    def forge(values: np.ndarray) -> None:
        if how == "shifted":
            values[:] = np.roll(values, 1, axis=0)
        elif how == "zeros":
            values[:] = 0
        elif how == "nan":
            values[7, 0] = np.nan
        else:
            values[:] = values.astype(np.float16)

    verdict = check(task, cheat(honest, forge), FOREIGN)
    assert verdict.code == "inference_mismatch", verdict


def test_outputs_of_another_model_are_rejected(task: Task, device: Device) -> None:
    other = task_for(EXAMPLES[task.example.name](seed=99), BATCH, seed=4)  # other weights
    theirs = run_workload(other.spec, device, inputs=other.inputs, model=other.model)
    verdict = check(task, theirs.output, FOREIGN)
    assert verdict.code == "inference_mismatch", verdict


# --- malformed ------------------------------------------------------------------------------

def test_malformed_outputs_are_a_verdict(task: Task, honest: WorkloadResult) -> None:
    arrays = arrays_of(honest.output)
    for output in (b"garbage", honest.output[:-4], "text",
                   encode_arrays([(f"{arrays[0][0]}x", arrays[0][1]), *arrays[1:]]),
                   encode_arrays([(arrays[0][0], arrays[0][1][:-1]), *arrays[1:]]),
                   encode_arrays(arrays[:-1] if len(arrays) > 1 else [])):
        verdict = check(task, output, FOREIGN)  # type: ignore[arg-type]
        assert verdict.code == "malformed_output", (output[:20], verdict)


def test_malformed_inputs_and_a_mismatched_model_are_not_the_providers_output(
        task: Task, honest: WorkloadResult) -> None:
    verdict = verify_model_inference(task.spec, task.model, task.inputs[:-4], honest.output,
                                     ALL_ROWS, FOREIGN)
    assert verdict.code == "inputs_malformed"
    other = EXAMPLES["mlp" if task.example.name != "mlp" else "digits_cnn"]().model
    with pytest.raises(ModelMismatch):
        verify_model_inference(task.spec, other, task.inputs, honest.output, ALL_ROWS, FOREIGN)
    with pytest.raises(ValueError, match="rows to check"):
        check(task, honest.output, FOREIGN, [BATCH])


def test_a_check_in_a_worker_process_gives_the_same_verdict() -> None:
    task = task_for(EXAMPLES["transformer"](), 20)
    result: WorkloadResult = Worker("cpu").call(
        "run_workload", {"spec": task.spec, "inputs": task.inputs, "model": task.model})
    kwargs = {"spec": task.spec, "model_file": task.model, "inputs": task.inputs,
              "output": result.output, "rows_to_check": [0, 19],
              "fingerprint": result.metrics[FINGERPRINT_METRIC]}
    there: Verdict = Worker("cpu").call("verify_model_inference", kwargs)
    here = verify_model_inference(**kwargs)  # type: ignore[arg-type]
    assert there.ok and here.ok and there.checked == here.checked == "2 of 20 rows (bit-exact)"


def test_a_models_result_states_its_runtime_and_nothing_else(honest: WorkloadResult) -> None:
    """The client reads a result's metrics; a model's check recomputes none but the runtime's
    fingerprint, so a result may state no other (a provider could show made-up accuracy)."""
    assert model_fingerprint(honest.metrics) == honest.metrics[FINGERPRINT_METRIC]
    with pytest.raises(ValueError, match="alone"):
        model_fingerprint({**honest.metrics, "accuracy_bps": 10_000})
    with pytest.raises(ValueError, match="alone"):
        model_fingerprint({})
