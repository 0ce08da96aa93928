"""Example ONNX models for the registered-model tests and the tolerance calibration: an MLP, a
small CNN on the 8 x 8 digits and a transformer-style block, each built with `onnx.helper` from
seeded NumPy weights, with a float64 NumPy reference of the same forward pass and a hand count
of its floating-point operations per row (the counting rules of `gpu.onnx_models`).

`Example.reference(inputs, dtype)` computes the outputs in `dtype` (float64: the reference the
tolerance is measured against).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from ogpu_node.datasets import digits

Arrays = dict[str, npt.NDArray[np.generic]]
OPSET = 21
LN_EPS = 1e-5


@dataclass(frozen=True)
class Example:
    """One example model: its file, a reference forward pass and its flops per row."""

    name: str
    model: bytes
    reference: Callable[[Arrays, type[np.floating]], dict[str, npt.NDArray[np.floating]]]
    inputs: Callable[[int, int], Arrays]
    """Inputs of `rows` rows drawn with `seed`: inputs(rows, seed)."""
    flops_per_row: int
    """Counted by hand from the architecture."""


def _weights(rng: np.random.Generator, fan_in: int, *shape: int) -> npt.NDArray[np.float32]:
    return (rng.normal(size=shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def _init(name: str, value: npt.NDArray[np.generic]) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name)


def _finish(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
            outputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto],
            opset: int = OPSET) -> bytes:
    graph = helper.make_graph(nodes, "example", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="ogpu-tests")
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _f32(name: str, *dims: int | str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


# --- an MLP with two outputs ----------------------------------------------------------------

MLP_IN, MLP_HIDDEN, MLP_OUT = 64, 128, 10


def mlp(seed: int = 1, hidden: int = MLP_HIDDEN) -> Example:
    """x (64) -> Gemm 128 -> Relu -> MatMul+Add 64 -> Tanh -> Gemm 10 = logits; Softmax = probs.
    (`hidden` widens the first layer: a model whose memory is its weights.)"""
    rng = np.random.default_rng(seed)
    w1, b1 = _weights(rng, MLP_IN, MLP_IN, hidden), _weights(rng, 8, hidden)
    w2, b2 = _weights(rng, hidden, hidden, 64), _weights(rng, 8, 64)
    w3, b3 = _weights(rng, 64, MLP_OUT, 64), _weights(rng, 8, MLP_OUT)  # used transposed
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["h2"]),
        helper.make_node("Tanh", ["h2"], ["a2"]),
        helper.make_node("Gemm", ["a2", "w3", "b3"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    model = _finish(nodes, [_f32("x", "batch", MLP_IN)],
                    [_f32("logits", "batch", MLP_OUT), _f32("probs", "batch", MLP_OUT)],
                    [_init("w1", w1), _init("b1", b1), _init("w2", w2), _init("b2", b2),
                     _init("w3", w3), _init("b3", b3)])

    def reference(inputs: Arrays, dtype: type[np.floating]) -> dict[str, npt.NDArray[np.floating]]:
        x = inputs["x"].astype(dtype)
        a1 = np.maximum(x @ w1.astype(dtype) + b1.astype(dtype), 0)
        a2 = np.tanh(a1 @ w2.astype(dtype) + b2.astype(dtype))
        logits = a2 @ w3.T.astype(dtype) + b3.astype(dtype)
        return {"logits": logits, "probs": _softmax(logits)}

    def inputs(rows: int, seed: int) -> Arrays:
        return {"x": np.random.default_rng(seed).normal(size=(rows, MLP_IN)).astype(np.float32)}

    # 2MKN for each product, bias adds and Relu 1 per element, Tanh 4, Softmax 5
    flops = (2 * MLP_IN * hidden + hidden + hidden  # Gemm with bias, Relu
             + 2 * hidden * 64 + 64 + 4 * 64  # MatMul, Add, Tanh
             + 2 * 64 * MLP_OUT + MLP_OUT + 5 * MLP_OUT)  # Gemm with bias, Softmax
    return Example("mlp", model, reference, inputs, flops)


# --- a CNN on the 8 x 8 digits --------------------------------------------------------------

C1, C2, DIGIT_CLASSES = 16, 32, 10


def digits_cnn(seed: int = 2) -> Example:
    """image 1x8x8 -> Conv 3x3 16 (pad 1) -> Relu -> MaxPool 2 -> Conv 3x3 32 (pad 1) -> Relu
    -> Flatten -> Gemm 10 = logits."""
    rng = np.random.default_rng(seed)
    k1, c1b = _weights(rng, 9, C1, 1, 3, 3), _weights(rng, 8, C1)
    k2, c2b = _weights(rng, 9 * C1, C2, C1, 3, 3), _weights(rng, 8, C2)
    wf, bf = _weights(rng, C2 * 16, C2 * 16, DIGIT_CLASSES), _weights(rng, 8, DIGIT_CLASSES)
    nodes = [
        helper.make_node("Conv", ["image", "k1", "c1b"], ["c1"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "k2", "c2b"], ["c2"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"]),
    ]
    model = _finish(nodes, [_f32("image", "N", 1, 8, 8)], [_f32("logits", "N", DIGIT_CLASSES)],
                    [_init("k1", k1), _init("c1b", c1b), _init("k2", k2), _init("c2b", c2b),
                     _init("wf", wf), _init("bf", bf)])

    def reference(inputs: Arrays, dtype: type[np.floating]) -> dict[str, npt.NDArray[np.floating]]:
        x = inputs["image"].astype(dtype)
        r1 = np.maximum(_conv3x3(x, k1.astype(dtype)) + c1b.astype(dtype)[:, None, None], 0)
        p1 = r1.reshape(len(x), C1, 4, 2, 4, 2).max(axis=(3, 5))
        r2 = np.maximum(_conv3x3(p1, k2.astype(dtype)) + c2b.astype(dtype)[:, None, None], 0)
        return {"logits": r2.reshape(len(x), -1) @ wf.astype(dtype) + bf.astype(dtype)}

    def inputs(rows: int, seed: int) -> Arrays:
        data = digits()
        pick = np.random.default_rng(seed).integers(0, len(data), rows)
        return {"image": np.ascontiguousarray(data.x[pick])}

    flops = (2 * C1 * 64 * 1 * 9 + C1 * 64 + C1 * 64  # Conv 1 (with its bias), Relu
             + C1 * 16 * 4  # MaxPool: each output looks at 4 elements
             + 2 * C2 * 16 * C1 * 9 + C2 * 16 + C2 * 16  # Conv 2, Relu
             + C2 * 16  # Flatten writes each element once
             + 2 * C2 * 16 * DIGIT_CLASSES + DIGIT_CLASSES)  # Gemm with bias
    return Example("digits_cnn", model, reference, inputs, flops)


def _conv3x3(x: npt.NDArray[np.floating], k: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    """A 3x3 convolution with padding 1 (cross-correlation, as ONNX's Conv)."""
    n, _, height, width = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, k.shape[0], height, width), dtype=x.dtype)
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", padded[:, :, i:i + height, j:j + width],
                             k[:, :, i, j])
    return out


