"""Governance's state transitions: `PROPOSE`, `VOTE`, and `process_governance`, which every
block runs at its end (after its transactions, before the epoch step).

    PROPOSE in block h: the deposit moves from the proposer's balance into the proposal;
        voting is open in blocks h + 1 .. h + gov_voting_period (= voting_end).
    VOTE: by an account with bonded stake, not tombstoned, in a block up to voting_end; a later
        vote by the same account replaces its earlier one.
    End of block voting_end, the tally: each vote weighs its voter's stake *now* (so stake moved
        after voting is counted once, where it is at the end), against all bonded stake.
        voted (yes + no + abstain) < gov_quorum_bps of bonded  -> NO_QUORUM, deposit burned
        yes <= gov_threshold_bps of (yes + no)                 -> REJECTED, deposit refunded
        otherwise                                              -> PASSED, deposit refunded,
                                                  activation_height = voting_end + delay
    End of block activation_height: the changes are checked again against the parameters of
        that moment (`apply_changes`) and made, in order of (activation height, number); a set
        that no longer passes its checks leaves the parameters alone (FAILED).

New parameters are stored in the state at the end of the block, so the next block is the first
to run under them: no block runs under two sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ogpu_node.ledger.errors import (
    DepositTooLow,
    InsufficientFunds,
    InvalidTransaction,
    NotBonded,
    TooManyProposals,
    UnknownProposal,
    VotingClosed,
)
from ogpu_node.ledger.governance.bounds import apply_changes
from ogpu_node.ledger.governance.records import (
    MAX_FAILURE_LEN,
    MAX_OPEN_PROPOSALS,
    GovernancePayload,
    Proposal,
    ProposalStatus,
    Propose,
    Vote,
    VoteKey,
    VoteOption,
)
from ogpu_node.ledger.params import BPS, Params
from ogpu_node.ledger.working import Working
from ogpu_node.types import Address


def check_governance_payload(params: Params, payload: GovernancePayload) -> None:
    """The checks a proposal needs no state for (mempool admission and blocks alike): its
    deposit and its changes against `params`. A vote has none beyond its encoding."""
    if isinstance(payload, Propose):
        if payload.deposit < params.gov_min_deposit:
            raise DepositTooLow(f"deposit {payload.deposit} is below the minimum "
                                f"{params.gov_min_deposit}")
        apply_changes(params, payload.changes)


def process_governance_tx(w: Working, sender: Address, payload: GovernancePayload) -> None:
    """Apply one governance payload sent by `sender` (its fee already charged)."""
    if isinstance(payload, Propose):
        process_propose(w, sender, payload)
    else:
        process_vote(w, sender, payload)


def process_propose(w: Working, sender: Address, p: Propose) -> None:
    """Lock the deposit and open the proposal for votes."""
    voting = sum(1 for i in w.open_proposal_ids()
                 if (open_one := w.proposal(i)) and open_one.status == ProposalStatus.VOTING)
    if voting >= MAX_OPEN_PROPOSALS:
        raise TooManyProposals(f"{voting} proposals are being voted on, limit "
                               f"{MAX_OPEN_PROPOSALS}")
    balance = w.account(sender).balance
    if balance < p.deposit:
        raise InsufficientFunds(f"balance {balance} is below the deposit {p.deposit}")
    w.credit(sender, -p.deposit)
    w.set_proposal(w.next_proposal_id(), Proposal(
        proposer=sender, title=p.title, changes=p.changes, deposit=p.deposit,
        submitted_height=w.height, voting_end=w.height + w.base.params.gov_voting_period))


def process_vote(w: Working, sender: Address, v: Vote) -> None:
    """Record (or replace) `sender`'s vote; its weight is fixed only by the tally."""
    proposal = w.proposal(v.proposal_id)
    if proposal is None:
        raise UnknownProposal(f"no proposal {v.proposal_id}")
    if proposal.status != ProposalStatus.VOTING or w.height > proposal.voting_end:
        raise VotingClosed(f"voting on proposal {v.proposal_id} ended at height "
                           f"{proposal.voting_end}")
    if vote_weight(w, sender) == 0:
        raise NotBonded("only an account with bonded stake (not tombstoned) may vote")
    w.set_vote((v.proposal_id, sender), v.option)


