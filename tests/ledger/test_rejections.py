"""One test per rejection reason: the exact typed error, and the input state left unchanged.

Every transaction rejection is checked twice: alone through `apply_tx`, and as the second
transaction of an otherwise valid block, where it must become `InvalidBlock` with `tx_index`
pointing at it and the transaction's own error as the cause.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from ogpu_node.encoding import decode, encode, pack
from ogpu_node.errors import OgpuError
from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import (
    Block,
    InvalidBlock,
    State,
    Transaction,
    Transfer,
    apply_block,
    apply_tx,
)
from ogpu_node.ledger.block import compute_tx_root, sign_header
from ogpu_node.ledger.builder import select_transactions
from ogpu_node.ledger.errors import (
    AmountOutOfRange,
    BadNonce,
    BadSignature,
    FeeTooLow,
    GovernanceError,
    InsufficientFunds,
    InvalidEvidence,
    InvalidTransaction,
    MalformedTransaction,
    MarketRuleError,
    Tombstoned,
    TransactionTooLarge,
    UnexpectedFailure,
    UnknownTxKind,
    WrongChain,
)
from ogpu_node.ledger.market import rules
from ogpu_node.ledger.market.payloads import CancelTask
from ogpu_node.ledger.params import MAX_TX_BYTES
from ogpu_node.ledger.tx import SIGN_KIND_TX, Stake, TxKind, Unstake, decode_transaction
from ogpu_node.types import MAX_AMOUNT, SIGNATURE_LEN, Amount, Hash32, ogpu
from tests.ledger.helpers import (
    CHAIN_ID,
    FEE,
    KEYS,
    PARAMS,
    VALIDATOR,
    genesis,
    next_block,
    resign,
    signed,
    snapshot,
)

PROPOSER = VALIDATOR.address
ALICE, BOB, CAROL, DAVE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
STRANGER = PrivateKey.from_seed(digest(b"test-key", b"stranger"))
"""A key that never received anything."""

FIRST_TRANSFER = signed(ALICE, 0, Transfer(DAVE.address, Amount(ogpu(5))))


def _base() -> State:
    """Genesis and one block: ALICE has sent once (nonce 1), BOB has 100 OGPU staked."""
    state = genesis()
    block, _ = next_block(state, [FIRST_TRANSFER, signed(BOB, 0, Stake(Amount(ogpu(100))))])
    return apply_block(state, block)


BASE = _base()


def _raw_tx(key: PrivateKey, nonce: int, kind: int, payload: bytes, fee: int = FEE,
            chain_id: str = CHAIN_ID) -> Transaction:
    """A correctly signed envelope around any kind and payload bytes."""
    unsigned = Transaction(chain_id, key.public_key.raw, nonce, Amount(fee), kind, payload,
                           b"\0" * SIGNATURE_LEN)
    return replace(unsigned, signature=key.sign(chain_id, SIGN_KIND_TX, unsigned.signing_bytes))


def _with_signature(tx: Transaction, signature: bytes) -> Transaction:
    return Transaction(tx.chain_id, tx.sender_key, tx.nonce, tx.fee, tx.kind, tx.payload,
                       signature)


def _flipped(sig: bytes) -> bytes:
    return bytes((sig[0] ^ 1,)) + sig[1:]


def _alice_balance(s: State) -> int:
    return s.account(ALICE.address).balance


TxCase = tuple[str, Callable[[State], Transaction], type[InvalidTransaction]]

TX_CASES: list[TxCase] = [
    ("bad-signature-bit", lambda s: _with_signature(
        signed(ALICE, 1, Transfer(BOB.address, Amount(1))),
        _flipped(signed(ALICE, 1, Transfer(BOB.address, Amount(1))).signature)), BadSignature),
    ("signature-of-other-tx", lambda s: _with_signature(
        signed(ALICE, 1, Transfer(BOB.address, Amount(1))),
        signed(ALICE, 1, Transfer(BOB.address, Amount(2))).signature), BadSignature),
    ("signed-by-other-key", lambda s: _with_signature(
        signed(ALICE, 1, Transfer(BOB.address, Amount(1))),
        signed(BOB, 1, Transfer(BOB.address, Amount(1))).signature), BadSignature),
    ("signed-for-other-kind", lambda s: _with_signature(
        signed(ALICE, 1, Transfer(BOB.address, Amount(1))),
        ALICE.sign(CHAIN_ID, "block",
                   signed(ALICE, 1, Transfer(BOB.address, Amount(1))).signing_bytes)),
     BadSignature),
    ("wrong-chain-id", lambda s: signed(ALICE, 1, Transfer(BOB.address, Amount(1)),
                                        chain_id="ogpu-other"), WrongChain),
    ("nonce-too-low", lambda s: signed(ALICE, 0, Transfer(BOB.address, Amount(1))), BadNonce),
    ("nonce-too-high", lambda s: signed(ALICE, 2, Transfer(BOB.address, Amount(1))), BadNonce),
    ("replay-of-applied-tx", lambda s: FIRST_TRANSFER, BadNonce),
    ("transfer-overspend", lambda s: signed(
        ALICE, 1, Transfer(BOB.address, Amount(_alice_balance(s) - FEE + 1))), InsufficientFunds),
    ("transfer-fee-unaffordable", lambda s: signed(
        STRANGER, 0, Transfer(BOB.address, Amount(1))), InsufficientFunds),
    ("stake-overspend", lambda s: signed(
        ALICE, 1, Stake(Amount(_alice_balance(s) - FEE + 1))), InsufficientFunds),
    ("unstake-above-stake", lambda s: signed(
        BOB, 1, Unstake(Amount(s.account(BOB.address).stake + 1))), InsufficientFunds),
    ("unstake-without-stake", lambda s: signed(ALICE, 1, Unstake(Amount(1))), InsufficientFunds),
    ("fee-too-low", lambda s: signed(ALICE, 1, Transfer(BOB.address, Amount(1)),
                                     fee=PARAMS.min_fee - 1), FeeTooLow),
    ("fee-zero", lambda s: signed(ALICE, 1, Transfer(BOB.address, Amount(1)), fee=0), FeeTooLow),
    ("fee-above-max-amount", lambda s: signed(ALICE, 1, Transfer(BOB.address, Amount(1)),
                                              fee=MAX_AMOUNT + 1), AmountOutOfRange),
    ("oversize", lambda s: _raw_tx(ALICE, 1, TxKind.TRANSFER, bytes(MAX_TX_BYTES)),
     TransactionTooLarge),
    ("unknown-kind-99", lambda s: _raw_tx(ALICE, 1, 99, encode(Stake(Amount(1)))), UnknownTxKind),
    ("unknown-kind-0", lambda s: _raw_tx(ALICE, 1, 0, encode(Stake(Amount(1)))), UnknownTxKind),
    ("transfer-zero", lambda s: signed(ALICE, 1, Transfer(BOB.address, Amount(0))),
     AmountOutOfRange),
    ("transfer-above-max", lambda s: signed(ALICE, 1, Transfer(BOB.address,
                                                               Amount(MAX_AMOUNT + 1))),
     AmountOutOfRange),
    ("stake-zero", lambda s: signed(ALICE, 1, Stake(Amount(0))), AmountOutOfRange),
    ("stake-above-max", lambda s: signed(ALICE, 1, Stake(Amount(MAX_AMOUNT + 1))),
     AmountOutOfRange),
    ("unstake-zero", lambda s: signed(BOB, 1, Unstake(Amount(0))), AmountOutOfRange),
    ("unstake-above-max", lambda s: signed(BOB, 1, Unstake(Amount(MAX_AMOUNT + 1))),
     AmountOutOfRange),
    ("payload-of-other-kind", lambda s: _raw_tx(ALICE, 1, TxKind.TRANSFER,
                                                encode(Stake(Amount(1)))), MalformedTransaction),
    ("payload-trailing-bytes", lambda s: _raw_tx(
        ALICE, 1, TxKind.STAKE, encode(Stake(Amount(1))) + b"\0"), MalformedTransaction),
    ("payload-short-address", lambda s: _raw_tx(
        ALICE, 1, TxKind.TRANSFER, pack([BOB.address[:19], 1])), MalformedTransaction),
    ("payload-not-msgpack", lambda s: _raw_tx(ALICE, 1, TxKind.UNSTAKE, b"\xc1"),
     MalformedTransaction),
    ("payload-empty", lambda s: _raw_tx(ALICE, 1, TxKind.STAKE, b""), MalformedTransaction),
    ("payload-non-canonical", lambda s: _raw_tx(ALICE, 1, TxKind.STAKE, b"\x91\xcd\x00\x05"),
     MalformedTransaction),
]


@pytest.mark.parametrize(("name", "make", "error"), TX_CASES, ids=[c[0] for c in TX_CASES])
def test_apply_tx_rejection(
    name: str, make: Callable[[State], Transaction], error: type[InvalidTransaction]
) -> None:
    tx = make(BASE)
    before = snapshot(BASE)
    with pytest.raises(InvalidTransaction) as info:
        apply_tx(BASE, tx, PROPOSER)
    assert type(info.value) is error, f"{name}: {info.value!r}"
    assert info.value.code == error.code
    assert snapshot(BASE) == before


def _block_of(state: State, txs: list[Transaction]) -> Block:
    """A correctly signed block carrying `txs` with a matching tx root (the state root is that
    of an empty block: transaction errors are found before the root is compared)."""
    block, _ = next_block(state)
    return resign(replace(block, txs=tuple(txs)), tx_root=compute_tx_root(txs))


@pytest.mark.parametrize(("name", "make", "error"), TX_CASES, ids=[c[0] for c in TX_CASES])
def test_invalid_tx_inside_a_block(
    name: str, make: Callable[[State], Transaction], error: type[InvalidTransaction]
) -> None:
    valid = signed(CAROL, 0, Transfer(BOB.address, Amount(1)))
    block = _block_of(BASE, [valid, make(BASE)])
    before = snapshot(BASE)
    with pytest.raises(InvalidBlock) as info:
        apply_block(BASE, block)
    assert type(info.value) is InvalidBlock
    assert info.value.tx_index == 1, name
    assert type(info.value.__cause__) is error
    assert f"transaction 1: {error.code}" in str(info.value)
    assert snapshot(BASE) == before


def test_all_tx_rejections_are_ogpu_errors() -> None:
    assert all(issubclass(error, OgpuError) for _, _, error in TX_CASES)
    # Every rejection the ledger defines has a case (the node's mempool adds its own elsewhere;
    # the market's rejections have theirs in test_market_rules.py, equivocation evidence's and
    # a tombstoned staker's in test_evidence.py, governance's in test_governance.py).
    # `UnexpectedFailure` contains bugs, which no
    # input should reach: it has its own test below.
    elsewhere = {MarketRuleError, InvalidEvidence, Tombstoned, GovernanceError, UnexpectedFailure}
    ledger_errors = {c for c in InvalidTransaction.__subclasses__()
                     if c.__module__ == "ogpu_node.ledger.errors" and c not in elsewhere}
    assert {error for _, _, error in TX_CASES} == ledger_errors


def test_a_bug_in_a_rule_costs_its_transaction_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule that raises something untyped (a bug) is contained: the transaction is refused as
    `UnexpectedFailure` by `apply_tx`, by the block builder and by `apply_block`, nothing of it
    is written, and the transactions around it are unaffected."""
    def broken(w: object, sender: object, payload: object) -> None:
        raise ZeroDivisionError("a rule's bug")

    monkeypatch.setattr(rules, "process_cancel", broken)
    bad = signed(DAVE, BASE.account(DAVE.address).nonce, CancelTask(Hash32(bytes(32))))
    good = signed(CAROL, 0, Transfer(BOB.address, Amount(1)))
    before = snapshot(BASE)
    with pytest.raises(UnexpectedFailure, match="ZeroDivisionError: a rule's bug"):
        apply_tx(BASE, bad, PROPOSER)
    selected, rejected = select_transactions(BASE, [bad, good], PROPOSER, BASE.timestamp + 1)
    assert selected == [good]
    assert [(tx, type(error)) for tx, error in rejected] == [(bad, UnexpectedFailure)]
    with pytest.raises(InvalidBlock) as info:
        apply_block(BASE, _block_of(BASE, [good, bad]))
    assert info.value.tx_index == 1
    assert type(info.value.__cause__) is UnexpectedFailure
    assert snapshot(BASE) == before


