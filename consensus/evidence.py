"""Equivocation evidence: two different headers signed by one proposer for one slot.

A header's slot is ``proposer.slot_at(parent timestamp, header timestamp, window)``, so two
headers compete for one slot only if they share their height and their parent. An honest
proposer may sign a second header at the same height in a later slot (after a restart, when its
first block was lost): that is not equivocation, and neither the detector nor the evidence
treats it as such.

Every refusal is an ``InvalidEvidence`` whose ``reason`` is one of the constants below, so that
the ledger can turn it into a stable rejection code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consensus.errors import InvalidEvidence

SignatureCheck = Callable[[bytes, bytes, bytes], bool]
"""``verify_sig(validator, signed_bytes, signature) -> bool``, supplied by the ledger."""

HeaderId = Callable[[bytes], bytes]
"""``header_id(signed_bytes) -> block id``, supplied by the ledger's encoding."""

MAX_SIGNED_BYTES = 64 * 1024
MAX_SIGNATURE_BYTES = 256

DIFFERENT_PROPOSERS = "different_proposers"
DIFFERENT_HEIGHTS = "different_heights"
DIFFERENT_PARENTS = "different_parents"
DIFFERENT_SLOTS = "different_slots"
SAME_BLOCK = "same_block"
NOT_ORDERED = "not_ordered"
TOO_LARGE = "too_large"
ID_MISMATCH = "id_mismatch"
BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True, slots=True)
class SignedHeader:
    """A block header as its proposer signed it; ``signed_bytes`` is what the signature covers.

    ``slot`` is the header's slot, computed by the caller from the parent's timestamp.
    """

    proposer: bytes
    height: int
    parent_id: bytes
    slot: int
    block_id: bytes
    signed_bytes: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class EquivocationEvidence:
    """Proof that ``first.proposer`` signed two different blocks for one slot: same height,
    same parent, same slot.

    The pair is stored in block-id order so that one double signature yields exactly one
    evidence value, whichever header a node saw first.
    """

    first: SignedHeader
    second: SignedHeader

    def __post_init__(self) -> None:
        a, b = self.first, self.second
        if a.proposer != b.proposer:
            raise InvalidEvidence("headers are signed by different proposers",
                                  DIFFERENT_PROPOSERS)
        if a.height != b.height:
            raise InvalidEvidence("headers are at different heights", DIFFERENT_HEIGHTS)
        if a.parent_id != b.parent_id:
            raise InvalidEvidence("headers have different parents", DIFFERENT_PARENTS)
        if a.slot != b.slot:
            raise InvalidEvidence(f"headers are in slots {a.slot} and {b.slot}: a later "
                                  "slot's proposal is not equivocation", DIFFERENT_SLOTS)
        if a.block_id == b.block_id:
            raise InvalidEvidence("headers are for the same block", SAME_BLOCK)
        if a.block_id > b.block_id:
            raise InvalidEvidence("headers must be in block-id order; use from_pair",
                                  NOT_ORDERED)
        for header in (a, b):
            if len(header.signed_bytes) > MAX_SIGNED_BYTES:
                raise InvalidEvidence("signed header too large", TOO_LARGE)
            if len(header.signature) > MAX_SIGNATURE_BYTES:
                raise InvalidEvidence("signature too large", TOO_LARGE)

    @classmethod
    def from_pair(cls, one: SignedHeader, other: SignedHeader) -> EquivocationEvidence:
        """Build evidence from two headers in any order."""
        if one.block_id > other.block_id:
            one, other = other, one
        return cls(one, other)

    @property
    def proposer(self) -> bytes:
        """The validator to slash."""
        return self.first.proposer

    @property
    def height(self) -> int:
        """The height at which it signed twice."""
        return self.first.height

    @property
    def slot(self) -> int:
        """The slot in which it signed twice."""
        return self.first.slot

    def verify(self, verify_sig: SignatureCheck, header_id: HeaderId | None = None) -> None:
        """Raise ``InvalidEvidence`` unless both signatures check and, when ``header_id`` is
        given, each signed header hashes to its stated block id."""
        for header in (self.first, self.second):
            if header_id is not None and header_id(header.signed_bytes) != header.block_id:
                raise InvalidEvidence(f"signed bytes do not hash to {header.block_id.hex()}",
                                      ID_MISMATCH)
            if not verify_sig(header.proposer, header.signed_bytes, header.signature):
                raise InvalidEvidence(f"bad signature on {header.block_id.hex()}", BAD_SIGNATURE)


_SlotKey = tuple[bytes, int, bytes, int]
"""(proposer, height, parent id, slot): one proposal allowed per key."""


class EquivocationDetector:
    """Remembers the first header per (proposer, height, parent, slot) and reports a
    conflicting second.

    Entries at or below the finalised height are dropped by ``prune`` and at most
    ``max_entries`` are kept, so a flood of headers cannot grow memory without bound.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise InvalidEvidence("max_entries must be >= 1")
        self._max_entries = max_entries
        self._seen: dict[_SlotKey, SignedHeader] = {}
        self._reported: set[_SlotKey] = set()

    def observe(self, header: SignedHeader) -> EquivocationEvidence | None:
        """Record ``header``; return evidence the first time a proposer equivocates."""
        key = (header.proposer, header.height, header.parent_id, header.slot)
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) < self._max_entries:
                self._seen[key] = header
            return None
        if seen.block_id == header.block_id or key in self._reported:
            return None
        self._reported.add(key)
        return EquivocationEvidence.from_pair(seen, header)

    def prune(self, finalized_height: int) -> None:
        """Forget headers at or below ``finalized_height``; a slashing window ends there."""
        self._seen = {k: v for k, v in self._seen.items() if k[1] > finalized_height}
        self._reported = {k for k in self._reported if k[1] > finalized_height}
