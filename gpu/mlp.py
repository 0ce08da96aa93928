"""The MLP classifier shared by training, inference, replay and verification: ReLU hidden layers,
a linear output layer, softmax cross-entropy loss and plain SGD, all in float32 on the device."""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

import numpy as np

from gpu.artifacts import NamedArray, expect_shapes
from gpu.cpu_kernels import Kernels
from gpu.data import layers_to_device
from gpu.device import Array, Device
from ogpu_node.workloads.limits import EVAL_CHUNK_ROWS

Params = list[tuple[Array, Array]]
"""Per layer: weights (fan_in x fan_out) and biases (fan_out), device arrays updated in place."""


def param_shapes(widths: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of the arrays of a checkpoint: w0, b0, w1, b1, ..."""
    out: list[tuple[str, tuple[int, ...]]] = []
    for i, (fan_in, fan_out) in enumerate(pairwise(widths)):
        out += [(f"w{i}", (fan_in, fan_out)), (f"b{i}", (fan_out,))]
    return out


def named_layers(layers: Iterable[tuple[Any, Any]]) -> list[NamedArray]:
    """Host layers as the named arrays of a checkpoint: w0, b0, w1, b1, ..."""
    out: list[NamedArray] = []
    for i, (w, b) in enumerate(layers):
        out += [(f"w{i}", w), (f"b{i}", b)]
    return out


def params_to_host(params: Params, device: Device) -> list[NamedArray]:
    """Host copies of `params` in checkpoint order."""
    return named_layers((device.to_host(w), device.to_host(b)) for w, b in params)


def params_from_arrays(arrays: list[NamedArray], widths: tuple[int, ...],
                       device: Device) -> Params:
    """Writable device params from decoded checkpoint arrays (`ArtifactError` on wrong shapes)."""
    expect_shapes(arrays, param_shapes(widths), "checkpoint")
    return layers_to_device([(w, b) for (_, w), (_, b) in zip(arrays[::2], arrays[1::2],
                                                               strict=True)], device)


def forward(params: Params, x: Array, kernels: Kernels) -> Array:
    """Logits of inputs `x` (rows)."""
    h = x
    for w, b in params[:-1]:
        h = h @ w
        kernels.bias_relu_(h, b)
    w, b = params[-1]
    z = h @ w
    z += b
    return z


def sgd_step(params: Params, x: Array, labels: Array, lr: float, kernels: Kernels) -> None:
    """One step of minibatch SGD on the mean softmax cross-entropy, updating `params` in place."""
    acts = [x]
    for w, b in params[:-1]:
        h = acts[-1] @ w
        kernels.bias_relu_(h, b)
        acts.append(h)
    w, b = params[-1]
    d = acts[-1] @ w
    d += b
    kernels.softmax_xent_grad_(d, labels, 1.0 / x.shape[0])
    rate = np.float32(lr)
    for layer in range(len(params) - 1, -1, -1):
        w, b = params[layer]
        dw = acts[layer].T @ d
        db = d.sum(axis=0)
        if layer > 0:
            d_prev = d @ w.T
            kernels.relu_backward_(d_prev, acts[layer])
        dw *= rate
        w -= dw
        db *= rate
        b -= db
        if layer > 0:
            d = d_prev


def evaluate(params: Params, x: Array, labels: Array, kernels: Kernels,
             xp: Any) -> tuple[float, int]:
    """Summed cross-entropy loss (accumulated in float64) and the number of correct argmaxes."""
    loss = 0.0
    correct = 0
    for start in range(0, x.shape[0], EVAL_CHUNK_ROWS):
        z = forward(params, x[start:start + EVAL_CHUNK_ROWS], kernels)
        y = labels[start:start + EVAL_CHUNK_ROWS]
        top = z.max(axis=1)
        lse = top + xp.log(xp.exp(z - top[:, None]).sum(axis=1))
        picked = z[xp.arange(z.shape[0]), y]
        loss += float((lse - picked).astype(xp.float64).sum())
        correct += int((z.argmax(axis=1) == y).sum())
    return loss, correct


def metrics_from(loss_sum: float, correct: int, n: int) -> dict[str, int]:
    """Integer metrics: mean loss in millionths, accuracy in basis points (rounded down)."""
    mean = loss_sum / n
    return {"loss_micros": round(mean * 1e6) if math.isfinite(mean) else 2**63 - 1,
            "accuracy_bps": correct * 10_000 // n}
