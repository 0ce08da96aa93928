"""The market's ledger rules, path by path: the money each path moves, to whom, and why.

Every scenario runs real signed transactions through `apply_block` on a 4-validator chain
(`market_helpers.py`); amounts are checked to the unit, and value conservation after each one.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from ogpu_node.encoding import decode, encode
from ogpu_node.ledger import InvalidBlock, apply_tx
from ogpu_node.ledger.errors import (
    BadReveal,
    InsufficientFunds,
    InsufficientStake,
    InvalidModel,
    InvalidTaskSpec,
    InvalidTransaction,
    MarketRuleError,
    NotAProvider,
    NotPermitted,
    UnknownTask,
    WrongPhase,
)
from ogpu_node.ledger.market.auction import ScoredBid, score_bids, second_price
from ogpu_node.ledger.market.payloads import (
    CancelTask,
    CommitBid,
    CommitResult,
    RegisterModel,
    RegisterProvider,
    RevealBid,
    SealVerdict,
    SubmitTask,
    WithdrawProvider,
)
from ogpu_node.ledger.market.records import (
    MAX_CHECK_ROUNDS,
    MAX_CHECKPOINTS,
    MAX_COMMITTEE,
    MAX_TRAIL,
    Attempt,
    Bid,
    Check,
    CheckPhase,
    CloseReason,
    Movement,
    Provider,
    Task,
    TaskResult,
    TaskStatus,
    Vote,
)
from ogpu_node.ledger.market.reputation import anomaly_flags, reputation_bps
from ogpu_node.ledger.params import BPS, MAX_BIDS_PER_TASK, Params
from ogpu_node.ledger.state import State, compute_records_hash
from ogpu_node.types import Address, Hash32, ogpu
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.net import NetTrainSpec
from ogpu_node.workloads.spec import MatmulSpec, TrainSpec
from tests.ledger.helpers import FEE, KEYS, snapshot
from tests.ledger.market_helpers import (
    CLIENT,
    DIGITS_MODEL,
    GPU,
    MARKET_PARAMS,
    MATMUL,
    NET_TRAIN,
    OUTSIDER,
    PROVIDER_A,
    PROVIDER_B,
    SILENCE,
    TRAIN,
    MarketChain,
    result_for,
)

UNITS = MATMUL.work_units()
MAX_PRICE = ogpu(1)
BUDGET = MAX_PRICE * UNITS
RESERVE = BUDGET * 200 // BPS
CLIENT_COLLATERAL = BUDGET * 1_000 // BPS
ESCROW = BUDGET + RESERVE + CLIENT_COLLATERAL
DEPOSIT = max(MARKET_PARAMS.bid_deposit_min, BUDGET * MARKET_PARAMS.bid_deposit_bps // BPS)
ZERO = Hash32(bytes(32))


def conserved(state: State) -> None:
    assert state.total_held() == state.issued - state.burned
    assert state.records_hash == compute_records_hash(
        state.accounts, state.unbonding, state.providers, state.tasks, state.pools,
        models=state.models)
    for provider in state.providers.values():
        assert 0 <= provider.locked <= provider.stake
    for task in state.tasks.values():
        assert task.escrow >= 0
        assert (task.status == TaskStatus.CLOSED) == (task.close_reason is not None)


def balance(chain: MarketChain, key_index: int) -> int:
    return chain.state.account(KEYS[key_index].address).balance


def test_task_submission_escrows_budget_reserve_and_collateral(chain: MarketChain) -> None:
    before = chain.state.account(CLIENT.address).balance
    task_id = chain.submit(max_price=MAX_PRICE)
    task = chain.task(task_id)
    assert task.work_units == UNITS == 3
    assert task.escrow == ESCROW
    assert chain.state.account(CLIENT.address).balance == before - ESCROW - FEE
    assert task.status == TaskStatus.BIDDING and task_id in chain.state.open_tasks
    assert task.trail == (Movement("escrow", CLIENT.address, ESCROW),)
    conserved(chain.state)


def test_honest_task_pays_second_price_fees_and_refunds_the_rest(chain: MarketChain) -> None:
    client_before = chain.state.account(CLIENT.address).balance
    task_id = chain.submit(max_price=MAX_PRICE)
    chain.auction(task_id, {1: ogpu(1) // 5, 2: ogpu(3) // 10})
    task = chain.task(task_id)
    assert task.status == TaskStatus.RUNNING and task.attempt.provider == PROVIDER_A.address
    price = ogpu(3) // 10  # equal quality: the winner is paid the runner-up's price
    assert task.attempt.price == price
    collateral = price * UNITS * 2_000 // BPS
    assert task.attempt.collateral == collateral
    assert chain.state.providers[PROVIDER_A.address].locked == collateral

    a_before = chain.state.account(PROVIDER_A.address).balance
    chain.commit_result(task_id)
    task = chain.task(task_id)
    assert task.status == TaskStatus.VERIFYING
    # the provider and the client are never on the committee
    committee = chain.committee(task_id)
    assert {k.address for k in committee} == {KEYS[0].address, KEYS[2].address, KEYS[3].address}
    voters, silent = committee[:2], committee[2]
    voter_before = {k.address: chain.state.account(k.address).balance for k in voters}
    silent_stake = chain.state.account(silent.address).stake
    chain.vote(task_id, accept=True, voters=2)

    task = chain.task(task_id)
    assert task.status == TaskStatus.CLOSED and task.close_reason == CloseReason.COMPLETED
    assert task.escrow == 0 and task_id not in chain.state.open_tasks
    payment = price * UNITS
    # the provider paid two fees: its result, and the release of its key
    assert chain.state.account(PROVIDER_A.address).balance == a_before - 2 * FEE + payment
    fee = RESERVE // 3
    for key in voters:
        # KEYS[0] also proposes every block: it collects tx fees, so compare the fee lines only
        if key is not KEYS[0]:
            assert (chain.state.account(key.address).balance
                    == voter_before[key.address] + fee - 2 * FEE)  # seal and reveal
    refund = ESCROW - payment - 2 * fee
    assert chain.state.account(CLIENT.address).balance == client_before - FEE - ESCROW + refund
    events = [(m.event, m.amount) for m in task.trail]
    assert events == [("escrow", ESCROW), ("provider_collateral_locked", collateral),
                      ("silence_penalty", SILENCE), ("payment", payment),
                      ("verifier_fee", fee), ("verifier_fee", fee),
                      ("provider_collateral_returned", collateral), ("refund", refund)]
    # the member that never voted paid the silence penalty from its validator stake
    assert chain.state.account(silent.address).stake == silent_stake - SILENCE
    provider = chain.state.providers[PROVIDER_A.address]
    assert provider.locked == 0 and provider.completed == 1 and provider.work_done == UNITS
    assert provider.compute_ms == task.attempt.result_ms - task.attempt.awarded_ms > 0
    conserved(chain.state)


def test_the_last_bid_that_can_come_ends_the_bid_window_at_once(chain: MarketChain) -> None:
    task_id = chain.submit(max_price=MAX_PRICE)
    bid_window_end = chain.task(task_id).phase_end_ms
    chain.bid(PROVIDER_A, task_id, ogpu(1) // 5)
    assert chain.task(task_id).status == TaskStatus.BIDDING  # B may still bid
    chain.bid(PROVIDER_B, task_id, ogpu(3) // 10)  # nobody else can
    task = chain.task(task_id)
    assert task.status == TaskStatus.REVEALING and chain.state.timestamp < bid_window_end
    assert task.phase_end_ms == chain.state.timestamp + MARKET_PARAMS.reveal_window_ms
    conserved(chain.state)


def test_a_provider_that_could_still_bid_keeps_the_bid_window_open(chain: MarketChain) -> None:
    # B could bid but does not: the window runs its full length
    task_id = chain.submit(max_price=MAX_PRICE)
    bid_window_end = chain.task(task_id).phase_end_ms
    chain.bid(PROVIDER_A, task_id, ogpu(1) // 5)
    chain.block(after_ms=bid_window_end - chain.state.timestamp - 1)
    assert chain.task(task_id).status == TaskStatus.BIDDING
    chain.block(after_ms=1)
    assert chain.task(task_id).status == TaskStatus.REVEALING
    # a provider that cannot bid (benchmark below the task's minimum) does not keep it open
    chain.send(PROVIDER_B, RegisterProvider(GPU, 10, 1, 0))
    task_id = chain.submit(max_price=MAX_PRICE, min_benchmark=100)
    chain.bid(PROVIDER_A, task_id, ogpu(1) // 5)
    assert chain.task(task_id).status == TaskStatus.REVEALING


def test_the_last_reveal_awards_at_once_and_a_sealed_bid_keeps_the_window_open(
        chain: MarketChain) -> None:
    task_id = chain.submit(max_price=MAX_PRICE)
    chain.bid(PROVIDER_A, task_id, ogpu(1) // 5)
    chain.bid(PROVIDER_B, task_id, ogpu(3) // 10)
    window_end = chain.task(task_id).phase_end_ms
    chain.reveal(PROVIDER_A, task_id, ogpu(1) // 5)
    assert chain.task(task_id).status == TaskStatus.REVEALING  # B's bid is still sealed
    chain.reveal(PROVIDER_B, task_id, ogpu(3) // 10)
    task = chain.task(task_id)
    assert task.status == TaskStatus.RUNNING and task.attempt.provider == PROVIDER_A.address
    assert task.attempt.awarded_ms == chain.state.timestamp < window_end
    assert task.attempt.price == ogpu(3) // 10
    assert task.phase_end_ms == task.attempt.awarded_ms + task.exec_ms
    conserved(chain.state)


def test_second_price_rules() -> None:
    fresh = Provider(GPU, benchmark=1_000, price_floor=0, stake=1)
    a, b = Address(b"\1" * 20), Address(b"\2" * 20)
    best, runner_up = score_bids([(a, 100, fresh), (b, 150, fresh)])
    assert best.bidder == a and second_price(best, runner_up, 1_000) == 150
    # the only bidder is paid the client's maximum; nobody is paid above it or below its ask
    assert second_price(best, None, 1_000) == 1_000
    assert second_price(best, runner_up, 120) == 120
    # a faster provider wins at a higher price, and a reliable one beats an unreliable one
    fast = replace(fresh, benchmark=4_000)
    assert score_bids([(a, 120, fast), (b, 100, fresh)])[0].bidder == a
    flaky = replace(fresh, completed=1, failed=3)
    assert score_bids([(a, 100, flaky), (b, 150, fresh)])[0].bidder == b
    # tie: the lower address wins
    assert score_bids([(b, 100, fresh), (a, 100, fresh)])[0].bidder == a


@pytest.mark.parametrize("price_a,price_b", [(1, 1), (7, 8), (10**9, 10**9 + 1), (5, 10**9)])
def test_second_price_winner_still_wins_at_the_price_it_is_paid(price_a: int,
                                                                price_b: int) -> None:
    fresh = Provider(GPU, benchmark=1_000, price_floor=0, stake=1)
    slow = replace(fresh, benchmark=700, completed=3, failed=1)
    a, b = Address(b"\1" * 20), Address(b"\2" * 20)
    scored = score_bids([(a, price_a, fresh), (b, price_b, slow)])
    winner, runner_up = scored
    paid = second_price(winner, runner_up, 2 * 10**9)
    assert paid >= winner.price
    at_paid = ScoredBid(winner.bidder, paid, winner.quality_bps,
                        paid * BPS * BPS // winner.quality_bps)
    assert at_paid.score <= runner_up.score
    one_more = (paid + 1) * BPS * BPS // winner.quality_bps
    assert paid == 2 * 10**9 or one_more > runner_up.score


def test_rejected_result_is_slashed_and_the_task_reoffered(chain: MarketChain) -> None:
    client_before = chain.state.account(CLIENT.address).balance
    task_id = chain.submit(max_price=MAX_PRICE)
    chain.auction(task_id, {1: ogpu(1) // 5, 2: ogpu(3) // 10})
    collateral = chain.task(task_id).attempt.collateral
    a_stake = chain.state.providers[PROVIDER_A.address].stake
    chain.commit_result(task_id)
    chain.vote(task_id, accept=False, voters=2)

    task = chain.task(task_id)
    assert task.status == TaskStatus.BIDDING and task.attempt.number == 2
    assert task.excluded == (PROVIDER_A.address,) and task.why == "rejected"
    assert task.escrow == ESCROW  # the client's money stays for the next round
    a = chain.state.providers[PROVIDER_A.address]
    assert a.stake == a_stake - collateral and a.locked == 0
    assert a.failed == 1 and a.fail_streak == 1 and reputation_bps(a) < BPS
    fee = RESERVE // 3
    to_client = (collateral - 2 * fee) * 5_000 // BPS
    lines = {m.event: m.amount for m in task.trail}
    assert lines["provider_slashed"] == collateral and lines["slash_to_client"] == to_client
    assert lines["slash_burned"] == collateral - 2 * fee - to_client
    assert chain.state.account(CLIENT.address).balance == client_before - FEE - ESCROW + to_client
    conserved(chain.state)

    # the excluded provider cannot bid again; the other one completes the task
    with pytest.raises(NotPermitted):
        chain.check(PROVIDER_A, CommitBid(task_id, ZERO))
    chain.auction(task_id, {2: ogpu(1) // 2})
    assert chain.task(task_id).attempt.provider == PROVIDER_B.address
    assert chain.task(task_id).attempt.price == MAX_PRICE  # sole bidder: the client's maximum
    chain.commit_result(task_id)
    chain.vote(task_id, accept=True, voters=2)
    assert chain.task(task_id).close_reason == CloseReason.COMPLETED
    conserved(chain.state)


def test_missed_deadline_slashes_and_reoffers_then_times_out(chain: MarketChain) -> None:
    # ttl fits two rounds at most
    task_id = chain.submit(max_price=MAX_PRICE, exec_ms=10_000, ttl_ms=40_000)
    chain.auction(task_id, {1: ogpu(1) // 5})
    a_stake = chain.state.providers[PROVIDER_A.address].stake
    collateral = chain.task(task_id).attempt.collateral
    chain.pass_phase(task_id)  # the provider vanished
    task = chain.task(task_id)
    assert task.status == TaskStatus.BIDDING and task.why == "timed_out"
    assert chain.state.providers[PROVIDER_A.address].stake == a_stake - collateral
    chain.auction(task_id, {2: ogpu(1) // 5})
    chain.pass_phase(task_id)  # the second one vanishes too: no time left for a third round
    task = chain.task(task_id)
    assert task.status == TaskStatus.CLOSED and task.close_reason == CloseReason.TIMED_OUT
    assert task.trail[-1].event == "refund" and task.escrow == 0
    b = chain.state.providers[PROVIDER_B.address]
    assert b.failed == 1 and b.locked == 0
    conserved(chain.state)


def test_late_result_is_refused(chain: MarketChain) -> None:
    task_id = chain.submit(max_price=MAX_PRICE, exec_ms=5_000)
    chain.auction(task_id, {1: 10})
    task = chain.task(task_id)
    late = chain.tx(PROVIDER_A, CommitResult(task_id, result_for(task)))
    with pytest.raises(InvalidBlock) as info:  # in the block at the deadline: too late
        chain.block(late, after_ms=task.phase_end_ms - chain.state.timestamp)
    assert type(info.value.__cause__) is WrongPhase


@pytest.mark.parametrize("phase", [TaskStatus.BIDDING, TaskStatus.REVEALING])
def test_cancel_before_award_refunds_everything_and_returns_every_deposit(
        chain: MarketChain, phase: TaskStatus) -> None:
    before = chain.state.account(CLIENT.address).balance
    stakes = {k.address: chain.state.providers[k.address].stake for k in (PROVIDER_A, PROVIDER_B)}
    task_id = chain.submit()
    chain.bid(PROVIDER_A, task_id, 10)
    if phase == TaskStatus.REVEALING:
        chain.bid(PROVIDER_B, task_id, 20)
        chain.end_bidding(task_id)
        chain.reveal(PROVIDER_B, task_id, 20)
    assert chain.task(task_id).status == phase
    assert chain.state.providers[PROVIDER_A.address].locked == DEPOSIT
    chain.send(CLIENT, CancelTask(task_id))
    task = chain.task(task_id)
    assert task.close_reason == CloseReason.CANCELLED and task.escrow == 0
    assert chain.state.account(CLIENT.address).balance == before - 2 * FEE
    for address, stake in stakes.items():  # the bidders did nothing wrong: nothing taken
        assert chain.state.providers[address].stake == stake
        assert chain.state.providers[address].locked == 0
    conserved(chain.state)


def test_cancel_after_award_pays_the_client_collateral_to_the_provider(
        chain: MarketChain) -> None:
    client_before = chain.state.account(CLIENT.address).balance
    task_id = chain.submit(max_price=MAX_PRICE)
    chain.auction(task_id, {1: 10})
    a_before = chain.state.account(PROVIDER_A.address).balance
    chain.send(CLIENT, CancelTask(task_id))
    task = chain.task(task_id)
    assert task.close_reason == CloseReason.CANCELLED_AFTER_AWARD
    assert chain.state.account(PROVIDER_A.address).balance == a_before + CLIENT_COLLATERAL
    assert chain.state.providers[PROVIDER_A.address].locked == 0
    assert chain.state.account(CLIENT.address).balance == (
        client_before - 2 * FEE - CLIENT_COLLATERAL)
    conserved(chain.state)


def test_a_result_under_verification_cannot_be_cancelled(chain: MarketChain) -> None:
    task_id = chain.submit()
    chain.auction(task_id, {1: 10})
    chain.commit_result(task_id)
    with pytest.raises(WrongPhase):
        chain.check(CLIENT, CancelTask(task_id))


@pytest.mark.parametrize("voters", [0, 1])
def test_a_result_without_a_quorum_is_never_paid(chain: MarketChain, voters: int) -> None:
    """One vote of three (or none) settles nothing; with no validator left to draw a fresh
    committee from, the result is unchecked: not paid, the provider's collateral returned."""
    client_before = balance(chain, 5)
    task_id = chain.submit()
    chain.auction(task_id, {1: 10})
    provider_before = balance(chain, 1)
    chain.commit_result(task_id)
    chain.vote(task_id, accept=True, voters=voters)
    if voters == 0:
        chain.pass_phase(task_id)  # the sealing window ends with no seal
    chain.draw(task_id)  # a fresh round finds no validator that was not drawn already
    task = chain.task(task_id)
    assert task.close_reason == CloseReason.UNCHECKED
    assert not any(m.event == "payment" for m in task.trail)
    assert [m.event for m in task.trail].count("silence_penalty") == 3 - voters
    assert balance(chain, 1) == provider_before - FEE  # paid nothing, lost nothing
    assert chain.state.providers[PROVIDER_A.address].locked == 0
    assert balance(chain, 5) == client_before - FEE  # the client got everything back
    conserved(chain.state)


