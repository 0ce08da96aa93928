"""Optimisers of `NetTrainSpec` over the network's flat parameter buffer: one update is a few
whole-array operations, whatever the number of layers. Scalars (the step's learning rate, bias
corrections) are computed in float64 and enter the float32 arithmetic once, as Python floats."""

from __future__ import annotations

import math
from typing import Any

from gpu.device import Array
from ogpu_node.workloads.net import ADAM_EPS, MICROS, Optimizer, OptimizerKind


def optimizer_step(opt: Optimizer, theta: Array, grad: Array, slots: list[Array], t: int,
                   lr: float, xp: Any) -> None:
    """Update `theta` in place from `grad` (which it may overwrite) and the optimiser's state
    `slots` (SGD: [momentum] or []; Adam: [m, v]); `t` is the step's number counted from 1."""
    decay = opt.weight_decay_micros / MICROS
    beta1 = opt.beta1_micros / MICROS
    if opt.kind is OptimizerKind.ADAMW:
        if decay:
            theta *= 1.0 - lr * decay
    elif decay:
        grad += theta * decay  # L2: the decay's gradient
    if opt.kind is OptimizerKind.SGD:
        if slots:
            (velocity,) = slots
            velocity *= beta1
            velocity += grad
            theta -= velocity * lr
            return
        grad *= lr
        theta -= grad
        return
    m, v = slots
    beta2 = opt.beta2_micros / MICROS
    m *= beta1
    m += grad * (1.0 - beta1)
    v *= beta2
    grad *= grad
    grad *= 1.0 - beta2
    v += grad
    denom = xp.sqrt(v)
    denom *= 1.0 / math.sqrt(1.0 - beta2**t)
    denom += ADAM_EPS
    step = m / denom
    step *= lr / (1.0 - beta1**t)
    theta -= step
