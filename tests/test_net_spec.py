"""`NetTrainSpec` (workload kind 5): encoding, shape inference, refusals with their reasons, and
counts that stay arithmetic for any field values."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogpu_node.encoding import encode, pack
from ogpu_node.workloads.kinds import decode_spec
from ogpu_node.workloads.limits import check_limits, needs
from ogpu_node.workloads.net import (
    FLATTEN,
    GELU,
    LAYER_NORM,
    MAX_NET_LAYERS,
    RELU,
    SIGMOID,
    TANH,
    Layer,
    LayerKind,
    LossKind,
    NetTrainSpec,
    Optimizer,
    OptimizerKind,
    Schedule,
    ScheduleKind,
    avg_pool,
    conv2d,
    dense,
    dropout,
    embedding,
    max_pool,
)
from ogpu_node.workloads.spec import InvalidSpec, WorkloadKind

ADAM = Optimizer(OptimizerKind.ADAM, lr_micros=1_000, beta1_micros=900_000,
                 beta2_micros=999_000)
CNN = NetTrainSpec(
    seed=7, input_shape=(1, 8, 8),
    layers=(conv2d(16, 3, padding=1), RELU, max_pool(2), dropout(1_000), FLATTEN, dense(32),
            LAYER_NORM, GELU, dense(10)),
    loss=LossKind.CROSS_ENTROPY, optimizer=ADAM,
    schedule=Schedule(ScheduleKind.COSINE, warmup_steps=10, floor_micros=100),
    n_samples=1_797, val_bps=2_000, batch=32, steps=400, checkpoint_every=50,
    inputs=b"\x01" * 32)
TOKENS = NetTrainSpec(
    seed=1, input_shape=(12,), layers=(embedding(50, 8), TANH, dense(1), FLATTEN, SIGMOID),
    loss=LossKind.MSE, optimizer=Optimizer(OptimizerKind.SGD, 50_000, beta1_micros=900_000),
    schedule=Schedule(ScheduleKind.STEP, every=100, gamma_micros=500_000), n_samples=300,
    val_bps=1_000, batch=16, steps=200, checkpoint_every=40, inputs=b"\x02" * 32,
    init=b"\x03" * 32)


def test_a_spec_encodes_as_kind_5_and_decodes_to_itself() -> None:
    for spec in (CNN, TOKENS):
        assert spec.problems() == []
        assert decode_spec(WorkloadKind.TRAIN_NET, encode(spec)) == spec
    assert CNN.KIND == 5


def test_shapes_follow_the_layers() -> None:
    assert CNN.shapes() == [(1, 8, 8), (16, 8, 8), (16, 8, 8), (16, 4, 4), (16, 4, 4), (256,),
                            (32,), (32,), (32,), (10,)]
    assert TOKENS.shapes() == [(12,), (12, 8), (12, 8), (12, 1), (12,), (12,)]
    assert TOKENS.target_shape == (12,) and CNN.target_shape == ()
    assert CNN.param_shapes() == [("l0.w", (16, 1, 3, 3)), ("l0.b", (16,)),
                                  ("l5.w", (256, 32)), ("l5.b", (32,)), ("l6.w", (32,)),
                                  ("l6.b", (32,)), ("l8.w", (32, 10)), ("l8.b", (10,))]
    assert CNN.param_count() == 160 + 256 * 32 + 32 + 64 + 330
    assert CNN.checkpoint_elements() == 3 * CNN.param_count() + 1
    assert (CNN.n_val, CNN.n_train) == (359, 1_438)
    assert CNN.input_arrays() == [("x", (1_797, 1, 8, 8)), ("labels", (1_797,))]
    assert TOKENS.input_arrays() == [("x", (300, 12)), ("targets", (300, 12))]


def test_strided_and_average_pooling_shapes() -> None:
    net = replace(CNN, layers=(conv2d(4, 3, stride=2), avg_pool(2, 1), FLATTEN, dense(3)))
    assert net.shapes()[1:3] == [(4, 3, 3), (4, 2, 2)]


@pytest.mark.parametrize(("layers", "reason"), [
    ((FLATTEN, conv2d(4, 3)), "layer 1 (conv2d): conv2d needs rows of shape (C, H, W)"),
    ((conv2d(4, 9), FLATTEN, dense(2)), "layer 0 (conv2d): kernel 9 is larger than"),
    ((conv2d(4, 3, padding=3), FLATTEN, dense(2)), "padding must be below the kernel size"),
    ((FLATTEN, embedding(10, 4), dense(2)), "an embedding must be the first layer"),
    ((FLATTEN, dense(0)), "units must be within"),
    ((FLATTEN, dropout(10_000), dense(2)), "rate_bps must be below 10000"),
    ((FLATTEN, dense(1)), "cross-entropy needs an output row of shape (classes,) with at "
                          "least 2 classes"),
    ((conv2d(4, 3), dense(2)), "cross-entropy needs an output row of shape (classes,)"),
    ((FLATTEN, RELU), "the network has no parameters to train"),
])
def test_impossible_networks_are_refused_with_the_reason(layers: tuple[Layer, ...],
                                                         reason: str) -> None:
    problems = replace(CNN, layers=layers).problems()
    assert any(reason in p for p in problems), problems


def test_every_problem_is_listed_at_once() -> None:
    bad = replace(CNN, optimizer=Optimizer(OptimizerKind.SGD, 0, beta2_micros=5),
                  schedule=Schedule(ScheduleKind.CONSTANT, every=3), val_bps=0, steps=0,
                  inputs=b"")
    problems = bad.problems()
    for reason in ("lr_micros must be within", "SGD takes no beta2", "step decay's only",
                   "val_bps must be within", "steps must be within", "inputs must be"):
        assert any(reason in p for p in problems), (reason, problems)
    with pytest.raises(InvalidSpec, match="SGD takes no beta2"):
        check_limits(bad)


def test_a_layer_output_too_large_is_refused() -> None:
    wide = replace(CNN, input_shape=(1, 64, 64), layers=(conv2d(4_096, 1), FLATTEN, dense(2)))
    assert wide.problems() == ["layer 0 (conv2d): its output row (4096, 64, 64) has over "
                               "4194304 elements"]


def test_too_many_parameter_arrays_are_refused() -> None:
    deep = replace(CNN, input_shape=(4,), layers=(dense(4),) * MAX_NET_LAYERS)
    assert any("at most 60 parameter arrays" in p for p in deep.problems())


@pytest.mark.parametrize("fields", [
    lambda f: f[:-1],  # a field missing
    lambda f: [*f[:2], [[99]], *f[3:]],  # an unknown layer kind
    lambda f: [*f[:2], [[int(LayerKind.DENSE), 3, 4]], *f[3:]],  # a dense layer with 2 args
    lambda f: [*f[:3], 9, *f[4:]],  # an unknown loss
    lambda f: [*f[:4], [7, 1, 0, 0, 0], *f[5:]],  # an unknown optimiser
    lambda f: [*f[:-1], b"\x01" * 5],  # an init id of the wrong length
    lambda f: [*f[:2], [[int(LayerKind.RELU)]] * (MAX_NET_LAYERS + 1), *f[3:]],
])
def test_malformed_encodings_are_invalid_specs(fields: object) -> None:
    raw = pack(fields(CNN.to_fields()))  # type: ignore[operator]
    with pytest.raises(InvalidSpec):
        decode_spec(WorkloadKind.TRAIN_NET, raw)


def test_the_schedules_rates() -> None:
    lr = 1_000_000
    warm = Schedule(ScheduleKind.CONSTANT, warmup_steps=4)
    assert [warm.rate(lr, t, 10) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    step = Schedule(ScheduleKind.STEP, every=3, gamma_micros=100_000)
    assert [round(step.rate(lr, t, 10), 9) for t in (0, 2, 3, 6)] == [1.0, 1.0, 0.1, 0.01]
    cosine = Schedule(ScheduleKind.COSINE, warmup_steps=2, floor_micros=100_000)
    assert cosine.rate(lr, 2, 12) == 1.0
    assert math.isclose(cosine.rate(lr, 7, 12), 0.55)
    assert math.isclose(cosine.rate(lr, 12, 12), 0.1)


def test_work_counts_the_steps_and_the_final_evaluation() -> None:
    forward = CNN.forward_flops()
    conv = 2 * 9 * 16 * 64 + 16 * 64
    assert forward == (conv + 1_024 + 4 * 256 + 256 + 2 * 256 * 32 + 32 + 8 * 32 + 12 * 32
                       + 2 * 32 * 10 + 10)
    total = CNN.step_flops() * CNN.steps + forward * CNN.n_samples
    assert CNN.work_units() == -(-total // 10**9)
    # an embedding's gradient is counted by the batch's tokens and the vocabulary
    assert TOKENS.step_flops() - replace(TOKENS, layers=(embedding(1, 8), *TOKENS.layers[1:])
                                         ).step_flops() == (2 * (50 - 1) * 16 * 12 * 8
                                                            + 12 * (50 - 1) * 8)


HUGE = 2**64 - 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(LayerKind)), st.lists(
    st.one_of(st.integers(0, 20), st.just(HUGE)), min_size=4, max_size=4)), min_size=1,
    max_size=MAX_NET_LAYERS), st.lists(st.one_of(st.integers(1, 40), st.just(HUGE)),
                                       min_size=1, max_size=3),
    st.one_of(st.integers(1, 1_000), st.just(HUGE)))
def test_any_field_values_are_checked_arithmetically(kinds: list[tuple[LayerKind, list[int]]],
                                                     shape: list[int], big: int) -> None:
    from ogpu_node.workloads.net import LAYER_ARGS
    layers = tuple(Layer(kind, tuple(args[:len(LAYER_ARGS[kind])])) for kind, args in kinds)
    spec = replace(CNN, layers=layers, input_shape=tuple(shape), steps=big, batch=big,
                   n_samples=big)
    try:
        check_limits(spec)
    except InvalidSpec:
        return
    assert needs(spec).work_units >= 1
