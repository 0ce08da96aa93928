"""Equivocation evidence: built from two headers, checked with a supplied verifier."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import pytest

from consensus.errors import InvalidEvidence
from consensus.evidence import (
    BAD_SIGNATURE,
    DIFFERENT_HEIGHTS,
    DIFFERENT_PARENTS,
    DIFFERENT_PROPOSERS,
    DIFFERENT_SLOTS,
    ID_MISMATCH,
    SAME_BLOCK,
    EquivocationDetector,
    EquivocationEvidence,
    SignedHeader,
)

KEY = b"test-key"
PROPOSER = b"\x07" * 20


def sign(message: bytes) -> bytes:
    # An HMAC stands in for Ed25519: the evidence code only sees a callable.
    return hmac.new(KEY, message, hashlib.sha256).digest()


def verify(proposer: bytes, message: bytes, signature: bytes) -> bool:
    return proposer == PROPOSER and hmac.compare_digest(sign(message), signature)


PARENT = b"\x01" * 32


def header(height: int, body: bytes, proposer: bytes = PROPOSER, *, slot: int = 0,
           parent: bytes = PARENT) -> SignedHeader:
    signed = height.to_bytes(8, "big") + body
    return SignedHeader(proposer, height, parent, slot, hashlib.sha256(signed).digest(), signed,
                        sign(signed))


def block_id(signed: bytes) -> bytes:
    return hashlib.sha256(signed).digest()


def test_detector_reports_two_blocks_signed_at_one_height_once() -> None:
    detector = EquivocationDetector()
    a, b = header(9, b"a"), header(9, b"b")
    assert detector.observe(a) is None
    assert detector.observe(a) is None
    evidence = detector.observe(b)
    assert evidence is not None
    assert (evidence.proposer, evidence.height) == (PROPOSER, 9)
    assert evidence == EquivocationEvidence.from_pair(b, a)
    evidence.verify(verify, block_id)
    assert detector.observe(header(9, b"c")) is None


@pytest.mark.parametrize(("other", "reason"), [
    (header(2, b"b"), DIFFERENT_HEIGHTS),
    (header(1, b"b", b"\x08" * 20), DIFFERENT_PROPOSERS),
    (header(1, b"b", parent=b"\x02" * 32), DIFFERENT_PARENTS),
    (header(1, b"b", slot=1), DIFFERENT_SLOTS),
    (header(1, b"a"), SAME_BLOCK),
], ids=["height", "proposer", "parent", "slot", "same-block"])
def test_headers_that_do_not_compete_for_one_slot_are_not_evidence(
        other: SignedHeader, reason: str) -> None:
    with pytest.raises(InvalidEvidence) as info:
        EquivocationEvidence.from_pair(header(1, b"a"), other)
    assert info.value.reason == reason


def test_detector_ignores_a_re_proposal_in_a_later_slot() -> None:
    # An honest proposer whose block was lost proposes again at the same height, a slot later.
    detector = EquivocationDetector()
    assert detector.observe(header(4, b"a", slot=0)) is None
    assert detector.observe(header(4, b"b", slot=1)) is None
    assert detector.observe(header(4, b"c", slot=1)) is not None


def test_forged_signature_or_mismatched_id_fails_verification() -> None:
    a, b = header(3, b"a"), header(3, b"b")
    forged = replace(b, signature=b"\x00" * 32)
    with pytest.raises(InvalidEvidence) as info:
        EquivocationEvidence.from_pair(a, forged).verify(verify)
    assert info.value.reason == BAD_SIGNATURE
    wrong_id = replace(b, block_id=b"\xff" * 32)
    evidence = EquivocationEvidence.from_pair(a, wrong_id)
    evidence.verify(verify)  # signatures alone are fine
    with pytest.raises(InvalidEvidence) as info:
        evidence.verify(verify, block_id)
    assert info.value.reason == ID_MISMATCH


def test_detector_prunes_finalised_heights_and_is_bounded() -> None:
    detector = EquivocationDetector(max_entries=2)
    detector.observe(header(1, b"a"))
    detector.observe(header(2, b"a"))
    detector.observe(header(3, b"a"))  # over the bound: not remembered
    assert detector.observe(header(3, b"b")) is None
    detector.prune(1)
    assert detector.observe(header(1, b"b")) is None
    assert detector.observe(header(2, b"b")) is not None
