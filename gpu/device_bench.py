"""The device benchmark whose score a provider registers: sustained float32 matmul GFLOP/s."""

from __future__ import annotations

import time

from gpu.data import stream, uniform_f32
from gpu.device import Device

BENCH_SIZES = (1024, 2048, 4096)
BENCH_SEED = 2024


def benchmark_score(device: Device, seconds: float = 1.0) -> int:
    """Sustained float32 GFLOP/s of an n x n matmul, n the largest of 1024, 2048, 4096 that
    takes at most a tenth of `seconds` per product, measured over about `seconds` after one
    warm-up product. At least 1."""
    rng = stream(BENCH_SEED, 0)
    for n in BENCH_SIZES:  # ends with the inputs of the size to measure, already warmed up
        a = device.asarray(uniform_f32(rng, (n, n)))
        b = device.asarray(uniform_f32(rng, (n, n)))
        c = a @ b  # warm-up: BLAS threads, cuBLAS handles, clocks
        device.synchronize()
        start = time.perf_counter()
        device.xp.matmul(a, b, out=c)
        device.synchronize()
        if (time.perf_counter() - start) * 8 > seconds / 10:  # the next size takes ~8x as long
            break
    count = 0
    start = time.perf_counter()
    while True:
        device.xp.matmul(a, b, out=c)
        device.synchronize()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return max(1, round(2 * n**3 * count / elapsed / 1e9))