@pytest.mark.parametrize("setup,why", [
    ("none", "not_a_provider"),
    ("slow", "below_min_benchmark"),
    ("floor", "price_floor_above_max_price"),
    ("silent", "no_bids_received"),
])
def test_no_bids_closes_with_the_reason(setup: str, why: str) -> None:
    chain = MarketChain.start()
    if setup != "none":
        chain.register(PROVIDER_A, benchmark=10 if setup == "slow" else 1_000,
                       floor=ogpu(5) if setup == "floor" else 1)
    before = chain.state.account(CLIENT.address).balance
    task_id = chain.submit(min_benchmark=100)
    chain.pass_phase(task_id)
    task = chain.task(task_id)
    assert task.close_reason == CloseReason.NO_BIDS and task.why == why
    assert chain.state.account(CLIENT.address).balance == before - FEE
    conserved(chain.state)


def test_unrevealed_bid_counts_against_the_bidder_and_nobody_wins(chain: MarketChain) -> None:
    client_before = balance(chain, 5)
    stake = chain.state.providers[PROVIDER_A.address].stake
    task_id = chain.submit()
    chain.bid(PROVIDER_A, task_id, 10)
    chain.pass_phase(task_id)
    chain.pass_phase(task_id)
    task = chain.task(task_id)
    assert task.close_reason == CloseReason.NO_BIDS and task.why == "no_bid_revealed"
    provider = chain.state.providers[PROVIDER_A.address]
    assert provider.unrevealed == 1
    # the escrow is refunded and the sealed bid's deposit paid to the client
    assert (provider.stake, provider.locked) == (stake - DEPOSIT, 0)
    assert balance(chain, 5) == client_before - FEE + DEPOSIT
    assert task.trail[-2:] == (Movement("bid_deposits_forfeited", CLIENT.address, DEPOSIT),
                               Movement("refund", CLIENT.address, ESCROW))
    conserved(chain.state)


