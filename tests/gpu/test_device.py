from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from gpu.device import Device, cpu_device, describe, detect
from gpu.device_bench import benchmark_score
from gpu.errors import DeviceError

HAS_CUDA = importlib.util.find_spec("cupy") is not None


def test_cpu_is_forced_by_argument_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert detect("cpu").kind == "cpu"
    monkeypatch.setenv("OGPU_DEVICE", "cpu")
    dev = detect()
    assert dev.kind == "cpu" and dev.xp is np and dev.memory_bytes > 0 and dev.name


def test_unknown_device_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DeviceError):
        detect("tpu")
    monkeypatch.setenv("OGPU_DEVICE", "quantum")
    with pytest.raises(DeviceError):
        detect()


@pytest.mark.skipif(HAS_CUDA, reason="CuPy is installed here")
def test_cuda_without_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DeviceError):
        detect("cuda")
    monkeypatch.setenv("OGPU_DEVICE", "auto")
    assert detect().kind == "cpu"


def test_describe_and_host_round_trip(device: Device) -> None:
    info = describe(device)
    assert info.kind == "cpu" and info.model == device.name
    assert info.memory_mb == device.memory_bytes // 2**20
    a = device.asarray(np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(device.to_host(a), [0, 1, 2])
    device.synchronize()
    assert describe().kind in ("cpu", "cuda")


def test_benchmark_score_is_positive() -> None:
    assert benchmark_score(cpu_device(), seconds=0.05) >= 1
