"""Registered models: what the chain records of a customer's ONNX model, and the inference task
that runs one (`ModelInferSpec`, workload kind 4).

A model is an ONNX file uploaded as a blob and registered on chain (`REGISTER_MODEL`) with its
`ModelInfo`: inputs and outputs (name, element type, shape of one row: the leading batch
dimension is left out and must be symbolic in the file), the opset, and what one row costs
(`flops_per_row`, priced as work units; `activation_bytes_per_row` and `weight_bytes`, the
memory a run needs). `gpu.onnx_models.inspect_model(file)` computes the info from the file
itself; the client's CLI does it before it registers, and every provider and verifier does it
again before it runs the model and refuses one whose file does not give the registered info
(the chain cannot read blobs, so the info on chain is the registrant's claim until a provider
has checked it: nobody can be made to run more than what was priced).

Pure Python, like the other specs: the ledger prices a task with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from math import prod
from typing import Any, ClassVar, Self

from ogpu_node.encoding import read_array, read_bytes, read_list, read_str, read_uint
from ogpu_node.types import HASH_LEN, Hash32
from ogpu_node.workloads.spec import FLOPS_PER_UNIT, MAX_BATCH, InvalidSpec, WorkloadKind

MIB = 1024 * 1024
MAX_MODEL_BYTES = 256 * MIB
"""The largest model file: every provider and committee member fetches and loads it."""
MAX_MODEL_NAME = 64
MAX_TENSORS = 8
"""Inputs, and outputs, of one model."""
MAX_TENSOR_NAME = 64
TENSOR_NAME = re.compile(rf"[A-Za-z0-9_.\-/]{{1,{MAX_TENSOR_NAME}}}")
"""A tensor's name: it names an array of the inputs and outputs files (`gpu.artifacts`)."""
MAX_RANK = 3
"""Dimensions of one row of a tensor (the batch dimension is not counted): inputs and outputs
travel as arrays of at most 4 dimensions, the batch's included (`gpu.artifacts.MAX_NDIM`)."""
MAX_ROW_ELEMENTS = 2**24
"""Elements of one row of one input or output tensor."""
MAX_GRAPH_NODES = 4_096
"""Operators in a model's graph: inspection and the work count walk every one of them."""
MIN_OPSET = 13
MAX_OPSET = 21
"""The default ONNX domain's opsets accepted (13: the oldest whose operators the allow-list's
semantics follow; 21: the newest both the pinned `onnx` and ONNX Runtime implement)."""
FINGERPRINT_METRIC = "runtime"
"""The result metric in which a provider states its runtime (`gpu.onnx_run.runtime_fingerprint`):
a verifier with the same one compares bit for bit, any other within the tolerance."""
MAX_FLOPS_PER_ROW = 10**13
MAX_BYTES_PER_ROW = 2**34

ALLOWED_OPS: frozenset[str] = frozenset({
    # arithmetic and activations, element by element
    "Abs", "Add", "Sub", "Mul", "Div", "Neg", "Sqrt", "Reciprocal", "Pow", "Exp", "Log", "Erf",
    "Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Gelu", "Softplus",
    "Clip", "Min", "Max", "Sum", "Mean",
    # linear algebra and neural-network layers
    "MatMul", "Gemm", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "BatchNormalization", "LayerNormalization", "Softmax", "LogSoftmax", "Dropout",
    # shapes and data movement (static once the batch is known)
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice",
    "Gather", "Identity", "Constant", "Shape", "Cast",
    # reductions
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
})
"""Operators of the default ONNX domain a registered model may use: deterministic, with output
shapes that follow from the input shapes, and a cost bounded by those shapes. Refused, among
others: control flow (`If`, `Loop`, `Scan`: cost not bounded by shapes), random generators
(`RandomNormal`, `Bernoulli`, ...), operators whose output size depends on data (`NonZero`,
`Unique`, `TopK` with a computed k), float-to-index operators (`ArgMax`: a near tie flips
between runtimes, and the outputs it feeds jump by more than a verifier's tolerance), and
every other domain (ONNX Runtime's contrib operators, custom operators). `gpu.onnx_models`
applies further rules to how the allowed ones are used."""


class ElemType(IntEnum):
    """Element types of a model's inputs and outputs: ONNX's `TensorProto.DataType` numbers."""

    FLOAT = 1
    INT64 = 7

    @property
    def size(self) -> int:
        return 4 if self is ElemType.FLOAT else 8


