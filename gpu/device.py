"""The compute device: CuPy on a usable CUDA device, else NumPy (with Numba kernels) on the CPU.

Workloads are written once against the array module `Device.xp` (`cupy` or `numpy`); inputs are
generated on the host and moved with `Device.asarray`, results come back with `Device.to_host`.
`OGPU_DEVICE=cpu|cuda|auto` forces the choice when `detect()` is called with `prefer="auto"`.
CuPy stays optional (`pip install .[gpu]`): it is imported only here, and only when asked for.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from gpu.errors import DeviceError

Array = Any
"""An array of the device's module (`numpy.ndarray` or `cupy.ndarray`); typed loosely on purpose."""

DeviceKind = Literal["cuda", "cpu"]
ENV_DEVICE = "OGPU_DEVICE"
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""What sets the CPU BLAS's thread count; it is read once, when NumPy loads. Processes that
share cores (a devnet's nodes on one machine) should each run one thread: idle BLAS threads
spin, and make small-matrix work ten times slower when another process holds a core."""


@dataclass(frozen=True, slots=True)
class Device:
    """One compute device and the array module that runs on it."""

    kind: DeviceKind
    name: str
    memory_bytes: int
    xp: ModuleType

    def asarray(self, host: npt.ArrayLike) -> Array:
        """`host` on this device (a copy on CUDA, no copy on the CPU when already an ndarray)."""
        return self.xp.asarray(host)

    def to_host(self, array: Array) -> npt.NDArray[Any]:
        """`array` as a NumPy array on the host (waits for the device)."""
        if self.kind == "cuda":
            return np.asarray(array.get())
        return np.asarray(array)

    def synchronize(self) -> None:
        """Wait until all queued work on the device is done (no-op on the CPU)."""
        if self.kind == "cuda":
            self.xp.cuda.get_current_stream().synchronize()

    @property
    def memory_mb(self) -> int:
        return self.memory_bytes // (1024 * 1024)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a provider registers about a device."""

    kind: DeviceKind
    model: str
    memory_mb: int


def detect(prefer: str = "auto") -> Device:
    """The device to compute on.

    `prefer` is "auto" (CUDA when CuPy imports and a device answers, else the CPU), "cuda"
    (raises `DeviceError` when no CUDA device is usable) or "cpu". With "auto", the environment
    variable `OGPU_DEVICE` may force "cpu" or "cuda".
    """
    choice = prefer.strip().lower()
    if choice == "auto":
        choice = os.environ.get(ENV_DEVICE, "auto").strip().lower() or "auto"
    if choice not in ("auto", "cuda", "cpu"):
        raise DeviceError(f"unknown device {choice!r}: expected auto, cuda or cpu")
    if choice == "cpu":
        return cpu_device()
    found = cuda_device()
    if found is not None:
        return found
    if choice == "cuda":
        raise DeviceError("no usable CUDA device (is CuPy installed: pip install .[gpu]?)")
    return cpu_device()


def describe(device: Device | None = None) -> DeviceInfo:
    """The model name and memory of `device` (default: `detect()`), for provider registration."""
    dev = device if device is not None else detect()
    return DeviceInfo(kind=dev.kind, model=dev.name, memory_mb=dev.memory_mb)


@cache
def cpu_device() -> Device:
    """The host CPU with NumPy."""
    return Device(kind="cpu", name=_cpu_model(), memory_bytes=_host_memory(), xp=np)


def cuda_device() -> Device | None:
    """CUDA device 0 through CuPy, or None when CuPy is missing or no device is usable."""
    try:
        cupy = importlib.import_module("cupy")
    except ImportError:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        props = cupy.cuda.runtime.getDeviceProperties(0)
        cupy.arange(1).sum().item()  # a device that is listed but unusable fails here
    except Exception:  # CUDA driver errors come in many types; any of them means "no GPU"
        return None
    name = props.get("name", b"CUDA device")
    text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return Device(kind="cuda", name=text, memory_bytes=int(props.get("totalGlobalMem", 0)),
                  xp=cupy)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} threads)"
    except OSError:
        pass
    import platform

    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} threads)"


def _host_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0
