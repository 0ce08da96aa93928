"""A trained network (`NetTrainSpec`) as an ONNX inference graph, so that a customer can run it
anywhere, or register it as a model (`ogpu_node.workloads.models`).

`export_onnx(spec, weights)` takes the final checkpoint of a run (or any weights file of the
network: its parameters by name; optimiser arrays are ignored) and writes a graph of the
default domain at opset EXPORT_OPSET that uses only `models.ALLOWED_OPS`: input "x" (float32,
a symbolic leading dimension "batch", then the input row shape), output "logits" for
cross-entropy or "y" for MSE. Dropout is left out (inference); GELU is written as the tanh
approximation the engine trains with, operator by operator. A network that starts with an
embedding takes token ids: its input "x" is int64 (the registered model's input is then int64:
clients send whole numbers, `gpu.inputs`), gathered directly, so the graph turns no row value
into an integer (which a registration's inspection refuses: `gpu.onnx_models`). The same spec
and weights always give the same bytes.

Agreement with the engine's forward pass (ONNX Runtime on the CPU, one thread, sequential;
float32; tests/gpu/test_onnx_export.py): for every layer kind the largest difference of an
output is at most EXPORT_RTOL of the largest output magnitude. Measured, worst of 5 draws of
64 rows: 0 (dense and ReLU: the same product), 2.3e-7 (strided, padded convolution, max
pooling), 3.0e-7 (layer normalisation, GELU), 3.9e-7 (convolution, tanh, average pooling),
1.7e-6 (embedding, sigmoid, dense on rank-2 rows, layer normalisation: ONNX Runtime's
`Sigmoid` against the engine's tanh form, and its fused normalisation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from gpu.errors import ArtifactError
from gpu.inputs import InputsError
from gpu.nn.data import uploaded_params
from gpu.nn.layers import GELU_A, GELU_C
from ogpu_node.workloads.models import ALLOWED_OPS, MAX_OPSET, MIN_OPSET
from ogpu_node.workloads.net import LAYER_NORM_EPS, LayerKind, LossKind, NetTrainSpec
from ogpu_node.workloads.spec import check_spec

EXPORT_OPSET = 17
"""The first opset with `LayerNormalization`."""
EXPORT_IR_VERSION = 8
"""The IR version of opset 17 (ONNX 1.12): readable by every runtime that has the opset."""
EXPORT_RTOL = 1e-5
BATCH_DIM = "batch"

_ACTIVATION_OPS = {LayerKind.RELU: "Relu", LayerKind.TANH: "Tanh", LayerKind.SIGMOID: "Sigmoid"}


class _Graph:
    """Nodes and initializers under construction, with unique value names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def value(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, name: str, array: npt.NDArray[np.float32]) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None,
           **attributes: Any) -> str:
        out = output or self.value(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attributes))
        return out


def export_onnx(spec: NetTrainSpec, weights: bytes) -> bytes:
    """The ONNX model of `spec`'s network with `weights` (see the module docstring). Raises
    `InvalidSpec` for a spec with problems and `ArtifactError` for weights that are not the
    network's."""
    check_spec(spec)
    try:
        params = dict(uploaded_params(spec, weights))
    except InputsError as exc:
        raise ArtifactError(str(exc)) from exc
    g = _Graph()
    h = "x"
    last = len(spec.layers) - 1
    output = "logits" if spec.loss is LossKind.CROSS_ENTROPY else "y"
    for i, layer in enumerate(spec.layers):
        name = output if i == last else None
        kind = layer.kind
        w = f"l{i}.w"
        if kind is LayerKind.DROPOUT:
            if i == last:
                g.op("Identity", [h], name)
            continue
        if kind is LayerKind.DENSE:
            product = g.op("MatMul", [h, g.const(w, params[w])])
            h = g.op("Add", [product, g.const(f"l{i}.b", params[f"l{i}.b"])], name)
        elif kind is LayerKind.CONV2D:
            k, s, p = layer.arg("kernel"), layer.arg("stride"), layer.arg("padding")
            h = g.op("Conv", [h, g.const(w, params[w]), g.const(f"l{i}.b", params[f"l{i}.b"])],
                     name, kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p])
        elif kind in (LayerKind.MAX_POOL, LayerKind.AVG_POOL):
            k, s = layer.arg("kernel"), layer.arg("stride")
            h = g.op("MaxPool" if kind is LayerKind.MAX_POOL else "AveragePool", [h], name,
                     kernel_shape=[k, k], strides=[s, s])
        elif kind is LayerKind.FLATTEN:
            h = g.op("Flatten", [h], name, axis=1)
        elif kind is LayerKind.LAYER_NORM:
            h = g.op("LayerNormalization", [h, g.const(w, params[w]),
                                            g.const(f"l{i}.b", params[f"l{i}.b"])], name,
                     axis=-1, epsilon=LAYER_NORM_EPS)
        elif kind is LayerKind.EMBEDDING:
            ids = h if i == 0 else g.op("Cast", [h], to=TensorProto.INT64)
            h = g.op("Gather", [g.const(w, params[w]), ids], name, axis=0)
        elif kind is LayerKind.GELU:
            h = _gelu(g, h, i, name)
        else:
            h = g.op(_ACTIVATION_OPS[kind], [h], name)
    graph = helper.make_graph(
        g.nodes, "ogpu_net",
        [helper.make_tensor_value_info("x", _input_type(spec), [BATCH_DIM, *spec.input_shape])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT,
                                       [BATCH_DIM, *spec.output_shape])],
        g.initializers)
    model = helper.make_model(graph, producer_name="ogpu-node",
                              opset_imports=[helper.make_opsetid("", EXPORT_OPSET)])
    model.ir_version = EXPORT_IR_VERSION
    used = {node.op_type for node in model.graph.node}
    if not used <= ALLOWED_OPS or not MIN_OPSET <= EXPORT_OPSET <= MAX_OPSET:
        raise ArtifactError(f"export uses operators outside the allowed set: "
                            f"{sorted(used - ALLOWED_OPS)}")
    return bytes(model.SerializeToString())


def _input_type(spec: NetTrainSpec) -> int:
    """int64 token ids for a network that starts with an embedding, else float32."""
    first = spec.layers[0].kind if spec.layers else None
    return TensorProto.INT64 if first is LayerKind.EMBEDDING else TensorProto.FLOAT


def _gelu(g: _Graph, x: str, i: int, name: str | None) -> str:
    """0.5 x (1 + tanh(c (x + a x^3))), as the engine computes it (`gpu.nn.layers`)."""
    a = g.const(f"l{i}.gelu_a", np.array(GELU_A, dtype=np.float32))
    c = g.const(f"l{i}.gelu_c", np.array(GELU_C, dtype=np.float32))
    one = g.const(f"l{i}.one", np.array(1.0, dtype=np.float32))
    half = g.const(f"l{i}.half", np.array(0.5, dtype=np.float32))
    square = g.op("Mul", [x, x])
    inner = g.op("Add", [g.op("Mul", [square, a]), one])  # 1 + a x^2
    t = g.op("Tanh", [g.op("Mul", [g.op("Mul", [inner, x]), c])])
    return g.op("Mul", [g.op("Mul", [g.op("Add", [t, one]), x]), half], name)
