"""Property tests of the ledger: supply cap, value conservation, replay protection, purity.

A scenario is a random chain: parameters (some with tiny halving intervals and epochs), a genesis
allocation possibly within a few units of the cap, then blocks of random transactions (transfers,
stakes, unstakes, equivocation evidence, governance proposals and votes), some of them invalid
on purpose (bad nonces, overspends, replays, evidence too old, in two slots or of one block),
some blocks invalid on purpose (timestamp not after the parent, a proposer outside the set).
After every step the invariants of design.md section 4 are checked."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import (
    Block,
    InvalidBlock,
    Params,
    Stake,
    State,
    Transfer,
    Unstake,
    apply_block,
    apply_tx,
    build_block,
    make_genesis_state,
)
from ogpu_node.ledger.block import compute_tx_root
from ogpu_node.ledger.emission import block_reward, scheduled_reward
from ogpu_node.ledger.equivocation import ReportEquivocation
from ogpu_node.ledger.errors import BadNonce, FeeTooLow, InsufficientFunds, InvalidTransaction
from ogpu_node.ledger.governance.records import Propose, Vote, VoteOption
from ogpu_node.ledger.params import BPS
from ogpu_node.ledger.state import compute_records_hash, open_proposal_ids
from ogpu_node.ledger.transition import process_block_start
from ogpu_node.ledger.tx import Transaction
from ogpu_node.ledger.working import Working
from ogpu_node.types import MAX_AMOUNT, MAX_SUPPLY, Address, Amount, ogpu
from tests.ledger.helpers import (
    CHAIN_ID,
    KEYS,
    double_sign,
    parent_header,
    resign,
    signed,
    snapshot,
)
from tests.ledger.profiles import examples

KEY_BY_ADDRESS = {k.address: k for k in KEYS}
OUTSIDER = PrivateKey.from_seed(digest(b"test-key", b"outsider"))
"""Never funded, never a validator."""

# --- scenario strategies -------------------------------------------------------------------------

params_strategy = st.builds(
    Params,
    min_fee=st.sampled_from([0, 1, 1_000]),
    fee_burn_bps=st.sampled_from([0, 1, 5_000, 9_999, 10_000]),
    initial_block_reward=st.sampled_from([0, 1, 3, ogpu(2), ogpu(50), ogpu(5_000_000)]),
    halving_interval=st.sampled_from([1, 2, 3, 7, 2_100_000]),
    proposer_reward_bps=st.sampled_from([0, 2_000, 10_000]),
    min_validator_stake=st.sampled_from([1, ogpu(10), ogpu(100)]),
    unbonding_period=st.integers(2, 5),
    epoch_length=st.integers(1, 5),
    max_block_txs=st.sampled_from([3, 5_000]),
    slot_ms=st.sampled_from([1, 1_000]),
    evidence_max_age=st.just(1),
    equivocation_slash_bps=st.sampled_from([0, 1, 500, 10_000]),
    equivocation_reporter_bps=st.sampled_from([0, 1_000, 10_000]),
    gov_min_deposit=st.sampled_from([1, ogpu(1)]),
    gov_voting_period=st.integers(1, 3),
    gov_activation_delay=st.integers(0, 2),
    gov_quorum_bps=st.sampled_from([1, 3_340, 10_000]),
    gov_threshold_bps=st.sampled_from([0, 5_000, 9_999]),
)

headroom_strategy = st.sampled_from([None, 0, 1, 7, ogpu(1), ogpu(100), ogpu(10_000_000)])
"""How far below the cap genesis issues (None: a small ordinary genesis)."""


def make_genesis(params: Params, headroom: int | None) -> State:
    """KEYS[0] the only validator; KEYS[5] holds whatever brings issuance to cap - headroom."""
    stake = max(params.min_validator_stake, 1)
    allocations: list[tuple[Address, int]] = [(k.address, ogpu(1_000)) for k in KEYS[:5]]
    if headroom is None:
        allocations.append((KEYS[5].address, ogpu(1_000)))
    else:
        rest = MAX_SUPPLY - headroom - stake - sum(a for _, a in allocations)
        allocations.append((KEYS[5].address, rest))
    state = make_genesis_state(
        chain_id=CHAIN_ID, params=params, genesis_hash=digest(b"prop-genesis", b""),
        timestamp=1_000, allocations=allocations, validators=[(KEYS[0].public_key.raw, stake)],
    )
    assert params.check() == []
    return state


@dataclass
class Scenario:
    """The running chain and everything the checks need to remember."""

    state: State
    applied: list[Transaction] = field(default_factory=list)
    rejected_txs: int = 0
    rejected_blocks: int = 0


# --- invariants ----------------------------------------------------------------------------------


def check_invariants(state: State) -> None:
    """(a) cap, (b) conservation, (c) no negative amount, plus the incremental commitment."""
    assert state.issued <= MAX_SUPPLY
    assert state.total_held() == state.issued - state.burned
    assert state.burned >= 0 and state.reward_pool >= 0
    for acct in state.accounts.values():
        assert acct.balance >= 0 and acct.stake >= 0 and acct.nonce >= 0
    assert all(amount > 0 for amount in state.unbonding.values())
    assert state.records_hash == compute_records_hash(state.accounts, state.unbonding,
                                                      state.providers, state.tasks, state.pools,
                                                      state.tombstones, state.models,
                                                      state.proposals, state.votes)
    assert state.open_proposals == open_proposal_ids(state.proposals)
    assert all(key[0] in state.open_proposals for key in state.votes)


def check_rejected_tx(state: State, tx: Transaction, proposer: PrivateKey,
                      expected: type[InvalidTransaction] | None = None) -> None:
    """(e) for one transaction: `apply_tx` raises and leaves `state` as it was."""
    before = snapshot(state)
    with pytest.raises(InvalidTransaction) as info:
        apply_tx(state, tx, proposer.address)
    if expected is not None:
        assert type(info.value) is expected
    assert snapshot(state) == before


def check_rejected_block(state: State, block: Block, tx_index: int | None = None) -> None:
    """(e) for a block: `apply_block` raises `InvalidBlock` and leaves `state` as it was."""
    before = snapshot(state)
    with pytest.raises(InvalidBlock) as info:
        apply_block(state, block)
    assert info.value.tx_index == tx_index
    assert snapshot(state) == before


# --- transaction generation ----------------------------------------------------------------------

TX_SPEC = st.tuples(
    st.integers(0, len(KEYS) - 1),  # sender
    st.sampled_from(["transfer", "stake", "unstake", "evidence", "propose", "vote"]),
    st.sampled_from(["valid", "valid", "valid", "nonce_low", "nonce_high", "overspend",
                     "replay", "max_amount"]),
    st.integers(1, 1_000),  # amount, as thousandths of what the sender can spend
    st.integers(0, len(KEYS) - 1),  # recipient
)


def make_tx(state: State, nonces: dict[int, int], spec: tuple[int, str, str, int, int],
            applied: list[Transaction]) -> tuple[Transaction, str]:
    """A transaction from `spec` against `state`, and what should happen to it: "valid" (it
    may still fail, e.g. an unstake without stake), "bad_nonce" (must fail with BadNonce),
    "refused" (must fail: a replay whose fee a vote has since put below min_fee), or "maybe"
    (an overspend sized from the parent state, which funds received earlier in the same block
    can cover; MAX_AMOUNT, which the account near the cap can afford)."""
    sender, kind, mode, share, to = spec
    key = KEYS[sender]
    acct = state.account(key.address)
    nonce = nonces.get(sender, acct.nonce)
    fee = max(state.params.min_fee, 1_000)
    if mode == "replay":
        if applied:
            replayed = applied[share % len(applied)]
            # a vote may have raised min_fee since: the fee is checked before the nonce
            return replayed, "bad_nonce" if replayed.fee >= state.params.min_fee else "refused"
        mode = "valid"
    if mode == "nonce_low" and nonce == 0:
        mode = "nonce_high"
    if mode == "nonce_low":
        nonce -= 1
    elif mode == "nonce_high":
        nonce += 1 + share % 3
    # Balances move within the block, so the sizes are rough; the acceptance test decides.
    spendable = max(acct.balance - fee, 0)
    limit = acct.stake if kind == "unstake" else spendable
    if mode == "overspend":
        amount = limit + 1 + share
    elif mode == "max_amount":
        amount = MAX_AMOUNT
    else:
        amount = max(limit * share // 1_000, 1)
    amount = min(amount, MAX_AMOUNT)
    payload: Transfer | Stake | Unstake | ReportEquivocation | Propose | Vote
    if kind == "propose":  # parameters the other rules of the scenario do not depend on
        name = ("fee_burn_bps", "proposer_reward_bps", "min_fee")[to % 3]
        payload = Propose(((name, 1 + share * 10 % BPS),), state.params.gov_min_deposit)
    elif kind == "vote":
        payload = Vote(1 + share % max(len(state.proposals), 1), VoteOption(1 + to % 3))
    elif kind == "evidence":
        payload = make_report(state, to, share)
    elif kind == "transfer":
        payload = Transfer(KEYS[to].address, Amount(amount))
    elif kind == "stake":
        payload = Stake(Amount(amount))
    else:
        payload = Unstake(Amount(amount))
    verdict = {"valid": "valid", "nonce_low": "bad_nonce", "nonce_high": "bad_nonce"}
    return signed(key, nonce, payload, fee=fee), verdict.get(mode, "maybe")


def make_report(state: State, to: int, share: int) -> ReportEquivocation:
    """Evidence against KEYS[to] or the validator, varied by `share`: mostly valid, else one
    block too old (evidence_max_age is 1), in the next slot, or the same header twice."""
    offender = KEYS[to] if to % 2 else KEYS[0]
    case = share % 8
    parent = parent_header(max(state.height - (2 if case == 5 else 1), 0), state.timestamp)
    second_ms = 2 + (state.params.slot_ms if case == 6 else 0)
    tags = (b"a", b"a" if case == 7 else b"b")
    return double_sign(offender, parent, second_ms=second_ms, tags=tags)


# --- the property --------------------------------------------------------------------------------


def run_block(sc: Scenario, data: st.DataObject) -> None:
    state = sc.state
    start = snapshot(state)
    proposer = KEY_BY_ADDRESS[data.draw(st.sampled_from([v.address for v in state.validators]))]
    timestamp = state.timestamp + data.draw(st.integers(1, 10**7))

    specs = data.draw(st.lists(TX_SPEC, max_size=6))
    accepted: list[Transaction] = []
    nonces: dict[int, int] = {}
    for spec in specs:
        if len(accepted) >= state.params.max_block_txs:
            break
        tx, verdict = make_tx(state, nonces, spec, sc.applied)
        try:
            build_block(state, [*accepted, tx], proposer, timestamp)
        except InvalidBlock as exc:
            assert exc.tx_index == len(accepted)
            assert isinstance(exc.__cause__, InvalidTransaction)
            if verdict == "bad_nonce":
                assert type(exc.__cause__) is BadNonce
            if not accepted:  # nothing before it in the block: it must fail alone as well,
                # for the same reason unless the block's start (matured unbonding, rewards)
                # changed the sender's account first
                started = Working(state, timestamp)
                process_block_start(started, proposer.address)
                same = started.account(tx.sender) == state.account(tx.sender)
                check_rejected_tx(state, tx, proposer, type(exc.__cause__) if same else None)
            sc.rejected_txs += 1
            if sc.rejected_txs % 3 == 1:  # the same tx in a signed block: the whole block fails
                empty, _ = build_block(state, [], proposer, timestamp)
                txs = [*accepted, tx]
                bad = resign(replace(empty, txs=tuple(txs)), proposer,
                             tx_root=compute_tx_root(txs))
                check_rejected_block(state, bad, tx_index=len(accepted))
            continue
        assert verdict not in ("bad_nonce", "refused"), spec
        event(f"applied {spec[1]}")
        accepted.append(tx)
        nonces[spec[0]] = tx.nonce + 1

    assert snapshot(state) == start  # building and rejecting changed nothing
    block, built = build_block(state, accepted, proposer, timestamp)
    # Invalid variants of the block first: they must change nothing.
    if data.draw(st.booleans()):
        stale = state.timestamp - data.draw(st.integers(0, 1_000))
        check_rejected_block(state, resign(block, proposer, timestamp=stale))
        sc.rejected_blocks += 1
    if data.draw(st.integers(0, 4)) == 0:
        check_rejected_block(state, resign(block, OUTSIDER, proposer=OUTSIDER.address))
        sc.rejected_blocks += 1

    before = snapshot(state)
    after = apply_block(state, block)
    assert snapshot(state) == before
    assert after.root == built.root == block.header.state_root
    assert after.height == state.height + 1
    sc.applied.extend(accepted)
    check_invariants(after)
    # (d) nothing already applied applies again, through apply_tx or inside a block.
    next_proposer = KEY_BY_ADDRESS[after.validators[0].address]
    for tx in sc.applied[-12:]:
        # refused for its nonce, or first for its fee if a vote has raised min_fee since
        check_rejected_tx(after, tx, next_proposer,
                          BadNonce if tx.fee >= after.params.min_fee else FeeTooLow)
    if sc.applied:
        replayed = [sc.applied[-1]]
        empty, _ = build_block(after, [], next_proposer, timestamp + 1)
        bad = resign(replace(empty, txs=tuple(replayed)), next_proposer,
                     tx_root=compute_tx_root(replayed))
        check_rejected_block(after, bad, tx_index=0)
    sc.state = after


@given(params=params_strategy, headroom=headroom_strategy, data=st.data())
@settings(max_examples=examples(150, 2000))
def test_random_chains_keep_every_invariant(
    params: Params, headroom: int | None, data: st.DataObject
) -> None:
    sc = Scenario(make_genesis(params, headroom))
    check_invariants(sc.state)
    for _ in range(data.draw(st.integers(1, 14), label="blocks")):
        run_block(sc, data)
    assert sc.state.issued <= MAX_SUPPLY


@given(headroom=st.integers(0, ogpu(10)), reward=st.integers(1, ogpu(3)),
       data=st.data())
def test_cap_reached_exactly_and_never_passed(headroom: int, reward: int,
                                              data: st.DataObject) -> None:
    params = Params(initial_block_reward=reward, halving_interval=1_000, epoch_length=2,
                    min_validator_stake=1)
    state = make_genesis(params, headroom)
    key = KEYS[0]
    for _ in range(data.draw(st.integers(1, 12))):
        block, _ = build_block(state, [], key, state.timestamp + 1)
        state = apply_block(state, block)
        check_invariants(state)
    expected = min(MAX_SUPPLY, MAX_SUPPLY - headroom + reward * state.height)
    assert state.issued == expected


def test_overspend_is_insufficient_funds_alone() -> None:
    # The "overspend" mode of the generator really produces InsufficientFunds on its own.
    state = make_genesis(Params(), None)
    tx, verdict = make_tx(state, {}, (1, "transfer", "overspend", 1, 2), [])
    assert verdict == "maybe"
    check_rejected_tx(state, tx, KEYS[0], InsufficientFunds)


# --- emission schedule over its whole length -----------------------------------------------------


def _schedule_total(params: Params) -> int:
    """Everything `scheduled_reward` gives over all heights, summed era by era."""
    total, era = 0, 0
    while True:
        first = era * params.halving_interval + 1
        reward = scheduled_reward(params, first)
        last = scheduled_reward(params, first + params.halving_interval - 1)
        assert reward == last  # constant within an era
        if reward == 0:
            assert scheduled_reward(params, first + 10 * params.halving_interval) == 0
            return total
        total += reward * params.halving_interval
        era += 1


@pytest.mark.parametrize(
    "params",
    [Params(), Params(halving_interval=1), Params(initial_block_reward=1),
     Params(initial_block_reward=MAX_AMOUNT, halving_interval=1),
     Params(initial_block_reward=2**63 - 1, halving_interval=3)],
    ids=["default", "halving-1", "reward-1", "reward-max", "reward-2^63"],
)
def test_schedule_sums_to_max_emission(params: Params) -> None:
    assert _schedule_total(params) == params.max_emission()


def test_default_schedule_fits_under_the_cap() -> None:
    params = Params()
    assert params.max_emission() <= MAX_SUPPLY
    assert params.max_emission() == 8_399_999_972_700_000  # ~8.4 M OGPU over all halvings


@given(
    reward=st.integers(0, MAX_AMOUNT),
    interval=st.integers(1, 40),
    genesis_issued=st.integers(0, MAX_SUPPLY),
)
def test_issuance_over_the_whole_schedule_never_exceeds_the_cap(
    reward: int, interval: int, genesis_issued: int
) -> None:
    params = Params(initial_block_reward=reward, halving_interval=interval)
    issued, height = genesis_issued, 0
    while scheduled_reward(params, height + 1) or height == 0:
        height += 1
        minted = block_reward(params, height, issued)
        assert 0 <= minted <= scheduled_reward(params, height)
        issued += minted
        assert issued <= MAX_SUPPLY
    assert issued == min(MAX_SUPPLY, genesis_issued + params.max_emission())
    assert block_reward(params, height + 1, issued) == 0
