"""Inspecting customers' ONNX models: the info of real architectures (work counted by hand), and
hostile or unverifiable files refused with their reason, in bounded time."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpu.artifacts import MAX_NDIM
from gpu.onnx_models import MAX_STATIC_FLOPS, ModelRefused, inspect_model
from ogpu_node.encoding import decode, encode
from ogpu_node.workloads.models import (
    MAX_BYTES_PER_ROW,
    MAX_GRAPH_NODES,
    MAX_MODEL_BYTES,
    MAX_RANK,
    ElemType,
    ModelInfo,
    TensorInfo,
)
from tests.gpu.onnx_examples import EXAMPLES, MLP_HIDDEN, MLP_IN, MLP_OUT, Example

REFUSAL_SECONDS = 5.0
"""A refusal takes milliseconds; this bound only catches work that grows with a file's claims."""


def build(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto] | None = None,
          opset: int = 17, domains: tuple[str, ...] = ()) -> bytes:
    """A model's bytes, unchecked (hostile files are not valid ones)."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits or [])
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    return helper.make_model(graph, opset_imports=imports).SerializeToString()


def f32(name: str, *dims: int | str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def refused(data: bytes, match: str) -> ModelRefused:
    start = time.perf_counter()
    with pytest.raises(ModelRefused, match=match) as caught:
        inspect_model(data)
    assert time.perf_counter() - start < REFUSAL_SECONDS
    assert str(caught.value).startswith("model_refused: ") and caught.value.code == "model_refused"
    return caught.value


def relu_model(**changes: object) -> bytes:
    spec: dict[str, object] = {"nodes": [helper.make_node("Relu", ["x"], ["y"])],
                               "inputs": [f32("x", "N", 4)], "outputs": [f32("y", "N", 4)]}
    spec.update(changes)
    return build(**spec)  # type: ignore[arg-type]


# --- the info of real architectures ---------------------------------------------------------

@pytest.mark.parametrize("name", EXAMPLES)
def test_the_info_counts_work_as_counted_by_hand(name: str) -> None:
    example: Example = EXAMPLES[name]()
    info = inspect_model(example.model)
    assert info.flops_per_row == example.flops_per_row
    assert info.file_bytes == len(example.model) and info.opset == 21
    weights = onnx.load_from_string(example.model).graph.initializer
    assert info.weight_bytes == sum(numpy_helper.to_array(t).nbytes for t in weights)
    assert not info.problems()
    assert decode(ModelInfo, encode(info)) == info  # what the chain records


def test_the_mlp_info_is_its_interface_and_its_intermediate_tensors() -> None:
    info = inspect_model(EXAMPLES["mlp"]().model)
    assert info.inputs == (TensorInfo("x", ElemType.FLOAT, (MLP_IN,)),)
    assert info.outputs == (TensorInfo("logits", ElemType.FLOAT, (MLP_OUT,)),
                            TensorInfo("probs", ElemType.FLOAT, (MLP_OUT,)))
    # h1, a1 (128 each), m2, h2, a2 (64 each), logits, probs: float32 per row
    assert info.activation_bytes_per_row == 4 * (2 * MLP_HIDDEN + 3 * 64 + 2 * MLP_OUT)


def test_an_int64_input_is_recorded_as_such() -> None:
    info = inspect_model(EXAMPLES["transformer"]().model)
    assert info.inputs == (TensorInfo("tokens", ElemType.INT64, (16,)),)


def test_inspection_is_a_function_of_the_bytes() -> None:
    model = EXAMPLES["digits_cnn"]().model
    assert inspect_model(model) == inspect_model(bytearray(model)) == inspect_model(
        EXAMPLES["digits_cnn"]().model)


def test_rows_travel_as_artifact_arrays_so_a_row_has_at_most_three_dimensions() -> None:
    assert MAX_RANK == MAX_NDIM - 1
    refused(relu_model(inputs=[f32("x", "N", 2, 2, 2, 2)], outputs=[f32("y", "N", 2, 2, 2, 2)]),
            "4 dimensions after the batch; at most 3")


# --- hostile files --------------------------------------------------------------------------

def test_truncated_or_garbage_bytes_are_refused() -> None:
    model = EXAMPLES["mlp"]().model
    for cut in (1, 7, len(model) // 3, len(model) // 2, len(model) - 1):
        refused(model[:cut], "not an ONNX model")
    refused(np.random.default_rng(0).bytes(4096), "not an ONNX model")
    refused(b"", "within 1..")


def test_a_file_over_the_size_cap_is_refused_before_it_is_parsed() -> None:
    start = time.perf_counter()
    refused(bytes(MAX_MODEL_BYTES + 1), "a model must be within")
    assert time.perf_counter() - start < 0.5


def test_a_weight_claiming_more_than_the_file_holds_is_refused() -> None:
    bomb = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**20, 2**20],
                       raw_data=bytes(16))
    model = build([helper.make_node("MatMul", ["x", "w"], ["y"])], [f32("x", "N", 2**20)],
                  [f32("y", "N", 2**20)], [bomb])
    refused(model, r"initializer 'w' claims 4,398,046,511,104 bytes of values but the file "
                   r"holds 16")
    typed = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4], float_data=[1.0] * 3)
    refused(relu_model(inits=[typed]), "claims 64 bytes")


def test_external_data_is_refused() -> None:
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    onnx.external_data_helper.set_external_data(weight, "weights.bin", offset=0, length=64)
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    model = build([helper.make_node("MatMul", ["x", "w"], ["y"])], [f32("x", "N", 4)],
                  [f32("y", "N", 4)], [weight])
    refused(model, "initializer 'w' is stored outside the file")


def test_control_flow_and_subgraphs_are_refused() -> None:
    branch = helper.make_graph([helper.make_node("Relu", ["x"], ["z"])], "b", [],
                               [f32("z", "N", 4)])
    cond = numpy_helper.from_array(np.array(True), "c")
    if_model = build([helper.make_node("If", ["c"], ["y"], then_branch=branch,
                                       else_branch=branch)],
                     [f32("x", "N", 4)], [f32("y", "N", 4)], [cond])
    refused(if_model, "operators outside the accepted set: If")
    loop = build([helper.make_node("Loop", ["", "c"], ["y"], body=branch)], [f32("x", "N", 4)],
                 [f32("y", "N", 4)], [cond])
    refused(loop, "operators outside the accepted set: Loop")
    smuggled = helper.make_node("Relu", ["x"], ["y"])
    smuggled.attribute.append(helper.make_attribute("body", branch))
    refused(relu_model(nodes=[smuggled]), "Relu holds a subgraph")


def test_every_operator_outside_the_set_is_named() -> None:
    nodes = [helper.make_node("NonZero", ["x"], ["i"]), helper.make_node("TopK", ["x", "k"],
                                                                        ["v", "j"]),
             helper.make_node("RandomNormalLike", ["x"], ["y"])]
    refused(relu_model(nodes=nodes), "outside the accepted set: NonZero, RandomNormalLike, TopK")
    refused(relu_model(nodes=[helper.make_node("ArgMax", ["x"], ["y"])]), "ArgMax")


def test_custom_domains_and_functions_are_refused() -> None:
    custom = helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")
    refused(relu_model(nodes=[custom]), "'com.microsoft': only the default ONNX domain")
    refused(build([custom], [f32("x", "N", 4)], [f32("y", "N", 4)], domains=("com.microsoft",)),
            "operator domain 'com.microsoft'")
    model = onnx.load_from_string(relu_model())
    model.functions.append(helper.make_function("local", "f", ["a"], ["b"],
                                                [helper.make_node("Relu", ["a"], ["b"])],
                                                [helper.make_opsetid("", 17)]))
    refused(model.SerializeToString(), "model-local functions")


@pytest.mark.parametrize("opset", [11, 12, 22])
def test_opsets_outside_the_accepted_range_are_refused(opset: int) -> None:
    refused(build([helper.make_node("Relu", ["x"], ["y"])], [f32("x", "N", 4)],
                  [f32("y", "N", 4)], opset=opset), f"opset {opset}; the accepted opsets are")


def test_a_graph_over_the_node_cap_is_refused_without_walking_it() -> None:
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(10_000)]
    model = build(nodes, [f32("t0", "N", 4)], [f32("t10000", "N", 4)])
    start = time.perf_counter()
    refused(model, f"10,000 operators; at most {MAX_GRAPH_NODES:,}")
    assert time.perf_counter() - start < 1.0
    inspect_model(build(nodes[:MAX_GRAPH_NODES], [f32("t0", "N", 4)],
                        [f32(f"t{MAX_GRAPH_NODES}", "N", 4)]))  # the cap itself is accepted


def test_inputs_and_outputs_must_have_a_symbolic_batch_and_fixed_rows() -> None:
    refused(relu_model(inputs=[f32("x", 8, 4)], outputs=[f32("y", 8, 4)]),
            "input 'x' has a fixed batch dimension 8")
    refused(relu_model(inputs=[f32("x", "N", "M")], outputs=[f32("y", "N", "M")]),
            "every dimension after the batch must be fixed")
    refused(relu_model(inputs=[f32("x")], outputs=[f32("y")]), "has no shape")
    refused(relu_model(inputs=[f32("x:0", "N", 4)], nodes=[helper.make_node("Relu", ["x:0"],
                                                                            ["y"])]),
            "input name 'x:0'")
    refused(relu_model(outputs=[f32("y", "N", 5)]), r"'y' is declared float32 \[5\] per row "
                                                    r"but computes float32 \[4\]")


def test_integer_outputs_and_float_to_integer_casts_on_rows_are_refused() -> None:
    cast = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT64)
    refused(relu_model(nodes=[cast], outputs=[helper.make_tensor_value_info(
        "y", TensorProto.INT64, ["N", 4])]), "output 'y' is not float32")
    back = helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)
    refused(relu_model(nodes=[helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
                              back]), "Cast turns row values into integers")


def test_other_element_types_are_refused() -> None:
    half = helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16)
    refused(relu_model(nodes=[half, helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)]),
            "float16")
    refused(relu_model(inputs=[helper.make_tensor_value_info("x", TensorProto.DOUBLE,
                                                             ["N", 4])]), "float64")


def test_an_input_that_is_also_a_weight_is_refused() -> None:
    refused(relu_model(inits=[numpy_helper.from_array(np.ones((1, 4), np.float32), "x")]),
            "input 'x' is also an initializer")


# --- row independence -----------------------------------------------------------------------

def mixer(node: onnx.NodeProto, out_dims: tuple[int | str, ...] = ("N", 4),
          inits: list[onnx.TensorProto] | None = None) -> bytes:
    return build([node], [f32("x", "N", 4)], [f32("y", *out_dims)], inits)


@pytest.mark.parametrize("node", [
    helper.make_node("Softmax", ["x"], ["y"], axis=0),
    helper.make_node("LogSoftmax", ["x"], ["y"], axis=-2),
    helper.make_node("LayerNormalization", ["x", "g"], ["y"], axis=0),
], ids=["softmax", "logsoftmax", "layernorm"])
def test_operators_that_keep_the_shape_but_mix_rows_are_refused(node: onnx.NodeProto) -> None:
    refused(mixer(node, inits=[numpy_helper.from_array(np.ones((1, 4), np.float32), "g")]),
            "works across rows")


def test_reversing_or_gathering_rows_is_refused() -> None:
    ints = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
            [("s", [-1]), ("e", [-(2**62)]), ("a", [0]), ("st", [-1]), ("s0", [0]),
             ("e0", [2**62])]]
    refused(mixer(helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"]), inits=ints),
            "Slice works across rows")
    refused(mixer(helper.make_node("Slice", ["x", "s0", "e0"], ["y"]), inits=ints),
            "needs its axes as a constant")
    gather = build([helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
                    helper.make_node("Gather", ["x", "i"], ["y"])],
                   [f32("x", "N", 4)], [f32("y", "N", 4, 4)])
    refused(gather, "turns row values into integers")
    by_index = build([helper.make_node("Gather", ["x", "i"], ["y"], axis=0)],
                     [f32("x", "N", 4), helper.make_tensor_value_info("i", TensorProto.INT64,
                                                                      ["N"])],
                     [f32("y", "N", 4)])
    refused(by_index, "Gather works across rows")


@pytest.mark.parametrize("node", [
    helper.make_node("ReduceMean", ["x"], ["y"], axes=[0], keepdims=1),
    helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0]),
    helper.make_node("Concat", ["x", "x"], ["y"], axis=0),
    helper.make_node("Gemm", ["x", "x"], ["y"], transB=1),
    helper.make_node("Flatten", ["x"], ["y"], axis=0),
], ids=["reduce", "transpose", "concat", "outer", "flatten"])
def test_shapes_that_do_not_keep_the_rows_apart_are_refused(node: onnx.NodeProto) -> None:
    model = build([node], [f32("x", "N", 4)], [f32("y", "N", 4)])
    refused(model, "tensor 'y' does not keep the rows apart")


def test_the_batch_size_may_shape_a_reshape_but_not_reach_values() -> None:
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["b"]),
             helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "bf"], ["y"])]
    zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
    refused(build(nodes, [f32("x", "N", 4)], [f32("y", "N", 4)], [zero]),
            "Add computes with the batch size")
    refused(build(nodes[:3], [f32("x", "N", 4)], [f32("bf")], [zero]),
            "has no shape|does not depend")
    # the transformer example reshapes with Shape -> Gather -> Unsqueeze -> Concat: accepted
    assert inspect_model(EXAMPLES["transformer"]().model).flops_per_row > 0


def test_training_mode_normalisation_and_dropout_are_refused() -> None:
    params = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in "sbmv"]
    batch_norm = build([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"],
                                         ["y", "mean", "var"], training_mode=1)],
                       [f32("x", "N", 4, 2)], [f32("y", "N", 4, 2)], params)
    refused(batch_norm, "training mode")
    ratio = numpy_helper.from_array(np.array(0.5, np.float32), "r")
    refused(mixer(helper.make_node("Dropout", ["x", "r"], ["y"]), inits=[ratio]), "random")


# --- costs ----------------------------------------------------------------------------------

def test_work_on_the_weights_alone_is_capped() -> None:
    side = 2048  # 2 * 2048**3 = 1.7e10 operations on two 16 MiB weights at every load
    w = numpy_helper.from_array(np.zeros((side, side), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["w", "w"], ["ww"]),
             helper.make_node("ReduceSum", ["ww", "one"], ["r"], keepdims=0),
             helper.make_node("Add", ["x", "r"], ["y"])]
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    refused(build(nodes, [f32("x", "N", side)], [f32("y", "N", side)], [w, one]),
            f"on the weights alone at every load; at most {MAX_STATIC_FLOPS:,}")


def test_costs_over_the_protocols_caps_are_refused() -> None:
    side = 4096  # one row: 2**24 float32 (64 MiB) per tensor
    count = MAX_BYTES_PER_ROW // (4 * side * side) + 1
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(count)]
    refused(build(nodes, [f32("t0", "N", side, side)], [f32(f"t{count}", "N", side, side)]),
            "activation_bytes_per_row over")
