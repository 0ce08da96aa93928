"""Pinned protocol vectors: golden bytes and hashes that every node must compute identically.

A round-trip test passes when two fields swap places; these do not. `vectors.json` (beside this
file) pins the encoding and id of a transaction of every kind, a block, the devnet genesis hash
and the state roots of a short chain. Any change to them is a change of protocol: old blocks and
signatures stop verifying and nodes of two versions fork. When one is intended, regenerate with

    python -m tests.ledger.test_vectors --write

and say so in the commit message. A new transaction kind (or workload kind) adds one entry to
`TX_CASES`, then regenerates.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from ogpu_node.address import address_to_text
from ogpu_node.encoding import decode, encode
from ogpu_node.genesis import Genesis, GenesisValidator, build_genesis, load_template
from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Block, Params, State, Transaction, apply_block, build_block
from ogpu_node.ledger.equivocation import ReportEquivocation
from ogpu_node.ledger.governance.records import ProposalStatus, Propose, Vote, VoteOption
from ogpu_node.ledger.header import BlockHeader, sign_header
from ogpu_node.ledger.market.auction import bid_commitment
from ogpu_node.ledger.market.payloads import (
    CancelTask,
    ClosePool,
    CommitBid,
    CommitResult,
    DisputeAnswer,
    JoinPool,
    LeavePool,
    OpenPool,
    PoolResult,
    RegisterModel,
    RegisterProvider,
    ReleaseResult,
    ReportMissingInputs,
    ReturnTask,
    RevealBid,
    RevealVerdict,
    SealVerdict,
    SendRequest,
    SubmitTask,
    TopUpPool,
    WithdrawProvider,
)
from ogpu_node.ledger.market.records import Device, ReturnReason, TaskResult
from ogpu_node.ledger.tx import (
    PAYLOAD_TYPES,
    Payload,
    Stake,
    Transfer,
    TxKind,
    Unstake,
    check_transaction,
    decode_transaction,
    sign_transaction,
)
from ogpu_node.types import Amount, Hash32, ogpu, parse_amount
from ogpu_node.workloads.kinds import SPEC_TYPES, WorkloadSpec
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.net import (
    FLATTEN,
    RELU,
    LossKind,
    NetTrainSpec,
    Optimizer,
    OptimizerKind,
    Schedule,
    ScheduleKind,
    conv2d,
    dense,
    dropout,
    max_pool,
)
from ogpu_node.workloads.spec import InferSpec, MatmulSpec, TrainSpec
from tests.ledger.market_helpers import DIGITS_MODEL

VECTORS_FILE = Path(__file__).with_name("vectors.json")
REGENERATE = "python -m tests.ledger.test_vectors --write"
HEADER = (f"Pinned protocol vectors, written by `{REGENERATE}`: never edit by hand. "
          "See docs/architecture.md (Encoding and hashing).")

CHAIN_ID = "ogpu-vectors"
PARAMS = Params(epoch_length=3, unbonding_period=2, min_validator_stake=ogpu(10),
                provider_min_stake=ogpu(100))
GENESIS_TIME_MS = 1_764_000_000_000
BLOCK_INTERVAL_MS = 1_000


def vector_key(i: int) -> PrivateKey:
    """The i-th key of the vectors: its own seeds, so that no other test's keys can move them."""
    return PrivateKey.from_seed(digest(b"ogpu/vector-key", i.to_bytes(4, "big")))


KEYS = [vector_key(i) for i in range(4)]


def stand_in_id(name: str) -> Hash32:
    """A fixed 32-byte id (task, pool, request, file) for payloads that only carry one."""
    return digest(b"ogpu/vector-id", name.encode())


# --- one transaction of every kind ---------------------------------------------------------------

TX_SENDER = KEYS[1]
TX_NONCE = 7
TX_FEE = 2_500
TASK = stand_in_id("task")
POOL = stand_in_id("pool")
REQUEST = stand_in_id("request")


def equivocation_report() -> ReportEquivocation:
    """KEYS[0] signing two blocks for one slot on one parent (the parent header proves its
    timestamp by its hash)."""
    parent = BlockHeader(CHAIN_ID, 41, stand_in_id("grandparent"), GENESIS_TIME_MS + 41_000,
                         KEYS[2].address, stand_in_id("parent txs"), stand_in_id("parent root"))
    first, second = (BlockHeader(CHAIN_ID, 42, parent.hash, parent.timestamp + 200 + i,
                                 KEYS[0].address, stand_in_id(f"txs {i}"),
                                 stand_in_id(f"root {i}")) for i in (0, 1))
    return ReportEquivocation(first, sign_header(KEYS[0], first), second,
                              sign_header(KEYS[0], second), parent)


