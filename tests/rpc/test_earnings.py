"""`provider_earnings`: what an address was paid and slashed, by hour, day and epoch of block
time, from the earnings index that each committed block extends (`earnings_index.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from ogpu_node.chain import Chain
from ogpu_node.earnings_index import (
    Earning,
    appended,
    index_entries,
    newest_earnings,
    read_earnings,
)
from ogpu_node.encoding import pack
from ogpu_node.ledger import State
from ogpu_node.ledger.market.payloads import OpenPool
from ogpu_node.ledger.market.records import MAX_TRAIL, Movement
from ogpu_node.rpc.market_views import earnings_by_period
from ogpu_node.storage import ChainStore, MemoryKV
from ogpu_node.types import Address, Hash32, ogpu
from tests.ledger.market_helpers import CLIENT, PROVIDER_A, MarketChain
from tests.rpc.conftest import Rpc
from tests.rpc.market import Market
from tests.rpc.test_market import text

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


async def earn_on_two_days(market: Market) -> tuple[int, int, int]:
    """Provider A paid for a task, a day later slashed on one, an hour later compensated for a
    cancelled one: (payment, slash, compensation)."""
    completed = await market.completed_task()
    payment = next(m.amount for m in market.task(completed).trail if m.event == "payment")
    market.node.produce_block(DAY_MS)
    rejected = await market.submit(ttl_ms=30_000)
    await market.award(rejected, {1: ogpu(1) // 4})
    await market.commit_result(rejected)
    await market.vote(rejected, False)
    slash = next(m.amount for m in market.task(rejected).trail if m.event == "provider_slashed")
    market.node.produce_block(HOUR_MS)
    cancelled = await market.submit()
    await market.award(cancelled, {1: ogpu(1) // 4})
    await market.cancel(cancelled)
    compensation = next(m.amount for m in market.task(cancelled).trail
                        if m.event == "client_collateral_to_provider")
    return payment, slash, compensation


async def test_earnings_by_day_hour_and_epoch_add_up_to_the_totals(rpc: Rpc) -> None:
    market = Market(rpc.node)
    payment, slash, compensation = await earn_on_two_days(market)
    address = text(market.provider_a)
    totals = (await rpc.result("provider_get", [address]))["earnings"]

    by_day = await rpc.result("provider_earnings", {"address": address, "period": "day"})
    assert by_day["address"] == address and by_day["period"] == "day"
    assert by_day["height"] == rpc.node.state.height and by_day["truncated"] is False
    today, yesterday = by_day["buckets"]  # newest first
    assert today["startMs"] > yesterday["startMs"] and today["endMs"] - today["startMs"] == DAY_MS
    assert (yesterday["paid"], yesterday["slashed"]) == (str(payment), "0")
    assert (today["paid"], today["slashed"]) == (str(compensation), str(slash))
    assert today["net"] == str(compensation - slash) and today["lines"] == 2
    assert today["netOgpu"].startswith("-") == (compensation < slash)
    assert sum(int(b["paid"]) for b in by_day["buckets"]) == int(totals["earned"])
    assert sum(int(b["slashed"]) for b in by_day["buckets"]) == int(totals["slashed"])

    by_hour = await rpc.result("provider_earnings", {"address": address, "period": "hour"})
    assert [int(b["paid"]) for b in by_hour["buckets"]] == [compensation, 0, payment]
    assert [b["endMs"] - b["startMs"] for b in by_hour["buckets"]] == [HOUR_MS] * 3

    by_epoch = await rpc.result("provider_earnings", {"address": address, "period": "epoch"})
    length = rpc.node.state.params.epoch_length
    for bucket in by_epoch["buckets"]:
        assert bucket["endHeight"] - bucket["startHeight"] == length - 1
        assert bucket["startHeight"] == bucket["epoch"] * length
    assert sum(int(b["net"]) for b in by_epoch["buckets"]) == payment + compensation - slash

    one = await rpc.result("provider_earnings", {"address": address, "period": "hour",
                                                 "limit": 1})
    assert one["truncated"] is True and one["buckets"] == by_hour["buckets"][:1]
    nobody = await rpc.result("provider_earnings", {"address": text(market.other)})
    assert nobody["buckets"] == [] and nobody["period"] == "day"  # the default


async def test_the_index_is_the_same_on_a_node_that_replays_the_chain(rpc: Rpc) -> None:
    market = Market(rpc.node)
    await earn_on_two_days(market)
    node = rpc.node
    # a node that syncs the same blocks writes the same index: it comes from chain data alone
    replayed = Chain.open(ChainStore(MemoryKV()), node.genesis)
    for height in range(1, node.state.height + 1):
        block = node.chain.block_at(height)
        assert block is not None
        replayed.apply_and_commit(block)
    for key in node.users():
        mine = read_earnings(node.chain.store, key.address)
        assert mine == read_earnings(replayed.store, key.address)
    assert len(read_earnings(node.chain.store, market.provider_a.address)) == 3
    # and it is no part of the state: the state reloads (its root checked) with it there
    assert Chain.open(node.chain.store, node.genesis).state.root == node.state.root


async def test_earnings_param_errors(rpc: Rpc) -> None:
    for params, name in (({"address": "nope"}, "address"),
                         ({"address": text(Market(rpc.node).client), "period": "week"},
                          "period"),
                         ({"address": text(Market(rpc.node).client), "limit": 0}, "limit")):
        error = await rpc.error("provider_earnings", params)
        assert (error["code"], error["data"]) == (-32602, {"param": name}), error


def test_a_call_reads_the_lines_of_the_buckets_it_shows_not_the_whole_history() -> None:
    # a provider paid every hour for 1,000 hours: asking for the last 3 days must not read
    # (in the node's loop) every line it ever earned
    address = bytes(20)
    lines = [Earning(address, hour * HOUR_MS, hour, bytes(32), "paid", 10)
             for hour in range(1_000)]
    read = []

    def newest_first() -> Iterator[Earning]:
        for line in reversed(lines):
            read.append(line)
            yield line

    buckets, truncated = earnings_by_period(newest_first(), "day", 1_000, 3)
    assert truncated and [b["lines"] for b in buckets] == [16, 24, 24]
    assert [b["paid"] for b in buckets] == ["160", "240", "240"]
    assert len(read) == 16 + 24 + 24 + 1
    all_of_it, truncated = earnings_by_period(reversed(lines), "day", 1_000, 100)
    assert not truncated and sum(b["lines"] for b in all_of_it) == 1_000


async def test_the_index_reads_newest_first_for_the_rpc(rpc: Rpc) -> None:
    market = Market(rpc.node)
    await earn_on_two_days(market)
    address = market.provider_a.address
    oldest_first = read_earnings(rpc.node.chain.store, address)
    assert list(newest_earnings(rpc.node.chain.store, address)) == oldest_first[::-1]
    assert [e.time_ms for e in oldest_first] == sorted(e.time_ms for e in oldest_first)


def full_trail_states(pinned: bool) -> tuple[State, State, Hash32, Address]:
    """A pool (or task, `pinned`) whose trail is full, and the state after a block appended a
    verifier fee and a top-up to it (the oldest lines dropped)."""
    chain = MarketChain.start()
    chain.register(PROVIDER_A)
    member = PROVIDER_A.address
    top_up = Movement("escrow", CLIENT.address, 1)
    if pinned:
        source = chain.submit()
        task = chain.task(source)
        full = (*task.trail, *[top_up] * (MAX_TRAIL - len(task.trail)))
        old = replace(chain.state, tasks={**chain.state.tasks,
                                          source: replace(task, trail=full)})
        grown = (full[0], *(*full[1:], Movement("verifier_fee", member, 7), top_up)[-255:])
        new = replace(old, tasks={**old.tasks, source: replace(task, trail=grown)},
                      changed_tasks=(source,), changed_pools=(), timestamp=old.timestamp + 1)
        return old, new, source, member
    source = chain.send(CLIENT, OpenPool("mlp-small", 256, ogpu(1), ogpu(100), 1, 0, ogpu(1),
                                         5_000, 600_000)).hash
    pool = chain.state.pools[source]
    full = (*pool.trail, *[top_up] * (MAX_TRAIL - len(pool.trail)))
    old = replace(chain.state, pools={**chain.state.pools, source: replace(pool, trail=full)})
    grown = (*full, Movement("verifier_fee", member, 7), top_up)[-MAX_TRAIL:]
    new = replace(old, pools={**old.pools, source: replace(pool, trail=grown)},
                  changed_pools=(source,), changed_tasks=(), timestamp=old.timestamp + 1)
    return old, new, source, member


@pytest.mark.parametrize("pinned", [False, True], ids=["pool", "task"])
def test_a_full_trail_still_has_its_new_lines_indexed(pinned: bool) -> None:
    # a trail at MAX_TRAIL lines keeps its length as it grows: a difference of lengths saw no
    # new line, so a busy pool's (or a long task's) fees and slashes went unindexed for good
    old, new, source, member = full_trail_states(pinned)
    entries = index_entries(old, new)
    assert list(entries.values()) == [pack([new.height, "fee", 7])]
    (key,) = entries
    assert key.startswith(b"e" + bytes(member) + new.timestamp.to_bytes(8, "big") + source)
    assert appended(old.pools[source].trail if not pinned else old.tasks[source].trail,
                    new.pools[source].trail if not pinned else new.tasks[source].trail,
                    int(pinned)) == 2
