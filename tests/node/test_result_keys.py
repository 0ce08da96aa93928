"""A provider's node answering a committee member's request for a result key: given to the
member only, and, when the provider's state lags the member's (a provider that does not validate
learns of finality after the validators), given once its state shows the committee, within
`KEY_WAIT_S`. Market state from real transactions and blocks (`tests/rpc/market.py`); time is
trio's mock clock."""

from __future__ import annotations

import trio
import trio.testing
from trio.testing import MockClock

from ogpu_node.agents.result_keys import (
    KEY_WAIT_S,
    ResultKeyRequest,
    answer_key_request,
    committee_pending,
    may_have_key,
)
from ogpu_node.node.broadcast import Notifier
from ogpu_node.types import Hash32
from tests.rpc.local_node import VALIDATOR, LocalNode
from tests.rpc.market import Market

KEY = b"\x05" * 32


async def committed_task() -> tuple[LocalNode, Market, Hash32]:
    """A task whose result provider A (dev account 1) committed; its committee not drawn."""
    node = LocalNode()
    market = Market(node)
    await market.fund_validator()
    await market.register(market.provider_a)
    task_id = await market.submit()
    await market.award(task_id, {1: 1_000})
    await market.commit_result(task_id)
    return node, market, task_id


def key_of(target: Hash32, request_id: bytes, attempt: int) -> bytes:
    return KEY


async def test_a_member_gets_the_key_once_the_lagging_state_shows_the_committee(
        autojump_clock: MockClock) -> None:
    node, market, task_id = await committed_task()
    request = ResultKeyRequest(task_id, b"", market.task(task_id).attempt.number)
    member, provider = bytes(VALIDATOR.address), bytes(market.provider_a.address)
    assert committee_pending(node.state, request, provider)
    assert not may_have_key(node.state, request, member)
    changed = Notifier()
    answers: list[bytes] = []

    async def ask() -> None:
        answers.append(await answer_key_request(request, member, lambda: node.state, changed,
                                                provider, key_of))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        assert answers == []  # waiting for our state to catch up
        started = trio.current_time()
        await trio.sleep(KEY_WAIT_S / 2)
        market.draw(task_id)
        changed.notify()
    assert answers == [KEY] and trio.current_time() - started == KEY_WAIT_S / 2
    assert not committee_pending(node.state, request, provider)


async def test_no_key_for_others_nor_for_a_claim_not_ours_and_no_wait_beyond_the_limit(
        autojump_clock: MockClock) -> None:
    node, market, task_id = await committed_task()
    request = ResultKeyRequest(task_id, b"", market.task(task_id).attempt.number)
    member, provider = bytes(VALIDATOR.address), bytes(market.provider_a.address)
    other = bytes(market.provider_b.address)
    changed = Notifier()

    async def answer(validator: bytes | None, me: bytes) -> tuple[bytes, float]:
        start = trio.current_time()
        key = await answer_key_request(request, validator, lambda: node.state, changed, me,
                                       key_of)
        return key, trio.current_time() - start

    assert await answer(None, provider) == (b"", 0)  # an unproven peer: at once
    assert await answer(member, other) == (b"", 0)  # the claim is another provider's
    assert await answer(member, provider) == (b"", KEY_WAIT_S)  # never drawn: gives up
    market.draw(task_id)
    assert await answer(member, provider) == (KEY, 0)
    assert await answer(bytes(market.client.address), provider) == (b"", 0)  # no member
