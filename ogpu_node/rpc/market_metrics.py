"""Market and GPU metrics, read when `/metrics` is scraped.

The market's numbers come from the finalised state (`market_counts`), which keeps every task
(closed ones too) and every provider's counters: counting them at scrape time makes `/metrics`
agree with `task_list` and `provider_get` by construction, after a restart as well. The node's
own numbers (blob store, the agents' workers, the device's memory) come from `LocalSources`.
Label values come from fixed sets (task phases, close reasons, agent names), never from clients.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpu.worker_usage import WorkerUsage
from ogpu_node.ledger import State
from ogpu_node.ledger.market.records import CloseReason, TaskStatus

TASK_PHASES = tuple(s.name.lower() for s in TaskStatus)
CLOSE_REASONS = tuple(r.name.lower() for r in CloseReason)
SLASH_EVENTS = ("provider_slashed", "return_penalty")
"""Money trail lines that take a provider's collateral (a rejected or missed result, a task
given back)."""
BID_STATES = ("committed", "revealed", "unrevealed", "sealed")
VERDICTS = ("accept", "reject")


@dataclass(frozen=True)
class MarketCounts:
    """The market in the finalised state, as `/metrics` shows it."""

    tasks_by_phase: dict[str, int]
    closed_by_reason: dict[str, int]
    bids: dict[str, int]
    """committed: every sealed bid ever sent; revealed: opened in time; unrevealed: let lapse
    (deposit forfeited); sealed: waiting for their reveal now."""
    verdicts: dict[str, int]
    """Revealed committee votes on each task's latest attempt."""
    slashes: int
    slashed_amount: int


def market_counts(state: State) -> MarketCounts:
    """Count tasks, bids, verdicts and slashes in `state`."""
    phases = Counter(t.status.name.lower() for t in state.tasks.values())
    reasons = Counter(t.close_reason.name.lower() for t in state.tasks.values()
                      if t.status == TaskStatus.CLOSED and t.close_reason is not None)
    sealed = sum(1 for t in state.tasks.values()
                 if t.status in (TaskStatus.BIDDING, TaskStatus.REVEALING)
                 for b in t.attempt.bids if not b.revealed)
    committed = sum(p.bids for p in state.providers.values())
    unrevealed = sum(p.unrevealed for p in state.providers.values())
    votes = Counter("accept" if v.accept else "reject" for t in state.tasks.values()
                    if t.attempt.check is not None for v in t.attempt.check.votes if v.revealed)
    slash_lines = [m for t in state.tasks.values() for m in t.trail if m.event in SLASH_EVENTS]
    return MarketCounts(
        tasks_by_phase={p: phases.get(p, 0) for p in TASK_PHASES},
        closed_by_reason={r: reasons.get(r, 0) for r in CLOSE_REASONS},
        bids={"committed": committed, "revealed": committed - unrevealed - sealed,
              "unrevealed": unrevealed, "sealed": sealed},
        verdicts={v: votes.get(v, 0) for v in VERDICTS},
        slashes=len(slash_lines), slashed_amount=sum(m.amount for m in slash_lines))


@dataclass(frozen=True)
class BlobUse:
    used_bytes: int
    files: int
    """Chunks stored (a file of up to 1 MiB is one chunk)."""
    limit_bytes: int


@dataclass(frozen=True)
class LocalSources:
    """Where the node's own numbers are read at scrape time."""

    state: Callable[[], State]
    blobs: Callable[[], BlobUse | None] = lambda: None
    workers: Callable[[], Mapping[str, WorkerUsage]] = dict
    device: Callable[[], tuple[str, str, tuple[int, int] | None] | None] = lambda: None
    """(kind, name, (used, total) or None when the driver cannot tell) of the agents' device."""


