"""The few elementwise kernels a training step needs, fused: Numba on the CPU, array ops elsewhere.

NumPy has no fused "add bias then ReLU", "zero the gradient where the activation was zero" or
"softmax cross-entropy gradient": composed from array ops, each makes two to five passes over
memory and allocates temporaries. On the CPU these are compiled once with Numba (`cache=True`,
plain sequential loops without fastmath, so results are deterministic); on CUDA, or where Numba
is missing or `OGPU_NUMBA=0`, the same operations run as array ops of the device's module `xp`.
Both paths compute the same function in float32; they may differ in the last bits only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from gpu.device import Array, Device

ENV_NUMBA = "OGPU_NUMBA"


@dataclass(frozen=True, slots=True)
class Kernels:
    """In-place kernels over arrays of one device; `name` says which implementation."""

    name: str
    bias_relu_: Callable[[Array, Array], None]
    """h <- max(h + b, 0), b broadcast over rows."""
    relu_backward_: Callable[[Array, Array], None]
    """d <- 0 where h <= 0 (h is the ReLU's output)."""
    softmax_xent_grad_: Callable[[Array, Array, float], None]
    """z <- (softmax(z) - onehot(labels)) * scale, row by row."""


def kernels_for(device: Device) -> Kernels:
    """Numba kernels on the CPU when Numba imports (and `OGPU_NUMBA` is not "0"), else xp ops."""
    if device.kind == "cpu" and os.environ.get(ENV_NUMBA, "1") != "0":
        found = numba_kernels()
        if found is not None:
            return found
    return xp_kernels(device.xp)


def xp_kernels(xp: Any) -> Kernels:
    """The pure array-module implementation (NumPy or CuPy)."""

    def bias_relu_(h: Array, b: Array) -> None:
        h += b
        xp.maximum(h, 0, out=h)

    def relu_backward_(d: Array, h: Array) -> None:
        d *= h > 0

    def softmax_xent_grad_(z: Array, labels: Array, scale: float) -> None:
        z -= z.max(axis=1, keepdims=True)
        xp.exp(z, out=z)
        z *= np.float32(scale) / z.sum(axis=1, keepdims=True)
        z[xp.arange(z.shape[0]), labels] -= np.float32(scale)

    return Kernels(f"{xp.__name__}", bias_relu_, relu_backward_, softmax_xent_grad_)


def _bias_relu(h: Any, b: Any) -> None:
    zero = np.float32(0.0)
    for i in range(h.shape[0]):
        for j in range(h.shape[1]):
            v = h[i, j] + b[j]
            h[i, j] = v if v > zero else zero


def _relu_backward(d: Any, h: Any) -> None:
    zero = np.float32(0.0)
    for i in range(d.shape[0]):
        for j in range(d.shape[1]):
            if h[i, j] <= zero:
                d[i, j] = zero


def _softmax_xent_grad(z: Any, labels: Any, scale: Any) -> None:
    for i in range(z.shape[0]):
        m = z[i, 0]
        for j in range(1, z.shape[1]):
            m = max(m, z[i, j])
        total = np.float32(0.0)
        for j in range(z.shape[1]):
            e = np.exp(z[i, j] - m)
            z[i, j] = e
            total += e
        factor = scale / total
        for j in range(z.shape[1]):
            z[i, j] *= factor
        z[i, labels[i]] -= scale


@cache
def numba_kernels() -> Kernels | None:
    """The Numba-compiled kernels (compiled lazily on first call), or None without Numba."""
    try:
        import numba  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    jit = numba.njit(cache=True, nogil=True)
    bias_relu = jit(_bias_relu)
    relu_backward = jit(_relu_backward)
    softmax_grad = jit(_softmax_xent_grad)

    def softmax_xent_grad_(z: Array, labels: Array, scale: float) -> None:
        softmax_grad(z, labels, np.float32(scale))

    return Kernels("numba", bias_relu, relu_backward, softmax_xent_grad_)


def warm_up(device: Device) -> float:
    """Compile (or load from Numba's cache) the kernels of `device`; returns the seconds taken."""
    start = time.perf_counter()
    kernels = kernels_for(device)
    h = np.ones((2, 3), dtype=np.float32)
    kernels.bias_relu_(h, np.zeros(3, dtype=np.float32))
    kernels.relu_backward_(h, h)
    kernels.softmax_xent_grad_(h, np.zeros(2, dtype=np.int32), 0.5)
    return time.perf_counter() - start
