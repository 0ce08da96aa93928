"""Refusing at submission what nobody could run: every limit of `workloads.limits` at its edge,
through the ledger's submission check and the worker's own check, and a property: whatever the
ledger accepts, the worker accepts on a device of the protocol's largest memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ogpu_node.encoding import encode
from ogpu_node.ledger.errors import InvalidTaskSpec, TaskOverLimit
from ogpu_node.ledger.market.checks import task_terms
from ogpu_node.ledger.market.payloads import SubmitTask
from ogpu_node.ledger.market.records import Device, TaskStatus
from ogpu_node.workloads.limits import (
    LIMITS,
    MAX_DATASET_ELEMENTS,
    MAX_MEMORY_MB,
    CheckpointTooLarge,
    DatasetTooLarge,
    MemoryTooLarge,
    ResultTooLarge,
    SpecOverLimit,
    WorkTooLarge,
    check_runnable,
    limit_refusal,
    needs,
)
from ogpu_node.workloads.models import no_models
from ogpu_node.workloads.net import (
    LAYER_ARGS,
    Layer,
    LayerKind,
    LossKind,
    NetTrainSpec,
    Optimizer,
    OptimizerKind,
    Schedule,
)
from ogpu_node.workloads.spec import (
    MAX_MATMUL_N,
    MODELS,
    InferSpec,
    InvalidSpec,
    MatmulSpec,
    TrainSpec,
)
from tests.ledger.market_helpers import CLIENT, MARKET_PARAMS, MarketChain
from tests.ledger.profiles import examples

LARGEST_DEVICE = Device("the protocol's largest task fits", MAX_MEMORY_MB)


def train(**fields: int | tuple[int, ...]) -> TrainSpec:
    base: dict[str, Any] = {"seed": 1, "n_features": 8, "hidden": (8,), "n_classes": 2,
                            "n_samples": 64, "batch": 1, "steps": 1, "lr_micros": 1_000,
                            "checkpoint_every": 1}
    return TrainSpec(**{**base, **fields})


EDGES: dict[str, tuple[type[SpecOverLimit], Callable[[int], TrainSpec], int, int]] = {
    # limit: (its error, a family of specs growing with v, a v within, a v over)
    "dataset": (DatasetTooLarge, lambda v: train(n_features=1_023, n_samples=v),
                1, 1_000_000),
    "memory": (MemoryTooLarge, lambda v: train(hidden=(8_192,) * 4, n_samples=65_536, batch=v),
               1, 65_536),
    "work": (WorkTooLarge, lambda v: train(n_features=64, hidden=(2_048, 2_048), n_classes=1_024,
                                           n_samples=65_536, batch=65_536, steps=v,
                                           checkpoint_every=200), 200, 51_200),
    "checkpoint": (CheckpointTooLarge, lambda v: train(n_features=v, hidden=(8_192,) * 4),
                   1, 8_192),
    "result": (ResultTooLarge, lambda v: train(n_features=64, hidden=(4_096,), n_classes=4_096,
                                               steps=v), 1, 256),
}


def edge(name: str) -> tuple[TrainSpec, TrainSpec]:
    """The largest spec of the family within every limit, and the next one, found by bisection
    (each family grows monotonically in what its limit bounds)."""
    _, family, low, high = EDGES[name]
    assert limit_refusal(family(low)) is None and limit_refusal(family(high)) is not None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if limit_refusal(family(middle)) is None else (low, middle)
    return family(low), family(high)


def submission(spec: MatmulSpec | TrainSpec | InferSpec | NetTrainSpec) -> SubmitTask:
    return SubmitTask(spec.KIND, encode(spec), max_price=1, min_benchmark=0, exec_ms=20_000,
                      ttl_ms=200_000)


def test_every_limit_has_an_edge_test() -> None:
    assert sorted(error.__name__ for error, *_ in EDGES.values()) == sorted(
        limit.error.__name__ for limit in LIMITS)


@pytest.mark.parametrize("name", EDGES)
def test_a_spec_at_a_limit_is_accepted_and_one_past_it_refused(name: str) -> None:
    error = EDGES[name][0]
    limit = next(limit for limit in LIMITS if limit.error is error)
    within, over = edge(name)
    assert getattr(needs(within), limit.field) <= limit.maximum < getattr(needs(over), limit.field)
    # within: the ledger takes it, and the worker would run it on a device that large
    chain = MarketChain.start()
    task_id = chain.send(CLIENT, submission(within)).hash
    assert chain.task(task_id).status == TaskStatus.BIDDING
    check_runnable(within, LARGEST_DEVICE)
    # one step over: refused at submission, and by the worker, for that limit
    with pytest.raises(TaskOverLimit) as refused:
        chain.check(CLIENT, submission(over))
    assert refused.value.code == "over_limit"
    assert str(refused.value).startswith(f"{error.code}: ")
    with pytest.raises(error):
        check_runnable(over, LARGEST_DEVICE)


def test_the_dataset_limit_lets_the_largest_matmul_through() -> None:
    largest = MatmulSpec(n=MAX_MATMUL_N, seed=1)
    assert needs(largest).dataset_elements == MAX_DATASET_ELEMENTS
    task_terms(MARKET_PARAMS, submission(largest), no_models)
    check_runnable(largest, LARGEST_DEVICE)


def test_every_registered_model_serves_its_largest_batch() -> None:
    for model in MODELS:
        spec = InferSpec(model, seed=1, batch=65_536)
        task_terms(MARKET_PARAMS, submission(spec), no_models)
        check_runnable(spec, LARGEST_DEVICE)


def sizes(top: int) -> st.SearchStrategy[int]:
    """1..top, often near either end (where limits bite)."""
    return st.one_of(st.integers(1, top), st.integers(max(1, top - top // 8), top),
                     st.integers(1, 64))


@st.composite
def train_specs(draw: st.DrawFn) -> TrainSpec:
    """Training specs mostly within their own fields (so that the limits are what decides),
    sometimes not."""
    samples = draw(sizes(1_000_000))
    steps = draw(st.one_of(sizes(51_200), sizes(1_000_000)))  # 256 checkpoints of 200 steps
    every = draw(st.one_of(st.integers(min(200, max(1, -(-steps // 256))), 200), sizes(200)))
    return TrainSpec(seed=draw(st.integers(0, 2**64 - 1)), n_features=draw(sizes(8_192)),
                     hidden=tuple(draw(st.lists(sizes(8_192), max_size=4))),
                     n_classes=draw(st.integers(2, 8_192)),
                     n_samples=samples, batch=draw(st.one_of(sizes(min(samples, 65_536)),
                                                             sizes(65_536))),
                     steps=steps, lr_micros=draw(sizes(10_000_000)), checkpoint_every=every)


@st.composite
def net_specs(draw: st.DrawFn) -> NetTrainSpec:
    """Networks of random layers (most of them impossible: their refusal is what is checked),
    with sizes near the limits."""
    random_layers = tuple(Layer(kind, tuple(draw(sizes(4_096)) for _ in LAYER_ARGS[kind]))
                          for kind in draw(st.lists(st.sampled_from(list(LayerKind)),
                                                    min_size=1, max_size=8)))
    cnn = (Layer(LayerKind.CONV2D, (draw(sizes(4_096)), 3, 1, 1)), Layer(LayerKind.RELU),
           Layer(LayerKind.MAX_POOL, (2, 2)), Layer(LayerKind.FLATTEN),
           Layer(LayerKind.DENSE, (draw(st.integers(2, 8_192)),)))
    layers = draw(st.sampled_from([random_layers, cnn]))
    rank = (3,) if layers is cnn else (1, 2, 3)
    shape = tuple(draw(st.integers(2, 64)) for _ in range(draw(st.sampled_from(rank))))
    samples = draw(sizes(1_000_000))
    steps = draw(sizes(51_200))
    return NetTrainSpec(
        seed=draw(st.integers(0, 2**64 - 1)),
        input_shape=shape,
        layers=layers, loss=draw(st.sampled_from(list(LossKind))),
        optimizer=Optimizer(draw(st.sampled_from(list(OptimizerKind))), draw(sizes(10**7))),
        schedule=Schedule(), n_samples=samples, val_bps=draw(sizes(5_000)),
        batch=draw(sizes(65_536)), steps=steps, checkpoint_every=min(steps, 200),
        inputs=b"\x01" * 32)


SPECS = st.one_of(
    net_specs(),
    st.builds(MatmulSpec, n=sizes(MAX_MATMUL_N + 1), seed=st.integers(0, 2**64 - 1)),
    train_specs(), train_specs(),
    st.builds(InferSpec, model=st.sampled_from(sorted(MODELS)), seed=st.integers(0, 2**64 - 1),
              batch=sizes(65_536)),
)


@settings(max_examples=examples(300, 5_000))
@given(SPECS)
def test_whatever_the_ledger_accepts_the_worker_accepts(
        spec: MatmulSpec | TrainSpec | InferSpec | NetTrainSpec) -> None:
    try:
        task_terms(MARKET_PARAMS, submission(spec), no_models)
    except TaskOverLimit as exc:  # over a limit: the worker refuses it for the same one
        with pytest.raises(SpecOverLimit) as caught:
            check_runnable(spec, LARGEST_DEVICE)
        assert str(exc).startswith(f"{caught.value.code}: ")
        event(f"over a limit: {caught.value.code}")
        return
    except InvalidTaskSpec:  # outside its own fields: the worker refuses it as well
        with pytest.raises(InvalidSpec):
            check_runnable(spec, LARGEST_DEVICE)
        event("invalid")
        return
    check_runnable(spec, LARGEST_DEVICE)
    event(f"accepted {type(spec).__name__}")

