"""Training a network of the customer's own architecture (`NetTrainSpec`, workload kind 5).

A network is the shape of one input row and a list of layers (`Layer`): dense, 2-D convolution,
max and average pooling, flatten, layer normalisation, embedding, dropout and the activations
ReLU, GELU (the tanh approximation), tanh and sigmoid. It is trained on the client's uploaded
inputs file (`gpu.inputs`: "x", rows of the input shape, and "labels" for cross-entropy or
"targets" for mean squared error) with SGD (with momentum), Adam or AdamW under a learning-rate
schedule (`Schedule`), from weights drawn from `seed` or from an uploaded weights file (`init`:
fine-tuning). A validation split (`val_bps` of the rows, chosen by `seed`) is held out of
training; its loss (and accuracy) are reported in the result's metrics and checked by verifiers.

Conventions the engine (`gpu.nn`), the exporter (`gpu.onnx_export`) and a client share:

- activations are channels-first: a convolution's input row is (C, H, W);
- a dense layer acts on the last axis (rows of any rank >= 1): y = x @ w + b, w is (in, out);
- a convolution's weights are (out, in, k, k) with zero padding `padding` on every side;
  pooling takes no padding; a window that does not fit at the end is dropped (floor);
- layer normalisation normalises over the last axis (eps LAYER_NORM_EPS), then scales and shifts;
- an embedding is the first layer only: its input row is (T,) token ids stored as whole-number
  float32 below `vocab`; its output row is (T, dim);
- dropout (rate in basis points) zeroes an activation with probability rate and scales the
  others by 1 / (1 - rate) while training; its masks are drawn from (seed, step, layer), so a
  replayed interval draws the same ones. It is the identity at evaluation and in the export;
- GELU is the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), which the
  ONNX export writes out operator by operator (the `Gelu` operator needs opset 20);
- parameters are named "l<i>.w" and "l<i>.b" (layer i's weights or embedding table or
  normalisation scale, and its bias or shift), in layer order.

All hyper-parameters are integers (millionths: `_micros`), so the spec encodes exactly.
Everything here is arithmetic over at most MAX_NET_LAYERS layers: a spec with a field at
2**64 - 1 costs what one at 1 does. Pure Python: the ledger prices and bounds a task with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Any, ClassVar, Self

from ogpu_node.encoding import read_array, read_bytes, read_list, read_uint
from ogpu_node.errors import DecodeError
from ogpu_node.types import HASH_LEN
from ogpu_node.workloads.spec import (
    MAX_BATCH,
    MAX_LR_MICROS,
    MAX_SAMPLES,
    MAX_WIDTH,
    InvalidSpec,
    WorkloadKind,
    checkpoint_count,
    checkpoint_problems,
    checkpoint_steps,
    flops_to_units,
)

MAX_NET_LAYERS = 32
MAX_PARAM_ARRAYS = 60
"""Parameter arrays of a network: a checkpoint holds them and up to three arrays of optimiser
state in one artifact (`gpu.artifacts.MAX_ARRAYS`: 64)."""
MAX_INPUT_RANK = 3
MAX_DIM = 65_536
"""Largest dimension of an input row."""
MAX_ROW_ELEMENTS = 2**22
"""Elements of one row of any layer's input or output."""
MAX_CHANNELS = 4_096
MAX_KERNEL = 16
MAX_STRIDE = 16
MAX_VOCAB = 2**20
"""Largest embedding vocabulary (ids are stored as float32: exact below 2**24)."""
MAX_VAL_BPS = 5_000
"""At most half of the rows are held out for validation."""
BPS = 10_000
MICROS = 1_000_000
LAYER_NORM_EPS = 1e-5
ADAM_EPS = 1e-8
"""Adam's and AdamW's epsilon (fixed: it is below what a millionth can say)."""
NET_EVAL_CHUNK_ROWS = 512
"""Evaluation (the final metrics) runs this many rows at a time."""

Shape = tuple[int, ...]


