"""Uploaded task inputs on the ledger: a provider's report that the client withheld them, the
committee's check of that report, and the money of each outcome."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ogpu_node.ledger.errors import NotPermitted, WrongPhase
from ogpu_node.ledger.market.payloads import CancelTask, CommitResult, ReportMissingInputs
from ogpu_node.ledger.market.records import CloseReason, TaskStatus
from ogpu_node.ledger.params import BPS
from ogpu_node.types import Hash32, ogpu
from tests.ledger.helpers import FEE, KEYS
from tests.ledger.market_helpers import (
    CLIENT,
    MATMUL,
    PROVIDER_A,
    PROVIDER_B,
    MarketChain,
    result_for,
)
from tests.ledger.test_market_rules import conserved

UPLOADED = replace(MATMUL, inputs=bytes(range(32)))
UNITS = UPLOADED.work_units()
MAX_PRICE = ogpu(1)
BUDGET = MAX_PRICE * UNITS
RESERVE = BUDGET * 200 // BPS
CLIENT_COLLATERAL = BUDGET * 1_000 // BPS
ESCROW = BUDGET + RESERVE + CLIENT_COLLATERAL


def awarded(chain: MarketChain) -> Hash32:
    task_id = chain.submit(UPLOADED, max_price=MAX_PRICE)
    chain.auction(task_id, {1: 10})
    assert chain.task(task_id).attempt.provider == PROVIDER_A.address
    return task_id


def balance(chain: MarketChain, key_index: int) -> int:
    return chain.state.account(KEYS[key_index].address).balance


def test_a_report_the_committee_upholds_pays_the_client_collateral_to_the_provider(
        chain: MarketChain) -> None:
    client_before = chain.state.account(CLIENT.address).balance
    task_id = awarded(chain)
    provider_before = balance(chain, 1)
    chain.send(PROVIDER_A, ReportMissingInputs(task_id, "inputs_missing"))
    task = chain.task(task_id)
    assert task.status == TaskStatus.CHECKING_INPUTS and task.why == "inputs_missing"
    committee = {k.address for k in chain.committee(task_id)}
    assert PROVIDER_A.address not in committee and CLIENT.address not in committee
    assert len(committee) == 3
    with pytest.raises(WrongPhase):  # the client cannot cancel its way out of the check
        chain.check(CLIENT, CancelTask(task_id))

    chain.vote(task_id, accept=True, voters=2)
    task = chain.task(task_id)
    assert task.status == TaskStatus.CLOSED
    assert task.close_reason == CloseReason.INPUTS_WITHHELD and task.escrow == 0
    fee = RESERVE // 3
    assert balance(chain, 1) == provider_before - FEE + CLIENT_COLLATERAL
    provider = chain.state.providers[PROVIDER_A.address]
    assert provider.locked == 0 and provider.failed == 0  # not the provider's fault
    assert task.attempt.check is not None
    voters = [v.member for v in task.attempt.check.votes]
    assert [m.address for m in task.trail if m.event == "verifier_fee"] == voters
    refund = ESCROW - CLIENT_COLLATERAL - 2 * fee
    assert [(m.event, m.amount) for m in task.trail[-5:]] == [
        ("verifier_fee", fee), ("verifier_fee", fee),
        ("provider_collateral_returned", task.attempt.collateral),
        ("client_collateral_to_provider", CLIENT_COLLATERAL), ("refund", refund)]
    assert chain.state.account(CLIENT.address).balance == client_before - FEE - ESCROW + refund
    conserved(chain.state)


def test_a_report_the_committee_rejects_is_slashed_and_the_task_reoffered(
        chain: MarketChain) -> None:
    task_id = awarded(chain)
    collateral = chain.task(task_id).attempt.collateral
    stake = chain.state.providers[PROVIDER_A.address].stake
    chain.send(PROVIDER_A, ReportMissingInputs(task_id, "inputs_missing"))
    chain.vote(task_id, accept=False, voters=2)  # the members fetched the inputs fine
    task = chain.task(task_id)
    assert task.status == TaskStatus.BIDDING and task.attempt.number == 2 and task.why == "rejected"
    assert task.excluded == (PROVIDER_A.address,) and task.escrow == ESCROW
    provider = chain.state.providers[PROVIDER_A.address]
    assert provider.stake == stake - collateral and provider.failed == 1
    assert {m.event for m in task.trail} >= {"provider_slashed", "verifier_fee",
                                             "slash_to_client"}
    # another provider then completes the task normally
    chain.auction(task_id, {2: 10})
    chain.send(PROVIDER_B, CommitResult(task_id, result_for(chain.task(task_id))))
    chain.vote(task_id, accept=True, voters=2)
    assert chain.task(task_id).close_reason == CloseReason.COMPLETED
    conserved(chain.state)


def test_a_report_nobody_checks_never_pays_the_client_collateral(chain: MarketChain) -> None:
    client_before = chain.state.account(CLIENT.address).balance
    task_id = awarded(chain)
    provider_before = balance(chain, 1)
    chain.send(PROVIDER_A, ReportMissingInputs(task_id, "inputs_malformed"))
    chain.draw(task_id)
    chain.pass_phase(task_id)  # nobody seals: no quorum
    chain.draw(task_id)  # and no validator left to draw a fresh committee from
    task = chain.task(task_id)
    assert task.close_reason == CloseReason.UNCHECKED
    assert not any(m.event in ("verifier_fee", "client_collateral_to_provider")
                   for m in task.trail)
    assert balance(chain, 1) == provider_before - FEE
    assert chain.state.account(CLIENT.address).balance == client_before - FEE
    conserved(chain.state)


def test_only_the_awarded_provider_reports_and_only_uploaded_inputs(
        chain: MarketChain) -> None:
    task_id = awarded(chain)
    with pytest.raises(NotPermitted):
        chain.check(PROVIDER_B, ReportMissingInputs(task_id, "inputs_missing"))
    with pytest.raises(NotPermitted):
        chain.check(CLIENT, ReportMissingInputs(task_id, "inputs_missing"))
    seeded = chain.submit(MATMUL, max_price=MAX_PRICE)
    chain.auction(seeded, {2: 10})
    with pytest.raises(NotPermitted):  # a seeded task has nothing to withhold
        chain.check(PROVIDER_B, ReportMissingInputs(seeded, "inputs_missing"))
    chain.send(PROVIDER_A, ReportMissingInputs(task_id, "inputs_missing"))
    with pytest.raises(WrongPhase):  # reported once; no result for this attempt either
        chain.check(PROVIDER_A, ReportMissingInputs(task_id, "inputs_missing"))
    with pytest.raises(WrongPhase):
        chain.check(PROVIDER_A, CommitResult(task_id, result_for(chain.task(task_id))))
    conserved(chain.state)


def test_a_report_after_the_deadline_is_refused(chain: MarketChain) -> None:
    task_id = awarded(chain)
    chain.pass_phase(task_id)  # the deadline passed: slashed and re-offered
    with pytest.raises(WrongPhase):
        chain.check(PROVIDER_A, ReportMissingInputs(task_id, "inputs_missing"))
