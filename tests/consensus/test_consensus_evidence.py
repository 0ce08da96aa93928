"""Equivocation evidence: built from two headers, checked with a supplied verifier."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from consensus.errors import InvalidEvidence
from consensus.evidence import EquivocationDetector, EquivocationEvidence, SignedHeader

KEY = b"test-key"
PROPOSER = b"\x07" * 20


def sign(message: bytes) -> bytes:
    # An HMAC stands in for Ed25519: the evidence code only sees a callable.
    return hmac.new(KEY, message, hashlib.sha256).digest()


def verify(proposer: bytes, message: bytes, signature: bytes) -> bool:
    return proposer == PROPOSER and hmac.compare_digest(sign(message), signature)


def header(height: int, body: bytes, proposer: bytes = PROPOSER) -> SignedHeader:
    signed = height.to_bytes(8, "big") + body
    return SignedHeader(proposer, height, hashlib.sha256(signed).digest(), signed, sign(signed))


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


def test_headers_at_different_heights_or_by_different_proposers_are_not_evidence() -> None:
    with pytest.raises(InvalidEvidence):
        EquivocationEvidence.from_pair(header(1, b"a"), header(2, b"b"))
    with pytest.raises(InvalidEvidence):
        EquivocationEvidence.from_pair(header(1, b"a"), header(1, b"b", b"\x08" * 20))
    with pytest.raises(InvalidEvidence):
        EquivocationEvidence.from_pair(header(1, b"a"), header(1, b"a"))


def test_forged_signature_or_mismatched_id_fails_verification() -> None:
    a, b = header(3, b"a"), header(3, b"b")
    forged = SignedHeader(b.proposer, b.height, b.block_id, b.signed_bytes, b"\x00" * 32)
    with pytest.raises(InvalidEvidence):
        EquivocationEvidence.from_pair(a, forged).verify(verify)
    wrong_id = SignedHeader(b.proposer, b.height, b"\xff" * 32, b.signed_bytes, b.signature)
    evidence = EquivocationEvidence.from_pair(a, wrong_id)
    evidence.verify(verify)  # signatures alone are fine
    with pytest.raises(InvalidEvidence):
        evidence.verify(verify, block_id)


def test_detector_prunes_finalised_heights_and_is_bounded() -> None:
    detector = EquivocationDetector(max_entries=2)
    detector.observe(header(1, b"a"))
    detector.observe(header(2, b"a"))
    detector.observe(header(3, b"a"))  # over the bound: not remembered
    assert detector.observe(header(3, b"b")) is None
    detector.prune(1)
    assert detector.observe(header(1, b"b")) is None
    assert detector.observe(header(2, b"b")) is not None