def test_a_sealed_bid_locks_a_deposit_that_its_reveal_returns(chain: MarketChain) -> None:
    assert MARKET_PARAMS.bid_deposit_min == DEPOSIT  # a budget of 3 OGPU: 1 % is below it
    stake = chain.state.providers[PROVIDER_A.address].stake
    task_id = chain.submit(max_price=MAX_PRICE)
    chain.bid(PROVIDER_A, task_id, ogpu(1) // 5)
    assert chain.task(task_id).attempt.bids[0].deposit == DEPOSIT
    assert chain.state.providers[PROVIDER_A.address].free_stake == stake - DEPOSIT
    chain.bid(PROVIDER_B, task_id, ogpu(3) // 10)
    chain.reveal(PROVIDER_A, task_id, ogpu(1) // 5)
    assert chain.state.providers[PROVIDER_A.address].locked == 0
    chain.reveal(PROVIDER_B, task_id, ogpu(3) // 10)
    task = chain.task(task_id)
    # the award comes after every reveal: only the winner's collateral is locked now
    assert task.status == TaskStatus.RUNNING and task.attempt.provider == PROVIDER_A.address
    assert chain.state.providers[PROVIDER_A.address].locked == task.attempt.collateral
    assert chain.state.providers[PROVIDER_B.address].locked == 0
    assert chain.state.providers[PROVIDER_A.address].stake == stake
    assert "bid_deposits_forfeited" not in [m.event for m in task.trail]
    conserved(chain.state)


def test_a_bid_never_revealed_forfeits_its_deposit_to_the_client(chain: MarketChain) -> None:
    """What a bid spammer pays: each sealed bid it never reveals costs its deposit, paid to the
    client whose task it held up."""
    client_before = balance(chain, 5)
    a_stake = chain.state.providers[PROVIDER_A.address].stake
    task_id = chain.submit(max_price=MAX_PRICE)
    chain.bid(PROVIDER_A, task_id, 10)
    chain.bid(PROVIDER_B, task_id, 20)
    chain.reveal(PROVIDER_B, task_id, 20)
    chain.pass_phase(task_id)  # the reveal window ends with A's bid sealed
    task = chain.task(task_id)
    assert task.status == TaskStatus.RUNNING and task.attempt.provider == PROVIDER_B.address
    a = chain.state.providers[PROVIDER_A.address]
    assert (a.stake, a.locked, a.unrevealed) == (a_stake - DEPOSIT, 0, 1)
    assert Movement("bid_deposits_forfeited", CLIENT.address, DEPOSIT) in task.trail
    assert balance(chain, 5) == client_before - ESCROW - FEE + DEPOSIT
    conserved(chain.state)


def test_free_stake_must_cover_the_deposit_and_the_collateral_of_an_award() -> None:
    chain = MarketChain.start()
    max_price = ogpu(200)  # a budget of 600 OGPU: deposit 6, collateral at most 120
    budget = max_price * UNITS
    deposit = budget * MARKET_PARAMS.bid_deposit_bps // BPS
    needed = deposit + budget * MARKET_PARAMS.provider_collateral_bps // BPS
    assert deposit > MARKET_PARAMS.bid_deposit_min
    chain.register(PROVIDER_A, stake=needed - 1)
    task_id = chain.submit(max_price=max_price)
    with pytest.raises(InsufficientStake):
        chain.check(PROVIDER_A, CommitBid(task_id, ZERO))
    chain.send(PROVIDER_A, RegisterProvider(GPU, 1_000, 1, 1))  # one unit more
    chain.bid(PROVIDER_A, task_id, max_price)
    provider = chain.state.providers[PROVIDER_A.address]
    assert provider.free_stake == needed - deposit  # what an award at the maximum locks
    with pytest.raises(InsufficientStake):  # the deposit cannot leave either
        chain.check(PROVIDER_A, WithdrawProvider(provider.stake))
    chain.reveal(PROVIDER_A, task_id, max_price)
    assert chain.task(task_id).attempt.collateral == needed - deposit
    conserved(chain.state)


@pytest.mark.parametrize("spec", [TRAIN, NET_TRAIN], ids=["mlp", "network"])
def test_training_result_must_list_every_checkpoint(chain: MarketChain,
                                                    spec: TrainSpec | NetTrainSpec) -> None:
    task_id = chain.submit(spec)
    chain.auction(task_id, {1: 10})
    task = chain.task(task_id)
    good = result_for(task, spec=spec)
    assert len(good.checkpoint_ids) == 4
    short = replace(good, checkpoint_ids=good.checkpoint_ids[:-1])
    with pytest.raises(MarketRuleError, match="checkpoints"):
        chain.check(PROVIDER_A, CommitResult(task_id, short))
    other_output = replace(good, output_id=good.checkpoint_ids[0])
    with pytest.raises(MarketRuleError, match="last checkpoint"):
        chain.check(PROVIDER_A, CommitResult(task_id, other_output))
    chain.send(PROVIDER_A, CommitResult(task_id, good))
    assert chain.task(task_id).status == TaskStatus.VERIFYING


def test_provider_stake_withdrawal(chain: MarketChain) -> None:
    task_id = chain.submit(max_price=MAX_PRICE)
    chain.auction(task_id, {1: 10})
    provider = chain.state.providers[PROVIDER_A.address]
    with pytest.raises(InsufficientStake):  # the locked collateral cannot leave
        chain.check(PROVIDER_A, WithdrawProvider(provider.stake))
    with pytest.raises(NotPermitted):  # below the minimum but not zero
        chain.check(PROVIDER_A, WithdrawProvider(provider.stake - ogpu(50)))
    chain.commit_result(task_id)
    chain.vote(task_id, accept=True, voters=2)
    before = chain.state.account(PROVIDER_A.address).balance
    chain.send(PROVIDER_A, WithdrawProvider(provider.stake))
    assert chain.state.account(PROVIDER_A.address).balance == before - FEE + provider.stake
    assert chain.state.providers[PROVIDER_A.address].stake == 0  # history kept
    with pytest.raises(NotAProvider):
        chain.check(PROVIDER_A, CommitBid(chain.submit(), ZERO))
    conserved(chain.state)


def test_reputation_and_anomaly_flags() -> None:
    fresh = Provider(GPU, benchmark=1_000, price_floor=0, stake=1)
    assert reputation_bps(fresh) == BPS and anomaly_flags(fresh) == []
    assert reputation_bps(replace(fresh, completed=2, failed=1)) == BPS * 3 // 6
    slow = replace(fresh, completed=1, work_done=100, compute_ms=1_000)  # 100 GFLOP/s delivered
    assert anomaly_flags(slow) == ["slow"]
    assert anomaly_flags(replace(fresh, fail_streak=3)) == ["failing"]
    assert anomaly_flags(replace(fresh, bids=10, unrevealed=6)) == ["bid_spam"]
    assert anomaly_flags(replace(fresh, bids=10, unrevealed=5)) == []


# --- one test per rejection: typed, and the state untouched ------------------------------------


def _rejections(chain: MarketChain) -> list[tuple[str, object, object, type[Exception]]]:
    running = chain.submit(max_price=MAX_PRICE)
    chain.auction(running, {1: 10})
    bidding = chain.submit()
    task = chain.task(running)
    result = result_for(task)
    spec = encode(MatmulSpec(n=1024, seed=9))
    return [
        ("unknown task", CLIENT, CancelTask(Hash32(b"\7" * 32)), UnknownTask),
        ("bid by a non-provider", OUTSIDER, CommitBid(bidding, ZERO), NotAProvider),
        ("bid after the window", PROVIDER_B, CommitBid(running, ZERO), WrongPhase),
        ("reveal without a bid", PROVIDER_B, RevealBid(running, 5, b"s"), WrongPhase),
        ("result by another provider", PROVIDER_B, CommitResult(running, result),
         NotPermitted),
        ("verdict on a task not being checked", OUTSIDER,
         SealVerdict(running, b"", 1, 1, ZERO), WrongPhase),
        ("cancel by someone else", OUTSIDER, CancelTask(running), NotPermitted),
        ("spec too large", CLIENT, SubmitTask(1, encode(MatmulSpec(10**6, 1)), 1, 0, 10, 10**6),
         InvalidTaskSpec),
        ("unknown workload", CLIENT, SubmitTask(99, spec, 1, 0, 10_000, 10**6), InvalidTaskSpec),
        ("ttl shorter than a round", CLIENT, SubmitTask(1, spec, 1, 0, 10_000, 1_000),
         InvalidTaskSpec),
        ("escrow above balance", CLIENT, SubmitTask(1, spec, ogpu(10_000), 0, 10_000, 10**6),
         InsufficientFunds),
        ("register under the minimum stake", OUTSIDER, RegisterProvider(GPU, 1, 1, ogpu(1)),
         InsufficientStake),
        ("register without devices", OUTSIDER, RegisterProvider((), 1, 1, ogpu(200)),
         NotPermitted),
        ("withdraw by a non-provider", OUTSIDER, WithdrawProvider(1), NotAProvider),
        ("a model claim over the limits", CLIENT,
         RegisterModel("big", ZERO, replace(DIGITS_MODEL, opset=99)), InvalidModel),
        ("a task on an unknown model", CLIENT,
         SubmitTask(4, encode(ModelInferSpec(ZERO, 10, ZERO)), 1, 0, 10_000, 10**6),
         InvalidTaskSpec),
    ]


def test_every_market_rejection_is_typed_and_leaves_the_state_unchanged(
        chain: MarketChain) -> None:
    cases = _rejections(chain)
    seen = set()
    for name, key, payload, error in cases:
        before = snapshot(chain.state)
        tx = chain.tx(key, payload)  # type: ignore[arg-type]
        with pytest.raises(InvalidTransaction) as info:
            apply_tx(chain.state, tx, KEYS[0].address)
        assert type(info.value) is error, name
        assert snapshot(chain.state) == before, name
        seen.add(error)
    # a bad reveal and a result with the wrong shape are covered above and here
    task_id = chain.submit()
    chain.bid(PROVIDER_A, task_id, 10)
    chain.pass_phase(task_id)
    with pytest.raises(BadReveal):
        chain.check(PROVIDER_A, RevealBid(task_id, 11, b"salt"))
    seen |= {BadReveal, MarketRuleError}
    market_errors = {c for c in MarketRuleError.__subclasses__()}
    assert market_errors <= seen | {InsufficientFunds}


def test_result_for_a_closed_task_and_double_votes_are_refused(chain: MarketChain) -> None:
    task_id = chain.submit()
    chain.auction(task_id, {1: 10})
    chain.commit_result(task_id)
    member = chain.committee(task_id)[0]
    chain.seal(member, task_id, True)
    with pytest.raises(NotPermitted):
        chain.check(member, SealVerdict(task_id, b"", 1, 1, ZERO))
    with pytest.raises(WrongPhase):
        chain.check(member, SealVerdict(task_id, b"", 2, 1, ZERO))
    with pytest.raises(NotPermitted):
        chain.check(OUTSIDER, SealVerdict(task_id, b"", 1, 1, ZERO))
    for key in chain.committee(task_id)[1:]:
        chain.seal(key, task_id, True)
    for key in chain.committee(task_id):
        chain.reveal_vote(key, task_id, True)
    with pytest.raises(WrongPhase):
        chain.check(PROVIDER_A, CommitResult(task_id, TaskResult(ZERO, ZERO, (), (), ZERO)))


@pytest.mark.parametrize("changes,problem", [
    ({"bid_deposit_min": 0}, "bid_deposit_min must be within 1..provider_min_stake"),
    ({"bid_deposit_min": ogpu(100) + 1}, "bid_deposit_min must be within 1..provider_min_stake"),
    ({"bid_deposit_bps": BPS + 1}, f"bid_deposit_bps must be within 0..{BPS}"),
    ({"max_bids_per_task": MAX_BIDS_PER_TASK + 1},
     f"max_bids_per_task must be within 1..{MAX_BIDS_PER_TASK}"),
])
def test_bid_parameters_are_bounded(changes: dict[str, int], problem: str) -> None:
    assert MARKET_PARAMS.check() == [] and Params().check() == []
    assert replace(MARKET_PARAMS, bid_deposit_min=ogpu(100), bid_deposit_bps=0).check() == []
    assert problem in replace(MARKET_PARAMS, **changes).check()


def test_a_task_with_the_most_bids_and_the_longest_trail_fits_its_record() -> None:
    """`max_bids_per_task` is bounded so that the largest task record still encodes: with 1,024
    bids (the bound before) a task took 69.7 KB, over `Task.MAX_BYTES`."""
    who = PROVIDER_A.address
    ids = tuple(Hash32(bytes([i % 256]) * 32) for i in range(MAX_CHECKPOINTS))
    task = Task(
        client=who, kind=1, spec=b"s" * 1024, work_units=2**64 - 1, memory_mb=2**64 - 1,
        max_price=2**64 - 1,
        min_benchmark=2**64 - 1, exec_ms=2**64 - 1, expires_ms=2**64 - 1,
        created_ms=2**64 - 1, escrow=2**64 - 1,
        attempt=Attempt(
            number=2**64 - 1,
            bids=tuple(Bid(who, ZERO, 2**64 - 1, 2**64 - 1, True)
                       for _ in range(MAX_BIDS_PER_TASK)),
            provider=who, price=2**64 - 1, collateral=2**64 - 1,
            result=TaskResult(ZERO, ZERO, ids,
                              tuple((f"m{i}" * 8, 2**64 - 1) for i in range(8)), ZERO),
            check=Check(CheckPhase.REVEALING, 2**64 - 1, 2**64 - 1, MAX_CHECK_ROUNDS,
                        (who,) * MAX_COMMITTEE,
                        tuple(Vote(who, ZERO, True, True, "r" * 64)
                              for _ in range(MAX_COMMITTEE)),
                        (who,) * (MAX_COMMITTEE * MAX_CHECK_ROUNDS)),
            released_key=b"k" * 32),
        excluded=(who,) * 5, why="w" * 64,
        trail=tuple(Movement("e" * 32, who, 2**64 - 1) for _ in range(MAX_TRAIL)))
    assert decode(Task, encode(task)) == task
