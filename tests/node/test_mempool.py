"""The mempool: admission checks, nonce order, limits and eviction, pruning after blocks."""

from __future__ import annotations

import pytest

from ogpu_node.ledger import Transfer, apply_tx
from ogpu_node.ledger.errors import BadNonce, BadSignature, FeeTooLow, InsufficientFunds
from ogpu_node.ledger.tx import Transaction
from ogpu_node.node.mempool import AlreadyKnown, Mempool, MempoolFull, MempoolLimits
from ogpu_node.types import Amount
from tests.ledger.helpers import KEYS, VALIDATOR, genesis, signed

STATE = genesis()
ALICE, BOB = KEYS[1], KEYS[2]


def transfer(nonce: int, fee: int = 1_000, amount: int = 1, key: object = ALICE) -> Transaction:
    return signed(key, nonce, Transfer(BOB.address, Amount(amount)), fee=fee)  # type: ignore[arg-type]


def test_candidates_are_each_senders_consecutive_nonces() -> None:
    pool = Mempool()
    for nonce in (2, 0, 1, 4):  # 4 waits for 3, which never came
        pool.add(transfer(nonce), STATE)
    pool.add(transfer(0, key=BOB), STATE)
    assert [(t.sender, t.nonce) for t in pool.candidates(STATE)] == [
        (ALICE.address, 0), (ALICE.address, 1), (ALICE.address, 2), (BOB.address, 0)]


@pytest.mark.parametrize(("tx", "error"), [
    (transfer(0, fee=1), FeeTooLow),
    (transfer(0, amount=10**16), InsufficientFunds),
    (transfer(5_000), BadNonce),
])
def test_admission_refuses_with_typed_errors(tx: Transaction, error: type[Exception]) -> None:
    pool = Mempool()
    with pytest.raises(error):
        pool.add(tx, STATE)
    assert len(pool) == 0


def test_bad_signature_and_duplicates_are_refused() -> None:
    pool = Mempool()
    tx = transfer(0)
    forged = Transaction(tx.chain_id, BOB.public_key.raw, tx.nonce, tx.fee, tx.kind, tx.payload,
                         tx.signature)
    with pytest.raises(BadSignature):
        pool.add(forged, STATE)
    pool.add(tx, STATE)
    with pytest.raises(AlreadyKnown):
        pool.add(tx, STATE)


def test_a_higher_fee_replaces_the_same_nonce() -> None:
    pool = Mempool()
    pool.add(transfer(0, fee=1_000), STATE)
    with pytest.raises(AlreadyKnown):
        pool.add(transfer(0, fee=1_000, amount=2), STATE)
    better = transfer(0, fee=2_000)
    pool.add(better, STATE)
    assert list(pool.candidates(STATE)) == [better] and len(pool) == 1


def test_when_full_only_a_better_fee_gets_in_by_evicting_the_cheapest() -> None:
    pool = Mempool(MempoolLimits(max_txs=2))
    cheap, mid = transfer(0, fee=1_000), transfer(0, fee=1_500, key=BOB)
    pool.add(cheap, STATE)
    pool.add(mid, STATE)
    with pytest.raises(MempoolFull):
        pool.add(transfer(0, fee=1_000, key=KEYS[3]), STATE)
    rich = transfer(0, fee=5_000, key=KEYS[3])
    pool.add(rich, STATE)
    assert cheap.hash not in pool and mid.hash in pool and rich.hash in pool
    assert len(pool) == 2


def test_a_replacement_that_does_not_fit_keeps_the_one_it_would_replace() -> None:
    """Found in review: the replaced transaction was dropped before room was made, so a
    replacement refused for room lost it (a nonce gap, no receipt)."""
    small = transfer(0, fee=1_000)
    bigger = transfer(0, fee=1_000_000, amount=10**9)  # longer integers: more bytes
    assert len(bigger.encoded) > len(small.encoded)
    pool = Mempool(MempoolLimits(max_bytes=len(small.encoded)))
    pool.add(small, STATE)
    with pytest.raises(MempoolFull):
        pool.add(bigger, STATE)
    assert list(pool.candidates(STATE)) == [small]
    assert pool.size_bytes == len(small.encoded)


def test_eviction_skips_what_was_replaced_or_dropped() -> None:
    """The cheapest is kept in a heap whose entries of replaced or dropped transactions are
    skipped: after a replacement, the next eviction takes the cheapest that is still there."""
    pool = Mempool(MempoolLimits(max_txs=3))
    five, three, four = (transfer(0, fee=f, key=KEYS[k]) for f, k in
                         ((5_000, 1), (3_000, 2), (4_000, 3)))
    for tx in (five, three, four):
        pool.add(tx, STATE)
    six = transfer(0, fee=6_000, key=KEYS[2])  # replaces `three`
    pool.add(six, STATE)
    rich = transfer(0, fee=10_000, key=KEYS[4])
    pool.add(rich, STATE)
    assert four.hash not in pool  # not the stale entry of `three`
    assert {five.hash, six.hash, rich.hash} <= {tx.hash for tx in pool.candidates(STATE)}
    for _ in range(200):  # many stale entries: the heap is rebuilt, the answer is the same
        pool.remove([six.hash])
        pool.add(six, STATE)
    pool.add(transfer(0, fee=20_000, key=KEYS[5]), STATE)
    assert five.hash not in pool and six.hash in pool and rich.hash in pool


def test_prune_drops_what_the_chain_has_passed() -> None:
    pool = Mempool()
    txs = [transfer(n) for n in range(3)]
    for tx in txs:
        pool.add(tx, STATE)
    after = apply_tx(apply_tx(STATE, txs[0], VALIDATOR.address), txs[1], VALIDATOR.address)
    assert pool.prune(after) == txs[:2]
    assert list(pool.candidates(after)) == [txs[2]]
    assert pool.size_bytes == len(txs[2].encoded)


def test_heads_are_each_senders_next_transaction_and_drop_from_takes_the_rest() -> None:
    pool = Mempool()
    for nonce in (0, 1, 2):
        pool.add(transfer(nonce), STATE)
    pool.add(transfer(1, key=BOB), STATE)  # BOB's nonce 0 never came: no head
    assert [(t.sender, t.nonce) for t in pool.heads(STATE)] == [(ALICE.address, 0)]
    assert [t.nonce for t in pool.drop_from(ALICE.address, 1)] == [1, 2]
    assert [(t.sender, t.nonce) for t in pool.candidates(STATE)] == [(ALICE.address, 0)]
    assert len(pool) == 2 and pool.drop_from(ALICE.address, 5) == []
