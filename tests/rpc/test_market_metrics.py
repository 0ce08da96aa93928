"""`/metrics` scraped over HTTP shows the market as the finalised state has it (tasks by phase
and close reason, bids, verdicts, slashes), the blob store's use and the agents' workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpu.worker_usage import WorkerUsage
from ogpu_node.ledger import State
from ogpu_node.ledger.market.records import TaskStatus
from ogpu_node.rpc import market_metrics
from ogpu_node.rpc.market_metrics import (
    CLOSE_REASONS,
    TASK_PHASES,
    BlobUse,
    LocalSources,
    MarketCollector,
    MarketCounts,
    market_counts,
)
from ogpu_node.types import ogpu
from tests.rpc.conftest import Rpc, serving
from tests.rpc.local_node import LocalNode
from tests.rpc.market import MATMUL, Market

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(rpc: Rpc) -> Samples:
    response = await rpc.http.get(rpc.address.http_url + "metrics")
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_show_the_market_blob_store_and_workers(tmp_path: Path) -> None:
    node = LocalNode(tmp_path / "blobs")
    assert node.blobs is not None
    market = Market(node)
    now = [0.0]
    usage = WorkerUsage(clock=lambda: now[0])
    blobs = node.blobs
    async with serving(node) as rpc:
        rpc.metrics.watch(LocalSources(
            state=lambda: node.state,
            blobs=lambda: BlobUse(blobs.used_bytes, blobs.chunk_count, blobs.max_bytes),
            workers=lambda: {"provider": usage}))
        empty = await scrape(rpc)
        assert all(value(empty, "ogpu_market_tasks", phase=p) == 0 for p in TASK_PHASES)
        assert value(empty, "ogpu_blob_store_bytes") == 0

        completed = await market.completed_task()  # two bids revealed, one accepting vote
        cancelled = await market.submit()
        await market.cancel(cancelled)
        rejected = await market.submit(MATMUL, ttl_ms=30_000)
        await market.award(rejected, {1: ogpu(1) // 4})
        await market.commit_result(rejected)
        await market.vote(rejected, False)  # slashed
        waiting = await market.submit()
        await market.bid(market.provider_b, waiting, ogpu(1) // 2)  # sealed, not revealed yet
        with usage.job():
            now[0] += 7.5
        samples = await scrape(rpc)

    state = node.state
    for phase in TASK_PHASES:
        expected = sum(1 for t in state.tasks.values() if t.status.name.lower() == phase)
        assert value(samples, "ogpu_market_tasks", phase=phase) == expected, phase
    assert value(samples, "ogpu_market_tasks", phase="closed") >= 2
    assert value(samples, "ogpu_market_tasks", phase="bidding") >= 1
    for reason in CLOSE_REASONS:
        expected = sum(1 for t in state.tasks.values() if t.status == TaskStatus.CLOSED
                       and t.close_reason is not None and t.close_reason.name.lower() == reason)
        assert value(samples, "ogpu_market_tasks_closed", reason=reason) == expected, reason
    assert value(samples, "ogpu_market_tasks_closed", reason="completed") == 1
    assert value(samples, "ogpu_market_tasks_closed", reason="cancelled") == 1
    assert value(samples, "ogpu_market_tasks_closed", reason="rejected") == 1  # no time left
    # 2 bids on the completed task, 1 on the rejected one, 1 sealed on the waiting one
    assert value(samples, "ogpu_market_bids", state="committed") == 4
    assert value(samples, "ogpu_market_bids", state="sealed") == 1
    assert value(samples, "ogpu_market_bids", state="revealed") == 3
    assert value(samples, "ogpu_market_bids", state="unrevealed") == 0
    assert value(samples, "ogpu_market_verdicts", verdict="accept") == 1
    assert value(samples, "ogpu_market_verdicts", verdict="reject") == 1
    slashes = [m for t in state.tasks.values() for m in t.trail if m.event == "provider_slashed"]
    assert len(slashes) == 1 and value(samples, "ogpu_market_slashes") == 1
    assert value(samples, "ogpu_market_slashed_base_units") == slashes[0].amount > 0
    assert state.tasks[completed].status == TaskStatus.CLOSED
    # the result files the provider stored are in the blob store
    assert value(samples, "ogpu_blob_store_bytes") == blobs.used_bytes > 0
    assert value(samples, "ogpu_blob_store_chunks") == blobs.chunk_count > 0
    assert value(samples, "ogpu_blob_store_limit_bytes") == blobs.max_bytes
    assert value(samples, "ogpu_worker_busy_seconds_total", agent="provider") == 7.5
    assert value(samples, "ogpu_worker_jobs_running", agent="provider") == 0
    assert value(samples, "ogpu_worker_memory_bytes", agent="provider") == 0


def test_scrapes_count_the_market_once_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    # market_counts walks every task the chain ever had: anyone who reaches the port may scrape
    node = LocalNode()
    counted: list[int] = []

    def counting(state: State) -> MarketCounts:
        counted.append(state.height)
        return market_counts(state)

    monkeypatch.setattr(market_metrics, "market_counts", counting)
    collector = MarketCollector(LocalSources(state=lambda: node.state))
    for _ in range(5):
        list(collector.collect())
    node.produce_block()
    tasks = [m for m in collector.collect() if m.name == "ogpu_market_tasks"]
    assert counted == [node.state.height - 1, node.state.height] and tasks
