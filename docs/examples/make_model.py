"""Build a small ONNX classifier with `onnx.helper` and NumPy alone (no PyTorch needed):
8 features in, 3 class scores and their probabilities out, for any number of rows.

    python make_model.py [my-model.onnx]
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_FEATURES, HIDDEN, N_CLASSES = 8, 32, 3

rng = np.random.default_rng(42)
weights = {  # your trained weights would go here; float32, as the model computes in float32
    "w1": (rng.normal(size=(N_FEATURES, HIDDEN)) / np.sqrt(N_FEATURES)).astype(np.float32),
    "b1": np.zeros(HIDDEN, np.float32),
    "w2": (rng.normal(size=(HIDDEN, N_CLASSES)) / np.sqrt(HIDDEN)).astype(np.float32),
    "b2": np.zeros(N_CLASSES, np.float32),
}
nodes = [
    helper.make_node("MatMul", ["features", "w1"], ["h"]),
    helper.make_node("Add", ["h", "b1"], ["h_b"]),
    helper.make_node("Relu", ["h_b"], ["a"]),
    helper.make_node("MatMul", ["a", "w2"], ["s"]),
    helper.make_node("Add", ["s", "b2"], ["scores"]),
    helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),  # per row: never axis 0
]
graph = helper.make_graph(
    nodes, "my-classifier",
    # the leading dimension is symbolic ("batch"): the network runs any number of rows
    inputs=[helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", N_FEATURES])],
    outputs=[helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", N_CLASSES]),
             helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", N_CLASSES])],
    initializer=[numpy_helper.from_array(value, name) for name, value in weights.items()])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
onnx.checker.check_model(model, full_check=True)

path = sys.argv[1] if len(sys.argv) > 1 else "my-model.onnx"
onnx.save(model, path)
print(f"wrote {path}")