class LayerKind(IntEnum):
    """Layer kinds. Numbers are part of the protocol: never reuse one."""

    DENSE = 1
    CONV2D = 2
    MAX_POOL = 3
    AVG_POOL = 4
    FLATTEN = 5
    LAYER_NORM = 6
    EMBEDDING = 7
    DROPOUT = 8
    RELU = 9
    GELU = 10
    TANH = 11
    SIGMOID = 12


LAYER_ARGS: dict[LayerKind, tuple[str, ...]] = {
    LayerKind.DENSE: ("units",),
    LayerKind.CONV2D: ("channels", "kernel", "stride", "padding"),
    LayerKind.MAX_POOL: ("kernel", "stride"),
    LayerKind.AVG_POOL: ("kernel", "stride"),
    LayerKind.FLATTEN: (),
    LayerKind.LAYER_NORM: (),
    LayerKind.EMBEDDING: ("vocab", "dim"),
    LayerKind.DROPOUT: ("rate_bps",),
    LayerKind.RELU: (),
    LayerKind.GELU: (),
    LayerKind.TANH: (),
    LayerKind.SIGMOID: (),
}
"""The integer arguments of each layer kind, in encoding order."""

ACTIVATIONS = frozenset({LayerKind.RELU, LayerKind.GELU, LayerKind.TANH, LayerKind.SIGMOID})
ACTIVATION_FLOPS = {LayerKind.RELU: 1, LayerKind.GELU: 12, LayerKind.TANH: 6,
                    LayerKind.SIGMOID: 8}
"""Forward floating-point operations per element of an activation (tanh counted as 6)."""


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer: its kind and its integer arguments (`LAYER_ARGS`)."""

    kind: LayerKind
    args: tuple[int, ...] = ()

    def to_fields(self) -> list[Any]:
        return [int(self.kind), *self.args]

    @classmethod
    def from_fields(cls, value: Any, what: str) -> Self:
        fields = read_list(value, 1 + max(map(len, LAYER_ARGS.values())), what)
        if not fields:
            raise DecodeError(f"{what}: a layer needs its kind")
        code = read_uint(fields[0], f"{what}.kind")
        if code not in LayerKind._value2member_map_:
            raise DecodeError(f"{what}: unknown layer kind {code}")
        kind = LayerKind(code)
        names = LAYER_ARGS[kind]
        if len(fields) != 1 + len(names):
            raise DecodeError(f"{what}: a {kind.name.lower()} layer has {len(names)} arguments")
        return cls(kind, tuple(read_uint(v, f"{what}.{n}") for v, n in zip(fields[1:], names,
                                                                           strict=True)))

    def arg(self, name: str) -> int:
        return self.args[LAYER_ARGS[self.kind].index(name)]


def dense(units: int) -> Layer:
    return Layer(LayerKind.DENSE, (units,))


def conv2d(channels: int, kernel: int, stride: int = 1, padding: int = 0) -> Layer:
    return Layer(LayerKind.CONV2D, (channels, kernel, stride, padding))


def max_pool(kernel: int, stride: int | None = None) -> Layer:
    return Layer(LayerKind.MAX_POOL, (kernel, kernel if stride is None else stride))


def avg_pool(kernel: int, stride: int | None = None) -> Layer:
    return Layer(LayerKind.AVG_POOL, (kernel, kernel if stride is None else stride))


def embedding(vocab: int, dim: int) -> Layer:
    return Layer(LayerKind.EMBEDDING, (vocab, dim))


def dropout(rate_bps: int) -> Layer:
    return Layer(LayerKind.DROPOUT, (rate_bps,))


FLATTEN = Layer(LayerKind.FLATTEN)
LAYER_NORM = Layer(LayerKind.LAYER_NORM)
RELU = Layer(LayerKind.RELU)
GELU = Layer(LayerKind.GELU)
TANH = Layer(LayerKind.TANH)
SIGMOID = Layer(LayerKind.SIGMOID)


def _arg_problem(layer: Layer) -> str | None:
    """What is wrong with a layer's arguments on their own, if anything."""
    a = dict(zip(LAYER_ARGS[layer.kind], layer.args, strict=True))
    kind = layer.kind
    if kind is LayerKind.DENSE and not 1 <= a["units"] <= MAX_WIDTH:
        return f"units must be within 1..{MAX_WIDTH}"
    if kind is LayerKind.CONV2D:
        if not 1 <= a["channels"] <= MAX_CHANNELS:
            return f"channels must be within 1..{MAX_CHANNELS}"
        if not a["padding"] < a["kernel"]:
            return "padding must be below the kernel size"
    if "kernel" in a and not (1 <= a["kernel"] <= MAX_KERNEL and 1 <= a["stride"] <= MAX_STRIDE):
        return f"kernel must be within 1..{MAX_KERNEL} and stride within 1..{MAX_STRIDE}"
    if kind is LayerKind.EMBEDDING and not (1 <= a["vocab"] <= MAX_VOCAB
                                            and 1 <= a["dim"] <= MAX_WIDTH):
        return f"vocab must be within 1..{MAX_VOCAB} and dim within 1..{MAX_WIDTH}"
    if kind is LayerKind.DROPOUT and not a["rate_bps"] < BPS:
        return f"rate_bps must be below {BPS}"
    return None


