"""Shared small workloads for the gpu tests (sizes chosen so each test runs in milliseconds)."""

from __future__ import annotations

import pytest

from gpu.device import Device, cpu_device
from gpu.workloads import WorkloadResult, run_workload
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


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `cuda` need a CUDA device and ONNX Runtime's CUDA provider."""
    if item.get_closest_marker("cuda") is None:
        return
    import onnxruntime

    from gpu.device import cuda_device

    if cuda_device() is None:
        pytest.skip("no usable CUDA device (CuPy and a GPU are needed)")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("ONNX Runtime has no CUDAExecutionProvider (install onnxruntime-gpu)")