MODELS = {stand_in_id("model"): DIGITS_MODEL}
"""The registered model the model-inference vector runs."""


def submit(spec: WorkloadSpec, max_price: int) -> SubmitTask:
    return SubmitTask(spec.KIND, encode(spec), max_price, min_benchmark=2_000, exec_ms=45_000,
                      ttl_ms=900_000)


TX_CASES: dict[str, Payload] = {
    "transfer": Transfer(KEYS[2].address, Amount(ogpu(12) + 345)),
    "stake": Stake(Amount(ogpu(10_000))),
    "unstake": Unstake(Amount(ogpu(250))),
    "register_provider": RegisterProvider(
        (Device("NVIDIA H200", 143_771), Device("NVIDIA GeForce RTX 4090", 24_564)),
        benchmark=51_200, price_floor=3, stake=ogpu(500)),
    "withdraw_provider": WithdrawProvider(ogpu(50)),
    "submit_task_matmul": submit(MatmulSpec(n=2_048, seed=42), max_price=ogpu(1)),
    "submit_task_train": submit(TrainSpec(
        seed=3, n_features=16, hidden=(32, 24), n_classes=4, n_samples=256, batch=32, steps=40,
        lr_micros=50_000, checkpoint_every=10), max_price=7_500),
    "submit_task_infer": submit(InferSpec("mlp-small", seed=5, batch=128), max_price=900),
    "submit_task_model_infer": submit(ModelInferSpec(
        stand_in_id("model"), batch=360, inputs=stand_in_id("model inputs")), max_price=2_000),
    "submit_task_train_net": submit(NetTrainSpec(
        seed=9, input_shape=(1, 8, 8),
        layers=(conv2d(16, 3, padding=1), RELU, max_pool(2), dropout(500), FLATTEN, dense(10)),
        loss=LossKind.CROSS_ENTROPY,
        optimizer=Optimizer(OptimizerKind.ADAMW, lr_micros=3_000, beta1_micros=900_000,
                            beta2_micros=999_000, weight_decay_micros=10_000),
        schedule=Schedule(ScheduleKind.COSINE, warmup_steps=20, floor_micros=300),
        n_samples=1_797, val_bps=2_000, batch=32, steps=300, checkpoint_every=50,
        inputs=stand_in_id("digits"), init=stand_in_id("weights")), max_price=40),
    "submit_task_matmul_inputs": submit(
        MatmulSpec(n=512, seed=0, inputs=stand_in_id("inputs")), max_price=1_000),
    "commit_bid": CommitBid(TASK, bid_commitment(TASK, 2, TX_SENDER.address, 17, b"salt-1")),
    "reveal_bid": RevealBid(TASK, 17, b"salt-1"),
    "commit_result": CommitResult(TASK, TaskResult(
        stand_in_id("output"), stand_in_id("checkpoint-root"),
        (stand_in_id("checkpoint-0"), stand_in_id("checkpoint-1")),
        (("loss_micros", 123_456), ("accuracy_bps", 9_100)), stand_in_id("result-key"))),
    "release_result": ReleaseResult(TASK, 2, b"\x52" * 32),
    "dispute_answer": DisputeAnswer(POOL, REQUEST),
    "seal_verdict": SealVerdict(TASK, b"", 2, 1, Hash32(b"\x5e" * 32)),
    "reveal_verdict": RevealVerdict(TASK, b"", 2, 1, accept=False, reason="checkpoint_mismatch",
                                    salt=b"\x5a" * 16),
    "cancel_task": CancelTask(TASK),
    "open_pool": OpenPool("mlp-small", max_batch=256, price=4, budget=ogpu(50), max_racers=3,
                          sample_bps=1_000, min_stake=ogpu(100), request_ms=5_000,
                          ttl_ms=600_000),
    "join_pool": JoinPool(POOL, ogpu(150)),
    "leave_pool": LeavePool(POOL),
    "send_request": SendRequest(POOL, seed=99, batch=32),
    "open_pool_model": OpenPool("", max_batch=64, price=4, budget=ogpu(50), max_racers=2,
                                sample_bps=500, min_stake=ogpu(100), request_ms=5_000,
                                ttl_ms=600_000, model_id=stand_in_id("model")),
    "send_request_inputs": SendRequest(POOL, seed=0, batch=32, inputs=stand_in_id("rows")),
    "pool_result": PoolResult(POOL, REQUEST, stand_in_id("logits"), b"\x53" * 32),
    "pool_seal_verdict": SealVerdict(POOL, REQUEST, 0, 2, Hash32(b"\x5f" * 32)),
    "pool_reveal_verdict": RevealVerdict(POOL, REQUEST, 0, 2, accept=True, reason="",
                                         salt=b""),
    "close_pool": ClosePool(POOL),
    "top_up_pool": TopUpPool(POOL, ogpu(25)),
    "report_missing_inputs": ReportMissingInputs(TASK, "inputs_missing"),
    "report_equivocation": equivocation_report(),
    "return_task": ReturnTask(TASK, ReturnReason.DEVICE_MEMORY),
    "register_model": RegisterModel("digits-cnn", stand_in_id("model file"), DIGITS_MODEL),
    "propose": Propose((("min_fee", 2_000), ("bid_window_ms", 4_500)), ogpu(1_000),
                       "Raise the minimum fee"),
    "vote": Vote(3, VoteOption.NO),
}
"""One entry per transaction kind (and per workload kind), with non-default field values."""


