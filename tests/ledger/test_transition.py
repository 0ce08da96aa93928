"""Semantics of the state transition: balances, fees, stake, unbonding, emission, epochs, roots."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ogpu_node.encoding import decode, encode
from ogpu_node.hashing import digest
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
    make_genesis_state,
)
from ogpu_node.ledger.emission import block_reward, scheduled_reward
from ogpu_node.ledger.errors import BadNonce
from ogpu_node.ledger.state import compute_records_hash
from ogpu_node.ledger.transition import apply_txs
from ogpu_node.ledger.tx import Transaction
from ogpu_node.types import MAX_SUPPLY, Address, Amount, ogpu
from tests.ledger.helpers import (
    CHAIN_ID,
    FEE,
    KEYS,
    PARAMS,
    VALIDATOR,
    advance,
    genesis,
    next_block,
    signed,
    snapshot,
)

ALICE, BOB, CAROL = KEYS[1], KEYS[2], KEYS[3]
PROPOSER = VALIDATOR.address
REWARD = PARAMS.initial_block_reward
TO_PROPOSER = REWARD * PARAMS.proposer_reward_bps // 10_000
TO_POOL = REWARD - TO_PROPOSER


def _balance(state: State, key_index: int) -> int:
    return state.account(KEYS[key_index].address).balance


def _conserved(state: State) -> None:
    assert state.total_held() == state.issued - state.burned


def test_param_values_the_tests_rely_on() -> None:
    assert PARAMS.check() == []
    assert (PARAMS.fee_burn_bps, PARAMS.proposer_reward_bps, REWARD) == (5_000, 2_000, ogpu(2))
    assert (TO_PROPOSER, TO_POOL) == (400_000_000, 1_600_000_000)


# --- transactions --------------------------------------------------------------------------------


def test_transfer_moves_amount_and_pays_fee() -> None:
    state = genesis()
    fee = 1_001  # odd, so the burn rounds down and the proposer gets the odd unit
    tx = signed(ALICE, 0, Transfer(BOB.address, Amount(ogpu(3))), fee=fee)
    after = apply_tx(state, tx, PROPOSER)
    assert after.account(ALICE.address).balance == ogpu(1_000) - ogpu(3) - fee
    assert after.account(ALICE.address).nonce == 1
    assert after.account(ALICE.address).public_key == ALICE.public_key.raw
    assert after.account(BOB.address).balance == ogpu(1_003)
    assert after.account(BOB.address).nonce == 0
    assert after.burned == 500
    assert after.account(PROPOSER).balance == ogpu(1_000) + 501
    assert after.issued == state.issued
    assert (after.height, after.timestamp, after.block_hash) == (0, 1_000, state.block_hash)
    _conserved(after)


def test_transfer_to_a_new_address_creates_the_account() -> None:
    state = genesis()
    fresh = Address(digest(b"fresh", b"")[:20])
    after = apply_tx(state, signed(ALICE, 0, Transfer(fresh, Amount(5))), PROPOSER)
    assert after.account(fresh).balance == 5
    assert after.account(fresh).public_key == b""
    _conserved(after)


def test_transfer_to_self_costs_only_the_fee() -> None:
    state = genesis()
    after = apply_tx(state, signed(ALICE, 0, Transfer(ALICE.address, Amount(ogpu(7)))), PROPOSER)
    assert after.account(ALICE.address).balance == ogpu(1_000) - FEE
    _conserved(after)


def test_proposer_paying_its_own_fee_keeps_the_unburned_part() -> None:
    state = genesis()
    tx = signed(VALIDATOR, 0, Transfer(BOB.address, Amount(10)))
    after = apply_tx(state, tx, PROPOSER)
    assert after.account(PROPOSER).balance == ogpu(1_000) - 10 - FEE // 2
    assert after.account(PROPOSER).stake == PARAMS.min_validator_stake
    _conserved(after)


@pytest.mark.parametrize(("burn_bps", "burned"), [(0, 0), (10_000, 5_000), (3_333, 1_666)])
def test_fee_split(burn_bps: int, burned: int) -> None:
    state = genesis(replace(PARAMS, fee_burn_bps=burn_bps))
    after = apply_tx(state, signed(ALICE, 0, Stake(Amount(1)), fee=5_000), PROPOSER)
    assert after.burned == burned
    assert after.account(PROPOSER).balance - ogpu(1_000) == 5_000 - burned
    _conserved(after)


def test_stake_moves_balance_to_stake() -> None:
    state = genesis()
    after = apply_tx(state, signed(ALICE, 0, Stake(Amount(ogpu(400)))), PROPOSER)
    acct = after.account(ALICE.address)
    assert (acct.balance, acct.stake, acct.nonce) == (ogpu(600) - FEE, ogpu(400), 1)
    assert after.validators == state.validators  # not before an epoch boundary
    _conserved(after)


def test_unstake_starts_unbonding_and_releases_exactly_at_release_height() -> None:
    state = genesis()
    block, _ = next_block(state, [signed(ALICE, 0, Stake(Amount(ogpu(400))))])
    state = apply_block(state, block)  # height 1
    block, _ = next_block(state, [signed(ALICE, 1, Unstake(Amount(ogpu(150)))),
                                  signed(ALICE, 2, Unstake(Amount(ogpu(50))))])
    state = apply_block(state, block)  # height 2
    release = 2 + PARAMS.unbonding_period
    acct = state.account(ALICE.address)
    assert acct.stake == ogpu(200)
    assert dict(state.unbonding) == {(release, ALICE.address): ogpu(200)}  # same block: one entry
    balance = acct.balance
    _conserved(state)
    while state.height < release - 1:
        state = advance(state, 1)
        assert state.account(ALICE.address).balance == balance
        assert sum(state.unbonding.values()) == ogpu(200)
    state = advance(state, 1)
    assert state.height == release
    assert state.account(ALICE.address).balance == balance + ogpu(200)
    assert dict(state.unbonding) == {}
    assert state.records_hash == compute_records_hash(state.accounts, state.unbonding)
    _conserved(state)


def test_unstake_through_apply_tx_uses_the_next_height() -> None:
    state = genesis()
    after = apply_tx(state, signed(VALIDATOR, 0, Unstake(Amount(5))), PROPOSER)
    assert dict(after.unbonding) == {(1 + PARAMS.unbonding_period, PROPOSER): 5}
    _conserved(after)


def test_apply_txs_equals_one_by_one() -> None:
    state = genesis()
    txs = [signed(ALICE, 0, Transfer(BOB.address, Amount(1))), signed(BOB, 0, Stake(Amount(9)))]
    one_by_one = apply_tx(apply_tx(state, txs[0], PROPOSER), txs[1], PROPOSER)
    assert apply_txs(state, txs, PROPOSER).root == one_by_one.root


def test_applied_tx_never_applies_again() -> None:
    state = genesis()
    tx = signed(ALICE, 0, Transfer(BOB.address, Amount(1)))
    after = apply_tx(state, tx, PROPOSER)
    with pytest.raises(BadNonce):
        apply_tx(after, tx, PROPOSER)
    block, _ = next_block(state, [tx])
    after_block = apply_block(state, block)
    with pytest.raises(BadNonce):
        apply_tx(after_block, tx, PROPOSER)


# --- emission ------------------------------------------------------------------------------------


def test_emission_per_block_goes_to_proposer_and_pool() -> None:
    state = genesis()
    after = advance(state, 1)
    assert after.issued == state.issued + REWARD
    assert after.account(PROPOSER).balance == ogpu(1_000) + TO_PROPOSER
    assert after.reward_pool == TO_POOL
    _conserved(after)


def test_emission_halves() -> None:
    params = replace(PARAMS, halving_interval=3, epoch_length=1_000)
    state = genesis(params)
    minted = []
    for _ in range(12):
        nxt = advance(state, 1)
        minted.append(nxt.issued - state.issued)
        state = nxt
    r = ogpu(2)
    assert minted == [r] * 3 + [r // 2] * 3 + [r // 4] * 3 + [r // 8] * 3


def test_scheduled_reward_reaches_zero() -> None:
    params = Params(initial_block_reward=5, halving_interval=2)
    assert [scheduled_reward(params, h) for h in range(0, 10)] == [0, 5, 5, 2, 2, 1, 1, 0, 0, 0]
    assert scheduled_reward(params, 10**30) == 0
    assert params.max_emission() == 16


def test_emission_is_clipped_at_the_cap() -> None:
    state = make_genesis_state(
        chain_id=CHAIN_ID, params=PARAMS, genesis_hash=digest(b"g", b""), timestamp=0,
        allocations=[(ALICE.address, MAX_SUPPLY - PARAMS.min_validator_stake - 3)],
        validators=[(VALIDATOR.public_key.raw, PARAMS.min_validator_stake)],
    )
    assert state.issued == MAX_SUPPLY - 3
    state = advance(state, 1)
    assert state.issued == MAX_SUPPLY
    assert state.reward_pool + state.account(PROPOSER).balance == 3
    state = advance(state, 5)
    assert state.issued == MAX_SUPPLY
    assert block_reward(PARAMS, 10, MAX_SUPPLY) == 0
    _conserved(state)


# --- epochs --------------------------------------------------------------------------------------


def _two_validator_genesis(params: Params = PARAMS) -> State:
    """KEYS[0] with 2x and KEYS[1] with 1x the minimum stake."""
    m = params.min_validator_stake
    return make_genesis_state(
        chain_id=CHAIN_ID, params=params, genesis_hash=digest(b"g2", b""), timestamp=0,
        allocations=[(k.address, ogpu(1_000)) for k in KEYS],
        validators=[(KEYS[0].public_key.raw, 2 * m), (KEYS[1].public_key.raw, m)],
    )


def test_reward_pool_paid_pro_rata_at_the_epoch_boundary() -> None:
    state = _two_validator_genesis()
    for height in range(1, PARAMS.epoch_length):
        state = advance(state, 1)
        assert state.reward_pool == TO_POOL * height
        assert _balance(state, 1) == ogpu(1_000)
    state = advance(state, 1)  # the boundary
    pool = TO_POOL * PARAMS.epoch_length  # 6.4 OGPU split 2:1
    assert pool == 6_400_000_000
    assert _balance(state, 1) == ogpu(1_000) + 2_133_333_333
    assert _balance(state, 0) == (
        ogpu(1_000) + PARAMS.epoch_length * TO_PROPOSER + 4_266_666_666)
    assert state.reward_pool == 1  # the rounding dust stays pooled
    _conserved(state)


def test_validator_set_changes_only_at_epoch_boundaries() -> None:
    params = replace(PARAMS, min_validator_stake=ogpu(100))
    state = genesis(params)
    original = state.validators
    block, _ = next_block(state, [signed(ALICE, 0, Stake(Amount(ogpu(300))))])
    state = apply_block(state, block)
    while state.height % params.epoch_length:
        assert state.validators == original
        with pytest.raises(InvalidBlock, match="not in the active validator set"):
            apply_block(state, next_block(state, key=ALICE)[0])
        state = advance(state, 1)
    assert [v.address for v in state.validators] == sorted([VALIDATOR.address, ALICE.address])
    alice = state.validator_by_address[ALICE.address]
    assert (alice.stake, alice.public_key) == (ogpu(300), ALICE.public_key.raw)
    # The newcomer earned nothing from the epoch it joined at the end of ...
    assert _balance(state, 1) == ogpu(700) - FEE
    # ... and may propose from the next block on.
    state = apply_block(state, next_block(state, key=ALICE)[0])
    assert _balance(state, 1) == ogpu(700) - FEE + TO_PROPOSER
    # At the next boundary it shares the pool by its stake (300 of 400 OGPU).
    state = advance(state, params.epoch_length - 1)
    assert state.height % params.epoch_length == 0
    pool = TO_POOL * params.epoch_length
    assert _balance(state, 1) == ogpu(700) - FEE + TO_PROPOSER + pool * 300 // 400
    _conserved(state)


def test_stake_in_the_boundary_block_counts_at_that_boundary() -> None:
    # The set is fixed after the boundary block's own transactions.
    params = replace(PARAMS, min_validator_stake=ogpu(100))
    state = advance(genesis(params), params.epoch_length - 1)
    block, _ = next_block(state, [signed(ALICE, 0, Stake(Amount(ogpu(150))))])
    state = apply_block(state, block)
    assert state.height == params.epoch_length
    alice = state.validator_by_address[ALICE.address]
    assert alice.stake == ogpu(150)


def test_stake_below_minimum_makes_no_validator() -> None:
    params = replace(PARAMS, min_validator_stake=ogpu(100))
    state = genesis(params)
    block, _ = next_block(state, [signed(ALICE, 0, Stake(Amount(ogpu(100) - 1)))])
    state = advance(apply_block(state, block), params.epoch_length - 1)
    assert state.height % params.epoch_length == 0
    assert [v.address for v in state.validators] == [VALIDATOR.address]


def test_unstaking_below_minimum_leaves_the_set_at_the_boundary() -> None:
    state = _two_validator_genesis()
    block, _ = next_block(state, [signed(ALICE, 0, Unstake(Amount(1)))])
    state = apply_block(state, block)
    assert len(state.validators) == 2
    state = advance(state, PARAMS.epoch_length - 1)
    assert [v.address for v in state.validators] == [VALIDATOR.address]
    _conserved(state)


def test_last_validator_leaving_keeps_the_set() -> None:
    state = genesis()
    block, _ = next_block(state, [signed(VALIDATOR, 0, Unstake(Amount(1)))])
    state = advance(apply_block(state, block), PARAMS.epoch_length - 1)
    assert [v.address for v in state.validators] == [VALIDATOR.address]


# --- purity and roots ----------------------------------------------------------------------------


def _busy_block_txs(state: State) -> list[Transaction]:
    """A few valid txs of every kind against `state` (accounts KEYS[1..5])."""
    txs = []
    for i in range(1, 6):
        key = KEYS[i]
        nonce = state.account(key.address).nonce
        kind = (state.height + i) % 3
        if kind == 0:
            txs.append(signed(key, nonce, Transfer(KEYS[(i + 1) % 6].address, Amount(ogpu(1)))))
        elif kind == 1:
            txs.append(signed(key, nonce, Stake(Amount(ogpu(2)))))
        elif state.account(key.address).stake:
            txs.append(signed(key, nonce, Unstake(Amount(ogpu(1)))))
    return txs


def test_apply_block_leaves_its_input_untouched() -> None:
    state = genesis()
    for _ in range(6):
        block, _ = next_block(state, _busy_block_txs(state))
        before = snapshot(state)
        accounts, unbonding = state.accounts, state.unbonding
        after = apply_block(state, block)
        assert snapshot(state) == before
        assert state.accounts is accounts and state.unbonding is unbonding
        assert after.root != state.root
        state = after


def test_incremental_root_matches_recomputation_over_many_blocks() -> None:
    state = genesis()
    released = 0
    for _ in range(3 * PARAMS.epoch_length + PARAMS.unbonding_period + 2):
        block, built = next_block(state, _busy_block_txs(state))
        after = apply_block(state, block)
        released += len(set(state.unbonding) - set(after.unbonding))
        state = after
        assert state.root == built.root
        assert state.records_hash == compute_records_hash(state.accounts, state.unbonding)
        _conserved(state)
    assert released and state.unbonding  # the run both created and released unbonding records


def test_build_then_apply_a_decoded_copy() -> None:
    state = genesis()
    for _ in range(5):
        block, built = next_block(state, _busy_block_txs(state))
        data = encode(block)
        copy = decode(Block, data)
        assert copy == block and copy.hash == block.hash
        applied = apply_block(state, copy)
        assert applied.root == built.root == block.header.state_root
        assert applied.block_hash == built.block_hash == block.hash
        assert applied.accounts == built.accounts
        state = applied


def test_same_blocks_same_root_in_a_fresh_replay() -> None:
    # Two independent replays of the same blocks agree (no hidden order dependence).
    state = genesis()
    blocks = []
    for _ in range(6):
        block, state = next_block(state, _busy_block_txs(state))
        blocks.append(encode(block))
    replay = genesis()
    for data in blocks:
        replay = apply_block(replay, decode(Block, data))
    assert replay.root == state.root


def test_root_commits_to_every_account_field() -> None:
    state = genesis()
    base_root = state.root
    acct = state.account(ALICE.address)
    for change in ({"balance": acct.balance + 1}, {"nonce": 1}, {"stake": 1},
                   {"public_key": ALICE.public_key.raw}):
        accounts = dict(state.accounts)
        accounts[ALICE.address] = replace(acct, **change)
        changed = replace(state, accounts=accounts,
                          records_hash=compute_records_hash(accounts, state.unbonding))
        assert changed.root != base_root, change


def test_genesis_state() -> None:
    state = genesis()
    assert state.height == 0
    assert state.issued == 6 * ogpu(1_000) + PARAMS.min_validator_stake
    assert [v.address for v in state.validators] == [VALIDATOR.address]
    assert state.records_hash == compute_records_hash(state.accounts, state.unbonding)
    assert state.changed_accounts == tuple(sorted(k.address for k in KEYS))
    _conserved(state)
