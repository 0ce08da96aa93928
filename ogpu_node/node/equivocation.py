"""Equivocation from both sides: this node never signs two blocks for one proposer slot, and it
reports validators that do.

`SigningGuard`: before a proposal leaves the node, the block signed for its (height, slot) is
recorded in the chain store with a synced write; asked to propose there again (after a restart,
or an engine reset that dropped the block), the node sends the recorded block, never a new one.
An honest node may propose again at the same height in a later slot: that is not equivocation
(`ledger/equivocation.py` slashes two blocks for one slot).

`EquivocationWatch`: every header the node sees, once its signature is checked against its
proposer's key, goes through the consensus detector; a second header for one (proposer, height,
parent, slot) becomes a `ReportEquivocation` payload for the node to send.
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.evidence import EquivocationDetector
from ogpu_node.encoding import decode
from ogpu_node.errors import SignatureError
from ogpu_node.keys import verify
from ogpu_node.ledger import Block, State
from ogpu_node.ledger.equivocation import ReportEquivocation, report_from_evidence, signed_header
from ogpu_node.ledger.header import SIGN_KIND_BLOCK, BlockHeader
from ogpu_node.storage import ChainStore

MAX_WATCHED_HEADERS = 10_000
"""Headers the watch remembers (one per proposer, height, parent and slot): a flood of headers
cannot grow it; entries below the evidence window are pruned as blocks are finalised."""


class SigningGuard:
    """This validator's proposals, one block per (height, slot), durable across restarts."""

    def __init__(self, store: ChainStore) -> None:
        self._store = store

    def propose(self, height: int, slot: int, build: Callable[[], Block]) -> tuple[Block, bool]:
        """The block to send for (`height`, `slot`): the one recorded there, or the one `build`
        makes, recorded (synced) before this returns. Returns it and whether it is new."""
        recorded = self._store.signed_proposal(height, slot)
        if recorded is not None:
            return decode(Block, recorded), False
        block = build()
        self._store.record_signed_proposal(height, slot, block.encoded)
        return block, True


class EquivocationWatch:
    """Spots a validator signing two blocks for one slot in the headers this node sees."""

    def __init__(self, max_headers: int = MAX_WATCHED_HEADERS) -> None:
        self._detector = EquivocationDetector(max_headers)

    def observe(self, block: Block, parent: BlockHeader, state: State
                ) -> ReportEquivocation | None:
        """Record `block`'s header (built on `parent`) if its proposer, a validator of `state`,
        signed it; returns the report to send the first time a second header for its slot
        turns up. Headers with a bad signature are not recorded: one planted first could
        otherwise hide a real double signature."""
        header = block.header
        validator = state.validator_by_address.get(header.proposer)
        if validator is None or parent.hash != header.parent_hash:
            return None
        try:
            verify(validator.public_key, header.chain_id, SIGN_KIND_BLOCK, header.encoded,
                   block.signature)
        except SignatureError:
            return None
        evidence = self._detector.observe(
            signed_header(header, block.signature, parent.timestamp, state.params.slot_ms))
        return None if evidence is None else report_from_evidence(evidence, parent)

    def prune(self, finalized_height: int, state: State) -> None:
        """Forget headers too old to be reported (beyond the chain's evidence window)."""
        self._detector.prune(max(0, finalized_height - state.params.evidence_max_age))
