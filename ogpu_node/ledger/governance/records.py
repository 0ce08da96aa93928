"""Governance's transaction payloads (`PROPOSE`, `VOTE`) and state records (`Proposal`, votes)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, ClassVar

from ogpu_node.encoding import pack
from ogpu_node.ledger.codec import ADDRESS, UINT, Enum, Pair, Record, Seq, Text
from ogpu_node.ledger.governance.bounds import MAX_CHANGES, MAX_PARAM_NAME_LEN, Change
from ogpu_node.types import Address

MAX_TITLE_LEN = 120
"""Longest proposal title (characters)."""
MAX_FAILURE_LEN = 240
"""Longest reason kept on a proposal whose changes failed their check at activation."""
MAX_OPEN_PROPOSALS = 32
"""Most proposals in their voting period at once: bounds the votes a tally reads and the state
a spammer can fill; each one also locks `Params.gov_min_deposit`."""

_CHANGES = Seq(Pair(Text(MAX_PARAM_NAME_LEN), UINT), MAX_CHANGES)
_CHANGES_BYTES = MAX_CHANGES * (MAX_PARAM_NAME_LEN + 16)


class VoteOption(IntEnum):
    YES = 1
    NO = 2
    ABSTAIN = 3


class ProposalStatus(IntEnum):
    """A proposal's life: VOTING --tally--> PASSED --activation--> ACTIVATED (or FAILED, when
    the changes no longer pass their checks); VOTING --tally--> REJECTED or NO_QUORUM."""

    VOTING = 1
    PASSED = 2
    ACTIVATED = 3
    REJECTED = 4
    NO_QUORUM = 5
    FAILED = 6


OPEN_STATUSES = frozenset({ProposalStatus.VOTING, ProposalStatus.PASSED})
"""Statuses a block still acts on (tally, activation)."""


@dataclass(frozen=True, slots=True)
class Propose(Record):
    """Propose `changes` to the governable parameters (`governance/bounds.py`), locking
    `deposit` (at least `Params.gov_min_deposit`) from the sender's balance until the tally."""

    changes: Annotated[tuple[Change, ...], _CHANGES]
    deposit: Annotated[int, UINT]
    title: Annotated[str, Text(MAX_TITLE_LEN)] = ""

    NAME: ClassVar[str] = "propose"
    MAX_BYTES: ClassVar[int] = 64 + _CHANGES_BYTES + 4 * MAX_TITLE_LEN

    def amounts(self) -> tuple[int, ...]:
        return (self.deposit,)


@dataclass(frozen=True, slots=True)
class Vote(Record):
    """Vote on proposal `proposal_id`; a later vote by the same account replaces this one."""

    proposal_id: Annotated[int, UINT]
    option: Annotated[VoteOption, Enum(VoteOption)]

    NAME: ClassVar[str] = "vote"
    MAX_BYTES: ClassVar[int] = 32

    def amounts(self) -> tuple[int, ...]:
        return ()


GovernancePayload = Propose | Vote


@dataclass(frozen=True, slots=True)
class Proposal(Record):
    """A proposal in the state, kept for good. Its id is its number: 1 for a chain's first.

    The tally fields are zero while it is VOTING (the RPC computes a running tally), then hold the
    stake that voted each way and all bonded stake at the end of the voting period."""

    proposer: Annotated[Address, ADDRESS]
    title: Annotated[str, Text(MAX_TITLE_LEN)]
    changes: Annotated[tuple[Change, ...], _CHANGES]
    deposit: Annotated[int, UINT]
    submitted_height: Annotated[int, UINT]
    voting_end: Annotated[int, UINT]
    """Last height whose block may carry a vote; the tally runs at the end of that block."""
    status: Annotated[ProposalStatus, Enum(ProposalStatus)] = ProposalStatus.VOTING
    yes: Annotated[int, UINT] = 0
    no: Annotated[int, UINT] = 0
    abstain: Annotated[int, UINT] = 0
    bonded: Annotated[int, UINT] = 0
    activation_height: Annotated[int, UINT] = 0
    """Set when it passes: the changes are made at the end of that block."""
    failure: Annotated[str, Text(MAX_FAILURE_LEN)] = ""

    NAME: ClassVar[str] = "proposal"
    MAX_BYTES: ClassVar[int] = 256 + _CHANGES_BYTES + 4 * (MAX_TITLE_LEN + MAX_FAILURE_LEN)

    @property
    def deposit_held(self) -> int:
        """The deposit while it is locked (until the tally refunds or burns it)."""
        return self.deposit if self.status == ProposalStatus.VOTING else 0


VoteKey = tuple[int, Address]
"""(proposal id, voter)."""


def proposal_record(proposal_id: int, proposal: Proposal) -> bytes:
    """The bytes a proposal contributes to the state commitment."""
    return pack(["proposal", proposal_id, *proposal.to_fields()])


def vote_record(key: VoteKey, option: VoteOption) -> bytes:
    """The bytes a vote contributes to the state commitment."""
    return pack(["vote", key[0], key[1], int(option)])
