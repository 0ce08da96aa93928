"""The network engine (`gpu.nn`): every layer's and loss's gradient against finite differences in
float64, the optimisers against their formulas, and deterministic training state."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from gpu.device import Device
from gpu.nn.data import NetData, dropout_mask, seed_params, split_rows
from gpu.nn.losses import loss_sums
from gpu.nn.network import Network
from gpu.nn.optim import optimizer_step
from ogpu_node.workloads.net import (
    ADAM_EPS,
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

SGD = Optimizer(OptimizerKind.SGD, lr_micros=10_000)
ROWS = 5


def net(input_shape: tuple[int, ...], layers: tuple[Layer, ...],
        loss: LossKind = LossKind.CROSS_ENTROPY, optimizer: Optimizer = SGD) -> NetTrainSpec:
    return NetTrainSpec(seed=3, input_shape=input_shape, layers=layers, loss=loss,
                        optimizer=optimizer, schedule=Schedule(), n_samples=40, val_bps=2_000,
                        batch=ROWS, steps=10, checkpoint_every=5, inputs=b"\x01" * 32)


GRADIENT_CASES = {
    "dense_gelu_layer_norm": net((5,), (dense(6), GELU, LAYER_NORM, dense(3))),
    "conv_padded_relu_max_pool": net((2, 6, 6), (conv2d(3, 3, padding=1), RELU, max_pool(2),
                                                 FLATTEN, dense(3))),
    "conv_strided_tanh_overlapping_avg_pool": net(
        (2, 7, 7), (conv2d(3, 3, stride=2, padding=1), TANH, avg_pool(2, 1), FLATTEN, dense(4)),
        LossKind.MSE),
    "overlapping_max_pool_after_conv": net((1, 7, 7), (conv2d(2, 2), max_pool(3, 2), FLATTEN,
                                                       dense(3))),
    "embedding_dropout_sigmoid_rank2_dense": net(
        (4,), (embedding(7, 3), dropout(3_000), SIGMOID, dense(2), LAYER_NORM), LossKind.MSE),
}
"""Every layer kind and both losses, each layer with a parameterised layer below it (so that
its input gradient is checked too, through that layer's parameter gradients)."""


def batch(spec: NetTrainSpec, rng: np.random.Generator) -> tuple[npt.NDArray[np.float64],
                                                                    npt.NDArray[np.float64]]:
    shape = (ROWS, *spec.input_shape)
    if spec.layers[0].kind.name == "EMBEDDING":
        x = rng.integers(0, spec.layers[0].arg("vocab"), size=shape).astype(np.float64)
    else:
        x = rng.normal(size=shape)
    if spec.loss is LossKind.CROSS_ENTROPY:
        return x, rng.integers(0, spec.output_shape[0], size=ROWS).astype(np.float64)
    return x, rng.normal(size=(ROWS, *spec.output_shape))


@pytest.mark.parametrize("name", GRADIENT_CASES)
def test_gradients_match_finite_differences_in_float64(name: str, device: Device) -> None:
    spec = GRADIENT_CASES[name]
    network = Network(spec, device, dtype=np.float64)
    rng = np.random.default_rng(5)
    params = [(n, rng.normal(size=a.shape) * 0.5 + (1.0 if n.endswith(".w") and a.ndim == 1
                                                     else 0.0))
              for n, a in seed_params(spec)]
    state = network.state(params)
    x, y = batch(spec, rng)
    target = y.astype(np.int64) if spec.loss is LossKind.CROSS_ENTROPY else y
    step = 2  # dropout masks of step 2

    def loss() -> float:
        out, _ = network._forward(state.params, x, step)
        return loss_sums(spec.loss, out, target, np)[0] / ROWS

    network.gradients(state.params, x, target, step)
    analytic = network.grad.copy()
    numeric = np.empty_like(analytic)
    eps = 1e-6
    for i in range(state.theta.shape[0]):
        keep = state.theta[i]
        state.theta[i] = keep + eps
        up = loss()
        state.theta[i] = keep - eps
        down = loss()
        state.theta[i] = keep
        numeric[i] = (up - down) / (2 * eps)
    err = np.abs(analytic - numeric).max()
    assert err <= 1e-6 * max(1.0, float(np.abs(numeric).max())), (name, err)
    assert np.abs(analytic).max() > 1e-3  # the check compared something


def test_dropout_masks_come_from_seed_step_and_layer() -> None:
    spec = GRADIENT_CASES["embedding_dropout_sigmoid_rank2_dense"]
    mask = dropout_mask(spec, 4, 1, 1_000)
    assert mask.shape == (1_000, 4, 3)
    assert set(np.unique(mask).tolist()) == {0.0, np.float32(1 / 0.7)}
    assert abs(float((mask == 0).mean()) - 0.3) < 0.02
    assert np.array_equal(mask, dropout_mask(spec, 4, 1, 1_000))
    assert not np.array_equal(mask, dropout_mask(spec, 5, 1, 1_000))


def test_the_validation_split_is_drawn_from_the_seed() -> None:
    spec = GRADIENT_CASES["dense_gelu_layer_norm"]
    train, val = split_rows(spec)
    assert len(val) == spec.n_val == 8 and len(train) == 32
    assert sorted([*train, *val]) == list(range(40))
    assert not np.array_equal(val, split_rows(replace(spec, seed=4))[1])


def reference_update(opt: Optimizer, theta: npt.NDArray[np.float64],
                     grads: list[npt.NDArray[np.float64]], lr: float) -> npt.NDArray[np.float64]:
    """The optimisers' textbook formulas, in float64."""
    b1, b2 = opt.beta1_micros / 1e6, opt.beta2_micros / 1e6
    wd = opt.weight_decay_micros / 1e6
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, raw in enumerate(grads, start=1):
        g = raw
        if opt.kind is OptimizerKind.ADAMW:
            theta = theta - lr * wd * theta
        else:
            g = raw + wd * theta
        if opt.kind is OptimizerKind.SGD:
            m = b1 * m + g
            theta = theta - lr * m
            continue
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + ADAM_EPS)
    return theta


