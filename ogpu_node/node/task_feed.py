"""What a node knows of tasks beyond the chain: providers' signed progress, and change events.

Progress is gossip (`TOPIC_PROGRESS`), not consensus data: a node keeps the latest report of the
provider currently awarded each open task, checked against that provider's public key, and tells
its subscribers (the RPC's `task` subscription) whenever a task changes on chain or reports
progress.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import AbstractAsyncContextManager
from dataclasses import replace

import trio

from ogpu_node.encoding import pack
from ogpu_node.errors import OgpuError, SignatureError
from ogpu_node.keys import PrivateKey, verify
from ogpu_node.ledger import State
from ogpu_node.ledger.market.records import TaskStatus
from ogpu_node.node.broadcast import Broadcast
from ogpu_node.node.messages import SIGN_KIND_PROGRESS, TaskProgress
from ogpu_node.types import Hash32

MAX_TRACKED = 10_000


class BadProgress(OgpuError):
    """A progress report that is not from the task's current provider, or not signed by it."""


def sign_progress(key: PrivateKey, chain_id: str, report: TaskProgress) -> TaskProgress:
    signature = key.sign(chain_id, SIGN_KIND_PROGRESS, pack(report.body_fields()))
    return replace(report, signature=signature)


class TaskFeed:
    """Latest progress per task, and a broadcast of changed task ids."""

    def __init__(self) -> None:
        self.progress: OrderedDict[bytes, TaskProgress] = OrderedDict()
        self._changes = Broadcast[Hash32](1024)

    def accept_progress(self, report: TaskProgress, state: State) -> bool:
        """Store `report` if it is the current provider's, signed, and newer; returns whether it
        was stored. Raises `BadProgress` for a forged or misdirected report."""
        task = state.tasks.get(Hash32(report.task_id))
        provider = task.attempt.provider if task is not None else None
        if task is None or provider is None or (provider, task.attempt.number) != (
                report.provider, report.attempt):
            raise BadProgress("progress from someone who is not the task's provider")
        if task.status != TaskStatus.RUNNING:
            return False
        public_key = state.account(provider).public_key
        try:
            verify(public_key, state.chain_id, SIGN_KIND_PROGRESS, pack(report.body_fields()),
                   report.signature)
        except SignatureError as exc:
            raise BadProgress(f"progress signature: {exc}") from exc
        known = self.progress.get(report.task_id)
        if known is not None and (known.attempt, known.time_ms) >= (report.attempt,
                                                                    report.time_ms):
            return False
        self.progress[report.task_id] = report
        self.progress.move_to_end(report.task_id)
        while len(self.progress) > MAX_TRACKED:
            self.progress.popitem(last=False)
        self.notify([Hash32(report.task_id)])
        return True

    def progress_bps(self, task_id: bytes, attempt: int) -> int | None:
        report = self.progress.get(task_id)
        return report.done_bps if report is not None and report.attempt == attempt else None

    def notify(self, task_ids: list[Hash32]) -> None:
        for task_id in task_ids:
            self._changes.publish(task_id)

    def subscribe(self) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[Hash32]]:
        """Ids of tasks as they change; a consumer that falls 1,024 behind is disconnected."""
        return self._changes.subscribe()
