"""Losses of `NetTrainSpec`: the gradient of a batch's mean loss with respect to the network's
output (training), and summed losses with correct counts (evaluation, accumulated in float64)."""

from __future__ import annotations

from typing import Any

from gpu.device import Array
from ogpu_node.workloads.net import LossKind


def loss_gradient(kind: LossKind, out: Array, target: Array, xp: Any) -> Array:
    """d(mean loss over the batch)/d(out), for output rows `out` and their labels or targets."""
    rows = out.shape[0]
    if kind is LossKind.CROSS_ENTROPY:
        z = out - out.max(axis=1, keepdims=True)
        xp.exp(z, out=z)
        z *= (1.0 / rows) / z.sum(axis=1, keepdims=True)
        z[xp.arange(rows), target] -= 1.0 / rows
        return z
    diff = out - target
    diff *= 2.0 / diff.size  # the mean over every element of the batch
    return diff


def loss_sums(kind: LossKind, out: Array, target: Array, xp: Any) -> tuple[float, int]:
    """The summed per-row loss (float64) and, for cross-entropy, the count of rows whose argmax
    is the label (0 for MSE). A row's MSE is the mean over its elements."""
    rows = out.shape[0]
    if kind is LossKind.CROSS_ENTROPY:
        top = out.max(axis=1)
        lse = top + xp.log(xp.exp(out - top[:, None]).sum(axis=1))
        picked = out[xp.arange(rows), target]
        correct = int((out.argmax(axis=1) == target).sum())
        return float((lse - picked).astype(xp.float64).sum()), correct
    diff = (out - target).reshape(rows, -1).astype(xp.float64)
    return float((diff * diff).mean(axis=1).sum()), 0
