"""Hostile payloads: structurally valid transactions of every kind, with integers at the edges and
lists at their caps, through mempool admission, block building and `apply_block`.

A funded account can sign anything, so whatever it sends may reach every node: each step must
answer with a typed rejection (never a contained `UnexpectedFailure`, which would be a bug caught
only by the containment) and must stay bounded in time and memory. Found this way: a training
spec with `steps = 2**40` and `checkpoint_every = 1` once listed 2**40 checkpoints in the spec
check and stopped every validator of a devnet with `MemoryError`.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogpu_node.encoding import pack
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Block, State, apply_block
from ogpu_node.ledger.block import BlockHeader, compute_tx_root, sign_header
from ogpu_node.ledger.builder import select_transactions
from ogpu_node.ledger.equivocation import ReportEquivocation
from ogpu_node.ledger.errors import InvalidBlock, InvalidTransaction, UnexpectedFailure
from ogpu_node.ledger.governance.bounds import GOVERNABLE, MAX_CHANGES, MAX_PARAM_NAME_LEN
from ogpu_node.ledger.governance.records import VoteOption
from ogpu_node.ledger.market.payloads import MAX_SALT, OpenPool, RegisterModel, SubmitTask
from ogpu_node.ledger.market.records import MAX_DEVICES, Device, ReturnReason, TaskResult
from ogpu_node.ledger.tx import PAYLOAD_TYPES, SIGN_KIND_TX, Transaction, TxKind
from ogpu_node.node.mempool import Mempool
from ogpu_node.types import HASH_LEN, Amount, Hash32, ogpu
from ogpu_node.workloads.models import (
    MAX_RANK,
    MAX_TENSORS,
    ElemType,
    ModelInferSpec,
    ModelInfo,
    TensorInfo,
)
from ogpu_node.workloads.spec import (
    MAX_CHECKPOINTS,
    MAX_LAYERS,
    MODELS,
    InferSpec,
    MatmulSpec,
    TrainSpec,
)
from tests.ledger.helpers import CHAIN_ID, FEE, KEYS, next_block
from tests.ledger.market_helpers import (
    CLIENT,
    DIGITS_MODEL,
    MATMUL,
    PROVIDER_A,
    PROVIDER_B,
    MarketChain,
)
from tests.ledger.profiles import examples

EDGE_INTS = (0, 1, 2, 2**32, 2**40, 2**63 - 1, 2**64 - 1)
DAY_MS = 24 * 3600 * 1000


def uints() -> st.SearchStrategy[int]:
    """Unsigned 64-bit integers, mostly at the edges that break arithmetic."""
    return st.one_of(st.sampled_from(EDGE_INTS), st.integers(0, 300), st.integers(0, 2**64 - 1))


def capped_lists(element: st.SearchStrategy[Any], cap: int) -> st.SearchStrategy[list[Any]]:
    """Lists empty, of one, at their cap, or one past it."""
    return st.sampled_from((0, 1, cap, cap + 1)).flatmap(
        lambda n: st.lists(element, min_size=n, max_size=n))


def texts(cap: int = 64) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(sorted(MODELS)), st.text(max_size=cap),
                     st.just("x" * cap), st.just("é" * cap))


def input_ids() -> st.SearchStrategy[bytes]:
    return st.sampled_from((b"", bytes(HASH_LEN), b"\1" * HASH_LEN))


SPECS: dict[type[Any], st.SearchStrategy[Any]] = {
    MatmulSpec: st.builds(MatmulSpec, n=uints(), seed=uints(), inputs=input_ids()),
    TrainSpec: st.builds(
        TrainSpec, seed=uints(), n_features=uints(),
        hidden=capped_lists(uints(), MAX_LAYERS).map(tuple), n_classes=uints(),
        n_samples=uints(), batch=uints(), steps=uints(), lr_micros=uints(),
        checkpoint_every=uints(), inputs=input_ids()),
    InferSpec: st.builds(InferSpec, model=texts(40), seed=uints(), batch=uints(),
                         inputs=input_ids()),
    ModelInferSpec: st.builds(ModelInferSpec, model=st.deferred(lambda: hashes()),  # noqa: PLW0108
                              batch=uints(), inputs=input_ids()),
}


def tensor_infos() -> st.SearchStrategy[TensorInfo]:
    return st.builds(TensorInfo, name=texts(80), elem=st.sampled_from(list(ElemType)),
                     shape=capped_lists(uints(), MAX_RANK).map(tuple))


def model_infos() -> st.SearchStrategy[ModelInfo]:
    """Claims of any size: caps, empty lists, dimensions and costs at the edges."""
    tensors = capped_lists(tensor_infos(), MAX_TENSORS).map(tuple)
    return st.one_of(st.just(DIGITS_MODEL), st.builds(
        ModelInfo, file_bytes=uints(), opset=st.one_of(uints(), st.integers(10, 25)),
        inputs=tensors, outputs=tensors, flops_per_row=uints(), weight_bytes=uints(),
        activation_bytes_per_row=uints()))


@st.composite
def submit_tasks(draw: st.DrawFn) -> SubmitTask:
    spec_type = draw(st.sampled_from(sorted(SPECS, key=lambda t: t.KIND)))
    kind = draw(st.sampled_from((*[int(spec_type.KIND)] * 6, 0, 4, 0xFFFF)))
    spec = draw(SPECS[spec_type])
    return SubmitTask(kind, pack(spec.to_fields()), draw(uints()), draw(uints()),
                      draw(st.one_of(uints(), st.integers(1, 40_000))),
                      draw(st.one_of(uints(), st.integers(1, 40 * DAY_MS))))


@cache
def market() -> tuple[State, dict[str, Hash32]]:
    """A chain with two providers, a task in its bid window, one running at PROVIDER_A and an
    open pool: ids that hostile payloads can name, so that they reach the rules behind the
    lookups."""
    chain = MarketChain.start()
    chain.register(PROVIDER_A)
    chain.register(PROVIDER_B)
    running = chain.submit(MATMUL, exec_ms=DAY_MS, ttl_ms=2 * DAY_MS)
    chain.auction(running, {1: 10})
    task_id = chain.submit(MATMUL)
    pool_id = chain.send(CLIENT, OpenPool("mlp-small", 64, ogpu(1), ogpu(100), 2, 5_000, 1,
                                          10_000, DAY_MS)).hash
    model_id = chain.send(CLIENT, RegisterModel("digits", Hash32(bytes(HASH_LEN)),
                                                DIGITS_MODEL)).hash
    assert chain.state.models[model_id].info == DIGITS_MODEL
    return chain.state, {"task": task_id, "running": running, "pool": pool_id,
                         "model": model_id}


def hashes() -> st.SearchStrategy[Hash32]:
    _, ids = market()
    return st.one_of(st.sampled_from(sorted(ids.values())),
                     st.binary(min_size=HASH_LEN, max_size=HASH_LEN)).map(Hash32)


def field_strategy(payload_type: type[Any], field: dataclasses.Field[Any]) -> Any:
    """A strategy for one payload field, by its declared type."""
    annotation = str(field.type)
    if annotation.startswith("Annotated["):  # a `Record` field: its type, without its codec
        annotation = annotation.removeprefix("Annotated[").rsplit(", ", 1)[0]
    if annotation in ("int", "Amount"):
        return uints()
    if annotation == "Hash32":
        return hashes()
    if annotation == "Address":
        return st.sampled_from([k.address for k in KEYS])
    if annotation == "bool":
        return st.booleans()
    if annotation == "ReturnReason":  # in the table, or any integer (refused when decoded)
        return st.one_of(st.sampled_from(list(ReturnReason)), uints())
    if annotation == "str":
        return texts(300)
    if annotation == "bytes":
        return st.binary(max_size=MAX_SALT + 1)
    if annotation == "tuple[Device, ...]":
        device = st.builds(Device, model=texts(80), memory_mb=uints())
        return capped_lists(device, MAX_DEVICES).map(tuple)
    if annotation == "tuple[Change, ...]":  # governance: known names, or any text
        names = st.one_of(st.sampled_from(sorted(GOVERNABLE)), texts(MAX_PARAM_NAME_LEN + 1))
        return capped_lists(st.tuples(names, uints()), MAX_CHANGES).map(tuple)
    if annotation == "VoteOption":  # in the enum, or any integer (refused when decoded)
        return st.one_of(st.sampled_from(list(VoteOption)), uints())
    if annotation == "ModelInfo":
        return model_infos()
    if annotation == "TaskResult":
        ids = capped_lists(hashes(), MAX_CHECKPOINTS).map(tuple)
        metrics = capped_lists(st.tuples(texts(40), uints()), 16).map(tuple)
        return st.builds(TaskResult, output_id=hashes(), checkpoint_root=hashes(),
                         checkpoint_ids=ids, metrics=metrics, key_commitment=hashes())
    raise AssertionError(f"no strategy for {payload_type.__name__}.{field.name}: {annotation}")


@st.composite
def equivocation_reports(draw: st.DrawFn) -> ReportEquivocation:
    """Two headers at the edges and their parent, signed by a validator of the chain or not
    signed at all: the signatures and the parent link are what the cheap checks test last."""
    state, _ = market()
    parent = BlockHeader(
        chain_id=CHAIN_ID, height=draw(st.sampled_from((state.height, *EDGE_INTS))),
        parent_hash=draw(hashes()), timestamp=draw(st.one_of(uints(), st.just(state.timestamp))),
        proposer=KEYS[0].address, tx_root=draw(hashes()), state_root=draw(hashes()))
    signer = draw(st.sampled_from(KEYS[:2]))

    def header() -> BlockHeader:
        return BlockHeader(
            chain_id=draw(st.sampled_from((CHAIN_ID, "other"))),
            height=draw(st.one_of(st.just(min(parent.height + 1, 2**64 - 1)), uints())),
            parent_hash=draw(st.one_of(st.just(parent.hash), hashes())),
            timestamp=draw(st.one_of(st.just(min(parent.timestamp + 1, 2**64 - 1)), uints())),
            proposer=signer.address, tx_root=draw(hashes()), state_root=draw(hashes()))

    def signature(h: BlockHeader) -> bytes:
        return draw(st.one_of(st.just(sign_header(signer, h)), st.binary(min_size=64,
                                                                           max_size=64)))

    first, second = header(), header()
    return ReportEquivocation(first, signature(first), second, signature(second), parent)


def payloads(kind: int) -> st.SearchStrategy[Any]:
    payload_type = PAYLOAD_TYPES[kind]
    if payload_type is SubmitTask:
        return submit_tasks()
    if payload_type is ReportEquivocation:
        return equivocation_reports()
    assert dataclasses.is_dataclass(payload_type)
    fields = {f.name: field_strategy(payload_type, f) for f in dataclasses.fields(payload_type)}
    return st.builds(payload_type, **fields)


def sign_raw(key: PrivateKey, nonce: int, fee: int, kind: int, payload: bytes) -> Transaction:
    """A transaction of any payload bytes (no size check: oversize ones are part of the test)."""
    unsigned = Transaction(CHAIN_ID, key.public_key.raw, nonce, Amount(fee), kind, payload,
                           bytes(64))
    signature = key.sign(CHAIN_ID, SIGN_KIND_TX, unsigned.signing_bytes)
    return dataclasses.replace(unsigned, signature=signature)


def assert_typed(error: BaseException) -> None:
    """A rejection a hostile input may cause: typed, and not a contained bug."""
    assert isinstance(error, InvalidTransaction | InvalidBlock), repr(error)
    assert not isinstance(error, UnexpectedFailure), f"a bug was contained: {error!r}"
    assert not isinstance(error.__cause__, UnexpectedFailure), f"contained: {error.__cause__!r}"
    assert "unexpected" not in str(error), str(error)


def block_of(state: State, txs: list[Transaction], timestamp: int) -> Block:
    """A block holding `txs` whatever they are, validly signed by a validator (its state root
    is left blank: `apply_block` must refuse or accept on the transactions themselves first)."""
    key = KEYS[0]
    header = BlockHeader(chain_id=state.chain_id, height=state.height + 1,
                         parent_hash=state.block_hash, timestamp=timestamp, proposer=key.address,
                         tx_root=compute_tx_root(txs), state_root=Hash32(bytes(HASH_LEN)))
    return Block(header, sign_header(key, header), tuple(txs))


KINDS = sorted(PAYLOAD_TYPES)


@pytest.mark.parametrize("kind", KINDS, ids=[TxKind(k).name.lower() for k in KINDS])
@settings(max_examples=examples(40, 400))
@given(data=st.data())
def test_hostile_payloads_get_typed_rejections_everywhere(kind: int, data: st.DataObject
                                                          ) -> None:
    state, _ = market()
    sender = data.draw(st.sampled_from([CLIENT, PROVIDER_A, KEYS[0]]))
    payload = data.draw(payloads(kind))
    fee = data.draw(st.one_of(st.just(FEE), uints()))
    tx = sign_raw(sender, state.account(sender.address).nonce, fee, kind,
                  pack(payload.to_fields()))

    try:
        Mempool().add(tx, state)
    except Exception as exc:
        assert_typed(exc)

    timestamp = state.timestamp + 1_000
    selected, rejected = select_transactions(state, [tx], KEYS[0].address, timestamp)
    for _, error in rejected:
        assert_typed(error)

    try:
        after = apply_block(state, block_of(state, [tx], timestamp))
    except InvalidBlock as exc:
        assert_typed(exc)
        if selected:  # a transaction the builder took fails only on the blank state root
            assert "state root" in str(exc)
        return
    raise AssertionError(f"a block with a blank state root was accepted: {after.root.hex()}")


@pytest.mark.parametrize("kind", KINDS, ids=[TxKind(k).name.lower() for k in KINDS])
@settings(max_examples=examples(10, 100))
@given(data=st.data())
def test_whatever_a_block_takes_survives_every_later_deadline(kind: int, data: st.DataObject
                                                              ) -> None:
    """A transaction that applies leaves records that later blocks can still process: its
    deadlines, however far, pass without error (one block a year on)."""
    state, _ = market()
    sender = data.draw(st.sampled_from([CLIENT, PROVIDER_A]))
    tx = sign_raw(sender, state.account(sender.address).nonce, FEE, kind,
                  pack(data.draw(payloads(kind)).to_fields()))
    timestamp = state.timestamp + 1_000
    selected, _ = select_transactions(state, [tx], KEYS[0].address, timestamp)
    if not selected:
        return
    block, after = next_block(state, selected, timestamp=timestamp)
    assert apply_block(state, block).root == after.root
    later, _ = next_block(after, timestamp=timestamp + 365 * DAY_MS)
    apply_block(after, later)


def test_the_training_spec_that_stopped_a_devnet_is_refused_at_admission() -> None:
    state, _ = market()
    spec = TrainSpec(seed=1, n_features=8, hidden=(8,), n_classes=2, n_samples=64, batch=8,
                     steps=2**40, lr_micros=1_000, checkpoint_every=1)
    for steps in (2**40, 2**64 - 1):
        spec = dataclasses.replace(spec, steps=steps)
        payload = SubmitTask(int(spec.KIND), pack(spec.to_fields()), 1, 0, 20_000, 200_000)
        tx = sign_raw(CLIENT, state.account(CLIENT.address).nonce, FEE, TxKind.SUBMIT_TASK,
                      pack(payload.to_fields()))
        with pytest.raises(InvalidTransaction) as caught:
            Mempool().add(tx, state)
        assert caught.value.code == "invalid_spec"
        assert "steps must be within" in str(caught.value)
    assert spec.checkpoint_count == 2**64 - 1  # counted, not listed


def test_a_task_whose_escrow_the_sender_cannot_pay_is_refused_at_admission() -> None:
    state, _ = market()
    balance = state.account(CLIENT.address).balance
    # 3 work units at a price that makes the escrow just exceed the balance
    price = balance // 3 + 1
    payload = SubmitTask(int(MATMUL.KIND), pack(MATMUL.to_fields()), price, 0, 20_000, 200_000)
    tx = sign_raw(CLIENT, state.account(CLIENT.address).nonce, FEE, TxKind.SUBMIT_TASK,
                  pack(payload.to_fields()))
    with pytest.raises(InvalidTransaction) as caught:
        Mempool().add(tx, state)
    assert caught.value.code == "insufficient_funds"


def test_a_senders_pending_escrows_count_together() -> None:
    """Two tasks each affordable alone but not together: the second waits for nothing, it is
    refused at admission (geth counts an account's pending cost the same way)."""
    state, _ = market()
    balance = state.account(CLIENT.address).balance
    price = balance // 6  # each task escrows a bit over half the balance (3 units + 12%)
    pool = Mempool()
    nonce = state.account(CLIENT.address).nonce
    payload = SubmitTask(int(MATMUL.KIND), pack(MATMUL.to_fields()), price, 0, 20_000, 200_000)
    pool.add(sign_raw(CLIENT, nonce, FEE, TxKind.SUBMIT_TASK, pack(payload.to_fields())), state)
    second = sign_raw(CLIENT, nonce + 1, FEE, TxKind.SUBMIT_TASK, pack(payload.to_fields()))
    with pytest.raises(InvalidTransaction) as caught:
        pool.add(second, state)
    assert caught.value.code == "insufficient_funds"
    assert "pending transactions need" in str(caught.value)
    # replacing the first with a cheaper one (higher fee) frees what it held
    cheap = SubmitTask(int(MATMUL.KIND), pack(MATMUL.to_fields()), 1, 0, 20_000, 200_000)
    pool.add(sign_raw(CLIENT, nonce, FEE * 2, TxKind.SUBMIT_TASK, pack(cheap.to_fields())),
             state)
    pool.add(second, state)
    assert len(pool) == 2
