"""Equivocation evidence: a validator that signed two different headers for one slot loses a
share of its stake and leaves the validator set for good.

Equivocation is signing two different headers with the same height, parent and slot; a header's
slot is `slot_at(parent.timestamp, header.timestamp, params.slot_ms)`. Re-proposing at the same
height in a later slot (an honest node after a restart) is not equivocation. The checker of that
rule is `consensus.evidence.EquivocationEvidence`; this module feeds it ledger headers and turns
its refusals into typed rejections.

`REPORT_EQUIVOCATION` (`ReportEquivocation`) carries both signed headers and their parent's
header, which proves the parent's timestamp (its hash is the headers' parent hash) without a
signature. Checks, in this order, each failure an `InvalidEvidence` with a stable code:

1. all three headers name this chain                              evidence_wrong_chain
2. `parent` is the first header's parent: its hash is the first's parent hash and its height is
   one below                                                      evidence_wrong_parent
3. same proposer, height, parent and slot, different headers      evidence_different_proposers,
   evidence_different_heights, evidence_different_parents, evidence_different_slots,
   evidence_same_block
4. the offender's public key is on chain                          evidence_unknown_offender
5. not punished before: this (height, slot) again                 evidence_already_applied;
   another double signature of a tombstoned offender              evidence_offender_tombstoned
6. the block holding the evidence is at most `evidence_max_age` blocks above the offence
                                                                   evidence_too_old
7. the offender has stake, or unbonding made since the offence    evidence_nothing_to_slash
8. both signatures are the offender's                             evidence_bad_signature

The costly checks come last and are bounded: three header hashes and two signature checks per
evidence, plus at most `evidence_max_age + 1` unbonding lookups.

Effect: `equivocation_slash_bps` of the offender's bonded stake and of each of its unbonding
entries made at or after the offence height (as Cosmos does: stake that was bonded when it
signed twice answers for it; entries made before were not at stake) is slashed, rounding down
per part. `equivocation_reporter_bps` of the total goes to the reporter (the sender, who pays an
ordinary fee) and the rest is burned. The offender gets a `Tombstone`: it leaves the active set
at the next epoch boundary, earns no epoch reward from then on, and may never stake again (its
remaining stake can still be unbonded). One tombstone per offender, kept for good: it is both the
"applied already" record (it holds the height and slot) and the exclusion, and the set grows only
by punished accounts. An offender is punished once: later double signatures find it tombstoned,
as in Cosmos.

Not covered: a double signature at height 1 (its parent is the genesis document, not a header),
and offences of an offender that reports itself, which then earns the reporter's share back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

from consensus.errors import InvalidEvidence as EvidenceRefused
from consensus.evidence import (
    DIFFERENT_HEIGHTS,
    DIFFERENT_PARENTS,
    DIFFERENT_PROPOSERS,
    DIFFERENT_SLOTS,
    SAME_BLOCK,
    EquivocationEvidence,
    SignedHeader,
)
from consensus.proposer import slot_at
from ogpu_node.encoding import decode, read_array, read_bytes
from ogpu_node.errors import SignatureError
from ogpu_node.keys import verify
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
    InvalidEvidence,
    NothingToSlash,
    OffenderTombstoned,
    UnknownOffender,
)
from ogpu_node.ledger.header import SIGN_KIND_BLOCK, BlockHeader, read_header
from ogpu_node.ledger.params import BPS
from ogpu_node.ledger.state import Tombstone, UnbondingKey
from ogpu_node.ledger.working import Working
from ogpu_node.types import SIGNATURE_LEN, Address


@dataclass(frozen=True, slots=True)
class ReportEquivocation:
    """Two headers signed by one proposer for one slot, and their parent's header.

    Encoded as `[first header fields, first signature, second header fields, second signature,
    parent header fields]`, headers exactly as inside a block.
    """

    first: BlockHeader
    first_signature: bytes
    second: BlockHeader
    second_signature: bytes
    parent: BlockHeader

    MAX_BYTES: ClassVar[int] = 1024
    """The largest report is 760 bytes: three headers of 209 (a 64-character chain id, 64-bit
    height and time), two 64-byte signatures and their framing."""

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.first.to_fields(), self.first_signature, self.second.to_fields(),
                self.second_signature, self.parent.to_fields()]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        first, first_sig, second, second_sig, parent = read_array(value, 5, "equivocation")
        return cls(
            read_header(first, "equivocation.first"),
            read_bytes(first_sig, "equivocation.first_signature", size=SIGNATURE_LEN),
            read_header(second, "equivocation.second"),
            read_bytes(second_sig, "equivocation.second_signature", size=SIGNATURE_LEN),
            read_header(parent, "equivocation.parent"),
        )


@dataclass(frozen=True, slots=True)
class Offence:
    """A proven, punishable double signature, and the unbonding entries that answer for it."""

    offender: Address
    height: int
    slot: int
    unbonding: tuple[UnbondingKey, ...]


_REFUSALS: dict[str, type[InvalidEvidence]] = {
    DIFFERENT_PROPOSERS: EvidenceDifferentProposers,
    DIFFERENT_HEIGHTS: EvidenceDifferentHeights,
    DIFFERENT_PARENTS: EvidenceDifferentParents,
    DIFFERENT_SLOTS: EvidenceDifferentSlots,
    SAME_BLOCK: EvidenceSameBlock,
}


def signed_header(header: BlockHeader, signature: bytes, parent_timestamp: int,
                  slot_ms: int) -> SignedHeader:
    """`header` as the equivocation checker and detector see it, with its slot computed from
    its parent's timestamp (the node's detector must build headers with this too)."""
    return SignedHeader(
        proposer=header.proposer, height=header.height, parent_id=header.parent_hash,
        slot=slot_at(parent_timestamp, header.timestamp, slot_ms), block_id=header.hash,
        signed_bytes=header.encoded, signature=signature,
    )


def report_from_evidence(evidence: EquivocationEvidence,
                         parent: BlockHeader) -> ReportEquivocation:
    """The transaction payload reporting `evidence` (whose signed bytes are ledger headers),
    with the headers' parent. Raises `DecodeError` if the signed bytes are not headers."""
    first, second = evidence.first, evidence.second
    return ReportEquivocation(decode(BlockHeader, first.signed_bytes), first.signature,
                              decode(BlockHeader, second.signed_bytes), second.signature, parent)


