"""The governable parameters: which `Params` fields a proposal may change, and within what.

One table, `GOVERNABLE`, is the whole rule: a proposal naming a field not in it, or a value
outside its inclusive bounds, is refused when proposed, and the changes are checked again (with
`Params.check`, whose cross-field invariants depend on the other values) when they activate.

Left out on purpose: what fixes the chain's identity or its consensus safety (the chain id lives
outside `Params`; `epoch_length`, `slot_ms`, `min_validator_stake`, `unbonding_period`,
`evidence_max_age`, `committee_delay_blocks`, block size limits) and the emission schedule
(`initial_block_reward`, `halving_interval`: the supply cap is a promise). Changing those takes
a new genesis or a software upgrade, not a vote.

Also left out: what a task's settlement reads again from the parameters of the day rather than
from the task (`verifier_fee_bps`, `committee_size`: each member's fee is
`budget * verifier_fee_bps // BPS // committee_size`; `client_collateral_bps`: what a cancel
after the award pays the provider). A vote raising them would pay committees money the open
tasks never escrowed for it, taken from the clients' refunds or driving an escrow negative.
They can be governable once a task keeps its own terms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from ogpu_node.ledger.errors import InvalidProposal, ParamOutOfBounds, UnknownParam
from ogpu_node.ledger.params import BPS, MAX_BIDS_PER_TASK, MAX_GOV_PERIOD, Params
from ogpu_node.types import UNITS_PER_OGPU

MAX_CHANGES = 8
"""Most parameter changes one proposal carries."""
MAX_PARAM_NAME_LEN = 48
"""Longest parameter name a proposal may carry (the longest governable name is shorter)."""

_OGPU = UNITS_PER_OGPU
_HOUR_MS = 3_600_000


BASE_UNITS = "units"
"""An amount of base units (10^-9 OGPU)."""
BASIS_POINTS = "bps"
MILLISECONDS = "ms"
BLOCKS = "blocks"
COUNT = "count"


@dataclass(frozen=True, slots=True)
class Bounds:
    """Inclusive bounds of a governable parameter, and the unit its values are in."""

    low: int
    high: int
    unit: str

    def contains(self, value: int) -> bool:
        return self.low <= value <= self.high


GOVERNABLE: Mapping[str, Bounds] = MappingProxyType({
    # fees and rewards
    "min_fee": Bounds(1, _OGPU, BASE_UNITS),
    "fee_burn_bps": Bounds(0, BPS, BASIS_POINTS),
    "proposer_reward_bps": Bounds(0, BPS, BASIS_POINTS),
    "model_registration_fee": Bounds(0, 10_000 * _OGPU, BASE_UNITS),
    # market stakes, collateral and deposits
    "provider_min_stake": Bounds(_OGPU, 1_000_000 * _OGPU, BASE_UNITS),
    "provider_collateral_bps": Bounds(100, BPS, BASIS_POINTS),
    "bid_deposit_bps": Bounds(0, BPS, BASIS_POINTS),
    "bid_deposit_min": Bounds(1, 1_000 * _OGPU, BASE_UNITS),
    # slashing
    "slash_to_client_bps": Bounds(0, BPS, BASIS_POINTS),
    "return_penalty_bps": Bounds(0, BPS, BASIS_POINTS),
    "verifier_silence_penalty": Bounds(0, 100_000 * _OGPU, BASE_UNITS),
    "verifier_wrong_accept_penalty": Bounds(0, 1_000_000 * _OGPU, BASE_UNITS),
    "equivocation_slash_bps": Bounds(100, BPS, BASIS_POINTS),
    "equivocation_reporter_bps": Bounds(0, BPS, BASIS_POINTS),
    # market timings and sizes
    "bid_window_ms": Bounds(500, 600_000, MILLISECONDS),
    "reveal_window_ms": Bounds(500, 600_000, MILLISECONDS),
    "verdict_window_ms": Bounds(1_000, _HOUR_MS, MILLISECONDS),
    "verdict_reveal_window_ms": Bounds(1_000, _HOUR_MS, MILLISECONDS),
    "release_window_ms": Bounds(1_000, _HOUR_MS, MILLISECONDS),
    "pool_dispute_window_ms": Bounds(1_000, _HOUR_MS, MILLISECONDS),
    "max_task_attempts": Bounds(1, 5, COUNT),
    "max_bids_per_task": Bounds(1, MAX_BIDS_PER_TASK, COUNT),
    "committee_min_size": Bounds(1, 16, COUNT),
    "max_check_rounds": Bounds(1, 5, COUNT),
    # governance itself (as in Cosmos SDK x/gov), bounded so that a vote cannot make the next
    # vote free, instant or passable by a minority
    "gov_min_deposit": Bounds(_OGPU, 1_000_000 * _OGPU, BASE_UNITS),
    "gov_voting_period": Bounds(10, MAX_GOV_PERIOD, BLOCKS),
    "gov_quorum_bps": Bounds(1_000, BPS, BASIS_POINTS),
    "gov_threshold_bps": Bounds(5_000, 9_000, BASIS_POINTS),
    "gov_activation_delay": Bounds(1, MAX_GOV_PERIOD, BLOCKS),
})
"""Every governable parameter and its inclusive bounds."""

Change = tuple[str, int]
"""(parameter name, new value)."""


def apply_changes(params: Params, changes: Sequence[Change]) -> Params:
    """`params` with `changes` made, after checking them all: 1 to `MAX_CHANGES` changes, each
    to a distinct governable parameter within its bounds, breaking no invariant of
    `Params.check` that `params` kept.

    Raises `InvalidProposal`, `UnknownParam` or `ParamOutOfBounds`."""
    if not 1 <= len(changes) <= MAX_CHANGES:
        raise InvalidProposal(f"a proposal makes 1 to {MAX_CHANGES} changes, not {len(changes)}")
    names = [name for name, _ in changes]
    if len(set(names)) != len(names):
        raise InvalidProposal("a parameter is changed twice")
    for name, value in changes:
        bounds = GOVERNABLE.get(name)
        if bounds is None:
            raise UnknownParam(f"{name[:MAX_PARAM_NAME_LEN]!r} is not a governable parameter")
        if not bounds.contains(value):
            raise ParamOutOfBounds(f"{name} = {value} is outside {bounds.low}..{bounds.high}")
    changed = replace(params, **dict(changes))
    before = set(params.check())  # only what the changes break counts against them
    problems = [p for p in changed.check() if p not in before]
    if problems:
        raise InvalidProposal("the changes leave the parameters inconsistent: "
                              + "; ".join(problems))
    return changed