class MarketCollector(Collector):
    """A prometheus-client collector over `LocalSources` (registered by `NodeMetrics.watch`)."""

    def __init__(self, sources: LocalSources) -> None:
        self.sources = sources
        self._counted: tuple[tuple[int, bytes], MarketCounts] | None = None

    def collect(self) -> Iterator[Metric]:
        yield from self._market(self._counts(self.sources.state()))
        yield from self._blobs(self.sources.blobs())
        yield from self._workers(self.sources.workers())
        yield from self._device(self.sources.device())

    def _counts(self, state: State) -> MarketCounts:
        """`market_counts(state)`, counted once per finalised block: it walks every task the
        chain ever had (closed ones are kept, and submitting then cancelling one costs only two
        fees), so scrapes, which anyone who reaches the port may send, must not repeat it."""
        key = (state.height, bytes(state.block_hash))
        if self._counted is None or self._counted[0] != key:
            self._counted = (key, market_counts(state))
        return self._counted[1]

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected on demand: nothing to check at registration

    @staticmethod
    def _market(counts: MarketCounts) -> Iterator[Metric]:
        tasks = GaugeMetricFamily("ogpu_market_tasks", "Tasks in the finalised state by phase.",
                                  labels=["phase"])
        for phase, count in counts.tasks_by_phase.items():
            tasks.add_metric([phase], count)
        closed = GaugeMetricFamily("ogpu_market_tasks_closed",
                                   "Closed tasks by close reason.", labels=["reason"])
        for reason, count in counts.closed_by_reason.items():
            closed.add_metric([reason], count)
        bids = GaugeMetricFamily(
            "ogpu_market_bids", "Sealed bids: committed in all, revealed, let lapse, waiting.",
            labels=["state"])
        for state, count in counts.bids.items():
            bids.add_metric([state], count)
        verdicts = GaugeMetricFamily(
            "ogpu_market_verdicts", "Revealed committee votes on tasks' latest attempts.",
            labels=["verdict"])
        for verdict, count in counts.verdicts.items():
            verdicts.add_metric([verdict], count)
        yield from (tasks, closed, bids, verdicts)
        yield GaugeMetricFamily("ogpu_market_slashes", "Provider slashes and task returns "
                                "(money trail lines taking collateral).", value=counts.slashes)
        yield GaugeMetricFamily("ogpu_market_slashed_base_units",
                                "Collateral taken by those slashes, in base units.",
                                value=counts.slashed_amount)

    @staticmethod
    def _blobs(use: BlobUse | None) -> Iterator[Metric]:
        if use is None:
            return
        yield GaugeMetricFamily("ogpu_blob_store_bytes", "Bytes in the blob store.",
                                value=use.used_bytes)
        yield GaugeMetricFamily("ogpu_blob_store_chunks", "Chunks in the blob store.",
                                value=use.files)
        yield GaugeMetricFamily("ogpu_blob_store_limit_bytes", "The blob store's limit.",
                                value=use.limit_bytes)

    @staticmethod
    def _workers(workers: Mapping[str, WorkerUsage]) -> Iterator[Metric]:
        busy = CounterMetricFamily(
            "ogpu_worker_busy_seconds", "Seconds the agent's workers ran jobs (its rate is the "
            "workers' utilisation).", labels=["agent"])
        running = GaugeMetricFamily("ogpu_worker_jobs_running", "Jobs running now.",
                                    labels=["agent"])
        memory = GaugeMetricFamily(
            "ogpu_worker_memory_bytes", "Resident memory of the agent's worker processes "
            "(0 when jobs run in the node's threads).", labels=["agent"])
        for agent, usage in sorted(workers.items()):
            busy.add_metric([agent], usage.busy_seconds())
            running.add_metric([agent], usage.running())
            memory.add_metric([agent], usage.memory_bytes())
        yield from (busy, running, memory)

    @staticmethod
    def _device(device: tuple[str, str, tuple[int, int] | None] | None) -> Iterator[Metric]:
        if device is None or device[2] is None:
            return
        kind, name, (used, total) = device[0], device[1], device[2]
        family = GaugeMetricFamily("ogpu_device_memory_bytes",
                                   "Memory of the agents' device as its driver reports it.",
                                   labels=["kind", "device", "use"])
        family.add_metric([kind, name, "used"], used)
        family.add_metric([kind, name, "total"], total)
        yield family
