"""Typed rejections of the ledger state machine.

Every rejection carries a stable `code` (for RPC clients and logs) and a human reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ogpu_node.errors import OgpuError


class LedgerError(OgpuError):
    """Base of the ledger's rejections."""

    code = "ledger_error"


class InvalidTransaction(LedgerError):
    """A transaction that cannot be applied; the state it was applied to is unchanged."""

    code = "invalid_transaction"


class MalformedTransaction(InvalidTransaction):
    code = "malformed"


class TransactionTooLarge(InvalidTransaction):
    code = "oversize"


class WrongChain(InvalidTransaction):
    code = "wrong_chain_id"


class BadSignature(InvalidTransaction):
    code = "bad_signature"


class BadNonce(InvalidTransaction):
    code = "bad_nonce"


class InsufficientFunds(InvalidTransaction):
    code = "insufficient_funds"


class FeeTooLow(InvalidTransaction):
    code = "fee_too_low"


class UnknownTxKind(InvalidTransaction):
    code = "unknown_kind"


class AmountOutOfRange(InvalidTransaction):
    code = "amount_out_of_range"


class UnexpectedFailure(InvalidTransaction):
    """Checking or applying the transaction raised something other than a typed rejection: a
    bug, contained to the one transaction so that it cannot stop a node. Every node runs the
    same code, so every node refuses the transaction (and a block holding it) alike."""

    code = "internal_error"


@contextmanager
def failures_contained() -> Iterator[None]:
    """Let `InvalidTransaction`s through and turn any other exception into `UnexpectedFailure`:
    around checking or applying one transaction, so that a bug costs that transaction only."""
    try:
        yield
    except InvalidTransaction:
        raise
    except Exception as exc:
        raise UnexpectedFailure(f"{type(exc).__name__}: {exc}") from exc


class InvalidBlock(LedgerError):
    """A block that cannot be applied; the state it was applied to is unchanged."""

    code = "invalid_block"

    def __init__(self, reason: str, *, tx_index: int | None = None) -> None:
        super().__init__(reason)
        self.tx_index = tx_index


# --- the GPU task market ---


class MarketRuleError(InvalidTransaction):
    """A market transaction that the market's rules do not allow in the current state."""

    code = "market_rule"


class UnknownTask(MarketRuleError):
    code = "unknown_task"


class NotAProvider(MarketRuleError):
    code = "not_a_provider"


class WrongPhase(MarketRuleError):
    """The task is not in the phase this transaction belongs to (or its window has closed)."""

    code = "wrong_phase"


class NotPermitted(MarketRuleError):
    """The sender may not do this to this task (not its client, not on its committee, ...)."""

    code = "not_permitted"


class InvalidTaskSpec(MarketRuleError):
    code = "invalid_spec"


class InvalidModel(MarketRuleError):
    """A model registration whose name or info is outside the protocol's limits
    (`workloads.models`)."""

    code = "invalid_model"


class TaskOverLimit(InvalidTaskSpec):
    """A spec within its own field limits that needs more than a protocol limit allows
    (`workloads.limits`: data set, device memory, work, checkpoint or result size): no
    provider could be required to run it. The message starts with the limit's code."""

    code = "over_limit"


class BadReveal(MarketRuleError):
    """A revealed bid that does not match its sealed commitment."""

    code = "bad_reveal"


class InsufficientStake(MarketRuleError):
    code = "insufficient_stake"


# --- equivocation evidence (ledger/equivocation.py) ---


class InvalidEvidence(InvalidTransaction):
    """Equivocation evidence that does not prove a slashable double signature."""

    code = "invalid_evidence"


class EvidenceWrongChain(InvalidEvidence):
    code = "evidence_wrong_chain"


class EvidenceWrongParent(InvalidEvidence):
    """The parent header given is not the parent of the first header (hash and height)."""

    code = "evidence_wrong_parent"


class EvidenceDifferentProposers(InvalidEvidence):
    code = "evidence_different_proposers"


class EvidenceDifferentHeights(InvalidEvidence):
    code = "evidence_different_heights"


class EvidenceDifferentParents(InvalidEvidence):
    code = "evidence_different_parents"


class EvidenceDifferentSlots(InvalidEvidence):
    """The headers are in different slots: a re-proposal in a later slot is allowed."""

    code = "evidence_different_slots"


class EvidenceSameBlock(InvalidEvidence):
    code = "evidence_same_block"


class EvidenceBadSignature(InvalidEvidence):
    code = "evidence_bad_signature"


class UnknownOffender(InvalidEvidence):
    """The offender's public key is not on chain, so its signatures cannot be checked."""

    code = "evidence_unknown_offender"


class EvidenceTooOld(InvalidEvidence):
    code = "evidence_too_old"


class NothingToSlash(InvalidEvidence):
    """The offender has no stake, and no unbonding entry made since the offence."""

    code = "evidence_nothing_to_slash"


class EvidenceAlreadyApplied(InvalidEvidence):
    """This double signature (offender, height, slot) has already been punished."""

    code = "evidence_already_applied"


class OffenderTombstoned(InvalidEvidence):
    """The offender was already punished for another double signature: once is final."""

    code = "evidence_offender_tombstoned"


class Tombstoned(InvalidTransaction):
    """A tombstoned account (punished for equivocation) may not bond stake again."""

    code = "tombstoned"


# --- governance (ledger/governance/) ---


class GovernanceError(InvalidTransaction):
    """A proposal or vote that governance's rules do not allow."""

    code = "governance"


class InvalidProposal(GovernanceError):
    """A proposal with no change, too many, a parameter named twice, or changes that leave the
    parameters inconsistent (`Params.check`)."""

    code = "gov_invalid_proposal"


class UnknownParam(GovernanceError):
    """A change to a parameter that is not governable (or does not exist)."""

    code = "gov_unknown_param"


class ParamOutOfBounds(GovernanceError):
    """A new value outside the parameter's governable bounds."""

    code = "gov_param_out_of_bounds"


class DepositTooLow(GovernanceError):
    code = "gov_deposit_too_low"


class TooManyProposals(GovernanceError):
    """As many proposals as `MAX_OPEN_PROPOSALS` are being voted on already."""

    code = "gov_too_many_proposals"


class UnknownProposal(GovernanceError):
    code = "gov_unknown_proposal"


class VotingClosed(GovernanceError):
    """The proposal's voting period has ended (or it was already tallied)."""

    code = "gov_voting_closed"


class NotBonded(GovernanceError):
    """Only an account with bonded stake, not tombstoned, may vote."""

    code = "gov_not_bonded"
