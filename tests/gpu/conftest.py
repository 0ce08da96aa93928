"""Shared small workloads for the gpu tests (sizes chosen so each test runs in milliseconds)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpu.device import Device, cpu_device
from gpu.inputs import encode_inputs
from gpu.workloads import WorkloadResult, run_workload
from ogpu_node.blobs import file_id
from ogpu_node.datasets import digits
from ogpu_node.workloads.net import (
    FLATTEN,
    RELU,
    LossKind,
    NetTrainSpec,
    Optimizer,
    OptimizerKind,
    Schedule,
    ScheduleKind,
    conv2d,
    dense,
    dropout,
    max_pool,
)
from ogpu_node.workloads.spec import InferSpec, MatmulSpec, TrainSpec

TRAIN = TrainSpec(seed=11, n_features=8, hidden=(16, 16), n_classes=3, n_samples=256, batch=16,
                  steps=40, lr_micros=100_000, checkpoint_every=8)
MATMUL = MatmulSpec(n=96, seed=5)
INFER = InferSpec(model="mlp-small", seed=3, batch=24)


@pytest.fixture(scope="session")
def device() -> Device:
    return cpu_device()


@pytest.fixture(scope="session")
def trained(device: Device) -> WorkloadResult:
    return run_workload(TRAIN, device)


@pytest.fixture(scope="session")
def multiplied(device: Device) -> WorkloadResult:
    return run_workload(MATMUL, device)


@pytest.fixture(scope="session")
def inferred(device: Device) -> WorkloadResult:
    return run_workload(INFER, device)


DIGITS_CNN = NetTrainSpec(
    seed=2026, input_shape=(1, 8, 8),
    layers=(conv2d(16, 3, padding=1), RELU, max_pool(2), dropout(1_000), FLATTEN, dense(10)),
    loss=LossKind.CROSS_ENTROPY,
    optimizer=Optimizer(OptimizerKind.ADAM, lr_micros=3_000, beta1_micros=900_000,
                        beta2_micros=999_000),
    schedule=Schedule(ScheduleKind.COSINE, warmup_steps=20, floor_micros=300),
    n_samples=1_797, val_bps=2_000, batch=32, steps=300, checkpoint_every=50,
    inputs=b"\x00" * 32)


@pytest.fixture(scope="session")
def digits_task() -> tuple[NetTrainSpec, bytes]:
    data = digits()
    raw = encode_inputs(DIGITS_CNN, {"x": data.x, "labels": data.labels})
    return replace(DIGITS_CNN, inputs=bytes(file_id(raw))), raw


@pytest.fixture(scope="session")
def digits_run(digits_task: tuple[NetTrainSpec, bytes], device: Device) -> WorkloadResult:
    spec, raw = digits_task
    return run_workload(spec, device, inputs=raw)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `cuda` need a CUDA device (CuPy and a GPU); those that run ONNX Runtime on
    it also call `require_ort_cuda`."""
    if item.get_closest_marker("cuda") is None:
        return
    from gpu.device import cuda_device

    if cuda_device() is None:
        pytest.skip("no usable CUDA device (CuPy and a GPU are needed)")


def require_ort_cuda() -> None:
    """Skip, saying why, unless ONNX Runtime has its CUDA provider (onnxruntime-gpu)."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("ONNX Runtime has no CUDAExecutionProvider (install onnxruntime-gpu)")
