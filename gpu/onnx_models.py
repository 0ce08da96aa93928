"""Inspecting a customer's ONNX model: `inspect_model(file) -> ModelInfo`, or `ModelRefused`
with the reason.

The info is computed from the file alone, with `onnx` (never ONNX Runtime), so the same bytes
give the same info on every machine: the client's CLI computes it to register the model, and
every provider and verifier computes it again before it runs the model
(`gpu.onnx_run.run_model` refuses a file whose info is not the registered one).

**What is refused, in the order checked** (each check bounds the cost of the next):

1. a file over `MAX_MODEL_BYTES`, or bytes that do not parse as an ONNX model;
2. more than `MAX_GRAPH_NODES` operators; model-local functions, training info, sparse
   initializers; any operator set other than the default domain's, and its version outside
   `MIN_OPSET..MAX_OPSET`; operators outside `ALLOWED_OPS` (all of them named); attributes
   holding graphs (the bodies of `If`, `Loop`, `Scan`);
3. weights stored outside the file (external data), weights whose dimensions claim more
   elements than the file holds (the "zip bomb" of a tiny file declaring a huge tensor), and
   tensors of element types other than `ElemType` (float32 and int64) anywhere in the graph;
4. inputs and outputs whose leading dimension is not symbolic (the batch) or whose other
   dimensions are not fixed, whose names are not artifact names (`gpu.artifacts`: ASCII
   letters, digits and ``_.-/``), inputs that are also initializers (overridable weights),
   integer outputs;
5. what `onnx.checker` refuses, and any tensor whose shape strict shape inference cannot fix
   once the batch is set;
6. anything that makes one row's outputs depend on other rows or on the batch size: a model
   runs in chunks of `MODEL_CHUNK_ROWS` rows and is verified on a sample of rows, so row i's
   outputs must be a function of row i alone. Every tensor computed from the inputs' values
   ("row" tensors) must keep the batch as its leading dimension with a per-row size that does
   not change with the batch (checked with batches of 1, 2 and 3: this catches every reduction,
   concatenation, transpose or broadcast across rows); operators that keep the shape but mix
   rows are refused on axis 0 (`Softmax`, `LogSoftmax`, `LayerNormalization`, `Gather`,
   `Slice`), as are training-mode `BatchNormalization` and `Dropout`. Values computed from a
   row tensor's *shape* (exporters' `Shape -> Gather -> Concat` chains) may only become a
   `Reshape`'s target shape; anywhere else they would carry the batch size into the values;
7. float values turned into integers on row data (`Cast` to int64): a value that rounds the
   other way on another runtime changes an index or a class, and the outputs jump by more than
   any tolerance a verifier can allow;
8. work that happens once per load rather than per row (tensors computed from the weights
   alone, which the runtime folds) over `MAX_STATIC_FLOPS`;
9. the resulting info's own `ModelInfo.problems()` (costs over the protocol's caps).

**Counting work** (`flops_per_row`, from the shapes of one row; the table every registrant and
provider applies, a measure of work rather than a claim about any one kernel):

| operators | floating-point operations |
|---|---|
| MatMul | 2 * (output elements) * K (2·M·K·N for a plain product) |
| Gemm | 2·M·K·N, + M·N with a bias C |
| Conv | 2 * (output elements) * Cin/group * kh * kw, + output elements with a bias |
| MaxPool, AveragePool | output elements * kernel elements |
| GlobalAveragePool, GlobalMaxPool, Reduce* | input elements |
| Softmax, LogSoftmax | 5 per output element (max, subtract, exp, sum, divide) |
| LayerNormalization, Gelu | 8 per output element |
| BatchNormalization | 2 per output element (the folded scale and shift) |
| Exp, Log, Erf, Tanh, Sigmoid, Softplus, Elu, Selu, Pow | 4 per output element |
| Sum, Mean, Min, Max | (inputs - 1) per output element, at least 1 |
| every other operator (arithmetic, activations, data movement) | 1 per output element |

Data movement (Transpose, Gather, Concat, Slice, and the views Reshape, Flatten, Squeeze,
Unsqueeze, Identity, Dropout, Cast) counts one per element it writes, so a model made of copies
still pays for its memory traffic. Only operators producing row tensors count; computations on
shapes are free; the total is at least 1.

`weight_bytes` counts the initializers, the `Constant` operators' values and the tensors the
runtime computes from them alone (folded at load); `activation_bytes_per_row` sums every row
tensor an operator produces for one row (model outputs included, inputs not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper, shape_inference
from onnx.onnx_cpp2py_export.checker import ValidationError
from onnx.onnx_cpp2py_export.shape_inference import InferenceError

from gpu.errors import GpuError
from ogpu_node.workloads.models import (
    ALLOWED_OPS,
    MAX_GRAPH_NODES,
    MAX_MODEL_BYTES,
    MAX_OPSET,
    MAX_RANK,
    MAX_TENSORS,
    MIN_OPSET,
    TENSOR_NAME,
    ElemType,
    ModelInfo,
    TensorInfo,
)

MAX_STATIC_FLOPS = 2**30
"""Work on the weights alone (folded once per load, unpriced): a transpose or a reshape of
every weight of the largest model (64M float32 elements) fits; a product of two large weight
matrices does not."""
SMALL_TENSOR_ELEMENTS = 1_024
"""Initializers up to this size keep their values for shape inference (target shapes, axes,
indices); larger ones are given to it by type and shape only, so inference does not copy the
weights."""
CHECK_BATCHES = (1, 2, 3)
"""Batch sizes the shapes are inferred at: the info is counted at 1; 2 and 3 check that every
row tensor keeps the batch on axis 0 with a per-row size that does not grow with it."""
DEFAULT_DOMAINS = ("", "ai.onnx")

_ELEM_NAMES = {e.value: e.name.lower() for e in ElemType}

_FLOPS_PER_ELEMENT = {
    **dict.fromkeys(("Softmax", "LogSoftmax"), 5),
    **dict.fromkeys(("LayerNormalization", "Gelu"), 8),
    "BatchNormalization": 2,
    **dict.fromkeys(("Exp", "Log", "Erf", "Tanh", "Sigmoid", "Softplus", "Elu", "Selu", "Pow"),
                    4),
}
_VARIADIC = frozenset({"Sum", "Mean", "Min", "Max"})
_REDUCTIONS = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
                         "GlobalAveragePool", "GlobalMaxPool"})
_SHAPE_OPS = frozenset({"Shape", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Cast",
                        "Add", "Sub", "Mul", "Div", "Identity", "Reshape"})
"""What may compute on values taken from a row tensor's shape (`Shape`'s output)."""
_AXIS_MIXERS = {"Softmax": -1, "LogSoftmax": -1, "LayerNormalization": -1, "Gather": 0}
"""Shape-keeping operators with an axis (and its default) that must not be 0 on row data."""


class ModelRefused(GpuError):
    """A model file that cannot be registered or run: the message says why."""

    code = "model_refused"


class ModelMismatch(ModelRefused):
    """A model file whose info is not the one registered for it."""

    code = "model_mismatch"


def _refuse(text: str) -> ModelRefused:
    return ModelRefused(f"model_refused: {text}")


def inspect_model(data: bytes | bytearray | memoryview) -> ModelInfo:
    """The `ModelInfo` of the ONNX model `data`, computed from the file itself (the same on
    every machine); raises `ModelRefused` saying why a model cannot be registered (see the
    module docstring for the rules, in the order they are checked), and nothing else: a file
    that breaks `onnx` itself (its checker, shape inference, tensor conversions raise what they
    raise) is refused too."""
    try:
        return _inspect(data)
    except ModelRefused:
        raise
    except Exception as exc:  # hostile bytes reach code of onnx's that raises anything
        raise _refuse(f"onnx cannot read it: {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from None


def _inspect(data: bytes | bytearray | memoryview) -> ModelInfo:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _refuse(f"a model file is bytes, not {type(data).__name__}")
    size = len(memoryview(data))
    if not 1 <= size <= MAX_MODEL_BYTES:
        raise _refuse(f"the file is {size:,} bytes; a model must be within 1..{MAX_MODEL_BYTES:,}")
    model = _parse(bytes(data))
    graph = model.graph
    opset = _check_structure(model)
    weights = _check_weights(graph)
    inputs, outputs = _check_interface(graph)
    skeleton = _skeleton(model)
    shapes = {batch: _infer(skeleton, batch) for batch in CHECK_BATCHES}
    kinds = _classify(graph)
    _check_rows(graph, kinds, shapes, _small_values(graph))
    one = shapes[1]
    info = ModelInfo(
        file_bytes=size, opset=opset,
        inputs=tuple(_tensor_info(v, one) for v in inputs),
        outputs=tuple(_tensor_info(v, one) for v in outputs),
        flops_per_row=max(1, sum(_node_flops(n, one) for n in graph.node
                                 if kinds.node(n) == ROW)),
        weight_bytes=weights + _static_bytes(graph, kinds, one),
        activation_bytes_per_row=sum(one[name].nbytes for n in graph.node
                                     if kinds.node(n) == ROW for name in n.output if name),
    )
    static_flops = sum(_node_flops(n, one) for n in graph.node if kinds.node(n) == STATIC)
    if static_flops > MAX_STATIC_FLOPS:
        raise _refuse(f"{static_flops:,} operations on the weights alone at every load; at most "
                      f"{MAX_STATIC_FLOPS:,}")
    problems = info.problems()
    if problems:
        raise _refuse("; ".join(problems))
    return info


def _parse(data: bytes) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError, or RuntimeWarning-free C++ errors
        raise _refuse(f"the file is not an ONNX model: it does not parse ({type(exc).__name__}"
                      "; truncated?)") from None
    if not model.HasField("graph") or not model.graph.output:
        raise _refuse("the file is not an ONNX model (no graph)")
    return model


# --- structure ------------------------------------------------------------------------------

def _check_structure(model: onnx.ModelProto) -> int:
    """Counts, operator sets, operators and subgraphs; returns the default domain's opset."""
    graph = model.graph
    if len(graph.node) > MAX_GRAPH_NODES:
        raise _refuse(f"{len(graph.node):,} operators; at most {MAX_GRAPH_NODES:,}")
    if model.functions:
        raise _refuse("model-local functions are not accepted")
    if model.training_info:
        raise _refuse("training information (with its graphs) is not accepted")
    if graph.sparse_initializer:
        raise _refuse("sparse initializers are not accepted")
    opset = None
    for entry in model.opset_import:
        if entry.domain not in DEFAULT_DOMAINS:
            raise _refuse(f"operator domain {entry.domain!r}: only the default ONNX domain "
                          "is accepted")
        opset = entry.version
    if opset is None:
        raise _refuse("the model imports no version of the default ONNX operator set")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise _refuse(f"opset {opset}; the accepted opsets are {MIN_OPSET}..{MAX_OPSET}")
    foreign = sorted({n.domain for n in graph.node if n.domain not in DEFAULT_DOMAINS})
    if foreign:
        raise _refuse(f"operators of domain {foreign[0]!r}: only the default ONNX domain is "
                      "accepted")
    unknown = sorted({n.op_type for n in graph.node} - ALLOWED_OPS)
    if unknown:
        raise _refuse(f"operators outside the accepted set: {', '.join(unknown)}")
    for node in graph.node:
        for attr in node.attribute:
            if (attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS)
                    or attr.HasField("g") or attr.graphs):
                raise _refuse(f"operator {_label(node)} holds a subgraph")
    return opset