def test_replay_within_one_block() -> None:
    tx = signed(CAROL, 0, Transfer(BOB.address, Amount(1)))
    before = snapshot(BASE)
    with pytest.raises(InvalidBlock) as info:
        apply_block(BASE, _block_of(BASE, [tx, tx]))
    assert info.value.tx_index == 1
    assert type(info.value.__cause__) is BadNonce
    assert snapshot(BASE) == before


def test_overspend_across_two_txs_of_one_block() -> None:
    # Each is affordable alone; together they are not: the second sees the first's effect.
    half = _alice_balance(BASE) // 2 + 1
    txs = [signed(ALICE, 1, Transfer(BOB.address, Amount(half))),
           signed(ALICE, 2, Transfer(BOB.address, Amount(half)))]
    apply_tx(BASE, txs[0], PROPOSER)
    with pytest.raises(InvalidBlock) as info:
        apply_block(BASE, _block_of(BASE, txs))
    assert info.value.tx_index == 1
    assert type(info.value.__cause__) is InsufficientFunds


def test_malformed_transaction_bytes() -> None:
    for data in (b"", b"\x90", b"\xc1", pack([1, 2, 3, 4, 5, 6, 7]),
                 encode(FIRST_TRANSFER) + b"\0", encode(FIRST_TRANSFER)[:-1]):
        with pytest.raises(InvalidTransaction) as info:
            decode_transaction(data)
        assert type(info.value) is MalformedTransaction


