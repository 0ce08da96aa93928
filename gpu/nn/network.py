"""A `NetTrainSpec`'s network on a device: its layers over one flat parameter buffer, a training
step, evaluation, and the training state as a checkpoint's arrays.

The parameters live in one flat array (`TrainState.theta`) that each layer sees through views,
the gradients in another; the optimiser updates the flat arrays in a few whole-array operations.
A checkpoint holds the parameters by name (`spec.param_shapes()`), then the optimiser's state:
"opt.step" (the steps done, a whole number in float32, exact below 2**24) and the flat moment
arrays ("opt.m" for SGD with momentum; "opt.m" and "opt.v" for Adam and AdamW), so an interval
replayed from its starting checkpoint runs exactly as training ran it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpu.artifacts import NamedArray, expect_shapes
from gpu.device import Array, Device
from gpu.errors import ArtifactError
from gpu.nn.data import NetData, dropout_mask
from gpu.nn.layers import make_op
from gpu.nn.losses import loss_gradient, loss_sums
from gpu.nn.optim import optimizer_step
from ogpu_node.workloads.net import NET_EVAL_CHUNK_ROWS, LayerKind, NetTrainSpec, Shape

SLOT_NAMES = ("opt.m", "opt.v")
STEP_NAME = "opt.step"


@dataclass(slots=True)
class TrainState:
    """Parameters (flat), the optimiser's state (flat arrays) and the steps done; `params` are
    per-layer views of `theta`."""

    theta: Array
    slots: list[Array]
    step: int
    params: list[list[Array]]


class Network:
    """The spec's layers on the array module of `device`, in `dtype` (float32; the gradient
    checks use float64)."""

    def __init__(self, spec: NetTrainSpec, device: Device, dtype: Any = np.float32) -> None:
        self.spec, self.device, self.xp, self.dtype = spec, device, device.xp, dtype
        self.ops = [make_op(layer, self.xp) for layer in spec.layers]
        self.names = spec.param_shapes()
        self.layout: list[list[tuple[int, Shape]]] = []
        offset = 0
        named = dict(self.names)
        for i in range(len(spec.layers)):
            layer: list[tuple[int, Shape]] = []
            for key in (f"l{i}.w", f"l{i}.b"):
                if key in named:
                    layer.append((offset, named[key]))
                    offset += math.prod(named[key])
            self.layout.append(layer)
        self.size = offset
        self.grad = self.xp.empty(self.size, dtype=dtype)
        self.grads = self.views(self.grad)
        self.dropouts = [i for i, layer in enumerate(spec.layers)
                         if layer.kind is LayerKind.DROPOUT]

    def views(self, flat: Array) -> list[list[Array]]:
        """Per-layer views of a flat parameter (or gradient) array."""
        return [[flat[o:o + math.prod(shape)].reshape(shape) for o, shape in layer]
                for layer in self.layout]

    # --- the state and its checkpoint arrays ---------------------------------------------------

    def state(self, params: Sequence[tuple[str, Any]], slots: list[Array] | None = None,
              step: int = 0) -> TrainState:
        """A writable state from host parameters (by name, in order) and optimiser state (zero
        moments when None)."""
        theta = self.xp.empty(self.size, dtype=self.dtype)
        for (offset, shape), (_, host) in zip(
                (entry for layer in self.layout for entry in layer), params, strict=True):
            theta[offset:offset + math.prod(shape)] = self.device.asarray(
                np.asarray(host, dtype=self.dtype).reshape(-1))
        if slots is None:
            slots = [self.xp.zeros(self.size, dtype=self.dtype)
                     for _ in range(self.spec.optimizer.slots)]
        return TrainState(theta, slots, step, self.views(theta))

    def checkpoint_shapes(self) -> list[tuple[str, Shape]]:
        """The arrays of a checkpoint, in order."""
        return [*self.names, (STEP_NAME, (1,)),
                *((name, (self.size,)) for name in SLOT_NAMES[:self.spec.optimizer.slots])]

    def to_arrays(self, state: TrainState) -> list[NamedArray]:
        """The state as a checkpoint's arrays (host views on the CPU, copies from a GPU)."""
        host = self.device.to_host(state.theta)
        out: list[NamedArray] = []
        for (name, shape), (offset, _) in zip(
                self.names, (entry for layer in self.layout for entry in layer), strict=True):
            out.append((name, host[offset:offset + math.prod(shape)].reshape(shape)))
        out.append((STEP_NAME, np.array([state.step], dtype=np.float32)))
        out += [(name, self.device.to_host(slot)) for name, slot in zip(SLOT_NAMES, state.slots,
                                                                        strict=False)]
        return out

    def from_arrays(self, arrays: list[NamedArray], step: int) -> TrainState:
        """A writable state from a checkpoint's arrays, which must be taken after `step` steps.
        Raises `ArtifactError` for other arrays or another step."""
        expect_shapes(arrays, self.checkpoint_shapes(), "checkpoint")
        count = len(self.names)
        if float(arrays[count][1][0]) != step:
            raise ArtifactError(f"checkpoint: {STEP_NAME} is {float(arrays[count][1][0])}, the "
                                f"checkpoint after step {step} was expected")
        slots = [self.xp.array(self.device.asarray(a), dtype=self.dtype, copy=True)
                 for _, a in arrays[count + 1:]]
        return self.state(arrays[:count], slots, step)

    # --- passes --------------------------------------------------------------------------------

    def _forward(self, params: list[list[Array]], x: Array, step: int | None
                 ) -> tuple[Array, list[Any]]:
        """Output and caches; `step` draws dropout masks (None: evaluation, no dropout)."""
        caches: list[Any] = []
        h = x
        for i, op in enumerate(self.ops):
            mask = None
            if step is not None and i in self.dropouts:
                mask = self.device.asarray(dropout_mask(self.spec, step, i, x.shape[0]).astype(
                    self.dtype, copy=False))
            h, cache = op.forward(params[i], h, mask)
            caches.append(cache)
        return h, caches

    def output(self, params: list[list[Array]], x: Array) -> Array:
        """The network's output for input rows `x` (evaluation: no dropout)."""
        return self._forward(params, x, None)[0]

    def gradients(self, params: list[list[Array]], x: Array, target: Array, step: int) -> None:
        """The gradient of the batch's mean loss, into `self.grad`."""
        out, caches = self._forward(params, x, step)
        dy: Array | None = loss_gradient(self.spec.loss, out, target, self.xp)
        del out
        for i in range(len(self.ops) - 1, -1, -1):
            dy = self.ops[i].backward(params[i], self.grads[i], caches[i], dy, need_dx=i > 0)
            caches[i] = None  # the layer's activations are no longer needed

    def train_step(self, state: TrainState, x: Array, target: Array) -> None:
        """One step on the batch (`x`, `target`): gradients, then the optimiser's update."""
        self.gradients(state.params, x, target, state.step)
        optimizer_step(self.spec.optimizer, state.theta, self.grad, state.slots, state.step + 1,
                       self.spec.learning_rate(state.step), self.xp)
        state.step += 1

    def evaluate(self, params: list[list[Array]], data: NetData, rows: Any
                 ) -> tuple[float, int]:
        """Summed loss (float64) and correct count over data set rows `rows` (host indices),
        NET_EVAL_CHUNK_ROWS at a time."""
        loss, correct = 0.0, 0
        for begin in range(0, rows.shape[0], NET_EVAL_CHUNK_ROWS):
            chunk = self.device.asarray(rows[begin:begin + NET_EVAL_CHUNK_ROWS])
            out = self.output(params, data.x[chunk])
            part, right = loss_sums(self.spec.loss, out, data.target[chunk], self.xp)
            loss += part
            correct += right
        return loss, correct
