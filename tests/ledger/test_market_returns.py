"""RETURN_TASK: an awarded provider that cannot run its task gives it back, paying the smaller
return penalty instead of waiting for its deadline to be slashed."""

from __future__ import annotations

import pytest

from ogpu_node.errors import DecodeError
from ogpu_node.ledger import apply_tx
from ogpu_node.ledger.errors import (
    InvalidTransaction,
    NotPermitted,
    UnknownTask,
    WrongPhase,
)
from ogpu_node.ledger.market.payloads import CommitBid, CommitResult, ReturnTask
from ogpu_node.ledger.market.records import CloseReason, ReturnReason, TaskStatus
from ogpu_node.ledger.params import BPS, Params
from ogpu_node.types import Hash32, ogpu
from ogpu_node.workloads.limits import LIMITS, DeviceMemoryTooSmall
from tests.ledger.helpers import FEE, KEYS, snapshot
from tests.ledger.market_helpers import (
    CLIENT,
    MARKET_PARAMS,
    OUTSIDER,
    PROVIDER_A,
    PROVIDER_B,
    MarketChain,
    result_for,
)
from tests.ledger.test_market_rules import conserved

PRICE = ogpu(1) // 5


def awarded(chain: MarketChain, *, ttl_ms: int = 200_000) -> Hash32:
    """A task running at PROVIDER_A."""
    task_id = chain.submit(exec_ms=10_000, ttl_ms=ttl_ms)
    chain.auction(task_id, {1: PRICE})
    assert chain.task(task_id).attempt.provider == PROVIDER_A.address
    return task_id


def test_the_return_penalty_is_well_below_a_slash() -> None:
    assert 0 < Params().return_penalty_bps <= BPS // 4
    assert Params(return_penalty_bps=BPS).check() == []
    assert Params(return_penalty_bps=BPS + 1).check() == [
        f"return_penalty_bps must be within 0..{BPS}"]


def test_a_returned_task_costs_the_return_penalty_and_is_offered_again(
        chain: MarketChain) -> None:
    task_id = awarded(chain)
    collateral = chain.task(task_id).attempt.collateral
    a_before = chain.state.providers[PROVIDER_A.address]
    client_before = chain.state.account(CLIENT.address).balance
    burned_before = chain.state.burned

    chain.send(PROVIDER_A, ReturnTask(task_id, ReturnReason.DEVICE_MEMORY))

    penalty = collateral * MARKET_PARAMS.return_penalty_bps // BPS
    to_client = penalty * MARKET_PARAMS.slash_to_client_bps // BPS
    assert 0 < penalty < collateral
    task = chain.task(task_id)
    assert (task.status, task.attempt.number, task.why) == (TaskStatus.BIDDING, 2, "device_memory")
    assert task.excluded == (PROVIDER_A.address,) and task.attempt.provider is None
    a = chain.state.providers[PROVIDER_A.address]
    assert a.stake == a_before.stake - penalty and a.locked == 0
    assert (a.failed, a.fail_streak) == (a_before.failed + 1, a_before.fail_streak + 1)
    assert [(m.event, m.amount) for m in task.trail[-4:]] == [
        ("return_penalty", penalty), ("slash_to_client", to_client),
        ("slash_burned", penalty - to_client),
        ("provider_collateral_returned", collateral - penalty)]
    assert chain.state.account(CLIENT.address).balance == client_before + to_client
    fee_burned = FEE * MARKET_PARAMS.fee_burn_bps // BPS  # of the return's own fee
    assert chain.state.burned == burned_before + penalty - to_client + fee_burned
    conserved(chain.state)
    # the returning provider may not bid again; the other one may, and completes it
    with pytest.raises(NotPermitted):
        chain.check(PROVIDER_A, CommitBid(task_id, Hash32(bytes(32))))
    chain.auction(task_id, {2: PRICE})
    chain.commit_result(task_id)
    chain.vote(task_id, accept=True)
    assert chain.task(task_id).close_reason == CloseReason.COMPLETED
    conserved(chain.state)


def test_a_return_with_no_round_left_closes_the_task_as_returned(chain: MarketChain) -> None:
    task_id = awarded(chain, ttl_ms=20_000)  # one round of 3 + 3 + 10 s fits, not two
    chain.send(PROVIDER_A, ReturnTask(task_id, ReturnReason.WORKER_FAILED))
    task = chain.task(task_id)
    assert task.status == TaskStatus.CLOSED and task.close_reason == CloseReason.RETURNED
    assert task.why == "worker_failed" and task.escrow == 0
    assert task.trail[-1].event == "refund"
    assert chain.state.providers[PROVIDER_A.address].locked == 0
    conserved(chain.state)


def test_only_the_awarded_provider_returns_and_only_while_it_runs(chain: MarketChain) -> None:
    task_id = awarded(chain)
    bidding = chain.submit()
    refused = [(PROVIDER_B, task_id, NotPermitted), (CLIENT, task_id, NotPermitted),
               (OUTSIDER, task_id, NotPermitted), (PROVIDER_A, bidding, WrongPhase),
               (PROVIDER_A, Hash32(b"\7" * 32), UnknownTask)]
    for key, task, error in refused:
        before = snapshot(chain.state)
        with pytest.raises(InvalidTransaction) as info:
            apply_tx(chain.state, chain.tx(key, ReturnTask(task, ReturnReason.DEVICE_MEMORY)),
                     KEYS[0].address)
        assert type(info.value) is error and snapshot(chain.state) == before
    # once the result is committed it is too late to return the task
    chain.send(PROVIDER_A, CommitResult(task_id, result_for(chain.task(task_id))))
    with pytest.raises(WrongPhase):
        chain.check(PROVIDER_A, ReturnTask(task_id, ReturnReason.DEVICE_MEMORY))


def test_a_return_at_the_deadline_is_too_late(chain: MarketChain) -> None:
    task_id = awarded(chain)
    late = chain.tx(PROVIDER_A, ReturnTask(task_id, ReturnReason.DEVICE_MEMORY))
    chain.block(after_ms=chain.task(task_id).phase_end_ms - chain.state.timestamp)
    task = chain.task(task_id)  # slashed in full for the missed deadline, and re-offered
    events = [m.event for m in task.trail]
    assert task.why == "timed_out" and "provider_slashed" in events
    assert "return_penalty" not in events
    with pytest.raises(InvalidTransaction):
        apply_tx(chain.state, late, KEYS[0].address)


def test_a_return_reason_outside_the_table_does_not_decode() -> None:
    task = bytes(32)
    assert ReturnTask.from_fields([task, 2]).reason == ReturnReason.DEVICE_MEMORY
    for bad in (0, max(ReturnReason) + 1, 2**64 - 1):
        with pytest.raises(DecodeError):
            ReturnTask.from_fields([task, bad])


def test_every_limit_of_the_worker_has_a_return_reason() -> None:
    codes = {limit.error.code for limit in LIMITS} | {DeviceMemoryTooSmall.code}
    assert codes | {"worker_failed"} == {r.name.lower() for r in ReturnReason}