def layer_output_shape(layer: Layer, shape: Shape, first: bool) -> Shape:
    """The shape of a layer's output row for an input row of `shape` (`first`: the layer is the
    network's first). Raises `InvalidSpec` saying why the layer cannot take that input."""
    problem = _arg_problem(layer)
    if problem is not None:
        raise InvalidSpec(problem)
    kind = layer.kind
    if kind is LayerKind.EMBEDDING:
        if not first or len(shape) != 1:
            raise InvalidSpec("an embedding must be the first layer, on rows of shape (T,)")
        return (shape[0], layer.arg("dim"))
    if kind is LayerKind.DENSE:
        return (*shape[:-1], layer.arg("units"))
    if kind is LayerKind.FLATTEN:
        return (math.prod(shape),)
    if kind in (LayerKind.CONV2D, LayerKind.MAX_POOL, LayerKind.AVG_POOL):
        if len(shape) != 3:
            raise InvalidSpec(f"{kind.name.lower()} needs rows of shape (C, H, W), got {shape}")
        channels, height, width = shape
        k, s = layer.arg("kernel"), layer.arg("stride")
        pad = layer.arg("padding") if kind is LayerKind.CONV2D else 0
        if k > height + 2 * pad or k > width + 2 * pad:
            raise InvalidSpec(f"kernel {k} is larger than its (padded) input {shape}")
        out_c = layer.arg("channels") if kind is LayerKind.CONV2D else channels
        return (out_c, (height + 2 * pad - k) // s + 1, (width + 2 * pad - k) // s + 1)
    return shape  # layer norm, dropout, activations


def layer_param_shapes(layer: Layer, shape: Shape) -> list[Shape]:
    """The shapes of a layer's parameters (weights, then bias) for input rows of `shape`."""
    kind = layer.kind
    if kind is LayerKind.DENSE:
        return [(shape[-1], layer.arg("units")), (layer.arg("units"),)]
    if kind is LayerKind.CONV2D:
        out, k = layer.arg("channels"), layer.arg("kernel")
        return [(out, shape[0], k, k), (out,)]
    if kind is LayerKind.LAYER_NORM:
        return [(shape[-1],), (shape[-1],)]
    if kind is LayerKind.EMBEDDING:
        return [(layer.arg("vocab"), layer.arg("dim"))]
    return []


def layer_flops(layer: Layer, shape: Shape, out: Shape) -> int:
    """Forward floating-point operations of one row through a layer (input `shape`)."""
    kind, n_in, n_out = layer.kind, math.prod(shape), math.prod(out)
    if kind is LayerKind.DENSE:
        return 2 * n_in * layer.arg("units") + n_out
    if kind is LayerKind.CONV2D:
        k = layer.arg("kernel")
        return 2 * shape[0] * k * k * n_out + n_out
    if kind in (LayerKind.MAX_POOL, LayerKind.AVG_POOL):
        return layer.arg("kernel") ** 2 * n_out
    if kind is LayerKind.LAYER_NORM:
        return 8 * n_out
    if kind in ACTIVATIONS:
        return ACTIVATION_FLOPS[kind] * n_out
    if kind in (LayerKind.EMBEDDING, LayerKind.DROPOUT):
        return n_out
    return 0  # flatten


def _layer_memory(layer: Layer, shape: Shape, out: Shape, b: int, n_in: int, n_out: int
                  ) -> tuple[int, int, int]:
    """Elements a layer's op (`gpu.nn.layers`) allocates for `b` rows besides its output:
    (kept in its cache, forward temporaries, backward temporaries with the gradients of its
    output and input)."""
    kind = layer.kind
    grads = n_in + n_out
    if kind is LayerKind.CONV2D:
        k, pad = layer.arg("kernel"), layer.arg("padding")
        cols = b * math.prod(out[1:]) * shape[0] * k * k
        padded = b * shape[0] * (shape[1] + 2 * pad) * (shape[2] + 2 * pad) if pad else 0
        return cols, padded + n_out, grads + n_out + cols + padded
    if kind in (LayerKind.MAX_POOL, LayerKind.AVG_POOL):
        is_max = kind is LayerKind.MAX_POOL
        return (n_out // 2 if is_max else 0), n_out, grads + 2 * n_out
    if kind is LayerKind.LAYER_NORM:
        return n_in + n_in // shape[-1], 2 * n_in, grads + 3 * n_in
    if kind is LayerKind.EMBEDDING:
        tokens = b * shape[0]
        distinct = min(layer.arg("vocab"), tokens)
        return 2 * tokens, 0, n_out + distinct * (tokens + layer.arg("dim")) + 8 * tokens
    if kind is LayerKind.DROPOUT:
        return n_out, 2 * n_out + n_out // 4, grads
    if kind is LayerKind.GELU:
        return n_out, 2 * n_in, grads + 3 * n_in
    if kind in ACTIVATIONS:
        return 0, 0, grads + n_in
    if kind is LayerKind.DENSE:
        return 0, 0, grads
    return 0, 0, grads  # flatten: views


class LossKind(IntEnum):
    CROSS_ENTROPY = 1
    """Mean softmax cross-entropy against integer labels; the output row is (classes,)."""
    MSE = 2
    """Mean squared error over every output element against targets of the output's shape."""


class OptimizerKind(IntEnum):
    SGD = 1
    """v <- momentum v + g; w <- w - lr v (momentum 0: plain SGD); weight decay adds wd w to g."""
    ADAM = 2
    """Adam with bias correction; weight decay adds wd w to g (L2)."""
    ADAMW = 3
    """Adam with decoupled weight decay: w <- w - lr wd w before the Adam update."""


@dataclass(frozen=True, slots=True)
class Optimizer:
    """An optimiser and its hyper-parameters in millionths. `beta1_micros` is SGD's momentum
    or Adam's beta1; `beta2_micros` is Adam's beta2 (0 for SGD)."""

    kind: OptimizerKind
    lr_micros: int
    beta1_micros: int = 0
    beta2_micros: int = 0
    weight_decay_micros: int = 0

    def to_fields(self) -> list[Any]:
        return [int(self.kind), self.lr_micros, self.beta1_micros, self.beta2_micros,
                self.weight_decay_micros]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        kind, lr, b1, b2, wd = (read_uint(v, f"net.optimizer.{n}") for v, n in zip(
            read_array(value, 5, "net.optimizer"),
            ("kind", "lr_micros", "beta1_micros", "beta2_micros", "weight_decay_micros"),
            strict=True))
        if kind not in OptimizerKind._value2member_map_:
            raise DecodeError(f"net.optimizer: unknown optimizer kind {kind}")
        return cls(OptimizerKind(kind), lr, b1, b2, wd)

    @property
    def slots(self) -> int:
        """Arrays of state per parameter: Adam's two moments, SGD's momentum (if any)."""
        if self.kind is OptimizerKind.SGD:
            return 1 if self.beta1_micros else 0
        return 2

    def problems(self) -> list[str]:
        out = []
        if not 1 <= self.lr_micros <= MAX_LR_MICROS:
            out.append(f"lr_micros must be within 1..{MAX_LR_MICROS:,}")
        if not self.beta1_micros < MICROS:
            out.append("beta1_micros (momentum) must be below 1,000,000")
        if self.kind is OptimizerKind.SGD and self.beta2_micros:
            out.append("SGD takes no beta2")
        if not self.beta2_micros < MICROS:
            out.append("beta2_micros must be below 1,000,000")
        if not self.weight_decay_micros <= MICROS:
            out.append("weight_decay_micros must be within 0..1,000,000")
        return out


class ScheduleKind(IntEnum):
    CONSTANT = 1
    STEP = 2
    """lr gamma**(t // every)."""
    COSINE = 3
    """From lr down to floor along half a cosine, over the steps after the warm-up."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """The learning rate at each step: `kind`, after a linear warm-up over `warmup_steps`
    (step t < warmup_steps runs at lr (t + 1) / warmup_steps). `every` and `gamma_micros` are
    step decay's (else 0), `floor_micros` is cosine's final rate (else 0)."""

    kind: ScheduleKind = ScheduleKind.CONSTANT
    warmup_steps: int = 0
    every: int = 0
    gamma_micros: int = 0
    floor_micros: int = 0

    def to_fields(self) -> list[Any]:
        return [int(self.kind), self.warmup_steps, self.every, self.gamma_micros,
                self.floor_micros]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        kind, warmup, every, gamma, floor = (read_uint(v, f"net.schedule.{n}") for v, n in zip(
            read_array(value, 5, "net.schedule"),
            ("kind", "warmup_steps", "every", "gamma_micros", "floor_micros"), strict=True))
        if kind not in ScheduleKind._value2member_map_:
            raise DecodeError(f"net.schedule: unknown schedule kind {kind}")
        return cls(ScheduleKind(kind), warmup, every, gamma, floor)

    def problems(self, steps: int, lr_micros: int) -> list[str]:
        out = []
        if not self.warmup_steps <= steps:
            out.append("warmup_steps must be within 0..steps")
        if self.kind is ScheduleKind.STEP:
            if not 1 <= self.every <= steps or not self.gamma_micros <= MICROS:
                out.append("step decay needs every within 1..steps and gamma_micros within "
                           "0..1,000,000")
        elif self.every or self.gamma_micros:
            out.append("every and gamma_micros are step decay's only")
        if self.kind is ScheduleKind.COSINE:
            if not self.floor_micros <= lr_micros:
                out.append("floor_micros must be within 0..lr_micros")
        elif self.floor_micros:
            out.append("floor_micros is the cosine schedule's only")
        return out

    def rate(self, lr_micros: int, step: int, steps: int) -> float:
        """The learning rate of step `step` (0-based) of `steps` (float64: the engine rounds it
        to float32 once per step)."""
        lr = lr_micros / MICROS
        if self.kind is ScheduleKind.STEP:
            lr *= (self.gamma_micros / MICROS) ** (step // max(1, self.every))
        elif self.kind is ScheduleKind.COSINE:
            floor = self.floor_micros / MICROS
            span = max(1, steps - self.warmup_steps)
            done = min(span, max(0, step - self.warmup_steps))
            lr = floor + (lr - floor) * (1 + math.cos(math.pi * done / span)) / 2
        if step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        return lr


def network_shapes(input_shape: Shape, layers: tuple[Layer, ...]) -> tuple[Shape, ...]:
    """The row shapes of the input and of every layer's output (see `NetTrainSpec.shapes`)."""
    if not 1 <= len(input_shape) <= MAX_INPUT_RANK or not all(
            1 <= d <= MAX_DIM for d in input_shape):
        raise InvalidSpec(f"input_shape must have 1..{MAX_INPUT_RANK} dimensions within "
                          f"1..{MAX_DIM}")
    if not 1 <= len(layers) <= MAX_NET_LAYERS:
        raise InvalidSpec(f"a network has 1..{MAX_NET_LAYERS} layers")
    out = [input_shape]
    for i, layer in enumerate(layers):
        try:
            shape = layer_output_shape(layer, out[-1], first=i == 0)
        except InvalidSpec as exc:
            raise InvalidSpec(f"layer {i} ({layer.kind.name.lower()}): {exc}") from None
        if math.prod(shape) > MAX_ROW_ELEMENTS:
            raise InvalidSpec(f"layer {i} ({layer.kind.name.lower()}): its output row "
                              f"{shape} has over {MAX_ROW_ELEMENTS} elements")
        out.append(shape)
    return tuple(out)


@dataclass(frozen=True)
class NetTrainSpec:
    """Train the network `layers` on rows of `input_shape` from the client's inputs file
    `inputs` (`n_samples` rows; see the module docstring). Step i trains on `batch` rows of the
    training split drawn with replacement from (seed, i); a checkpoint (weights and optimiser
    state) is taken every `checkpoint_every` steps and after the last, so any interval can be
    replayed from the checkpoint before it. `init` is the id of an uploaded weights file (the
    network's parameters by name, `param_shapes`), or b"": weights drawn from `seed`."""

    seed: int
    input_shape: Shape
    layers: tuple[Layer, ...]
    loss: LossKind
    optimizer: Optimizer
    schedule: Schedule
    n_samples: int
    val_bps: int
    batch: int
    steps: int
    checkpoint_every: int
    inputs: bytes
    init: bytes = b""

    KIND: ClassVar[WorkloadKind] = WorkloadKind.TRAIN_NET
    MAX_BYTES: ClassVar[int] = 2_048 + 2 * HASH_LEN

    def to_fields(self) -> list[Any]:
        return [self.seed, list(self.input_shape), [layer.to_fields() for layer in self.layers],
                int(self.loss), self.optimizer.to_fields(), self.schedule.to_fields(),
                self.n_samples, self.val_bps, self.batch, self.steps, self.checkpoint_every,
                self.inputs, self.init]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (seed, shape, layers, loss, optimizer, schedule, samples, val, batch, steps, every,
         inputs, init) = read_array(value, 13, "net")
        loss_code = read_uint(loss, "net.loss")
        if loss_code not in LossKind._value2member_map_:
            raise DecodeError(f"net.loss: unknown loss {loss_code}")
        init_id = read_bytes(init, "net.init", max_len=HASH_LEN)
        if init_id and len(init_id) != HASH_LEN:
            raise DecodeError(f"net.init: a {HASH_LEN}-byte file id or nothing")
        return cls(
            seed=read_uint(seed, "net.seed"),
            input_shape=tuple(read_uint(d, "net.input_shape") for d in
                              read_list(shape, MAX_INPUT_RANK, "net.input_shape")),
            layers=tuple(Layer.from_fields(v, f"net.layers[{i}]") for i, v in
                         enumerate(read_list(layers, MAX_NET_LAYERS, "net.layers"))),
            loss=LossKind(loss_code),
            optimizer=Optimizer.from_fields(optimizer),
            schedule=Schedule.from_fields(schedule),
            n_samples=read_uint(samples, "net.n_samples"),
            val_bps=read_uint(val, "net.val_bps"),
            batch=read_uint(batch, "net.batch"),
            steps=read_uint(steps, "net.steps"),
            checkpoint_every=read_uint(every, "net.checkpoint_every"),
            inputs=read_bytes(inputs, "net.inputs", size=HASH_LEN),
            init=init_id,
        )

    # --- the network's shapes ------------------------------------------------------------------

    def shapes(self) -> list[Shape]:
        """The row shapes of the input and of every layer's output (len(layers) + 1 of them).
        Raises `InvalidSpec` naming the first layer that cannot take its input."""
        return list(self._shapes)

    @cached_property
    def _shapes(self) -> tuple[Shape, ...]:
        """Walked once per spec (no slots, so that it can be kept): pricing and checking a
        submission asks for the shapes and parameters a dozen times, and a deep network's walk
        costs every validator a few hundred microseconds for the submission's flat fee.
        A failure is not kept: it raises each time."""
        return network_shapes(self.input_shape, self.layers)

    @property
    def output_shape(self) -> Shape:
        return self.shapes()[-1]

    def param_shapes(self) -> list[tuple[str, Shape]]:
        """The network's parameters, by name, in order: the arrays of a weights file, and the
        first arrays of every checkpoint."""
        return list(self._param_shapes)

    @cached_property
    def _param_shapes(self) -> tuple[tuple[str, Shape], ...]:
        shapes = self.shapes()
        out: list[tuple[str, Shape]] = []
        for i, layer in enumerate(self.layers):
            for name, shape in zip(("w", "b"), layer_param_shapes(layer, shapes[i]),
                                   strict=False):
                out.append((f"l{i}.{name}", shape))
        return tuple(out)

    def param_count(self) -> int:
        return sum(math.prod(shape) for _, shape in self.param_shapes())

    def checkpoint_elements(self) -> int:
        """float32 elements of one checkpoint: the parameters, the optimiser's state per
        parameter, and its step counter."""
        return self.param_count() * (1 + self.optimizer.slots) + 1

    @property
    def n_val(self) -> int:
        """Rows held out for validation."""
        return self.n_samples * self.val_bps // BPS

    @property
    def n_train(self) -> int:
        return self.n_samples - self.n_val

    @property
    def target_shape(self) -> Shape:
        """The shape of one row's label (a class index: ()) or target."""
        return () if self.loss is LossKind.CROSS_ENTROPY else self.output_shape

    def input_arrays(self) -> list[tuple[str, Shape]]:
        """The arrays of the inputs file, with their shapes."""
        target = "labels" if self.loss is LossKind.CROSS_ENTROPY else "targets"
        return [("x", (self.n_samples, *self.input_shape)),
                (target, (self.n_samples, *self.target_shape))]

    @property
    def checkpoint_count(self) -> int:
        return checkpoint_count(self.steps, self.checkpoint_every)

    @property
    def checkpoint_steps(self) -> tuple[int, ...]:
        return checkpoint_steps(self.steps, self.checkpoint_every)

    def learning_rate(self, step: int) -> float:
        """The learning rate of step `step` (0-based)."""
        return self.schedule.rate(self.optimizer.lr_micros, step, self.steps)

    # --- checks --------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        out = []
        try:
            shapes = self.shapes()
        except InvalidSpec as exc:
            out.append(str(exc))
        else:
            if len(self.param_shapes()) > MAX_PARAM_ARRAYS:
                out.append(f"at most {MAX_PARAM_ARRAYS} parameter arrays")
            elif not self.param_shapes():
                out.append("the network has no parameters to train")
            if self.loss is LossKind.CROSS_ENTROPY and (len(shapes[-1]) != 1
                                                        or shapes[-1][0] < 2):
                out.append(f"cross-entropy needs an output row of shape (classes,) with at "
                           f"least 2 classes, got {shapes[-1]}")
        out += self.optimizer.problems()
        out += self.schedule.problems(self.steps, self.optimizer.lr_micros)
        if not 2 <= self.n_samples <= MAX_SAMPLES:
            out.append(f"n_samples must be within 2..{MAX_SAMPLES}")
        elif not 1 <= self.val_bps <= MAX_VAL_BPS or self.n_val < 1:
            out.append(f"val_bps must be within 1..{MAX_VAL_BPS} and hold out at least one row")
        elif not 1 <= self.batch <= min(MAX_BATCH, self.n_train):
            out.append("batch must be within 1..the training rows")
        out += checkpoint_problems(self.steps, self.checkpoint_every)
        if len(self.inputs) != HASH_LEN:
            out.append(f"inputs must be a {HASH_LEN}-byte file id")
        if len(self.init) not in (0, HASH_LEN):
            out.append(f"init must be a {HASH_LEN}-byte file id or empty")
        return out

    # --- what it costs -------------------------------------------------------------------------

    def forward_flops(self) -> int:
        """Floating-point operations of one row's forward pass (training or evaluation)."""
        shapes = self.shapes()
        return sum(layer_flops(layer, shapes[i], shapes[i + 1])
                   for i, layer in enumerate(self.layers))

    def step_flops(self) -> int:
        """One training step: forward and backward of `batch` rows (backward counted twice the
        forward: the input's and the weights' gradients), the loss, an embedding's gradient
        (a product with the one-hot rows of the batch's distinct ids), the optimiser's update."""
        shapes = self.shapes()
        rows = self.batch * (3 * self.forward_flops() + 8 * math.prod(shapes[-1]))
        first = self.layers[0]
        if first.kind is LayerKind.EMBEDDING:
            tokens = self.batch * shapes[0][0]
            rows += 2 * min(first.arg("vocab"), tokens) * tokens * first.arg("dim")
        return rows + 12 * self.param_count()

    def memory_elements(self) -> int:
        """Peak float32-sized elements of the engine's arrays (`gpu.net_training.train_net`
        with a sink, as a provider runs it): what stays resident, plus the largest phase that
        comes and goes (`workloads.limits.memory_needed_bytes` turns it into bytes)."""
        shapes = self.shapes()
        n, row, params = self.n_samples, math.prod(self.input_shape), self.param_count()
        target = math.prod(self.target_shape)
        ckpt = self.checkpoint_elements()
        # the uploaded file's arrays (x and targets are views of it), int32 labels, the split's
        # int64 row lists; a weights file; parameters, gradients and the optimiser's state; the
        # last checkpoint's encoding (bound until the next one is made)
        resident = (n * (row + target) + (n if self.loss is LossKind.CROSS_ENTROPY else 0)
                    + 2 * n + (params if self.init else 0)
                    + params * (2 + self.optimizer.slots) + ckpt)
        rows = min(n, NET_EVAL_CHUNK_ROWS)
        step = (self._pass_elements(self.batch, shapes, backward=True)
                + 2 * params)  # the optimiser's temporaries
        evaluating = self._pass_elements(rows, shapes, backward=False)
        starting = 2 * n + 2 * params  # the split's permutation; initial weights on the host
        checkpoint = ckpt  # the next encoding, then its chunks for the file id
        return resident + max(step, evaluating, starting, checkpoint)

    def _pass_elements(self, b: int, shapes: list[Shape], backward: bool) -> int:
        """A pass over `b` rows: their indices and inputs, every layer's output and cache
        (kept for the backward pass; an evaluation keeps them too, for one chunk), and the
        largest moment of one layer's forward or backward temporaries."""
        kept = 2 * b + b * math.prod(shapes[0]) + b * math.prod(self.target_shape)
        peak = 3 * b * math.prod(shapes[-1])  # the loss and its gradient
        for i, layer in enumerate(self.layers):
            n_in, n_out = b * math.prod(shapes[i]), b * math.prod(shapes[i + 1])
            extra, forward, back = _layer_memory(layer, shapes[i], shapes[i + 1], b, n_in, n_out)
            kept += n_out + extra
            peak = max(peak, forward, back if backward else 0)
        return kept + peak

    def work_units(self) -> int:
        # the training steps, then one evaluation pass over every row for the metrics
        return flops_to_units(self.step_flops() * self.steps
                              + self.forward_flops() * self.n_samples)