def _label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} {node.name!r}" if node.name else node.op_type


# --- weights --------------------------------------------------------------------------------

_TYPED_FIELDS: dict[int, str] = {TensorProto.FLOAT: "float_data",
                                  TensorProto.INT64: "int64_data"}


def _tensor_bytes(tensor: TensorProto, what: str) -> int:
    """The bytes of a weight held in the file, after checking that it holds what it claims."""
    if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
        raise _refuse(f"{what} is stored outside the file (external data is not accepted)")
    if tensor.data_type not in _ELEM_NAMES:
        raise _refuse(f"{what} is {_type_name(tensor.data_type)}; tensors must be "
                      f"{' or '.join(_ELEM_NAMES.values())}")
    if any(d < 0 for d in tensor.dims):
        raise _refuse(f"{what} has dimensions {list(tensor.dims)}")
    item = ElemType(tensor.data_type).size
    claimed = math.prod(tensor.dims) * item
    if tensor.HasField("raw_data"):
        held = len(tensor.raw_data)
    else:
        held = len(getattr(tensor, _TYPED_FIELDS[tensor.data_type])) * item
    if held != claimed:
        raise _refuse(f"{what} claims {claimed:,} bytes of values but the file holds {held:,}")
    return claimed


def _type_name(code: int) -> str:
    try:
        return str(helper.tensor_dtype_to_np_dtype(code))
    except (KeyError, ValueError):
        return f"element type {code}"


