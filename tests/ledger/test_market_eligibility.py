"""Who may bid is one rule, `rules.bid_eligibility`: the chain refuses a `CommitBid` exactly when
it gives a code (with that code's typed error), and the provider agent, which asks it first,
never sends a bid the chain refuses."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import event, given, settings
from hypothesis import strategies as st

from ogpu_node.agents.provider import ProviderPolicy, why_not_bid
from ogpu_node.encoding import encode
from ogpu_node.ledger.errors import MarketRuleError
from ogpu_node.ledger.market.payloads import CommitBid
from ogpu_node.ledger.market.records import Attempt, Bid, Device, Provider, Task, TaskStatus
from ogpu_node.ledger.market.rules import (
    BID_REFUSAL_ERRORS,
    NO_BID_REASONS,
    bid_eligibility,
    no_bid_reason,
    process_commit_bid,
    provider_collateral,
)
from ogpu_node.ledger.state import State
from ogpu_node.ledger.working import Working
from ogpu_node.types import Address, Hash32, ogpu
from ogpu_node.workloads.limits import memory_needed_mb
from ogpu_node.workloads.spec import MatmulSpec
from tests.ledger.helpers import KEYS
from tests.ledger.market_helpers import CLIENT, GPU, MARKET_PARAMS, market_genesis
from tests.ledger.profiles import examples

TASK_ID = Hash32(b"\x07" * 32)
SENDERS = [KEYS[1].address, KEYS[2].address, KEYS[1].address, CLIENT.address]
OTHERS = [Address(bytes([0xA0 + i]) * 20) for i in range(4)]
MATMUL_1024 = MatmulSpec(n=1024, seed=1)
"""Providers that bid before the sender, or were excluded."""


@st.composite
def providers(draw: st.DrawFn, needed: int) -> Provider | None:
    """A provider record (or none) whose free stake is often just below or at `needed`."""
    if draw(st.integers(0, 9)) == 9:
        return None
    stake = draw(st.sampled_from([ogpu(300), ogpu(100), ogpu(300), ogpu(99), 0]))
    # free stake one unit short of `needed`, just enough, or anything
    shortfall = draw(st.sampled_from([1, 0, None]))
    if shortfall is None:
        locked = draw(st.integers(0, stake))
    else:
        locked = min(stake, max(0, stake - needed + shortfall))
    devices = (Device("test-gpu", draw(st.sampled_from([16_000, 16_000, 16_000, 1]))),)
    return Provider(devices, benchmark=draw(st.sampled_from([0, 1_000, 3_000])),
                    price_floor=draw(st.integers(0, ogpu(2))), stake=stake, locked=locked)


@st.composite
def situations(draw: st.DrawFn) -> tuple[State, Address, Provider | None, Task]:
    """A state holding one task in its bid window and a sender with its provider record."""
    sender = draw(st.sampled_from(SENDERS))
    params = replace(MARKET_PARAMS, max_bids_per_task=draw(st.integers(1, 5)))
    earlier = draw(st.lists(st.sampled_from([*OTHERS, sender]), max_size=3, unique=True))
    excluded = draw(st.lists(st.sampled_from([*OTHERS[:2], sender]), max_size=1))
    base = market_genesis(params)
    spec = encode(MATMUL_1024)
    task = Task(client=CLIENT.address, kind=1, spec=spec, work_units=draw(st.integers(1, 50)),
                memory_mb=memory_needed_mb(MATMUL_1024),
                max_price=draw(st.integers(1, ogpu(10))),
                min_benchmark=draw(st.sampled_from([0, 0, 0, 2_000])), exec_ms=10_000,
                expires_ms=base.timestamp + 100_000, created_ms=base.timestamp, escrow=0,
                status=TaskStatus.BIDDING, phase_end_ms=base.timestamp + 1_000,
                attempt=Attempt(bids=tuple(Bid(a, Hash32(bytes(32)), deposit=1)
                                           for a in earlier)),
                excluded=tuple(excluded))
    provider = draw(providers(provider_collateral(params, task.budget)))
    state = replace(base, tasks={TASK_ID: task},
                    providers={sender: provider} if provider is not None else {})
    return state, sender, provider, task


@settings(max_examples=examples(300, 5_000))
@given(situations(), st.integers(0, ogpu(2)))
def test_the_chain_refuses_a_bid_exactly_when_bid_eligibility_gives_a_code(
        situation: tuple[State, Address, Provider | None, Task], floor: int) -> None:
    state, sender, provider, task = situation
    code = bid_eligibility(state.params, sender, provider, task)
    event(code or "eligible")
    try:
        process_commit_bid(Working(state), sender, CommitBid(TASK_ID, Hash32(b"\x01" * 32)))
    except MarketRuleError as exc:
        assert code is not None, exc
        assert type(exc) is BID_REFUSAL_ERRORS[code]
    else:
        assert code is None
    # the agent bids only where the chain takes the bid (whatever its own policy adds)
    policy = ProviderPolicy(price_floor=floor, stake=ogpu(100))
    if why_not_bid(task, state, sender, policy, benchmark=10**6, busy=0) is None:
        assert code is None


def test_the_reason_table_lists_the_refusals_in_the_order_they_are_checked() -> None:
    assert list(NO_BID_REASONS)[:len(BID_REFUSAL_ERRORS)] == list(BID_REFUSAL_ERRORS)
    assert all(text for text in NO_BID_REASONS.values())


def test_a_no_bids_why_is_the_code_of_the_provider_that_got_furthest() -> None:
    params = MARKET_PARAMS
    task = Task(client=CLIENT.address, kind=1, spec=encode(MATMUL_1024),
                work_units=3, memory_mb=memory_needed_mb(MATMUL_1024), max_price=ogpu(1),
                min_benchmark=500, exec_ms=10_000,
                expires_ms=10**6, created_ms=0, escrow=0)
    slow = Provider(GPU, benchmark=100, price_floor=0, stake=ogpu(300))
    small = replace(slow, benchmark=1_000, devices=(Device("tiny", 1),))
    dear = replace(slow, benchmark=1_000, price_floor=ogpu(2))
    assert no_bid_reason([], task, params) == "not_a_provider"
    assert no_bid_reason([(OTHERS[0], slow)], task, params) == "below_min_benchmark"
    # a device too small for the task: it could only win it to return it
    assert no_bid_reason([(OTHERS[0], slow), (OTHERS[1], small)], task,
                         params) == "device_too_small"
    assert no_bid_reason([(OTHERS[0], slow), (OTHERS[1], dear)], task,
                         params) == "price_floor_above_max_price"
    assert no_bid_reason([(OTHERS[1], replace(dear, price_floor=1)), (OTHERS[0], slow)], task,
                         params) == "no_bids_received"
    # the floor is advisory: the chain takes the bid of a provider whose floor is too high
    assert bid_eligibility(params, OTHERS[1], dear, task) is None