def case_tx(name: str) -> Transaction:
    return sign_transaction(TX_SENDER, chain_id=CHAIN_ID, nonce=TX_NONCE, fee=TX_FEE,
                            payload=TX_CASES[name])


def transaction_vectors() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in TX_CASES:
        tx = case_tx(name)
        out[name] = {"kind": tx.kind, "hash": tx.hash.hex(), "encoded": tx.encoded.hex()}
    return out


# --- a short chain: blocks, state roots, an epoch boundary ---------------------------------------


def chain_genesis() -> Genesis:
    return Genesis(CHAIN_ID, GENESIS_TIME_MS, PARAMS,
                   allocations=tuple((k.address, ogpu(10_000)) for k in KEYS),
                   validators=(GenesisValidator("v0", KEYS[0].public_key.raw, ogpu(10)),))


@cache
def build_chain() -> tuple[Genesis, list[Block], State]:
    """Four blocks from `chain_genesis`: a transfer and a stake; a provider registering and a
    task submitted; a bid at the epoch boundary (height 3: rewards paid, KEYS[3] joins the
    validators); a block proposed by KEYS[3] with an unstake and a transfer. Each block is
    checked by `apply_block` as a peer would."""
    genesis = chain_genesis()
    state = genesis.state()
    nonces = [0] * len(KEYS)

    def tx(i: int, payload: Payload) -> Transaction:
        """KEYS[i]'s next transaction (in the order they are made here)."""
        nonce, nonces[i] = nonces[i], nonces[i] + 1
        return sign_transaction(KEYS[i], chain_id=CHAIN_ID, nonce=nonce, fee=1_000,
                                payload=payload)

    task = tx(2, submit(MatmulSpec(n=1_024, seed=1), max_price=ogpu(1)))
    commitment = bid_commitment(task.hash, 1, KEYS[1].address, 2_000, b"salt")
    plan: list[tuple[PrivateKey, list[Transaction]]] = [
        (KEYS[0], [tx(1, Transfer(KEYS[2].address, Amount(ogpu(5)))),
                   tx(3, Stake(Amount(ogpu(20))))]),
        (KEYS[0], [tx(1, RegisterProvider((Device("test-gpu", 16_000),), 5_000, 1, ogpu(500))),
                   task]),
        (KEYS[0], [tx(1, CommitBid(task.hash, commitment))]),
        (KEYS[3], [tx(3, Unstake(Amount(ogpu(5)))), tx(2, Transfer(KEYS[0].address, Amount(7)))]),
    ]
    blocks = []
    for proposer, txs in plan:
        block, _ = build_block(state, txs, proposer, state.timestamp + BLOCK_INTERVAL_MS)
        state = apply_block(state, block)
        blocks.append(block)
    return genesis, blocks, state


def block_vector(block: Block) -> dict[str, Any]:
    return {"hash": block.hash.hex(), "header": block.header.encoded.hex(),
            "encoded_sha256": hashlib.sha256(block.encoded).hexdigest(),
            "txs": len(block.txs)}


def chain_vectors(genesis: Genesis, blocks: list[Block], state: State) -> dict[str, Any]:
    return {
        "genesis_hash": genesis.hash.hex(),
        "genesis_state_root": genesis.state().root.hex(),
        "blocks": {str(b.height): {"hash": b.hash.hex(), "state_root": b.header.state_root.hex()}
                   for b in blocks},
        "state_root": state.root.hex(),
        "validators": [address_to_text(v.address) for v in state.validators],
    }


# --- governance: a proposal voted, tallied and activated ---------------------------------------

GOV_PARAMS = replace(PARAMS, gov_min_deposit=ogpu(5), gov_voting_period=2,
                     gov_activation_delay=1)
