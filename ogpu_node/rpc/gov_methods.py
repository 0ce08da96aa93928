"""Governance's JSON-RPC methods (`gov_params`, `gov_list`, `gov_get`), read from the last
finalised state.

A proposal still being voted on shows a running tally: its votes weighed by the voters' stake
now, with the ledger's own functions (`governance/rules.py`), so it says what the tally would
decide if voting ended at this height. A tallied proposal shows the totals the tally recorded;
its individual votes are gone from the state (the tally deletes them, as Cosmos SDK does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ogpu_node.address import address_to_text
from ogpu_node.ledger import State
from ogpu_node.ledger.governance.bounds import BASE_UNITS, GOVERNABLE
from ogpu_node.ledger.governance.records import (
    MAX_OPEN_PROPOSALS,
    Proposal,
    ProposalStatus,
    VoteOption,
)
from ogpu_node.ledger.governance.rules import bonded_stake, outcome, vote_weight
from ogpu_node.ledger.params import BPS
from ogpu_node.ledger.working import Working
from ogpu_node.rpc import params as p
from ogpu_node.rpc.config import RpcConfig
from ogpu_node.rpc.errors import not_found
from ogpu_node.rpc.views import amount_fields

if TYPE_CHECKING:
    from ogpu_node.rpc.methods import CallContext, Handler

Json = Any
STATUS_NAMES = tuple(s.name.lower() for s in ProposalStatus)
MAX_VOTES_LISTED = 1_000
"""Most votes `gov_get` lists (largest stake first); the tally counts them all."""

_bonded_memo: dict[tuple[int, bytes], int] = {}
"""All bonded stake of the last finalised state asked about, by (height, block hash)."""


def bonded_at(state: State) -> int:
    """All bonded stake at `state` (`bonded_stake`, a scan of every account): made once per
    finalised block, however many calls (the governance page asks `gov_get` for each proposal
    at each block) and clients want it, so that reading a running tally stays cheap."""
    key = (state.height, bytes(state.block_hash))
    if key not in _bonded_memo:
        _bonded_memo.clear()
        _bonded_memo[key] = bonded_stake(Working(state))
    return _bonded_memo[key]


def param_value(name: str, value: int) -> int | str:
    """A parameter's value as JSON: amounts as decimal strings (as everywhere in this API: they
    can pass 2^53), other values as numbers; a name no longer governable (in a proposal made
    when it was) as a string, as an amount would be."""
    bounds = GOVERNABLE.get(name)
    return str(value) if bounds is None or bounds.unit == BASE_UNITS else value




def changes_view(proposal: Proposal) -> list[Json]:
    return [{"name": name, "value": param_value(name, value)}
            for name, value in proposal.changes]


def proposal_summary(proposal_id: int, proposal: Proposal) -> Json:
    """What `gov_list` shows of a proposal."""
    return {
        "id": proposal_id, "title": proposal.title, "proposer": address_to_text(proposal.proposer),
        "status": proposal.status.name.lower(), "changes": changes_view(proposal),
        **amount_fields("deposit", proposal.deposit),
        "submittedHeight": proposal.submitted_height, "votingEnd": proposal.voting_end,
        "activationHeight": proposal.activation_height or None,
    }


def tally_view(state: State, proposal_id: int, proposal: Proposal) -> tuple[Json, list[Json]]:
    """The tally (running while VOTING, else the recorded one) and the votes still held."""
    votes: list[Json] = []
    if proposal.status == ProposalStatus.VOTING:
        w = Working(state)  # read-only: the ledger's own weights and bonded stake
        totals = dict.fromkeys(VoteOption, 0)
        for (number, voter), option in state.votes.items():
            if number == proposal_id:
                weight = vote_weight(w, voter)
                totals[option] += weight
                votes.append({"voter": address_to_text(voter), "option": option.name.lower(),
                              **amount_fields("stake", weight)})
        yes, no, abstain = totals[VoteOption.YES], totals[VoteOption.NO], totals[VoteOption.ABSTAIN]
        bonded = bonded_at(state)
        decision = outcome(state.params, yes, no, abstain, bonded)
        final = False
    else:
        yes, no, abstain, bonded = proposal.yes, proposal.no, proposal.abstain, proposal.bonded
        decision, final = proposal.status, True
    votes.sort(key=lambda v: (-int(v["stake"]), v["voter"]))
    voted = yes + no + abstain
    tally = {
        "final": final, **amount_fields("yes", yes), **amount_fields("no", no),
        **amount_fields("abstain", abstain), **amount_fields("bonded", bonded),
        "turnoutBps": voted * BPS // bonded if bonded else 0,
        "yesBps": yes * BPS // (yes + no) if yes + no else 0,
        "quorumBps": state.params.gov_quorum_bps, "thresholdBps": state.params.gov_threshold_bps,
        "outcome": "passed" if decision in (ProposalStatus.ACTIVATED, ProposalStatus.FAILED)
        else decision.name.lower(),
        "voteCount": len(votes),
    }
    return tally, votes[:MAX_VOTES_LISTED]


async def gov_params(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    pending: dict[str, list[Json]] = {name: [] for name in GOVERNABLE}
    proposed: dict[str, list[Json]] = {name: [] for name in GOVERNABLE}
    for proposal_id in sorted(state.open_proposals):
        proposal = state.proposals[proposal_id]
        for name, value in proposal.changes:
            if name not in GOVERNABLE:
                continue  # no longer governable (proposed before it left the table)
            if proposal.status == ProposalStatus.PASSED:
                pending[name].append({"proposalId": proposal_id,
                                      "value": param_value(name, value),
                                      "activationHeight": proposal.activation_height})
            else:
                proposed[name].append({"proposalId": proposal_id,
                                       "value": param_value(name, value),
                                       "votingEnd": proposal.voting_end})
    for changes in pending.values():
        changes.sort(key=lambda c: (c["activationHeight"], c["proposalId"]))
    return {"height": state.height, "params": [
        {"name": name, "value": param_value(name, getattr(state.params, name)),
         "low": param_value(name, bounds.low), "high": param_value(name, bounds.high),
         "unit": bounds.unit, "pending": pending[name], "proposed": proposed[name]}
        for name, bounds in GOVERNABLE.items()]}


async def gov_list(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    wanted = args["status"]
    # proposals are numbered in order: newest first is by number, descending; a scan of all of
    # them, which the deposit keeps to a few thousand
    matched = [(i, prop) for i, prop in state.proposals.items()
               if wanted is None or prop.status.name.lower() == wanted]
    matched.sort(key=lambda item: item[0], reverse=True)
    return {"height": state.height, "total": len(matched), "maxOpen": MAX_OPEN_PROPOSALS,
            "proposals": [proposal_summary(i, prop) for i, prop in matched[:args["limit"]]]}


async def gov_get(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    proposal_id = args["proposalId"]
    proposal = state.proposals.get(proposal_id)
    if proposal is None:
        raise not_found("proposal", str(proposal_id))
    tally, votes = tally_view(state, proposal_id, proposal)
    return {**proposal_summary(proposal_id, proposal), "height": state.height,
            "tally": tally, "votes": votes, "failure": proposal.failure or None}


def gov_methods(config: RpcConfig) -> list[tuple[str, Handler, str, tuple[p.Param, ...]]]:
    """(name, handler, summary, params) of every governance method."""
    return [
        ("gov_params", gov_params, "Governable parameters: value, bounds, unit, changes passed "
                                   "and pending, changes being voted on.", ()),
        ("gov_list", gov_list, "Governance proposals, newest first, filtered by status.",
         (p.Param("status", p.one_of(*STATUS_NAMES), required=False),
          p.Param("limit", p.count(config.max_task_list), required=False,
                  default=min(50, config.max_task_list)))),
        ("gov_get", gov_get, "A proposal: changes, status, activation height, tally (running "
                             "while voting) and votes.",
         (p.Param("proposalId", p.height),)),
    ]
