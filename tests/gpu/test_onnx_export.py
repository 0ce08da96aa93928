"""The ONNX export of a trained network agrees with the engine's forward pass, for every layer
kind, under ONNX Runtime (CPU, one thread, sequential execution)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from gpu.artifacts import encode_arrays
from gpu.device import Device
from gpu.errors import ArtifactError
from gpu.nn.data import seed_params
from gpu.nn.network import Network
from gpu.onnx_export import BATCH_DIM, EXPORT_OPSET, EXPORT_RTOL, export_onnx
from gpu.onnx_models import inspect_model
from gpu.workloads import WorkloadResult
from ogpu_node.workloads.models import ALLOWED_OPS, MAX_OPSET, MIN_OPSET
from ogpu_node.workloads.net import (
    FLATTEN,
    GELU,
    LAYER_NORM,
    RELU,
    SIGMOID,
    TANH,
    Layer,
    LossKind,
    NetTrainSpec,
    Optimizer,
    OptimizerKind,
    Schedule,
    avg_pool,
    conv2d,
    dense,
    dropout,
    embedding,
    max_pool,
)
from tests.gpu.conftest import DIGITS_CNN


def net(shape: tuple[int, ...], layers: tuple[Layer, ...],
        loss: LossKind = LossKind.CROSS_ENTROPY) -> NetTrainSpec:
    return NetTrainSpec(seed=8, input_shape=shape, layers=layers, loss=loss,
                        optimizer=Optimizer(OptimizerKind.SGD, 1_000), schedule=Schedule(),
                        n_samples=100, val_bps=1_000, batch=8, steps=1, checkpoint_every=1,
                        inputs=b"\x01" * 32)


EXPORTED = {
    "dense_relu": net((12,), (dense(16), RELU, dense(4))),
    "conv_max_pool": net((2, 9, 9), (conv2d(6, 3, stride=2, padding=1), RELU, max_pool(2),
                                     FLATTEN, dense(5))),
    "conv_avg_pool_tanh": net((3, 8, 8), (conv2d(4, 3), TANH, avg_pool(3, 1), FLATTEN,
                                          dense(3))),
    "layer_norm_gelu_dropout": net((20,), (dense(32), LAYER_NORM, GELU, dropout(2_000),
                                           dense(6))),
    "embedding_sigmoid_mse": net((7,), (embedding(30, 5), SIGMOID, dense(2), LAYER_NORM,
                                        dropout(500)), LossKind.MSE),
}


def session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def relative_error(spec: NetTrainSpec, arrays: list[tuple[str, np.ndarray]],
                   x: np.ndarray, device: Device) -> float:
    model = export_onnx(spec, encode_arrays(arrays))
    out_name = "logits" if spec.loss is LossKind.CROSS_ENTROPY else "y"
    fed = x.astype(np.int64) if spec.layers[0].kind.name == "EMBEDDING" else x
    (got,) = session(model).run([out_name], {"x": fed})
    network = Network(spec, device)
    want = network.output(network.state(arrays).params, x)
    assert got.shape == want.shape == (x.shape[0], *spec.output_shape)
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("name", EXPORTED)
def test_the_export_agrees_with_the_engine(name: str, device: Device) -> None:
    spec = EXPORTED[name]
    rng = np.random.default_rng(4)
    arrays = [(n, (a + rng.normal(size=a.shape).astype(np.float32) * 0.3).astype(np.float32))
              for n, a in seed_params(spec)]
    shape = (13, *spec.input_shape)
    x = (rng.integers(0, 30, size=shape) if spec.layers[0].kind.name == "EMBEDDING"
         else rng.normal(size=shape)).astype(np.float32)
    assert relative_error(spec, arrays, x, device) <= EXPORT_RTOL


@pytest.mark.parametrize("name", EXPORTED)
def test_every_export_can_be_registered(name: str) -> None:
    """From training to serving: what the export writes passes the registration's inspection,
    with the network's input and output as its tensors."""
    spec = EXPORTED[name]
    info = inspect_model(export_onnx(spec, encode_arrays(seed_params(spec))))
    assert [(t.name, t.shape) for t in info.inputs] == [("x", spec.input_shape)]
    assert [t.name for t in info.outputs] == [
        "logits" if spec.loss is LossKind.CROSS_ENTROPY else "y"]


def test_the_graph_is_an_allowed_model(device: Device) -> None:
    for spec in EXPORTED.values():
        raw = export_onnx(spec, encode_arrays(seed_params(spec)))
        model = onnx.load_from_string(raw)
        onnx.checker.check_model(model, full_check=True)
        assert {node.op_type for node in model.graph.node} <= ALLOWED_OPS
        assert "Dropout" not in {node.op_type for node in model.graph.node}
        assert MIN_OPSET <= model.opset_import[0].version == EXPORT_OPSET <= MAX_OPSET
        (x,) = model.graph.input
        assert x.name == "x" and x.type.tensor_type.shape.dim[0].dim_param == BATCH_DIM
        assert [o.name for o in model.graph.output] == [
            "logits" if spec.loss is LossKind.CROSS_ENTROPY else "y"]
        assert raw == export_onnx(spec, encode_arrays(seed_params(spec)))  # same bytes


def test_the_trained_digits_cnn_exports_from_its_final_checkpoint(
        digits_run: WorkloadResult, digits_task: tuple[NetTrainSpec, bytes],
        device: Device) -> None:
    spec, _ = digits_task
    model = export_onnx(spec, digits_run.output)  # the checkpoint, optimiser state and all
    from ogpu_node.datasets import digits
    x = digits().x[:200]
    (logits,) = session(model).run(["logits"], {"x": x})
    assert (logits.argmax(axis=1) == digits().labels[:200]).mean() > 0.9


def test_weights_of_another_network_are_refused() -> None:
    spec = EXPORTED["dense_relu"]
    with pytest.raises(ArtifactError, match="weights: arrays"):
        export_onnx(spec, encode_arrays(seed_params(replace(DIGITS_CNN))))
