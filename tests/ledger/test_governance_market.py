"""Governance meets the market: no vote may change what a task escrowed under earlier
parameters settles with (found in review of issue 17: a vote raising `verifier_fee_bps` and
lowering `committee_size` paid a released task's committee 30 times its reserve, taken from the
client's refund, or drove the escrow negative)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ogpu_node.ledger.errors import UnknownParam
from ogpu_node.ledger.governance.bounds import apply_changes
from ogpu_node.ledger.governance.records import Propose
from ogpu_node.ledger.market.records import TaskStatus
from ogpu_node.types import ogpu
from tests.ledger.market_helpers import (
    CLIENT,
    MARKET_PARAMS,
    PROVIDER_A,
    PROVIDER_B,
    MarketChain,
)

GOV_PARAMS = replace(MARKET_PARAMS, gov_min_deposit=ogpu(10), gov_voting_period=1,
                     gov_activation_delay=1)
SETTLEMENT_PARAMS = ("verifier_fee_bps", "committee_size", "client_collateral_bps")
"""Read again from the parameters of the day when a task settles."""


@pytest.mark.parametrize("name", SETTLEMENT_PARAMS)
def test_what_settlement_reads_again_is_not_governable(name: str) -> None:
    value = getattr(MARKET_PARAMS, name) + 1
    with pytest.raises(UnknownParam):
        apply_changes(MARKET_PARAMS, ((name, value),))


def test_a_vote_cannot_overpay_the_committee_of_a_task_being_released() -> None:
    chain = MarketChain.start(GOV_PARAMS)
    chain.register(PROVIDER_A)
    chain.register(PROVIDER_B)
    task_id = chain.submit(max_price=ogpu(1))
    chain.auction(task_id, {1: ogpu(1)})
    chain.commit_result(task_id)
    chain.vote(task_id, accept=True, release=False)
    assert chain.task(task_id).status == TaskStatus.RELEASING
    changes = (("verifier_fee_bps", 2_000), ("committee_size", 1), ("committee_min_size", 1))
    with pytest.raises(UnknownParam):
        chain.check(CLIENT, Propose(changes, ogpu(10), "pay the committee more"))