@pytest.mark.parametrize("opt", [
    Optimizer(OptimizerKind.SGD, 100_000),
    Optimizer(OptimizerKind.SGD, 100_000, beta1_micros=900_000, weight_decay_micros=10_000),
    Optimizer(OptimizerKind.ADAM, 10_000, 900_000, 999_000, weight_decay_micros=5_000),
    Optimizer(OptimizerKind.ADAMW, 10_000, 800_000, 990_000, weight_decay_micros=100_000),
], ids=["sgd", "momentum_l2", "adam_l2", "adamw"])
def test_optimisers_follow_their_formulas(opt: Optimizer) -> None:
    rng = np.random.default_rng(2)
    theta = rng.normal(size=50)
    grads = [rng.normal(size=50) for _ in range(4)]
    got = theta.copy()
    slots = [np.zeros(50) for _ in range(opt.slots)]
    for t, g in enumerate(grads, start=1):
        optimizer_step(opt, got, g.copy(), slots, t, 0.01 if opt.kind is not OptimizerKind.SGD
                       else 0.1, np)
    want = reference_update(opt, theta, grads, 0.01 if opt.kind is not OptimizerKind.SGD
                            else 0.1)
    assert np.allclose(got, want, rtol=1e-12, atol=1e-12)
    assert not np.allclose(got, theta)


def test_a_training_step_is_deterministic_and_keeps_the_optimiser_state(device: Device) -> None:
    spec = replace(GRADIENT_CASES["conv_padded_relu_max_pool"],
                   optimizer=Optimizer(OptimizerKind.ADAM, 1_000, 900_000, 999_000))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2, 6, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 40).astype(np.int32)
    train, val = split_rows(spec)
    data = NetData(x, labels, train, val)
    runs = []
    for _ in range(2):
        network = Network(spec, device)
        state = network.state(seed_params(spec))
        for step in range(3):
            rows = train[step * ROWS:(step + 1) * ROWS]
            network.train_step(state, data.x[rows], data.target[rows])
        runs.append(network.to_arrays(state))
    for (name, a), (_, b) in zip(*runs, strict=True):
        assert a.tobytes() == b.tobytes(), name
    names = [name for name, _ in runs[0]]
    assert names[-3:] == ["opt.step", "opt.m", "opt.v"] and runs[0][-3][1][0] == 3
    assert math.prod(runs[0][-1][1].shape) == spec.param_count()