def _constant_tensor(node: onnx.NodeProto) -> TensorProto:
    """The value of a `Constant` operator as a tensor (scalars and lists of floats or ints)."""
    if len(node.attribute) != 1:
        raise _refuse(f"{_label(node)} must have exactly one value")
    attr = node.attribute[0]
    if attr.name == "value":
        return attr.t
    if attr.name in ("value_float", "value_floats"):
        floats = [attr.f] if attr.name == "value_float" else list(attr.floats)
        dims = [] if attr.name == "value_float" else [len(floats)]
        return helper.make_tensor("constant", TensorProto.FLOAT, dims, floats)
    if attr.name in ("value_int", "value_ints"):
        ints = [attr.i] if attr.name == "value_int" else list(attr.ints)
        dims = [] if attr.name == "value_int" else [len(ints)]
        return helper.make_tensor("constant", TensorProto.INT64, dims, ints)
    raise _refuse(f"{_label(node)}: a {attr.name} is not accepted")


def _check_weights(graph: onnx.GraphProto) -> int:
    total = sum(_tensor_bytes(t, f"initializer {t.name!r}") for t in graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant":
            total += _tensor_bytes(_constant_tensor(node), f"constant {node.output[0]!r}")
    return total


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its large weights' values (given to inference as typed inputs) and
    without declared intermediate shapes (inference computes them, not the file's claims)."""
    graph = model.graph
    small = [t for t in graph.initializer if math.prod(t.dims) <= SMALL_TENSOR_ELEMENTS]
    large = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
             for t in graph.initializer if math.prod(t.dims) > SMALL_TENSOR_ELEMENTS]
    skeleton_graph = helper.make_graph(list(graph.node), graph.name or "model",
                                       [*graph.input, *large], list(graph.output), small)
    skeleton = helper.make_model(skeleton_graph, opset_imports=list(model.opset_import))
    skeleton.ir_version = model.ir_version
    try:
        onnx.checker.check_model(skeleton)
    except ValidationError as exc:
        raise _refuse(f"the ONNX checker refuses it: {_first_line(exc)}") from None
    return skeleton


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- inputs and outputs ---------------------------------------------------------------------

def _check_interface(graph: onnx.GraphProto) -> tuple[list[onnx.ValueInfoProto],
                                                      list[onnx.ValueInfoProto]]:
    weights = {t.name for t in graph.initializer}
    inputs = list(graph.input)
    overridable = [v.name for v in inputs if v.name in weights]
    if overridable:
        raise _refuse(f"input {overridable[0]!r} is also an initializer (an overridable weight)")
    for what, values in (("input", inputs), ("output", list(graph.output))):
        if not 1 <= len(values) <= MAX_TENSORS:
            raise _refuse(f"{len(values)} {what}s; a model has 1..{MAX_TENSORS}")
        for value in values:
            _check_declared(value, what)
    for value in graph.output:
        if value.type.tensor_type.elem_type != ElemType.FLOAT:
            raise _refuse(f"output {value.name!r} is not float32: an integer output (a class "
                          "index) can flip on a near tie between runtimes and cannot be checked "
                          "against a tolerance; output the scores")
    return inputs, list(graph.output)


def _check_declared(value: onnx.ValueInfoProto, what: str) -> None:
    name = value.name
    if not TENSOR_NAME.fullmatch(name):
        raise _refuse(f"{what} name {name!r}: names must be 1..64 ASCII letters, digits or "
                      "'_.-/' (they name the arrays of the inputs and outputs files)")
    if not value.type.HasField("tensor_type"):
        raise _refuse(f"{what} {name!r} is not a tensor")
    tensor = value.type.tensor_type
    if tensor.elem_type not in _ELEM_NAMES:
        raise _refuse(f"{what} {name!r} is {_type_name(tensor.elem_type)}; inputs and outputs "
                      f"must be {' or '.join(_ELEM_NAMES.values())}")
    if not tensor.HasField("shape") or not tensor.shape.dim:
        raise _refuse(f"{what} {name!r} has no shape: it needs a leading batch dimension")
    dims = list(tensor.shape.dim)
    if dims[0].HasField("dim_value"):
        raise _refuse(f"{what} {name!r} has a fixed batch dimension {dims[0].dim_value}; the "
                      "leading dimension must be symbolic (the batch)")
    if len(dims) - 1 > MAX_RANK:
        raise _refuse(f"{what} {name!r} has {len(dims) - 1} dimensions after the batch; at "
                      f"most {MAX_RANK}")
    if not all(d.HasField("dim_value") and d.dim_value >= 1 for d in dims[1:]):
        raise _refuse(f"{what} {name!r}: every dimension after the batch must be fixed")


# --- shapes ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Shape:
    elem: int
    dims: tuple[int, ...]

    @property
    def elements(self) -> int:
        return math.prod(self.dims)

    @property
    def nbytes(self) -> int:
        return self.elements * ElemType(self.elem).size


def _infer(skeleton: onnx.ModelProto, batch: int) -> dict[str, _Shape]:
    """Every tensor's element type and shape with the batch set to `batch`."""
    model = onnx.ModelProto()
    model.CopyFrom(skeleton)
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    for value in model.graph.output:  # computed by inference, compared with the file's below
        value.type.tensor_type.ClearField("shape")
    try:
        inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                data_prop=True)
    except (InferenceError, ValidationError) as exc:
        raise _refuse(f"shape inference fails with a batch of {batch}: "
                      f"{_first_line(exc)}") from None
    found: dict[str, _Shape] = {}
    graph = inferred.graph
    for value in (*graph.input, *graph.value_info, *graph.output):
        found[value.name] = _static_shape(value)
    for tensor in skeleton.graph.initializer:
        found[tensor.name] = _Shape(tensor.data_type, tuple(tensor.dims))
    for node in graph.node:
        for name in node.output:
            if name and name not in found:
                raise _refuse(f"the shape of tensor {name!r} cannot be determined")
    return found


