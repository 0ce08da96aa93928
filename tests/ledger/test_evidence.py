"""Equivocation evidence (REPORT_EQUIVOCATION): pre-state, evidence, post-state.

The chain: genesis with two validators, HONEST and OFFENDER (twice the minimum stake). Block 1
(by HONEST): OFFENDER unstakes 2,000 OGPU, UNBONDED stakes and unstakes 100 OGPU, BYSTANDER
sends a transfer (so its key is on chain). At height 2 OFFENDER signs two blocks on block 1 in
slot 0: FIRST (its unstake of 1,000 OGPU; the chain takes it) and SECOND (empty). PRE is the
state after FIRST. Every post-state is checked for value conservation and its commitment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from consensus.evidence import EquivocationDetector
from ogpu_node.chain import Chain, load_state, state_changes
from ogpu_node.encoding import pack
from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey, verify
from ogpu_node.ledger import (
    Block,
    InvalidBlock,
    Params,
    Stake,
    State,
    Transaction,
    Transfer,
    TxKind,
    Unstake,
    apply_block,
    apply_tx,
    make_genesis_state,
)
from ogpu_node.ledger import equivocation as equivocation_module
from ogpu_node.ledger import header as header_module
from ogpu_node.ledger.block import BlockHeader, compute_tx_root, sign_header
from ogpu_node.ledger.equivocation import (
    ReportEquivocation,
    report_from_evidence,
    signed_header,
)
from ogpu_node.ledger.errors import (
    EvidenceAlreadyApplied,
    EvidenceBadSignature,
    EvidenceDifferentHeights,
    EvidenceDifferentParents,
    EvidenceDifferentProposers,
    EvidenceDifferentSlots,
    EvidenceSameBlock,
    EvidenceTooOld,
    EvidenceWrongChain,
    EvidenceWrongParent,
    InsufficientFunds,
    InvalidEvidence,
    InvalidTransaction,
    MalformedTransaction,
    NothingToSlash,
    OffenderTombstoned,
    Tombstoned,
    UnknownOffender,
)
from ogpu_node.ledger.params import BPS, MAX_EVIDENCE_AGE
from ogpu_node.ledger.state import Tombstone, compute_records_hash
from ogpu_node.ledger.tx import PAYLOAD_TYPES, SIGN_KIND_TX
from ogpu_node.storage import ChainStore, LevelDBKV
from ogpu_node.types import SIGNATURE_LEN, Amount, Hash32, ogpu
from tests.ledger.helpers import (
    CHAIN_ID,
    FEE,
    KEYS,
    PARAMS,
    advance,
    child_header,
    double_sign,
    next_block,
    parent_header,
    signed,
    snapshot,
)

HONEST, OFFENDER, REPORTER, BYSTANDER, UNBONDED = KEYS[:5]
STRANGER = PrivateKey.from_seed(digest(b"test-key", b"stranger"))
"""Never sent anything: its key is not on chain."""
STAKE = 2 * PARAMS.min_validator_stake


def _chain() -> tuple[State, Block, Block, Block, State]:
    genesis = make_genesis_state(
        chain_id=CHAIN_ID, params=PARAMS, genesis_hash=digest(b"evidence-genesis", b""),
        timestamp=1_000, allocations=[(k.address, ogpu(1_000)) for k in KEYS],
        validators=[(HONEST.public_key.raw, PARAMS.min_validator_stake),
                    (OFFENDER.public_key.raw, STAKE)])
    block1, _ = next_block(genesis, [
        signed(OFFENDER, 0, Unstake(Amount(ogpu(2_000)))),
        signed(UNBONDED, 0, Stake(Amount(ogpu(100)))),
        signed(UNBONDED, 1, Unstake(Amount(ogpu(100)))),
        signed(BYSTANDER, 0, Transfer(REPORTER.address, Amount(1))),
    ], key=HONEST)
    state1 = apply_block(genesis, block1)
    first, _ = next_block(state1, [signed(OFFENDER, 1, Unstake(Amount(ogpu(1_000))))],
                          key=OFFENDER, timestamp=state1.timestamp + 100)
    second, _ = next_block(state1, key=OFFENDER, timestamp=state1.timestamp + 200)
    return state1, block1, first, second, apply_block(state1, first)


STATE1, BLOCK1, FIRST, SECOND, PRE = _chain()
PARENT = BLOCK1.header
REPORT = ReportEquivocation(FIRST.header, FIRST.signature, SECOND.header, SECOND.signature,
                            PARENT)
EVIDENCE = signed(REPORTER, 0, REPORT)


def _block_with(state: State, txs: list[Transaction]) -> Block:
    """A block by HONEST holding `txs` even if they do not apply (built empty, then filled)."""
    empty, _ = next_block(state, key=HONEST)
    header = replace(empty.header, tx_root=compute_tx_root(txs))
    return Block(header, sign_header(HONEST, header), tuple(txs))


def conserved(state: State) -> None:
    assert state.total_held() == state.issued - state.burned
    assert state.records_hash == compute_records_hash(
        state.accounts, state.unbonding, state.providers, state.tasks, state.pools,
        state.tombstones)


def test_the_pre_state_is_what_the_vectors_assume() -> None:
    assert (PRE.height, FIRST.height, SECOND.height) == (2, 2, 2)
    assert FIRST.hash != SECOND.hash
    assert FIRST.header.parent_hash == SECOND.header.parent_hash == PARENT.hash
    assert PARAMS.slot_ms == 1_000  # FIRST and SECOND, 100 and 200 ms after block 1: slot 0
    assert PRE.account(OFFENDER.address).stake == STAKE - ogpu(3_000)
    assert dict(PRE.unbonding) == {
        (4, OFFENDER.address): ogpu(2_000),  # made at height 1, before the offence
        (4, UNBONDED.address): ogpu(100),
        (5, OFFENDER.address): ogpu(1_000),  # made at height 2, in the double-signed block
    }
    assert {v.address for v in PRE.validators} == {HONEST.address, OFFENDER.address}
    assert int(TxKind.REPORT_EQUIVOCATION) == 20
    assert PAYLOAD_TYPES[TxKind.REPORT_EQUIVOCATION] is ReportEquivocation
    assert len(EVIDENCE.payload) <= ReportEquivocation.MAX_BYTES
    conserved(PRE)


# --- valid evidence --------------------------------------------------------------------------


def test_evidence_slashes_stake_and_later_unbonding_pays_the_reporter_and_burns_the_rest() -> None:
    post = apply_tx(PRE, EVIDENCE, HONEST.address)
    # 5% of the 17,000 OGPU bonded and of the 1,000 unbonded since the offence; the 2,000
    # unbonded before it were not at stake when it signed twice.
    slashed = ogpu(850) + ogpu(50)
    to_reporter = ogpu(90)  # 10% of the slashed amount
    assert PARAMS.equivocation_slash_bps == 500 and PARAMS.equivocation_reporter_bps == 1_000
    assert post.account(OFFENDER.address).stake == ogpu(17_000) - ogpu(850)
    assert dict(post.unbonding) == {
        (4, OFFENDER.address): ogpu(2_000), (4, UNBONDED.address): ogpu(100),
        (5, OFFENDER.address): ogpu(950),
    }
    reporter = post.account(REPORTER.address)
    assert reporter.balance == PRE.account(REPORTER.address).balance - FEE + to_reporter
    assert reporter.nonce == 1
    assert post.account(HONEST.address).balance == (
        PRE.account(HONEST.address).balance + FEE - FEE // 2)
    assert post.burned == PRE.burned + FEE // 2 + slashed - to_reporter
    assert post.issued == PRE.issued
    assert dict(post.tombstones) == {OFFENDER.address: Tombstone(2, 0, slashed)}
    assert post.changed_tombstones == (OFFENDER.address,)
    assert post.validators == PRE.validators  # the set changes at the epoch boundary only
    assert post.root != PRE.root
    conserved(post)


def test_the_offender_leaves_the_set_at_the_next_epoch_without_its_reward() -> None:
    block3, _ = next_block(PRE, [EVIDENCE], key=HONEST)
    post3 = apply_block(PRE, block3)
    post4 = advance(post3, 1, key=HONEST)  # height 4: epoch boundary
    assert [v.address for v in post4.validators] == [HONEST.address]
    # Its balance grows only by the unbonding entry released at 4: no share of the pool.
    assert post4.account(OFFENDER.address).balance == (
        post3.account(OFFENDER.address).balance + ogpu(2_000))
    assert post4.reward_pool < post3.reward_pool
    conserved(post4)
    # Without the evidence it would have stayed, and been paid.
    control = advance(advance(PRE, 1, key=HONEST), 1, key=HONEST)
    assert OFFENDER.address in control.validator_by_address
    assert control.account(OFFENDER.address).balance > (
        PRE.account(OFFENDER.address).balance + ogpu(2_000))


def test_a_tombstoned_offender_cannot_stake_again_but_can_unbond() -> None:
    post = apply_tx(PRE, EVIDENCE, HONEST.address)
    before = snapshot(post)
    with pytest.raises(Tombstoned):
        apply_tx(post, signed(OFFENDER, 2, Stake(Amount(1))), HONEST.address)
    assert snapshot(post) == before
    left = post.account(OFFENDER.address).stake
    after = apply_tx(post, signed(OFFENDER, 2, Unstake(Amount(left))), HONEST.address)
    assert after.account(OFFENDER.address).stake == 0
    conserved(after)


def test_evidence_is_applied_once() -> None:
    post = apply_tx(PRE, EVIDENCE, HONEST.address)
    third, _ = next_block(STATE1, key=OFFENDER, timestamp=STATE1.timestamp + 300)
    again = [
        (REPORT, EvidenceAlreadyApplied),  # the same evidence from another reporter
        (replace(REPORT, second=third.header, second_signature=third.signature),
         EvidenceAlreadyApplied),  # the same double signature, shown with a third header
        (double_sign(OFFENDER, FIRST.header), OffenderTombstoned),  # another one, at height 3
    ]
    before = snapshot(post)
    for report, error in again:
        with pytest.raises(error):
            apply_tx(post, signed(BYSTANDER, 1, report), HONEST.address)
        assert snapshot(post) == before
    # Twice in one block: the second is refused.
    with pytest.raises(InvalidBlock) as info:
        apply_block(PRE, _block_with(PRE, [EVIDENCE, signed(BYSTANDER, 1, REPORT)]))
    assert info.value.tx_index == 1
    assert type(info.value.__cause__) is EvidenceAlreadyApplied


def test_evidence_at_the_edge_of_the_window_applies() -> None:
    # Offence at 2, evidence_max_age 2: a block at height 4 may still hold it.
    state3 = advance(PRE, 1, key=HONEST)
    block4, _ = next_block(state3, [EVIDENCE], key=HONEST)
    post = apply_block(state3, block4)
    assert OFFENDER.address in post.tombstones
    assert [v.address for v in post.validators] == [HONEST.address]  # 4 is a boundary too
    conserved(post)


def test_the_node_side_path_from_detector_to_transaction() -> None:
    detector = EquivocationDetector()
    seen = [signed_header(b.header, b.signature, PARENT.timestamp, PRE.params.slot_ms)
            for b in (FIRST, SECOND)]
    assert detector.observe(seen[0]) is None
    evidence = detector.observe(seen[1])
    assert evidence is not None
    report = report_from_evidence(evidence, PARENT)
    post = apply_tx(PRE, signed(REPORTER, 0, report), HONEST.address)
    assert post.tombstones[OFFENDER.address].height == 2


def test_checking_evidence_costs_two_signatures_and_three_header_hashes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"verify": 0, "digest": 0}

    def counting_verify(public_key: bytes, chain_id: str, kind: str, message: bytes,
                        signature: bytes) -> None:
        calls["verify"] += 1
        verify(public_key, chain_id, kind, message, signature)

    def counting_digest(tag: bytes, data: bytes) -> Hash32:
        calls["digest"] += 1
        return digest(tag, data)

    monkeypatch.setattr(equivocation_module, "verify", counting_verify)
    monkeypatch.setattr(header_module, "digest", counting_digest)
    fresh = Transaction(EVIDENCE.chain_id, EVIDENCE.sender_key, EVIDENCE.nonce, EVIDENCE.fee,
                        EVIDENCE.kind, EVIDENCE.payload, EVIDENCE.signature)
    apply_tx(PRE, fresh, HONEST.address)
    assert calls == {"verify": 2, "digest": 3}


def test_the_state_reloaded_from_leveldb_has_the_same_root(tmp_path: Path) -> None:
    genesis = make_genesis_state(
        chain_id=CHAIN_ID, params=PARAMS, genesis_hash=digest(b"evidence-genesis", b""),
        timestamp=1_000, allocations=[(k.address, ogpu(1_000)) for k in KEYS],
        validators=[(HONEST.public_key.raw, PARAMS.min_validator_stake),
                    (OFFENDER.public_key.raw, STAKE)])
    store = ChainStore(LevelDBKV(str(tmp_path / "db")))
    store.commit_block(height=0, block_hash=genesis.block_hash, block_bytes=b"test genesis",
                       tx_hashes=(), state_changes=state_changes(genesis), meta=genesis.root)
    chain = Chain(store, genesis)
    for block in (BLOCK1, FIRST):
        chain.apply_and_commit(block)
    assert chain.state.root == PRE.root
    block3, _ = next_block(chain.state, [EVIDENCE], key=HONEST)
    chain.apply_and_commit(block3)
    block4, _ = next_block(chain.state, key=HONEST)
    chain.apply_and_commit(block4)
    store.close()

    with ChainStore(LevelDBKV(str(tmp_path / "db"))) as reopened:
        reloaded = load_state(reopened)
    assert reloaded.root == chain.state.root
    assert dict(reloaded.tombstones) == dict(chain.state.tombstones) == {
        OFFENDER.address: Tombstone(2, 0, ogpu(900))}
    assert reloaded.validators == chain.state.validators
    assert OFFENDER.address not in reloaded.validator_by_address


# --- refusals --------------------------------------------------------------------------------


def _report(first: BlockHeader, second: BlockHeader, parent: BlockHeader = PARENT,
            second_signer: PrivateKey | None = None) -> ReportEquivocation:
    """Headers signed by their proposers (`second_signer` forges the second signature)."""
    signer = {k.address: k for k in [*KEYS, STRANGER]}
    return ReportEquivocation(first, sign_header(signer[first.proposer], first), second,
                              sign_header(second_signer or signer[second.proposer], second),
                              parent)


def _later_slot() -> ReportEquivocation:
    # OFFENDER restarted and proposed again, a slot later: legitimate.
    again, _ = next_block(STATE1, key=OFFENDER,
                          timestamp=STATE1.timestamp + PARAMS.slot_ms + 100)
    return replace(REPORT, second=again.header, second_signature=again.signature)


def _parent_one_height_off() -> ReportEquivocation:
    far = parent_header(5, PARENT.timestamp)
    first = replace(child_header(far, OFFENDER, PARENT.timestamp + 100, b"a"), height=2)
    second = replace(child_header(far, OFFENDER, PARENT.timestamp + 200, b"b"), height=2)
    return _report(first, second, far)


def _too_old() -> tuple[State, ReportEquivocation]:
    return advance(PRE, 2, key=HONEST), REPORT  # the next block is 5: 3 blocks after 2


def _chain_of(report: Callable[[], ReportEquivocation]) -> Callable[[], tuple[State,
                                                                             ReportEquivocation]]:
    return lambda: (PRE, report())


EVIDENCE_CASES: list[tuple[str, Callable[[], tuple[State, ReportEquivocation]],
                           type[InvalidTransaction]]] = [
    ("other-chain", _chain_of(lambda: double_sign(
        OFFENDER, parent_header(1, PARENT.timestamp, chain_id="ogpu-other"))),
     EvidenceWrongChain),
    ("wrong-parent-header", _chain_of(lambda: replace(
        REPORT, parent=parent_header(1, PARENT.timestamp))), EvidenceWrongParent),
    ("parent-not-one-below", _chain_of(_parent_one_height_off), EvidenceWrongParent),
    ("different-proposers", _chain_of(lambda: _report(
        FIRST.header, child_header(PARENT, HONEST, PARENT.timestamp + 200))),
     EvidenceDifferentProposers),
    ("different-heights", _chain_of(lambda: _report(
        FIRST.header, child_header(FIRST.header, OFFENDER, FIRST.header.timestamp + 1))),
     EvidenceDifferentHeights),
    ("different-parents", _chain_of(lambda: _report(
        FIRST.header, child_header(parent_header(1, PARENT.timestamp), OFFENDER,
                                   PARENT.timestamp + 200))),
     EvidenceDifferentParents),
    ("later-slot", _chain_of(_later_slot), EvidenceDifferentSlots),
    ("same-block", _chain_of(lambda: replace(
        REPORT, second=FIRST.header, second_signature=FIRST.signature)), EvidenceSameBlock),
    ("unknown-offender", _chain_of(lambda: double_sign(STRANGER, PARENT)), UnknownOffender),
    ("offender-without-stake", _chain_of(lambda: double_sign(BYSTANDER, PARENT)),
     NothingToSlash),
    ("only-unbonding-from-before", _chain_of(lambda: double_sign(UNBONDED, PARENT)),
     NothingToSlash),
    ("too-old", _too_old, EvidenceTooOld),
    ("forged-signature", _chain_of(lambda: double_sign(OFFENDER, PARENT, signer=HONEST)),
     EvidenceBadSignature),
    ("swapped-signatures", _chain_of(lambda: replace(
        REPORT, first_signature=SECOND.signature, second_signature=FIRST.signature)),
     EvidenceBadSignature),
]


@pytest.mark.parametrize(("name", "make", "error"), EVIDENCE_CASES,
                         ids=[c[0] for c in EVIDENCE_CASES])
def test_invalid_evidence_is_refused_with_its_code(
        name: str, make: Callable[[], tuple[State, ReportEquivocation]],
        error: type[InvalidTransaction]) -> None:
    state, report = make()
    tx = signed(REPORTER, 0, report)
    before = snapshot(state)
    with pytest.raises(InvalidTransaction) as info:
        apply_tx(state, tx, HONEST.address)
    assert type(info.value) is error, name
    assert snapshot(state) == before
    # Inside a block, after a valid transaction: the block is refused at that index.
    valid = signed(BYSTANDER, 1, Transfer(REPORTER.address, Amount(1)))
    with pytest.raises(InvalidBlock) as block_info:
        apply_block(state, _block_with(state, [valid, tx]))
    assert block_info.value.tx_index == 1
    assert type(block_info.value.__cause__) is error
    assert snapshot(state) == before


def test_every_evidence_rejection_has_a_case() -> None:
    tested = {error for _, _, error in EVIDENCE_CASES}
    tested |= {EvidenceAlreadyApplied, OffenderTombstoned}  # test_evidence_is_applied_once
    assert tested == set(InvalidEvidence.__subclasses__())
    assert all(e.code.startswith("evidence_") for e in tested)
    assert len({e.code for e in tested}) == len(tested)


def test_a_reporter_that_cannot_pay_the_fee_is_refused_first() -> None:
    tx = signed(STRANGER, 0, double_sign(STRANGER, PARENT))
    with pytest.raises(InsufficientFunds):
        apply_tx(PRE, tx, HONEST.address)


@pytest.mark.parametrize("change", ["short-signature", "long-header"])
def test_a_malformed_report_is_malformed(change: str) -> None:
    fields = REPORT.to_fields()
    if change == "short-signature":
        fields[1] = fields[1][:SIGNATURE_LEN - 1]
    else:
        fields[0][0] = "x" * 300  # a chain id over the header's 256 bytes
    unsigned = Transaction(CHAIN_ID, REPORTER.public_key.raw, 0, Amount(FEE),
                           TxKind.REPORT_EQUIVOCATION, pack(fields), b"\0" * SIGNATURE_LEN)
    tx = replace(unsigned, signature=REPORTER.sign(CHAIN_ID, SIGN_KIND_TX,
                                                   unsigned.signing_bytes))
    with pytest.raises(MalformedTransaction):
        apply_tx(PRE, tx, HONEST.address)


# --- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "problem"), [
    ({"evidence_max_age": 3}, "evidence_max_age must be below unbonding_period"),
    ({"evidence_max_age": 0}, "evidence_max_age must be within"),
    ({"evidence_max_age": MAX_EVIDENCE_AGE + 1, "unbonding_period": 10**6},
     "evidence_max_age must be within"),
    ({"equivocation_slash_bps": BPS + 1}, "equivocation_slash_bps must be within"),
    ({"equivocation_reporter_bps": BPS + 1}, "equivocation_reporter_bps must be within"),
])
def test_evidence_parameters_verify_themselves(changes: dict[str, int], problem: str) -> None:
    assert PARAMS.check() == []
    assert problem in " ".join(replace(PARAMS, **changes).check())


def test_default_parameters_leave_evidence_time_before_unbonding() -> None:
    params = Params()
    assert params.check() == []
    assert (params.evidence_max_age, params.unbonding_period) == (500, 1_000)
    assert (params.equivocation_slash_bps, params.equivocation_reporter_bps) == (500, 1_000)

