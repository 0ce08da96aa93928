"""Typed errors of the consensus engine.

``ConsensusError`` is the root; the node wraps it later. Every way the engine can refuse
input is a subclass, so callers never need to catch ``KeyError`` or ``ValueError``.
"""

from __future__ import annotations


class ConsensusError(Exception):
    """Root of every error raised by ``consensus``."""


class InvalidParameters(ConsensusError):
    """A parameter set breaks one of its invariants."""


class InvalidValidatorSet(ConsensusError):
    """A validator set is empty, has duplicates, or has a non-positive stake."""


class InvalidBlock(ConsensusError):
    """A block cannot join the tree (wrong height, already decided, malformed id)."""


class UnknownParent(ConsensusError):
    """A block's parent is not in the tree; the caller should fetch the parent first."""

    def __init__(self, block_id: bytes, parent_id: bytes) -> None:
        super().__init__(f"parent {parent_id.hex()} of {block_id.hex()} is unknown")
        self.block_id = block_id
        self.parent_id = parent_id


class ProcessingLimitExceeded(ConsensusError):
    """Adding a block would exceed ``Parameters.max_processing``."""


class InvalidEvidence(ConsensusError):
    """Equivocation evidence does not prove a double signature; ``reason`` names the check
    that failed (one of the reason constants in ``consensus.evidence``)."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class InvalidSchedule(ConsensusError):
    """Proposer schedule inputs are out of range (negative height, slot or window)."""