def _units(flops: int) -> int:
    return max(1, -(-flops // FLOPS_PER_UNIT))


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One input or output of a model: its name, element type and the shape of one row."""

    name: str
    elem: ElemType
    shape: tuple[int, ...]

    def to_fields(self) -> list[Any]:
        return [self.name, int(self.elem), list(self.shape)]

    @classmethod
    def from_fields(cls, value: Any, what: str) -> Self:
        name, elem, shape = read_array(value, 3, what)
        code = read_uint(elem, f"{what}.elem")
        if code not in ElemType._value2member_map_:
            raise InvalidSpec(f"{what}: element type {code} is not one of "
                              f"{', '.join(e.name.lower() for e in ElemType)}")
        return cls(read_str(name, f"{what}.name", max_len=MAX_TENSOR_NAME), ElemType(code),
                   tuple(read_uint(d, f"{what}.shape") for d in
                         read_list(shape, MAX_RANK, f"{what}.shape")))

    @property
    def row_elements(self) -> int:
        return prod(self.shape)

    @property
    def row_bytes(self) -> int:
        return self.row_elements * self.elem.size

    def problems(self, what: str) -> list[str]:
        out = []
        if not TENSOR_NAME.fullmatch(self.name):
            out.append(f"{what} name {self.name!r}: names must be 1..{MAX_TENSOR_NAME} ASCII "
                       "letters, digits or '_.-/' (they name the arrays of the files)")
        if not all(1 <= d <= MAX_ROW_ELEMENTS for d in self.shape):
            out.append(f"{what} {self.name!r}: every dimension must be within "
                       f"1..{MAX_ROW_ELEMENTS}")
        elif self.row_elements > MAX_ROW_ELEMENTS:
            out.append(f"{what} {self.name!r}: at most {MAX_ROW_ELEMENTS} elements per row")
        return out


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the chain records of a registered model's file (see the module docstring)."""

    file_bytes: int
    opset: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    flops_per_row: int
    """Floating-point operations of one row's forward pass, counted from the graph."""
    weight_bytes: int
    """Bytes of the model's initializers and constants (its weights), and of the tensors
    computed from them alone (the runtime computes those once, at load, and keeps them)."""
    activation_bytes_per_row: int
    """Bytes of every intermediate tensor of one row: a bound on what a run allocates per row
    (the runtime reuses buffers, so it allocates less)."""

    MAX_BYTES: ClassVar[int] = 64 + 2 * MAX_TENSORS * (MAX_TENSOR_NAME + 16 + 9 * MAX_RANK)

    def to_fields(self) -> list[Any]:
        return [self.file_bytes, self.opset, [t.to_fields() for t in self.inputs],
                [t.to_fields() for t in self.outputs], self.flops_per_row, self.weight_bytes,
                self.activation_bytes_per_row]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        size, opset, inputs, outputs, flops, weights, activations = read_array(value, 7, "model")
        return cls(
            file_bytes=read_uint(size, "model.file_bytes"),
            opset=read_uint(opset, "model.opset"),
            inputs=tuple(TensorInfo.from_fields(t, "model.input") for t in
                         read_list(inputs, MAX_TENSORS, "model.inputs")),
            outputs=tuple(TensorInfo.from_fields(t, "model.output") for t in
                          read_list(outputs, MAX_TENSORS, "model.outputs")),
            flops_per_row=read_uint(flops, "model.flops_per_row"),
            weight_bytes=read_uint(weights, "model.weight_bytes"),
            activation_bytes_per_row=read_uint(activations, "model.activation_bytes_per_row"),
        )

    def problems(self) -> list[str]:
        out = []
        if not 1 <= self.file_bytes <= MAX_MODEL_BYTES:
            out.append(f"the model file must be within 1..{MAX_MODEL_BYTES} bytes")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            out.append(f"opset {self.opset} is not within {MIN_OPSET}..{MAX_OPSET}")
        for what, tensors in (("input", self.inputs), ("output", self.outputs)):
            if not tensors:
                out.append(f"a model needs at least one {what}")
            names = [t.name for t in tensors]
            if len(set(names)) != len(names):
                out.append(f"{what} names must be distinct")
            for tensor in tensors:
                out.extend(tensor.problems(what))
        if not 1 <= self.flops_per_row <= MAX_FLOPS_PER_ROW:
            out.append(f"flops_per_row must be within 1..{MAX_FLOPS_PER_ROW}")
        if self.weight_bytes > MAX_MODEL_BYTES:
            out.append(f"weights over {MAX_MODEL_BYTES} bytes")
        if self.activation_bytes_per_row > MAX_BYTES_PER_ROW:
            out.append(f"activation_bytes_per_row over {MAX_BYTES_PER_ROW}")
        return out

    def input_bytes_per_row(self) -> int:
        return sum(t.row_bytes for t in self.inputs)

    def output_bytes_per_row(self) -> int:
        return sum(t.row_bytes for t in self.outputs)

    def work_units(self, rows: int) -> int:
        return _units(self.flops_per_row * rows)


@dataclass(frozen=True, slots=True)
class ModelInferSpec:
    """Batch inference of registered model `model` (its id) on the `batch` rows of the client's
    uploaded file `inputs`: one array per model input, named as the input, `batch` rows of its
    row shape and element type (see `gpu.inputs`). The output holds one array per model output.

    `info` is not part of the encoding: the ledger attaches the registered model's info after
    it decodes a spec (`bound`), and everything that prices or bounds the task reads it from
    there; an unbound spec cannot be priced."""

    model: Hash32
    batch: int
    inputs: bytes
    info: ModelInfo | None = None

    KIND: ClassVar[WorkloadKind] = WorkloadKind.MODEL_INFER
    MAX_BYTES: ClassVar[int] = 16 + 2 * HASH_LEN

    def to_fields(self) -> list[Any]:
        return [self.model, self.batch, self.inputs]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        model, batch, inputs = read_array(value, 3, "model_infer")
        return cls(Hash32(read_bytes(model, "model_infer.model", size=HASH_LEN)),
                   read_uint(batch, "model_infer.batch"),
                   read_bytes(inputs, "model_infer.inputs", size=HASH_LEN))

    def bound(self, info: ModelInfo) -> ModelInferSpec:
        return ModelInferSpec(self.model, self.batch, self.inputs, info)

    @property
    def model_info(self) -> ModelInfo:
        if self.info is None:
            raise InvalidSpec("the spec is not bound to its registered model's info")
        return self.info

    def problems(self) -> list[str]:
        return [] if 1 <= self.batch <= MAX_BATCH else [f"batch must be within 1..{MAX_BATCH}"]

    def work_units(self) -> int:
        return self.model_info.work_units(self.batch)


ModelLookup = Callable[[Hash32], ModelInfo | None]
"""The info of a registered model by its id (None: no such model): `State.model_info`."""


def no_models(model: Hash32) -> ModelInfo | None:
    """The lookup of a chain without registered models."""
    del model
    return None
