"""Economic and protocol parameters of a chain, fixed by its genesis."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

from ogpu_node.encoding import read_list, read_uint
from ogpu_node.errors import DecodeError
from ogpu_node.types import MAX_AMOUNT, UNITS_PER_OGPU

BPS = 10_000
"""Basis points in one whole: shares are integers out of BPS, never floats."""

MAX_TX_BYTES = 64 * 1024
"""Protocol limit on one encoded transaction."""

MAX_SLOT_MS = 600_000
"""Upper bound of `Params.slot_ms`: a proposer slot of ten minutes is already a halted chain."""

MAX_CHAIN_ID_LEN = 64
"""Protocol limit on a chain id, in transactions and block headers."""

MAX_COMMITTEE_DELAY = 64
"""Upper bound of `Params.committee_delay_blocks`."""
MAX_BIDS_PER_TASK = 256
"""Upper bound of `Params.max_bids_per_task`: a task record holding this many bids, a full money
trail and the largest result stays well within `Task.MAX_BYTES` (1,024 bids did not fit)."""

MAX_GOV_PERIOD = 1_000_000
"""Upper bound of `Params.gov_voting_period` and `Params.gov_activation_delay` (blocks)."""

FIRST_LATER_PARAM = "gov_min_deposit"
"""The first parameter added after chains were launched. It and those after it are encoded only
up to the last one that differs from its default, so that the genesis hash and state roots of a
chain whose parameters predate them (and the pinned vectors) stay what they were."""

MAX_EVIDENCE_AGE = 100_000
"""Upper bound of `Params.evidence_max_age`: applying evidence looks up the offender's unbonding
entries once per block of the window."""


@dataclass(frozen=True, slots=True)
class Params:
    """Parameters every node of a chain applies identically.

    Amounts are base units, durations are in blocks, shares in basis points.
    """

    min_fee: int = 1_000
    fee_burn_bps: int = 5_000
    initial_block_reward: int = 2 * UNITS_PER_OGPU
    halving_interval: int = 2_100_000
    proposer_reward_bps: int = 2_000
    min_validator_stake: int = 10_000 * UNITS_PER_OGPU
    unbonding_period: int = 1_000
    epoch_length: int = 100
    max_block_txs: int = 5_000
    max_block_bytes: int = 4 * 1024 * 1024
    # --- GPU task market (times in milliseconds of block time) ---
    provider_min_stake: int = 100 * UNITS_PER_OGPU
    client_collateral_bps: int = 1_000
    """The client locks this share of its budget; it goes to the provider if the client cancels
    after the award."""
    provider_collateral_bps: int = 2_000
    """The winner locks this share of its payment from its provider stake until settlement."""
    verifier_fee_bps: int = 200
    """Escrowed on top of the budget; shared by the verifiers who voted with the outcome."""
    slash_to_client_bps: int = 5_000
    """Share of a slashed collateral paid to the client; the rest is burned."""
    return_penalty_bps: int = 2_500
    """Share of its collateral a provider pays to return a task it cannot run (`RETURN_TASK`),
    shared out as a slash is; a wrong result or a missed deadline costs all of it."""
    committee_size: int = 3
    bid_window_ms: int = 3_000
    reveal_window_ms: int = 3_000
    verdict_window_ms: int = 30_000
    """Time a drawn committee has to seal its verdicts (`market/verification.py`)."""
    max_task_attempts: int = 3
    max_bids_per_task: int = 64
    bid_deposit_bps: int = 100
    """A sealed bid locks this share of the task's budget (but at least `bid_deposit_min`) from
    the bidder's free provider stake: returned when the bid is revealed (or the client cancels
    before the award), paid to the client when the reveal window ends with it sealed. What
    makes a bid that is never revealed cost its bidder."""
    bid_deposit_min: int = UNITS_PER_OGPU // 10
    """The least deposit a sealed bid locks, whatever the budget (base units)."""
    pool_dispute_window_ms: int = 5_000
    """Time a pool's owner has to dispute an unsampled answer before it is paid."""
    release_window_ms: int = 10_000
    """Time a provider whose result was accepted has to release its key (and be paid)."""
    model_registration_fee: int = UNITS_PER_OGPU
    """Burned by `REGISTER_MODEL`: a model record stays in the state for ever."""
    # --- committees (see market/verification.py) ---
    committee_delay_blocks: int = 2
    """A claim recorded in block h has its committee drawn in block h + this, from the hash of
    that block's parent; at least 2, so that the seed is a block made after the claim's."""
    committee_min_size: int = 3
    """A committee smaller than this (too few eligible validators) checks nothing."""
    verdict_reveal_window_ms: int = 10_000
    """Time members have to open their sealed verdicts once sealing ends."""
    max_check_rounds: int = 3
    """Committees drawn for one claim: a silent round is followed by a fresh one up to this."""
    verifier_silence_penalty: int = 10 * UNITS_PER_OGPU
    """Taken from the validator stake of a member that never sealed or never revealed."""
    verifier_wrong_accept_penalty: int = 200 * UNITS_PER_OGPU
    """Taken from the validator stake of a member that revealed *accept* on a rejected claim."""
    # --- consensus ---
    slot_ms: int = 1_000
    """Length of a proposer slot: slot s of a height opens s * slot_ms after the parent's
    timestamp (`consensus.proposer.slot_at`). A chain parameter rather than a node setting
    because every node must agree on it: equivocation is judged per (height, slot)."""
    # --- equivocation (see ledger/equivocation.py) ---
    evidence_max_age: int = 500
    """Evidence of a double signature at height h is accepted in blocks up to h + this; below
    `unbonding_period`, so stake unbonded after the offence is still there to slash."""
    equivocation_slash_bps: int = 500
    """Share of the offender's stake (and of its unbonding entries made since the offence)
    taken by evidence."""
    equivocation_reporter_bps: int = 1_000
    """Share of the slashed amount paid to the reporter; the rest is burned."""
    # --- governance (see ledger/governance/); later parameters: see FIRST_LATER_PARAM ---
    gov_min_deposit: int = 1_000 * UNITS_PER_OGPU
    """The least deposit a `PROPOSE` locks: refunded when the vote reaches quorum, burned when it
    does not, so that spam costs its sender."""
    gov_voting_period: int = 1_000
    """A proposal included in block h is open to votes in blocks h + 1 .. h + this, and tallied
    at the end of the last one."""
    gov_quorum_bps: int = 3_340
    """Share of all bonded stake that must vote (yes, no or abstain) for a tally to count."""
    gov_threshold_bps: int = 5_000
    """A proposal passes when yes stake is more than this share of yes + no stake."""
    gov_activation_delay: int = 100
    """A proposal that passes at the end of block e changes the parameters at the end of block
    e + this, so every node (and agent) knows the change ahead."""

    MAX_BYTES: ClassVar[int] = 1024

    def to_fields(self) -> list[Any]:
        """Every parameter in declaration order, the later ones (`FIRST_LATER_PARAM`) only up
        to the last that differs from its default: one canonical encoding per set."""
        values = [getattr(self, f.name) for f in fields(self)]
        defaults = [f.default for f in fields(self)]
        end = len(values)
        while end > _FIRST_LATER and values[end - 1] == defaults[end - 1]:
            end -= 1
        return values[:end]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        all_fields = fields(cls)
        items = read_list(value, len(all_fields), "params")
        if len(items) < _FIRST_LATER:
            raise DecodeError(f"params: expected at least {_FIRST_LATER} fields, "
                              f"got {len(items)}")
        params = cls(**{f.name: read_uint(v, f"params.{f.name}")
                        for f, v in zip(all_fields, items, strict=False)})
        if params.to_fields() != items:
            raise DecodeError("params: a trailing later parameter is at its default")
        return params

    def check(self) -> list[str]:
        """Every violated invariant, as readable reasons (empty when the set is valid)."""
        problems = []
        if not 0 <= self.fee_burn_bps <= BPS:
            problems.append(f"fee_burn_bps must be within 0..{BPS}")
        if not 0 <= self.proposer_reward_bps <= BPS:
            problems.append(f"proposer_reward_bps must be within 0..{BPS}")
        for name in ("client_collateral_bps", "provider_collateral_bps", "verifier_fee_bps",
                     "slash_to_client_bps", "bid_deposit_bps", "return_penalty_bps",
                     "equivocation_slash_bps",
                     "equivocation_reporter_bps"):
            if not 0 <= getattr(self, name) <= BPS:
                problems.append(f"{name} must be within 0..{BPS}")
        for name in ("halving_interval", "epoch_length", "max_block_txs", "unbonding_period",
                     "committee_size", "bid_window_ms", "reveal_window_ms", "verdict_window_ms",
                     "verdict_reveal_window_ms", "release_window_ms", "pool_dispute_window_ms",
                     "max_task_attempts", "max_bids_per_task"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.max_block_bytes < MAX_TX_BYTES:
            problems.append(f"max_block_bytes must hold at least one {MAX_TX_BYTES}-byte tx")
        for name in ("min_fee", "initial_block_reward", "min_validator_stake",
                     "provider_min_stake", "verifier_silence_penalty",
                     "verifier_wrong_accept_penalty", "model_registration_fee"):
            if not 0 <= getattr(self, name) <= MAX_AMOUNT:
                problems.append(f"{name} must be within 0..{MAX_AMOUNT}")
        if not 1 <= self.committee_size <= 16:
            problems.append("committee_size must be within 1..16")
        if not 1 <= self.committee_min_size <= self.committee_size:
            problems.append("committee_min_size must be within 1..committee_size")
        if not 2 <= self.committee_delay_blocks <= MAX_COMMITTEE_DELAY:
            # 1 would seed the draw with the hash of the block holding the claim, which its
            # proposer (perhaps the provider) makes knowing the claim.
            problems.append(f"committee_delay_blocks must be within 2..{MAX_COMMITTEE_DELAY}")
        if not 1 <= self.max_check_rounds <= 5:
            problems.append("max_check_rounds must be within 1..5")
        if not 1 <= self.max_task_attempts <= 5:
            problems.append("max_task_attempts must be within 1..5")
        if not 1 <= self.max_bids_per_task <= MAX_BIDS_PER_TASK:
            problems.append(f"max_bids_per_task must be within 1..{MAX_BIDS_PER_TASK}")
        if not 1 <= self.bid_deposit_min <= self.provider_min_stake:
            # zero would make abandoned bids free again; above the minimum stake, a provider
            # that holds just the minimum could never bid
            problems.append("bid_deposit_min must be within 1..provider_min_stake")
        if self.min_validator_stake < 1:
            problems.append("min_validator_stake must be positive")
        if not 1 <= self.slot_ms <= MAX_SLOT_MS:
            problems.append(f"slot_ms must be within 1..{MAX_SLOT_MS}")
        if not 1 <= self.evidence_max_age <= MAX_EVIDENCE_AGE:
            problems.append(f"evidence_max_age must be within 1..{MAX_EVIDENCE_AGE}")
        problems += self._check_governance()
        if self.evidence_max_age >= self.unbonding_period:
            # Otherwise an offender could unbond and withdraw before its evidence is too old.
            problems.append("evidence_max_age must be below unbonding_period")
        return problems

    def _check_governance(self) -> list[str]:
        problems = []
        if not 0 <= self.gov_min_deposit <= MAX_AMOUNT:
            problems.append(f"gov_min_deposit must be within 0..{MAX_AMOUNT}")
        if not 1 <= self.gov_voting_period <= MAX_GOV_PERIOD:
            problems.append(f"gov_voting_period must be within 1..{MAX_GOV_PERIOD}")
        if not self.gov_activation_delay <= MAX_GOV_PERIOD:
            problems.append(f"gov_activation_delay must be within 0..{MAX_GOV_PERIOD}")
        if not 1 <= self.gov_quorum_bps <= BPS:
            problems.append(f"gov_quorum_bps must be within 1..{BPS}")
        if not self.gov_threshold_bps < BPS:
            # yes must be MORE than this share: at BPS nothing could ever pass
            problems.append(f"gov_threshold_bps must be within 0..{BPS - 1}")
        return problems

    def max_emission(self) -> int:
        """Upper bound of everything the halving schedule can ever emit."""
        total, reward = 0, self.initial_block_reward
        while reward:
            total += reward * self.halving_interval
            reward //= 2
        return total


_FIRST_LATER = [f.name for f in fields(Params)].index(FIRST_LATER_PARAM)
