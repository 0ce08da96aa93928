"""The few elementwise kernels a training step needs, fused: Numba on the CPU, array ops elsewhere.

NumPy has no fused "add bias then ReLU", "zero the gradient where the activation was zero" or
"softmax cross-entropy gradient": composed from array ops, each makes two to five passes over
memory and allocates temporaries. On the CPU these are compiled once with Numba (`cache=True`,
plain sequential loops without fastmath, so results are deterministic); on CUDA, or where Numba
is missing or `OGPU_NUMBA=0`, the same operations run as array ops of the device's module `xp`.
Both paths compute the same function in float32; they may differ in the last bits only.

One kernel is there for speed, not fusion: `thin_matmul`, M @ X for a thin X (Freivalds' n x 20
sign vectors). OpenBLAS runs that shape at a third of its square-matmul speed (33 vs 95 GFLOP/s
on one core here); a register-blocked loop (6 rows of M by 4 columns of X, 24 accumulators)
with `fastmath` (reassociated sums, so vectorised dot products) runs it at ~78, 2.4x faster.
Only Freivalds' check uses it, whose tolerance (16 u times the bound) is far above
reassociation's rounding differences.
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
    thin_matmul: Callable[[Array, Array, bool], tuple[Array, Array | None]]
    """(m @ x, the squared row norms of m when asked, else None) for a thin x (k x r, r small)."""


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

    def thin_matmul(m: Array, x: Array, norms: bool) -> tuple[Array, Array | None]:
        return m @ x, (xp.einsum("ij,ij->i", m, m) if norms else None)

    return Kernels(f"{xp.__name__}", bias_relu_, relu_backward_, softmax_xent_grad_, thin_matmul)


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


THIN_COLS = 4
"""`_thin_matmul_*` work on blocks of rows of M by THIN_COLS columns of X."""


def thin_product(block: Any, block_rows: int, m: Array, x: Array,
                 norms: bool) -> tuple[Array, Array | None]:
    """M @ X and, if asked, M's squared row norms: `block` (a `_thin_matmul_*` kernel, compiled
    or not) computes the rows in whole blocks of `block_rows`, NumPy the few left over."""
    r = x.shape[1]
    m = np.ascontiguousarray(m, dtype=np.float32)
    xt = np.zeros((-(-r // THIN_COLS) * THIN_COLS, x.shape[0]), dtype=np.float32)
    xt[:r] = x.T
    out = np.empty((m.shape[0], xt.shape[0]), dtype=np.float32)
    squares = np.empty(m.shape[0] if norms else 0, dtype=np.float32)
    block(m, xt, out, squares)
    full = m.shape[0] - m.shape[0] % block_rows
    with np.errstate(all="ignore"):  # quiet on NaN and inf, as the kernel is: the caller checks
        out[full:] = m[full:] @ xt.T
        if norms:
            squares[full:] = np.einsum("ij,ij->i", m[full:], m[full:])
    return out[:, :r], (squares if norms else None)


def _thin_matmul_6x4(m: Any, xt: Any, out: Any, norms: Any) -> None:
    """out <- m @ xt.T for the rows in whole blocks of 6 (the rest is `thin_product`'s), with
    xt.shape[0] a multiple of THIN_COLS; norms[i] <- |m_i|^2 for those rows when norms has an
    entry per row of m (right after each block's products, while its rows are in cache)."""
    n, k = m.shape
    r = xt.shape[0]
    zero = np.float32(0.0)
    full = n - n % 6
    # Written out by hand on purpose: the 24 scalar accumulators stay in registers (AVX-512 has
    # 32 vector registers; AVX2 has 16, hence `_thin_matmul_3x4`) and LLVM turns the j loop into
    # 10 vector loads and 24 FMAs (a 6 x 4 local array lived in memory: 2.4 GFLOP/s instead of
    # 78). Six rows share each load of X, which comes from L2: 3 x 4 blocks ran at 56-61 GFLOP/s
    # on that AVX-512 core.
    for i in range(0, full, 6):
        for t in range(0, r, 4):
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
            s40 = s41 = s42 = s43 = s50 = s51 = s52 = s53 = zero
            for j in range(k):
                a0 = m[i, j]
                a1 = m[i + 1, j]
                a2 = m[i + 2, j]
                a3 = m[i + 3, j]
                a4 = m[i + 4, j]
                a5 = m[i + 5, j]
                x = xt[t, j]
                s00 += a0 * x
                s10 += a1 * x
                s20 += a2 * x
                s30 += a3 * x
                s40 += a4 * x
                s50 += a5 * x
                x = xt[t + 1, j]
                s01 += a0 * x
                s11 += a1 * x
                s21 += a2 * x
                s31 += a3 * x
                s41 += a4 * x
                s51 += a5 * x
                x = xt[t + 2, j]
                s02 += a0 * x
                s12 += a1 * x
                s22 += a2 * x
                s32 += a3 * x
                s42 += a4 * x
                s52 += a5 * x
                x = xt[t + 3, j]
                s03 += a0 * x
                s13 += a1 * x
                s23 += a2 * x
                s33 += a3 * x
                s43 += a4 * x
                s53 += a5 * x
            out[i, t], out[i, t + 1], out[i, t + 2], out[i, t + 3] = s00, s01, s02, s03
            out[i + 1, t], out[i + 1, t + 1], out[i + 1, t + 2], out[i + 1, t + 3] = (
                s10, s11, s12, s13)
            out[i + 2, t], out[i + 2, t + 1], out[i + 2, t + 2], out[i + 2, t + 3] = (
                s20, s21, s22, s23)
            out[i + 3, t], out[i + 3, t + 1], out[i + 3, t + 2], out[i + 3, t + 3] = (
                s30, s31, s32, s33)
            out[i + 4, t], out[i + 4, t + 1], out[i + 4, t + 2], out[i + 4, t + 3] = (
                s40, s41, s42, s43)
            out[i + 5, t], out[i + 5, t + 1], out[i + 5, t + 2], out[i + 5, t + 3] = (
                s50, s51, s52, s53)
        if norms.shape[0] == n:
            q0 = q1 = q2 = q3 = q4 = q5 = zero
            for j in range(k):
                q0 += m[i, j] * m[i, j]
                q1 += m[i + 1, j] * m[i + 1, j]
                q2 += m[i + 2, j] * m[i + 2, j]
                q3 += m[i + 3, j] * m[i + 3, j]
                q4 += m[i + 4, j] * m[i + 4, j]
                q5 += m[i + 5, j] * m[i + 5, j]
            norms[i], norms[i + 1], norms[i + 2] = q0, q1, q2
            norms[i + 3], norms[i + 4], norms[i + 5] = q3, q4, q5


def _thin_matmul_3x4(m: Any, xt: Any, out: Any, norms: Any) -> None:
    """`_thin_matmul_6x4` in blocks of 3 rows (12 accumulators): for CPUs with 16 vector
    registers (AVX2), where 6 x 4 blocks spill (on a Zen 3 core: 43 GFLOP/s against 28)."""
    n, k = m.shape
    r = xt.shape[0]
    zero = np.float32(0.0)
    full = n - n % 3
    for i in range(0, full, 3):
        for t in range(0, r, 4):
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = zero
            for j in range(k):
                a0 = m[i, j]
                a1 = m[i + 1, j]
                a2 = m[i + 2, j]
                x = xt[t, j]
                s00 += a0 * x
                s10 += a1 * x
                s20 += a2 * x
                x = xt[t + 1, j]
                s01 += a0 * x
                s11 += a1 * x
                s21 += a2 * x
                x = xt[t + 2, j]
                s02 += a0 * x
                s12 += a1 * x
                s22 += a2 * x
                x = xt[t + 3, j]
                s03 += a0 * x
                s13 += a1 * x
                s23 += a2 * x
            out[i, t], out[i, t + 1], out[i, t + 2], out[i, t + 3] = s00, s01, s02, s03
            out[i + 1, t], out[i + 1, t + 1], out[i + 1, t + 2], out[i + 1, t + 3] = (
                s10, s11, s12, s13)
            out[i + 2, t], out[i + 2, t + 1], out[i + 2, t + 2], out[i + 2, t + 3] = (
                s20, s21, s22, s23)
        if norms.shape[0] == n:
            q0 = q1 = q2 = zero
            for j in range(k):
                q0 += m[i, j] * m[i, j]
                q1 += m[i + 1, j] * m[i + 1, j]
                q2 += m[i + 2, j] * m[i + 2, j]
            norms[i], norms[i + 1], norms[i + 2] = q0, q1, q2


def _thin_matmul_for_this_cpu() -> tuple[Any, int]:
    """The block kernel, and its rows, whose accumulators fit this CPU's vector registers."""
    import llvmlite.binding as llvm  # type: ignore[import-untyped,unused-ignore]

    if llvm.get_host_cpu_features().get("avx512f"):
        return _thin_matmul_6x4, 6
    return _thin_matmul_3x4, 3


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

    block, block_rows = _thin_matmul_for_this_cpu()
    thin = numba.njit(cache=True, nogil=True, fastmath=True, boundscheck=False)(block)

    def thin_matmul(m: Array, x: Array, norms: bool) -> tuple[Array, Array | None]:
        return thin_product(thin, block_rows, m, x, norms)

    return Kernels("numba", bias_relu, relu_backward, softmax_xent_grad_, thin_matmul)


def warm_up(device: Device) -> float:
    """Compile (or load from Numba's cache) the kernels of `device`; returns the seconds taken."""
    start = time.perf_counter()
    kernels = kernels_for(device)
    h = np.ones((2, 3), dtype=np.float32)
    kernels.bias_relu_(h, np.zeros(3, dtype=np.float32))
    kernels.relu_backward_(h, h)
    kernels.softmax_xent_grad_(h, np.zeros(2, dtype=np.int32), 0.5)
    kernels.thin_matmul(h, h.T, True)
    h.flags.writeable = False  # a decoded result is read-only: Numba compiles that apart
    kernels.thin_matmul(h, h.T, False)
    return time.perf_counter() - start