"""Later parameters away from their defaults: pins their encoding in the genesis hash too."""


@cache
def build_governance_chain() -> tuple[Genesis, list[Block], State]:
    """Four blocks from `chain_genesis` under `GOV_PARAMS`: KEYS[1] proposes (min_fee 2,000,
    bid_window_ms 4,500); the validator KEYS[0] votes yes and KEYS[2] (not bonded) sends a
    transfer; block 3 ends the voting period (the tally passes it); block 4 is its activation
    height, which changes the parameters."""
    genesis = replace(chain_genesis(), params=GOV_PARAMS)
    state = genesis.state()
    propose = sign_transaction(KEYS[1], chain_id=CHAIN_ID, nonce=0, fee=1_000,
                               payload=TX_CASES["propose"])
    vote = sign_transaction(KEYS[0], chain_id=CHAIN_ID, nonce=0, fee=1_000,
                            payload=Vote(1, VoteOption.YES))
    transfer = sign_transaction(KEYS[2], chain_id=CHAIN_ID, nonce=0, fee=1_000,
                                payload=Transfer(KEYS[3].address, Amount(9)))
    blocks = []
    for txs in ([propose], [vote, transfer], [], []):
        block, _ = build_block(state, txs, KEYS[0], state.timestamp + BLOCK_INTERVAL_MS)
        state = apply_block(state, block)
        blocks.append(block)
    return genesis, blocks, state


def governance_vectors() -> dict[str, Any]:
    genesis, blocks, state = build_governance_chain()
    return {
        "genesis_hash": genesis.hash.hex(),
        "state_roots": {str(b.height): b.header.state_root.hex() for b in blocks},
        "params": state.params.to_fields(),
    }


# --- the devnet genesis ------------------------------------------------------------------------


def devnet_genesis() -> Genesis:
    """`ogpu-node genesis new` as `scripts/devnet up` runs it (template genesis/devnet.json, four
    validators, ten dev accounts, the command's default balances), with fixed validator keys
    and time in place of fresh ones."""
    validators = [(f"node{i}", PrivateKey.from_seed(
        digest(b"ogpu/vector-validator", i.to_bytes(4, "big"))).public_key.raw)
        for i in range(4)]
    return build_genesis(load_template(), validators, genesis_time_ms=GENESIS_TIME_MS,
                         chain_id="ogpu-devnet", dev_accounts=10,
                         dev_balance=parse_amount("1000000"),
                         validator_balance=parse_amount("10000"))


def devnet_vectors() -> dict[str, Any]:
    genesis = devnet_genesis()
    return {"hash": genesis.hash.hex(), "state_root": genesis.state().root.hex()}


# --- all of them -------------------------------------------------------------------------------


def compute_vectors() -> dict[str, Any]:
    """Every vector, as this code computes it (hex strings; JSON-ready)."""
    genesis, blocks, state = build_chain()
    return {
        "keys": {"key0": {"public_key": KEYS[0].public_key.raw.hex(),
                          "address": address_to_text(KEYS[0].address)}},
        "transactions": transaction_vectors(),
        "block": block_vector(blocks[1]),
        "devnet_genesis": devnet_vectors(),
        "chain": chain_vectors(genesis, blocks, state),
        "governance": governance_vectors(),
    }


def load_pinned() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(VECTORS_FILE.read_text())
    doc.pop("_comment", None)
    return doc


def differences(pinned: Any, computed: Any, path: str) -> Iterator[str]:
    """Readable differences between two JSON values, one line per changed leaf."""
    if isinstance(pinned, dict) and isinstance(computed, dict):
        for key in pinned.keys() | computed.keys():
            where = f"{path}.{key}" if path else str(key)
            if key not in computed:
                yield f"{where}: pinned, no longer computed"
            elif key not in pinned:
                yield f"{where}: computed, not pinned"
            else:
                yield from differences(pinned[key], computed[key], where)
    elif pinned != computed:
        yield f"{path}: {describe_change(pinned, computed)}"


def describe_change(pinned: Any, computed: Any, context: int = 64) -> str:
    """Both values, or for two long strings (hex) the place where they part."""
    if isinstance(pinned, str) and isinstance(computed, str) and len(pinned) > context:
        pairs = zip(pinned, computed, strict=False)
        at = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(pinned), len(computed)))
        return (f"from character {at} of {len(pinned)}, pinned ...{pinned[at:at + context]}, "
                f"now ...{computed[at:at + context]} ({len(computed)} characters)")
    return f"pinned {json.dumps(pinned)}, now {json.dumps(computed)}"