def _static_shape(value: onnx.ValueInfoProto) -> _Shape:
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor.HasField("shape"):
        raise _refuse(f"the shape of tensor {value.name!r} cannot be determined")
    if tensor.elem_type not in _ELEM_NAMES:
        raise _refuse(f"tensor {value.name!r} is {_type_name(tensor.elem_type)}; tensors must "
                      f"be {' or '.join(_ELEM_NAMES.values())}")
    dims = []
    for dim in tensor.shape.dim:
        if not dim.HasField("dim_value"):
            raise _refuse(f"the shape of tensor {value.name!r} depends on more than the batch")
        dims.append(dim.dim_value)
    return _Shape(tensor.elem_type, tuple(dims))


def _tensor_info(value: onnx.ValueInfoProto, shapes: dict[str, _Shape]) -> TensorInfo:
    """An input's or output's info, from its inferred shape, which must be the declared one."""
    shape = shapes[value.name]
    declared = tuple(d.dim_value for d in value.type.tensor_type.shape.dim[1:])
    if shape.dims[1:] != declared or shape.elem != value.type.tensor_type.elem_type:
        raise _refuse(f"{value.name!r} is declared {_type_name(value.type.tensor_type.elem_type)}"
                      f" {list(declared)} per row but computes {_type_name(shape.elem)} "
                      f"{list(shape.dims[1:])}")
    return TensorInfo(value.name, ElemType(shape.elem), shape.dims[1:])