# --- a transformer-style block --------------------------------------------------------------

TOKENS, VOCAB, D, HEADS, FF, T_CLASSES = 16, 32, 64, 4, 128, 10
HEAD = D // HEADS


def transformer(seed: int = 3) -> Example:
    """tokens (16 int64) -> embedding + position -> LayerNorm -> 4-head self-attention (Q, K, V
    MatMuls, Softmax) -> residual -> LayerNorm -> MatMul 128 -> Gelu -> MatMul 64 -> residual
    -> mean over tokens -> Gemm 10 = logits. The heads' Reshape takes its target shape from
    Shape/Gather/Concat, as exporters write it."""
    rng = np.random.default_rng(seed)
    emb, pos = _weights(rng, 1, VOCAB, D), _weights(rng, 1, TOKENS, D)
    g1, be1 = (1 + 0.1 * rng.normal(size=D)).astype(np.float32), _weights(rng, 100, D)
    wq, wk, wv, wo = (_weights(rng, D, D, D) for _ in range(4))
    g2, be2 = (1 + 0.1 * rng.normal(size=D)).astype(np.float32), _weights(rng, 100, D)
    wu, bu = _weights(rng, D, D, FF), _weights(rng, 8, FF)
    wd, bd = _weights(rng, FF, FF, D), _weights(rng, 8, D)
    wc, bc = _weights(rng, D, D, T_CLASSES), _weights(rng, 8, T_CLASSES)
    named: list[tuple[str, npt.NDArray[np.generic]]] = [
        ("emb", emb), ("pos", pos), ("g1", g1), ("be1", be1), ("wq", wq), ("wk", wk),
        ("wv", wv), ("wo", wo), ("g2", g2), ("be2", be2), ("wu", wu), ("bu", bu), ("wd", wd),
        ("bd", bd), ("wc", wc), ("bc", bc),
        ("zero", np.array(0, dtype=np.int64)), ("axis0", np.array([0], dtype=np.int64)),
        ("heads_shape", np.array([TOKENS, HEADS, HEAD], dtype=np.int64)),
        ("model_shape", np.array([0, TOKENS, D], dtype=np.int64)),
        ("scale", np.array(1 / math.sqrt(HEAD), dtype=np.float32)),
        ("token_axis", np.array([1], dtype=np.int64))]
    inits = [_init(name, value) for name, value in named]
    nodes = [
        helper.make_node("Gather", ["emb", "tokens"], ["embedded"]),
        helper.make_node("Add", ["embedded", "pos"], ["h0"]),
        helper.make_node("LayerNormalization", ["h0", "g1", "be1"], ["n1"], axis=-1,
                         epsilon=LN_EPS),
        helper.make_node("MatMul", ["n1", "wq"], ["q"]),
        helper.make_node("MatMul", ["n1", "wk"], ["k"]),
        helper.make_node("MatMul", ["n1", "wv"], ["v"]),
        # the target shape [batch, 16, 4, 16] from the input's shape, as exporters write it
        helper.make_node("Shape", ["n1"], ["n1_shape"]),
        helper.make_node("Gather", ["n1_shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axis0"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "heads_shape"], ["split_shape"], axis=0),
        helper.make_node("Reshape", ["q", "split_shape"], ["q4"]),
        helper.make_node("Reshape", ["k", "split_shape"], ["k4"]),
        helper.make_node("Reshape", ["v", "split_shape"], ["v4"]),
        helper.make_node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k4"], ["kh"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["qh", "kh"], ["scores"]),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["attn"], axis=-1),
        helper.make_node("MatMul", ["attn", "vh"], ["ctx"]),
        helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx_t", "model_shape"], ["merged"]),
        helper.make_node("MatMul", ["merged", "wo"], ["attn_out"]),
        helper.make_node("Add", ["h0", "attn_out"], ["h1"]),
        helper.make_node("LayerNormalization", ["h1", "g2", "be2"], ["n2"], axis=-1,
                         epsilon=LN_EPS),
        helper.make_node("MatMul", ["n2", "wu"], ["up"]),
        helper.make_node("Add", ["up", "bu"], ["up_b"]),
        helper.make_node("Gelu", ["up_b"], ["act"]),
        helper.make_node("MatMul", ["act", "wd"], ["down"]),
        helper.make_node("Add", ["down", "bd"], ["down_b"]),
        helper.make_node("Add", ["h1", "down_b"], ["h2"]),
        helper.make_node("ReduceMean", ["h2", "token_axis"], ["pooled"], keepdims=0),
        helper.make_node("Gemm", ["pooled", "wc", "bc"], ["logits"]),
    ]
    model = _finish(nodes, [helper.make_tensor_value_info("tokens", TensorProto.INT64,
                                                          ["batch", TOKENS])],
                    [_f32("logits", "batch", T_CLASSES)], inits)

    def reference(inputs: Arrays, dtype: type[np.floating]) -> dict[str, npt.NDArray[np.floating]]:
        def c(a: npt.NDArray[np.float32]) -> npt.NDArray[np.floating]:
            return a.astype(dtype)

        tokens = inputs["tokens"].astype(np.int64)
        n = len(tokens)
        h0 = c(emb)[tokens] + c(pos)
        n1 = _layer_norm(h0, c(g1), c(be1))

        def heads(a: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
            return a.reshape(n, TOKENS, HEADS, HEAD).transpose(0, 2, 1, 3)

        q, k, v = heads(n1 @ c(wq)), heads(n1 @ c(wk)), heads(n1 @ c(wv))
        attn = _softmax(q @ k.transpose(0, 1, 3, 2) * dtype(1 / math.sqrt(HEAD)))
        merged = (attn @ v).transpose(0, 2, 1, 3).reshape(n, TOKENS, D)
        h1 = h0 + merged @ c(wo)
        n2 = _layer_norm(h1, c(g2), c(be2))
        up = n2 @ c(wu) + c(bu)
        act = 0.5 * up * (1 + _erf(up / np.sqrt(dtype(2))))
        h2 = h1 + act @ c(wd) + c(bd)
        return {"logits": h2.mean(axis=1) @ c(wc) + c(bc)}

    def inputs(rows: int, seed: int) -> Arrays:
        tokens = np.random.default_rng(seed).integers(0, VOCAB, (rows, TOKENS))
        return {"tokens": tokens.astype(np.float32)}  # whole numbers, as uploaded

    t, d = TOKENS, D
    flops = (t * d + t * d  # the embedding Gather (moves t*d elements), position Add
             + 2 * 8 * t * d  # two LayerNorms, 8 per element
             + 4 * 2 * t * d * d  # Q, K, V and the output projection
             + 3 * t * d + 3 * t * d  # split into heads: 3 Reshapes, 3 Transposes
             + t * d + t * d  # merge the heads: Transpose, Reshape
             + 2 * 2 * HEADS * t * t * HEAD  # scores and the weighted sum
             + HEADS * t * t + 5 * HEADS * t * t  # scale Mul, Softmax
             + t * d  # residual Add
             + 2 * t * d * FF + t * FF + 8 * t * FF  # up MatMul, bias, Gelu (8 per element)
             + 2 * t * FF * d + t * d + t * d  # down MatMul, bias, residual
             + t * d  # ReduceMean: one add per input element
             + 2 * d * T_CLASSES + T_CLASSES)  # Gemm with bias
    return Example("transformer", model, reference, inputs, flops)


def _softmax(z: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    out: npt.NDArray[np.floating] = e / e.sum(axis=-1, keepdims=True)
    return out


def _layer_norm(x: npt.NDArray[np.floating], gamma: npt.NDArray[np.floating],
                beta: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out: npt.NDArray[np.floating] = (x - mean) / np.sqrt(var + x.dtype.type(LN_EPS)) * gamma
    return out + beta


def _erf(x: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    out: npt.NDArray[np.floating] = np.vectorize(math.erf, otypes=[x.dtype])(x)
    return out


EXAMPLES: dict[str, Callable[..., Example]] = {
    "mlp": mlp, "digits_cnn": digits_cnn, "transformer": transformer}
