"""The model registry: registering a model, and pricing tasks on it by its registered info."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ogpu_node.encoding import encode
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Transfer, apply_tx
from ogpu_node.ledger.errors import (
    InsufficientFunds,
    InvalidModel,
    InvalidTaskSpec,
    NotPermitted,
    TaskOverLimit,
)
from ogpu_node.ledger.market.payloads import (
    CommitBid,
    JoinPool,
    OpenPool,
    RegisterModel,
    RegisterProvider,
    SendRequest,
    SubmitTask,
)
from ogpu_node.ledger.market.pools import request_spec
from ogpu_node.ledger.market.records import Device
from ogpu_node.node.mempool import Mempool, MempoolLimits
from ogpu_node.types import Amount, Hash32, ogpu
from ogpu_node.workloads.limits import memory_needed_mb
from ogpu_node.workloads.models import ElemType, ModelInferSpec, TensorInfo
from ogpu_node.workloads.spec import FLOPS_PER_UNIT, WorkloadKind
from tests.ledger.helpers import FEE, KEYS
from tests.ledger.market_helpers import CLIENT, DIGITS_MODEL, GPU, PROVIDER_A, MarketChain

FILE = Hash32(b"\x4d" * 32)
INPUTS = Hash32(b"\x1e" * 32)


def infer_task(model: Hash32, batch: int, max_price: int = 1_000) -> SubmitTask:
    spec = ModelInferSpec(model, batch, INPUTS)
    return SubmitTask(WorkloadKind.MODEL_INFER, encode(spec), max_price, 0, 10_000, 10**6)


def test_a_registration_records_the_model_and_burns_the_fee(chain: MarketChain) -> None:
    before = chain.state
    tx = chain.send(CLIENT, RegisterModel("digits-cnn", FILE, DIGITS_MODEL))
    model = chain.state.models[tx.hash]
    assert (model.owner, model.name, model.file_id, model.info) == (
        CLIENT.address, "digits-cnn", FILE, DIGITS_MODEL)
    assert model.registered_ms == chain.state.timestamp
    fee = chain.state.params.model_registration_fee
    assert chain.state.account(CLIENT.address).balance == (
        before.account(CLIENT.address).balance - fee - tx.fee)
    assert chain.state.burned - before.burned >= fee
    assert chain.state.total_held() == chain.state.issued - chain.state.burned


def test_a_task_on_a_registered_model_is_priced_by_its_flops(chain: MarketChain) -> None:
    model_id = chain.send(CLIENT, RegisterModel("digits-cnn", FILE, DIGITS_MODEL)).hash
    big = replace(DIGITS_MODEL, flops_per_row=3 * FLOPS_PER_UNIT)
    big_id = chain.send(CLIENT, RegisterModel("big", FILE, big)).hash
    small_task = chain.send(CLIENT, infer_task(model_id, 360)).hash
    big_task = chain.send(CLIENT, infer_task(big_id, 360)).hash
    assert chain.task(small_task).work_units == 1  # 360 rows x 98,560 flops: under 1 GFLOP
    assert chain.task(big_task).work_units == 3 * 360
    assert chain.task(big_task).budget == 1_000 * 3 * 360


def test_tasks_on_unknown_models_are_refused_by_the_mempool_and_the_rules(
        chain: MarketChain) -> None:
    unknown = chain.tx(CLIENT, infer_task(Hash32(b"\x99" * 32), 10))
    with pytest.raises(InvalidTaskSpec, match="unknown model"):
        apply_tx(chain.state, unknown, KEYS[0].address)
    mempool = Mempool(MempoolLimits())
    with pytest.raises(InvalidTaskSpec, match="unknown model"):
        mempool.add(unknown, chain.state)
    model_id = chain.send(CLIENT, RegisterModel("digits-cnn", FILE, DIGITS_MODEL)).hash
    known = chain.tx(CLIENT, infer_task(model_id, 10))
    mempool.add(known, chain.state)  # the mempool prices it from the head state's registry
    assert known.hash in mempool


@pytest.mark.parametrize(("claim", "reason"), [
    (replace(DIGITS_MODEL, opset=7), "opset"),
    (replace(DIGITS_MODEL, file_bytes=0), "file"),
    (replace(DIGITS_MODEL, inputs=()), "at least one input"),
    (replace(DIGITS_MODEL, outputs=(TensorInfo("y", ElemType.FLOAT, (0,)),)), "dimension"),
    (replace(DIGITS_MODEL, outputs=(TensorInfo("y", ElemType.FLOAT, (2**12, 2**12, 2)),)),
     "elements per row"),
    (replace(DIGITS_MODEL, flops_per_row=0), "flops_per_row"),
    (replace(DIGITS_MODEL, inputs=(TensorInfo("a b", ElemType.FLOAT, (4,)),)), "names must"),
])
def test_a_claim_outside_the_limits_is_refused_with_its_reason(
        chain: MarketChain, claim: object, reason: str) -> None:
    tx = chain.tx(CLIENT, RegisterModel("m", FILE, claim))  # type: ignore[arg-type]
    with pytest.raises(InvalidModel, match=reason):
        apply_tx(chain.state, tx, KEYS[0].address)


def test_a_registration_needs_a_name_and_the_fee(chain: MarketChain) -> None:
    with pytest.raises(InvalidModel, match="name"):
        apply_tx(chain.state, chain.tx(CLIENT, RegisterModel("", FILE, DIGITS_MODEL)),
                 KEYS[0].address)
    poor = PrivateKey.from_seed(b"\x70" * 32)
    chain.send(CLIENT, Transfer(poor.address, Amount(10 * FEE)))  # the tx fee, not the model fee
    with pytest.raises(InsufficientFunds, match="registration fee"):
        apply_tx(chain.state, chain.tx(poor, RegisterModel("m", FILE, DIGITS_MODEL)),
                 KEYS[0].address)


def test_a_task_needs_the_memory_its_model_needs_and_small_devices_cannot_bid(
        chain: MarketChain) -> None:
    # 4 MiB of intermediate tensors per row, 1,024 rows at a time: about 6 GB with the margin
    hungry = replace(DIGITS_MODEL, activation_bytes_per_row=4 * 2**20)
    small = PrivateKey.from_seed(b"\x71" * 32)
    chain.send(CLIENT, Transfer(small.address, Amount(ogpu(1_000))))
    chain.send(small, RegisterProvider((Device("small", 4_000),), 1_000, 1, ogpu(500)))
    model_id = chain.send(CLIENT, RegisterModel("hungry", FILE, hungry)).hash
    task_id = chain.send(CLIENT, infer_task(model_id, 4_096)).hash
    task = chain.task(task_id)
    assert task.memory_mb == memory_needed_mb(ModelInferSpec(model_id, 4_096, INPUTS, hungry))
    assert 4_000 < task.memory_mb < GPU[0].memory_mb
    with pytest.raises(NotPermitted, match="device_too_small"):
        chain.check(small, CommitBid(task_id, Hash32(bytes(32))))
    chain.bid(PROVIDER_A, task_id, 1)  # 16 GB: enough


def model_pool(model_id: Hash32, max_batch: int = 64) -> OpenPool:
    return OpenPool("", max_batch, ogpu(1), ogpu(100), 2, 0, ogpu(100), 10_000, 600_000,
                    model_id=model_id)


def test_a_pool_serves_a_registered_model_on_uploaded_inputs(chain: MarketChain) -> None:
    model_id = chain.send(CLIENT, RegisterModel("digits-cnn", FILE, DIGITS_MODEL)).hash
    pool_id = chain.send(CLIENT, model_pool(model_id)).hash
    pool = chain.state.pools[pool_id]
    assert (pool.model, pool.model_id) == ("", model_id)
    chain.send(PROVIDER_A, JoinPool(pool_id, ogpu(100)))
    with pytest.raises(InvalidTaskSpec, match="uploaded inputs"):
        chain.check(CLIENT, SendRequest(pool_id, 0, 10))
    request_id = chain.send(CLIENT, SendRequest(pool_id, 0, 10, INPUTS)).hash
    builtin = chain.send(CLIENT, OpenPool("mlp-small", 64, ogpu(1), ogpu(100), 2, 0, ogpu(100),
                                          10_000, 600_000)).hash
    chain.send(PROVIDER_A, JoinPool(builtin, ogpu(100)))
    with pytest.raises(InvalidTaskSpec, match="seed"):
        chain.check(CLIENT, SendRequest(builtin, 0, 10, INPUTS))
    request = chain.state.pools[pool_id].request(request_id)
    assert request is not None and request.inputs == INPUTS
    spec = request_spec(chain.state.pools[pool_id], request, chain.state.model_info)
    assert spec == ModelInferSpec(model_id, 10, INPUTS, DIGITS_MODEL)


def test_a_pool_on_an_unknown_or_oversized_model_is_refused(chain: MarketChain) -> None:
    with pytest.raises(InvalidTaskSpec, match="unknown model"):
        chain.check(CLIENT, model_pool(Hash32(b"\x98" * 32)))
    huge = replace(DIGITS_MODEL, activation_bytes_per_row=2**30)  # 1 GiB a row
    model_id = chain.send(CLIENT, RegisterModel("huge", FILE, huge)).hash
    with pytest.raises(TaskOverLimit, match="memory_too_large"):
        chain.check(CLIENT, model_pool(model_id, max_batch=64))
    chain.send(CLIENT, model_pool(model_id, max_batch=8))  # 8 GiB with the margin: fits