def test_oversize_transaction_bytes() -> None:
    with pytest.raises(InvalidTransaction) as info:
        decode_transaction(bytes(MAX_TX_BYTES + 1))
    assert type(info.value) is TransactionTooLarge


def test_transfer_of_exactly_the_balance_is_accepted() -> None:
    # The boundary the overspend case sits just above.
    tx = signed(ALICE, 1, Transfer(BOB.address, Amount(_alice_balance(BASE) - FEE)))
    after = apply_tx(BASE, tx, PROPOSER)
    assert after.account(ALICE.address).balance == 0


# --- block rejections ----------------------------------------------------------------------------

VALID_TXS = [signed(CAROL, 0, Transfer(BOB.address, Amount(7)))]
VALID_BLOCK, VALID_RESULT = next_block(BASE, VALID_TXS)


def _assert_block_rejected(block: Block, match: str, state: State = BASE) -> InvalidBlock:
    before = snapshot(state)
    with pytest.raises(InvalidBlock, match=match) as info:
        apply_block(state, block)
    assert type(info.value) is InvalidBlock
    assert snapshot(state) == before
    return info.value


def test_valid_block_is_accepted() -> None:
    # The block every rejection below is one change away from.
    assert apply_block(BASE, VALID_BLOCK).root == VALID_RESULT.root


