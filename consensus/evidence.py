"""Equivocation evidence: two different headers signed by one proposer for one height."""

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


@dataclass(frozen=True, slots=True)
class SignedHeader:
    """A block header as its proposer signed it; ``signed_bytes`` is what the signature covers."""

    proposer: bytes
    height: int
    block_id: bytes
    signed_bytes: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class EquivocationEvidence:
    """Proof that ``first.proposer`` signed two different blocks at ``first.height``.

    The pair is stored in block-id order so that one double signature yields exactly one
    evidence value, whichever header a node saw first.
    """

    first: SignedHeader
    second: SignedHeader

    def __post_init__(self) -> None:
        a, b = self.first, self.second
        if a.proposer != b.proposer:
            raise InvalidEvidence("headers are signed by different proposers")
        if a.height != b.height:
            raise InvalidEvidence("headers are at different heights")
        if a.block_id == b.block_id:
            raise InvalidEvidence("headers are for the same block")
        if a.block_id > b.block_id:
            raise InvalidEvidence("headers must be in block-id order; use from_pair")
        for header in (a, b):
            if len(header.signed_bytes) > MAX_SIGNED_BYTES:
                raise InvalidEvidence("signed header too large")
            if len(header.signature) > MAX_SIGNATURE_BYTES:
                raise InvalidEvidence("signature too large")

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

    def verify(self, verify_sig: SignatureCheck, header_id: HeaderId | None = None) -> None:
        """Raise ``InvalidEvidence`` unless both signatures check and, when ``header_id`` is
        given, each signed header hashes to its stated block id."""
        for header in (self.first, self.second):
            if header_id is not None and header_id(header.signed_bytes) != header.block_id:
                raise InvalidEvidence(f"signed bytes do not hash to {header.block_id.hex()}")
            if not verify_sig(header.proposer, header.signed_bytes, header.signature):
                raise InvalidEvidence(f"bad signature on {header.block_id.hex()}")


class EquivocationDetector:
    """Remembers the first header per (proposer, height) and reports a conflicting second.

    Entries at or below the finalised height are dropped by ``prune`` and at most
    ``max_entries`` are kept, so a flood of headers cannot grow memory without bound.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise InvalidEvidence("max_entries must be >= 1")
        self._max_entries = max_entries
        self._seen: dict[tuple[bytes, int], SignedHeader] = {}
        self._reported: set[tuple[bytes, int]] = set()

    def observe(self, header: SignedHeader) -> EquivocationEvidence | None:
        """Record ``header``; return evidence the first time a proposer equivocates."""
        key = (header.proposer, header.height)
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