# --- what depends on the rows ---------------------------------------------------------------

STATIC, META, ROW = 0, 1, 2
"""A tensor computed from the weights alone; from a row tensor's shape; from the inputs'
values."""


@dataclass(frozen=True, slots=True)
class _Kinds:
    of: dict[str, int]

    def node(self, node: onnx.NodeProto) -> int:
        return max((self.of[name] for name in node.output if name), default=STATIC)

    def input(self, node: onnx.NodeProto, index: int) -> int:
        if index >= len(node.input) or not node.input[index]:
            return STATIC
        return self.of[node.input[index]]


def _classify(graph: onnx.GraphProto) -> _Kinds:
    """Each tensor's kind, walking the (topologically sorted: checked) graph once, refusing
    values of a row tensor's shape anywhere but a Reshape's target shape."""
    of = {t.name: STATIC for t in graph.initializer} | {v.name: ROW for v in graph.input}
    for node in graph.node:
        kinds = [of[name] if name else STATIC for name in node.input]
        if node.op_type == "Shape":
            kind = META if kinds[0] != STATIC else STATIC
        elif ROW in kinds:
            meta_at = [i for i, k in enumerate(kinds) if k == META]
            if meta_at and not (node.op_type == "Reshape" and meta_at == [1]):
                raise _refuse(f"{_label(node)} computes with the batch size (taken from a "
                              "shape): only a Reshape's target shape may use it")
            kind = ROW
        elif META in kinds:
            if node.op_type not in _SHAPE_OPS:
                raise _refuse(f"{_label(node)} computes with the batch size (taken from a "
                              "shape): only a Reshape's target shape may use it")
            kind = META
        else:
            kind = STATIC
        for name in node.output:
            if name:
                of[name] = kind
    for value in graph.output:
        if of.get(value.name, STATIC) != ROW:
            raise _refuse(f"output {value.name!r} does not depend on the inputs' values")
    return _Kinds(of)