def vote_weight(w: Working, voter: Address) -> int:
    """The stake a vote by `voter` weighs now: its bonded stake, none if tombstoned."""
    return 0 if w.tombstone(voter) is not None else w.account(voter).stake


def bonded_stake(w: Working) -> int:
    """All bonded stake that could vote (tombstoned accounts' excluded); read at tallies only."""
    tombstoned = w.tombstoned()
    accounts = dict(w.base.accounts)
    accounts.update(w.accounts)
    return sum(a.stake for address, a in accounts.items() if address not in tombstoned)


def process_governance(w: Working) -> None:
    """End of block: tally the proposals whose voting ends here, then make the changes that
    activate here (in order of activation height, then number)."""
    ending = [(proposal_id, proposal) for proposal_id in w.open_proposal_ids()
              if (proposal := w.proposal(proposal_id)) is not None
              and proposal.status == ProposalStatus.VOTING and proposal.voting_end <= w.height]
    if ending:
        # one scan of the accounts and one of the votes for all of them: a tally moves
        # balances only, never stake, and each tally drops only its own votes
        bonded = bonded_stake(w)
        votes = w.votes_on([proposal_id for proposal_id, _ in ending])
        for proposal_id, proposal in ending:
            tally(w, proposal_id, proposal, bonded, votes[proposal_id])
    due = []
    for proposal_id in w.open_proposal_ids():
        proposal = w.proposal(proposal_id)
        if (proposal is not None and proposal.status == ProposalStatus.PASSED
                and proposal.activation_height <= w.height):
            due.append((proposal.activation_height, proposal_id, proposal))
    for _, proposal_id, proposal in sorted(due, key=lambda d: d[:2]):
        activate(w, proposal_id, proposal)


def outcome(params: Params, yes: int, no: int, abstain: int, bonded: int) -> ProposalStatus:
    """What a tally of these stakes decides: NO_QUORUM, PASSED or REJECTED."""
    if bonded == 0 or (yes + no + abstain) * BPS < params.gov_quorum_bps * bonded:
        return ProposalStatus.NO_QUORUM
    if yes * BPS > params.gov_threshold_bps * (yes + no):
        return ProposalStatus.PASSED
    return ProposalStatus.REJECTED


def tally(w: Working, proposal_id: int, proposal: Proposal, bonded: int,
          votes: Sequence[tuple[VoteKey, VoteOption]]) -> None:
    """Count `votes` (all the proposal's, `Working.votes_on`) by the voters' stake now against
    `bonded` (`bonded_stake(w)`), settle the deposit and drop the votes."""
    totals = dict.fromkeys(VoteOption, 0)
    for key, option in votes:
        totals[option] += vote_weight(w, key[1])
        w.set_vote(key, None)
    yes, no, abstain = totals[VoteOption.YES], totals[VoteOption.NO], totals[VoteOption.ABSTAIN]
    status = outcome(w.params, yes, no, abstain, bonded)
    if status == ProposalStatus.NO_QUORUM:
        w.burned += proposal.deposit
    else:
        w.credit(proposal.proposer, proposal.deposit)
    activation = w.height + w.params.gov_activation_delay if status == ProposalStatus.PASSED else 0
    w.set_proposal(proposal_id, replace(proposal, status=status, yes=yes, no=no,
                                        abstain=abstain, bonded=bonded,
                                        activation_height=activation))


def activate(w: Working, proposal_id: int, proposal: Proposal) -> None:
    """Make a passed proposal's changes, or mark it FAILED if they no longer pass their checks
    (another proposal may have changed a parameter they depend on)."""
    try:
        w.params = apply_changes(w.params, proposal.changes)
    except InvalidTransaction as exc:
        failure = f"{exc.code}: {exc}"[:MAX_FAILURE_LEN]
        w.set_proposal(proposal_id, replace(proposal, status=ProposalStatus.FAILED,
                                            failure=failure))
        return
    w.set_proposal(proposal_id, replace(proposal, status=ProposalStatus.ACTIVATED))