def changed_message(lines: list[str]) -> str:
    return ("protocol vectors differ from tests/ledger/vectors.json:\n  " + "\n  ".join(lines)
            + "\nAn encoding, hash or state-transition change alters what every node computes. "
            f"If this change is intended, regenerate with `{REGENERATE}` and say so in the "
            "commit message.")


# --- tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def computed() -> dict[str, Any]:
    return compute_vectors()


@pytest.fixture(scope="module")
def pinned() -> dict[str, Any]:
    return load_pinned()


@pytest.mark.parametrize("section", ["keys", "transactions", "block", "devnet_genesis", "chain",
                                     "governance"])
def test_section_matches_its_pinned_vectors(
    section: str, computed: dict[str, Any], pinned: dict[str, Any]
) -> None:
    lines = sorted(differences(pinned.get(section), computed[section], section))
    if lines:
        pytest.fail(changed_message(lines), pytrace=False)


def test_no_section_is_unchecked(computed: dict[str, Any], pinned: dict[str, Any]) -> None:
    assert set(pinned) == set(computed) == {"keys", "transactions", "block", "devnet_genesis",
                                            "chain", "governance"}


def test_every_transaction_kind_has_a_vector() -> None:
    covered = {case_tx(name).kind for name in TX_CASES}
    missing = [TxKind(kind).name for kind in sorted(set(PAYLOAD_TYPES) - covered)]
    assert not missing, (f"no vector for transaction kind(s) {', '.join(missing)}: add an entry "
                         f"to TX_CASES in {Path(__file__).name}, then run `{REGENERATE}`")


def test_every_workload_kind_has_a_submit_task_vector() -> None:
    submits = [p for p in TX_CASES.values() if isinstance(p, SubmitTask)]
    missing = set(SPEC_TYPES) - {p.kind for p in submits}
    assert not missing, f"no SubmitTask vector for workload kind(s) {sorted(missing)}"
    with_inputs = [p for p in submits if decode(SPEC_TYPES[p.kind], p.spec).inputs]
    assert with_inputs, "no SubmitTask vector with uploaded inputs"


@pytest.mark.parametrize("name", TX_CASES)
def test_pinned_transaction_decodes_to_its_payload(name: str, pinned: dict[str, Any]) -> None:
    """Bytes signed by an earlier version still decode, verify, and mean the same payload."""
    vector = pinned["transactions"].get(name)
    if vector is None:
        pytest.fail(f"no pinned vector {name!r}: run `{REGENERATE}`", pytrace=False)
    tx = decode_transaction(bytes.fromhex(vector["encoded"]))
    assert tx.hash.hex() == vector["hash"]
    assert check_transaction(tx, CHAIN_ID, PARAMS, MODELS.get) == TX_CASES[name]
    assert (tx.sender, tx.nonce, tx.fee) == (TX_SENDER.address, TX_NONCE, TX_FEE)


def test_chain_crosses_an_epoch_boundary() -> None:
    """The chain covers what its vectors claim: the boundary at height 3 changed the validators
    and paid the reward pool out (what is left is block 4's share)."""
    _, blocks, state = build_chain()
    assert [v.address for v in state.validators] == sorted([KEYS[0].address, KEYS[3].address])
    assert blocks[3].header.proposer == KEYS[3].address
    assert 0 < state.reward_pool < PARAMS.initial_block_reward


def test_governance_chain_passes_and_activates_its_proposal() -> None:
    """The governance vectors cover what they claim: the proposal passed at the end of block 3
    and changed the parameters at the end of block 4."""
    _, _, state = build_governance_chain()
    proposal = state.proposals[1]
    assert (proposal.status, proposal.voting_end, proposal.activation_height) == (
        ProposalStatus.ACTIVATED, 3, 4)
    assert state.params == replace(GOV_PARAMS, min_fee=2_000, bid_window_ms=4_500)


# --- regenerating --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.ledger.test_vectors",
        description="Compare the protocol vectors this code computes with tests/ledger/"
                    "vectors.json; with --write, pin the computed ones (a protocol change: say "
                    "so in the commit message).")
    parser.add_argument("--write", action="store_true", help="rewrite vectors.json")
    args = parser.parse_args(argv)
    now = compute_vectors()
    before = load_pinned() if VECTORS_FILE.exists() else {}
    lines = sorted(differences(before, now, ""))
    print("\n".join(lines) if lines else "vectors unchanged")
    if args.write and lines:
        VECTORS_FILE.write_text(json.dumps({"_comment": HEADER, **now}, indent=2) + "\n")
        print(f"wrote {VECTORS_FILE}: {len(lines)} change(s); say why in the commit message")
        return 0
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