@pytest.mark.parametrize("height", [0, BASE.height, BASE.height + 2, 2**64 - 1])
def test_wrong_height(height: int) -> None:
    _assert_block_rejected(resign(VALID_BLOCK, height=height), "height")


def test_block_applied_twice() -> None:
    after = apply_block(BASE, VALID_BLOCK)
    _assert_block_rejected(VALID_BLOCK, "height", state=after)


def test_wrong_parent() -> None:
    _assert_block_rejected(resign(VALID_BLOCK, parent_hash=digest(b"x", b"")), "parent")
    _assert_block_rejected(resign(VALID_BLOCK, parent_hash=bytes(32)), "parent")


@pytest.mark.parametrize("delta", [0, -1, -BASE.timestamp])
def test_timestamp_not_after_parent(delta: int) -> None:
    _assert_block_rejected(resign(VALID_BLOCK, timestamp=BASE.timestamp + delta), "timestamp")


def test_proposer_not_a_validator() -> None:
    block, _ = next_block(BASE, VALID_TXS, key=ALICE)
    _assert_block_rejected(block, "not in the active validator set")


def test_staked_but_not_yet_a_validator() -> None:
    # BOB has stake, but below the minimum and before any epoch boundary: not a proposer.
    block, _ = next_block(BASE, key=BOB)
    _assert_block_rejected(block, "not in the active validator set")