def _small_values(graph: onnx.GraphProto) -> dict[str, list[int]]:
    """The values of small int64 weights and constants (Slice's axes)."""
    found: dict[str, list[int]] = {}
    tensors = [(t.name, t) for t in graph.initializer]
    tensors += [(n.output[0], _constant_tensor(n)) for n in graph.node if n.op_type == "Constant"]
    for name, tensor in tensors:
        if tensor.data_type == TensorProto.INT64 and math.prod(tensor.dims) <= 64:
            found[name] = [int(v) for v in numpy_helper.to_array(tensor).reshape(-1)]
    return found


def _axis(value: int, rank: int) -> int:
    return value + rank if value < 0 else value


def _check_rows(graph: onnx.GraphProto, kinds: _Kinds, shapes: dict[int, dict[str, _Shape]],
                values: dict[str, list[int]]) -> None:
    """Row tensors keep the batch on axis 0 with a fixed per-row size; no operator mixes rows."""
    one = shapes[1]
    for node in graph.node:  # the specific reasons first
        if kinds.node(node) == ROW:
            _check_row_node(node, kinds, one, values)
    for name, kind in kinds.of.items():
        if kind != ROW:
            continue
        per_row = one[name].elements
        for batch in CHECK_BATCHES:
            dims = shapes[batch][name].dims
            if not dims or dims[0] != batch or shapes[batch][name].elements != batch * per_row:
                raise _refuse(f"tensor {name!r} does not keep the rows apart (shape {dims} for "
                              f"a batch of {batch}): each row's outputs must depend on that "
                              "row alone")


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _check_row_node(node: onnx.NodeProto, kinds: _Kinds, one: dict[str, _Shape],
                    values: dict[str, list[int]]) -> None:
    op = node.op_type
    data = node.input[0] if node.input else ""
    mixes = f"{_label(node)} works across rows (axis 0): each row's outputs must depend on " \
            "that row alone"
    if op in _AXIS_MIXERS and kinds.input(node, 0) == ROW:
        if _axis(int(_attr(node, "axis", _AXIS_MIXERS[op])), len(one[data].dims)) == 0:
            raise _refuse(mixes)
    elif op == "Slice" and kinds.input(node, 0) == ROW:
        axes_name = node.input[3] if len(node.input) > 3 else ""
        if axes_name not in values:
            raise _refuse(f"{_label(node)} on row data needs its axes as a constant (and "
                          "not axis 0)")
        if 0 in (_axis(a, len(one[data].dims)) for a in values[axes_name]):
            raise _refuse(mixes)
    elif op == "BatchNormalization" and int(_attr(node, "training_mode", 0)):
        raise _refuse(f"{_label(node)} in training mode uses the batch's statistics")
    elif op == "Dropout" and any(node.input[1:]):
        raise _refuse(f"{_label(node)} with a ratio or training-mode input may be random")
    elif op == "Cast" and int(_attr(node, "to", 0)) != TensorProto.FLOAT \
            and one[data].elem == TensorProto.FLOAT:
        raise _refuse(f"{_label(node)} turns row values into integers: a value that rounds "
                      "the other way on another runtime makes the outputs jump")


