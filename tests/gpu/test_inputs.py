"""Inputs a client uploads instead of a seed: the spec field, the file's checks, and workloads and
verifiers running on the uploaded arrays."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gpu.artifacts import decode_arrays, encode_arrays
from gpu.device import Device
from gpu.inputs import (
    HEADER_ALLOWANCE,
    InputsError,
    check_inputs,
    encode_inputs,
    inputs_max_bytes,
)
from gpu.verify import verify_inference, verify_matmul, verify_training
from gpu.workloads import infer_logits, run_workload
from ogpu_node.blobs import file_id
from ogpu_node.encoding import encode, pack
from ogpu_node.workloads.kinds import decode_spec
from ogpu_node.workloads.limits import input_shapes
from ogpu_node.workloads.spec import InvalidSpec, WorkloadKind
from tests.gpu.conftest import INFER, MATMUL, TRAIN

FILE_ID = bytes(range(32))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def matmul_file(n: int = MATMUL.n, seed: int = 1) -> bytes:
    gen = np.random.default_rng(seed)
    return encode_inputs(replace(MATMUL, n=n, inputs=FILE_ID),
                         {"A": gen.normal(size=(n, n)), "B": gen.normal(size=(n, n))})


def test_a_seeded_spec_encodes_as_before_and_an_uploaded_one_round_trips() -> None:
    assert encode(MATMUL) == pack([MATMUL.n, MATMUL.seed])
    for spec in (MATMUL, TRAIN, INFER):
        uploaded = replace(spec, inputs=FILE_ID)
        assert decode_spec(spec.KIND, encode(uploaded)) == uploaded
        assert encode(uploaded) != encode(spec)


@pytest.mark.parametrize("fields", [[96, 5, b""], [96, 5, b"short"], [96, 5, FILE_ID, 1]])
def test_an_inputs_field_that_is_not_a_file_id_is_refused(fields: list[object]) -> None:
    with pytest.raises(InvalidSpec):
        decode_spec(WorkloadKind.MATMUL, pack(fields))


def test_the_inputs_file_must_hold_exactly_the_arrays_the_spec_asks_for() -> None:
    spec = replace(TRAIN, inputs=FILE_ID)
    x = np.zeros((spec.n_samples, spec.n_features))
    labels = np.arange(spec.n_samples) % spec.n_classes
    good = encode_inputs(spec, {"x": x, "labels": labels})
    assert list(check_inputs(spec, good)) == ["x", "labels"]
    bad: dict[str, dict[str, np.ndarray]] = {
        "missing array": {"x": x},
        "wrong shape": {"x": x[:-1], "labels": labels[:-1]},
        "label out of range": {"x": x, "labels": labels + 1},
        "fractional label": {"x": x, "labels": labels + 0.5},
        "NaN feature": {"x": np.where(x == 0, np.nan, x), "labels": labels},
    }
    for name, arrays in bad.items():
        with pytest.raises(InputsError):
            encode_inputs(spec, arrays)
        raw = encode_arrays([(k, np.asarray(v, dtype=np.float32)) for k, v in arrays.items()])
        with pytest.raises(InputsError):
            check_inputs(spec, raw)
            pytest.fail(f"{name} passed the check")
    with pytest.raises(InputsError):
        check_inputs(spec, b"not an artifact")
    assert input_shapes(replace(INFER, inputs=FILE_ID)) == [("x", (INFER.batch, 64))]
    assert len(good) <= inputs_max_bytes(spec) <= len(good) + HEADER_ALLOWANCE


def test_a_workload_whose_inputs_were_not_supplied_is_refused(device: Device) -> None:
    with pytest.raises(InputsError):
        run_workload(replace(MATMUL, inputs=FILE_ID), device)


def test_matmul_runs_on_the_uploaded_matrices_and_verifies_against_them(device: Device) -> None:
    spec = replace(MATMUL, inputs=FILE_ID)
    raw = matmul_file()
    arrays = dict(decode_arrays(raw))
    result = run_workload(spec, device, inputs=raw)
    c = decode_arrays(result.output)[0][1]
    np.testing.assert_allclose(c, arrays["A"] @ arrays["B"], rtol=1e-4, atol=1e-3)
    assert verify_matmul(spec, result.output, 20, rng(), device, uploaded=raw).ok
    # the same product checked against other inputs (say, the seed's) fails
    other = verify_matmul(spec, result.output, 20, rng(), device, uploaded=matmul_file(seed=2))
    assert other.code == "matmul_mismatch"
    missing = verify_matmul(spec, result.output, 20, rng(), device)
    assert missing.code == "inputs_malformed"


def test_training_runs_on_the_uploaded_dataset_and_verifies_against_it(device: Device) -> None:
    spec = replace(TRAIN, inputs=FILE_ID)
    gen = np.random.default_rng(3)
    x = gen.normal(size=(spec.n_samples, spec.n_features))
    labels = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)  # 0..2: learnable
    raw = encode_inputs(spec, {"x": x, "labels": labels})
    result = run_workload(spec, device, inputs=raw)
    assert result.output != run_workload(TRAIN, device).output  # not the seed's dataset
    args = (result.checkpoints, result.checkpoint_ids, result.checkpoint_root, result.metrics,
            spec.checkpoint_count, rng(), device)
    assert verify_training(spec, *args, uploaded=raw).ok
    other = encode_inputs(spec, {"x": -x, "labels": labels})
    assert verify_training(spec, *args, uploaded=other).code == "checkpoint_mismatch"


def test_inference_runs_on_the_uploaded_rows(device: Device) -> None:
    spec = replace(INFER, inputs=FILE_ID)
    x = np.random.default_rng(4).normal(size=(spec.batch, 64)).astype(np.float32)
    raw = encode_inputs(spec, {"x": x})
    result = run_workload(spec, device, inputs=raw)
    logits = decode_arrays(result.output)[0][1]
    np.testing.assert_allclose(logits, device.to_host(infer_logits(spec, x, device)))
    assert verify_inference(spec, result.output, 8, rng(), device, uploaded=raw).ok
    assert file_id(raw) != file_id(result.output)