def test_bad_proposer_signature() -> None:
    block = VALID_BLOCK
    _assert_block_rejected(replace(block, signature=_flipped(block.signature)), "signature")
    _assert_block_rejected(
        replace(block, signature=sign_header(ALICE, block.header)), "signature")
    other_chain = replace(block.header, chain_id="ogpu-other")
    _assert_block_rejected(
        replace(block, signature=VALIDATOR.sign("ogpu-other", "block", other_chain.encoded)),
        "signature")
    # A signature over the header under the transaction domain is no block signature.
    _assert_block_rejected(
        replace(block, signature=VALIDATOR.sign(CHAIN_ID, "tx", block.header.encoded)),
        "signature")


def test_tx_root_mismatch() -> None:
    other = (signed(CAROL, 0, Transfer(BOB.address, Amount(8))),)
    _assert_block_rejected(replace(VALID_BLOCK, txs=other), "transactions root")
    _assert_block_rejected(replace(VALID_BLOCK, txs=()), "transactions root")
    _assert_block_rejected(resign(VALID_BLOCK, tx_root=bytes(32)), "transactions root")


def test_tx_order_is_committed() -> None:
    txs = [signed(CAROL, 0, Transfer(BOB.address, Amount(1))),
           signed(DAVE, 0, Transfer(BOB.address, Amount(1)))]
    block, _ = next_block(BASE, txs)
    _assert_block_rejected(replace(block, txs=tuple(reversed(txs))), "transactions root")


def test_state_root_mismatch() -> None:
    _assert_block_rejected(resign(VALID_BLOCK, state_root=BASE.root), "state root")
    _assert_block_rejected(resign(VALID_BLOCK, state_root=bytes(32)), "state root")


def test_state_root_depends_on_the_timestamp() -> None:
    # The header's timestamp is part of the state: changing it alone breaks the state root.
    block = resign(VALID_BLOCK, timestamp=VALID_BLOCK.header.timestamp + 1)
    _assert_block_rejected(block, "state root")


def test_too_many_txs() -> None:
    params = replace(PARAMS, max_block_txs=2)
    state = genesis(params)
    txs = [signed(k, 0, Transfer(BOB.address, Amount(1))) for k in (ALICE, CAROL, DAVE)]
    ok, _ = next_block(state, txs[:2])
    apply_block(state, ok)
    block = _block_of(state, txs)
    _assert_block_rejected(block, "3 transactions, limit 2", state=state)


def test_too_many_bytes() -> None:
    params = replace(PARAMS, max_block_bytes=MAX_TX_BYTES)
    state = genesis(params)
    big = [_raw_tx(k, 0, TxKind.TRANSFER, bytes(MAX_TX_BYTES // 2)) for k in (ALICE, CAROL)]
    _assert_block_rejected(_block_of(state, big), "bytes, limit", state=state)


def test_oversize_tx_inside_a_decoded_block() -> None:
    # A block's tx list is decoded without the per-tx size limit; applying must still give a
    # typed InvalidBlock naming the transaction, not an EncodeError.
    big = _raw_tx(ALICE, 1, TxKind.TRANSFER, bytes(MAX_TX_BYTES))
    block = decode(Block, encode(_block_of(BASE, [big])))
    error = _assert_block_rejected(block, "oversize")
    assert error.tx_index == 0
    assert type(error.__cause__) is TransactionTooLarge


def test_wrong_chain_id() -> None:
    block = VALID_BLOCK
    header = replace(block.header, chain_id="ogpu-other")
    signed_block = Block(header, VALIDATOR.sign("ogpu-other", "block", header.encoded), block.txs)
    _assert_block_rejected(signed_block, "chain")