# --- counting -------------------------------------------------------------------------------

def _node_flops(node: onnx.NodeProto, shapes: dict[str, _Shape]) -> int:
    """The node's floating-point operations (the module docstring's table)."""
    op = node.op_type
    if op in ("Shape", "Constant"):
        return 0
    out = sum(shapes[name].elements for name in node.output[:1] if name)
    first = shapes[node.input[0]] if node.input and node.input[0] else None
    if op == "MatMul" and first is not None:
        return 2 * out * first.dims[-1]
    if op == "Gemm" and first is not None:
        k = first.dims[0] if int(_attr(node, "transA", 0)) else first.dims[-1]
        return 2 * out * k + (out if len(node.input) > 2 and node.input[2] else 0)
    if op == "Conv":
        weight = shapes[node.input[1]].dims
        bias = out if len(node.input) > 2 and node.input[2] else 0
        return 2 * out * math.prod(weight[1:]) + bias  # weight: Cout x Cin/group x kh x kw
    if op in ("MaxPool", "AveragePool"):
        return out * math.prod(int(k) for k in _attr(node, "kernel_shape", [1]))
    if op in _REDUCTIONS and first is not None:
        return first.elements
    if op in _VARIADIC:
        return out * max(1, len([n for n in node.input if n]) - 1)
    return out * _FLOPS_PER_ELEMENT.get(op, 1)


def _static_bytes(graph: onnx.GraphProto, kinds: _Kinds, shapes: dict[str, _Shape]) -> int:
    """Tensors computed from the weights alone (the runtime folds and keeps them)."""
    return sum(shapes[name].nbytes for node in graph.node
               if node.op_type != "Constant" and kinds.node(node) == STATIC
               for name in node.output if name)


__all__ = ["MAX_STATIC_FLOPS", "ModelMismatch", "ModelRefused", "inspect_model"]