def slashable_unbonding(w: Working, offender: Address, height: int) -> tuple[UnbondingKey, ...]:
    """The offender's unbonding entries made at or after `height` (this block's included).

    An entry made at height u is keyed by its release, u + unbonding_period, so these are found
    by key, one lookup per height since the offence, instead of by scanning every entry.
    """
    period = w.base.params.unbonding_period
    keys = ((release, offender) for release in range(height + period, w.height + period + 1))
    return tuple(key for key in keys if w.unbonding_amount(key))


def check_equivocation(w: Working, report: ReportEquivocation) -> Offence:
    """Every check of the module docstring, in its order; writes nothing."""
    state, params = w.base, w.base.params
    first, second, parent = report.first, report.second, report.parent
    for header in (first, second, parent):
        if header.chain_id != state.chain_id:
            raise EvidenceWrongChain(f"a header is for chain {header.chain_id!r}, "
                                     f"this is {state.chain_id!r}")
    if parent.hash != first.parent_hash or parent.height + 1 != first.height:
        raise EvidenceWrongParent("the parent header is not the first header's parent")
    try:
        evidence = EquivocationEvidence.from_pair(
            signed_header(first, report.first_signature, parent.timestamp, params.slot_ms),
            signed_header(second, report.second_signature, parent.timestamp, params.slot_ms))
    except EvidenceRefused as exc:
        raise _REFUSALS.get(exc.reason, InvalidEvidence)(str(exc)) from exc

    offender = Address(evidence.proposer)
    account = w.account(offender)
    if not account.public_key:
        raise UnknownOffender("the offender's public key is not on chain")
    tombstone = w.tombstone(offender)
    if tombstone is not None:
        if (tombstone.height, tombstone.slot) == (evidence.height, evidence.slot):
            raise EvidenceAlreadyApplied(
                f"this double signature (height {evidence.height}, slot {evidence.slot}) "
                "has been punished already")
        raise OffenderTombstoned(f"the offender was punished already, at height "
                                 f"{tombstone.height}")
    if evidence.height + params.evidence_max_age < w.height:
        raise EvidenceTooOld(f"the offence at height {evidence.height} is more than "
                             f"{params.evidence_max_age} blocks old")
    unbonding = slashable_unbonding(w, offender, evidence.height)
    if not account.stake and not unbonding:
        raise NothingToSlash("the offender has no stake and nothing unbonding since the offence")

    def verify_sig(_proposer: bytes, signed_bytes: bytes, signature: bytes) -> bool:
        try:
            verify(account.public_key, state.chain_id, SIGN_KIND_BLOCK, signed_bytes, signature)
        except SignatureError:
            return False
        return True

    try:
        evidence.verify(verify_sig)
    except EvidenceRefused as exc:
        raise EvidenceBadSignature(str(exc)) from exc
    return Offence(offender, evidence.height, evidence.slot, unbonding)


def slash_equivocation(w: Working, offence: Offence, reporter: Address) -> int:
    """Slash, pay the reporter, burn the rest and tombstone the offender (see the module
    docstring); returns the amount slashed. Only writes: `check_equivocation` has passed."""
    params = w.base.params
    share = params.equivocation_slash_bps
    account = w.account(offence.offender)
    slashed = account.stake * share // BPS
    w.set_account(offence.offender, replace(account, stake=account.stake - slashed))
    for key in offence.unbonding:
        amount = w.unbonding_amount(key)
        cut = amount * share // BPS
        w.unbonding[key] = amount - cut
        slashed += cut
    to_reporter = slashed * params.equivocation_reporter_bps // BPS
    w.credit(reporter, to_reporter)
    w.burned += slashed - to_reporter
    w.set_tombstone(offence.offender, Tombstone(offence.height, offence.slot, slashed))
    return slashed
