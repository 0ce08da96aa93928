"""WebSocket subscriptions: finalised blocks, the final status of one transaction, and tasks.

Each subscription is a task in its connection's nursery, so closing the connection ends them all.
A subscription is *armed* only once the answer to `sub_subscribe` has been queued, so a client
always sees the subscription id before the first notification; blocks finalised in between wait
in the node's channel. Notifications are queued without waiting: a client that lets its queue fill
is disconnected (the node keeps no unbounded buffer for anyone).

A `task` subscription pushes the task's view (as `task_get`) each time it changes: on chain, or
when its provider reports progress. For one task it starts with the current view and ends by
itself after the view that shows the task closed; without a task id it follows every task.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ogpu_node.node_api import NodeApi
from ogpu_node.rpc import views
from ogpu_node.rpc.config import RpcConfig
from ogpu_node.rpc.errors import ErrorCode, RpcError
from ogpu_node.rpc.market_views import task_view
from ogpu_node.rpc.metrics import NodeMetrics
from ogpu_node.rpc.views import JsonObject, dumps
from ogpu_node.types import Hash32

if TYPE_CHECKING:
    # trio-stubs (from trio-typing, a libp2p dependency) shadow trio's own types.
    from trio_typing import TaskStatus

NOTIFICATION = "sub_notification"
CLOSED = "sub_closed"
"""Sent when the server ends a subscription on its own (the client fell behind the node)."""


class WsSession:
    """The subscriptions of one WebSocket connection."""

    def __init__(self, api: NodeApi, config: RpcConfig, metrics: NodeMetrics,
                 nursery: trio.Nursery, outbox: trio.MemorySendChannel[str]) -> None:
        self._api = api
        self._config = config
        self._metrics = metrics
        self._nursery = nursery
        self._outbox = outbox
        self._subs: dict[str, trio.CancelScope] = {}
        self.overflowed = trio.Event()
        """Set when the client did not read fast enough; the connection then closes."""

    def _reserve(self) -> str:
        if len(self._subs) >= self._config.ws_max_subscriptions:
            self._metrics.count_rejection("too_many_subscriptions")
            raise RpcError(ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                           f"at most {self._config.ws_max_subscriptions} subscriptions per "
                           "connection", {"limit": self._config.ws_max_subscriptions})
        return "0x" + secrets.token_hex(8)

    async def subscribe_blocks(self) -> tuple[str, Callable[[], None]]:
        """Start a `blocks` subscription; returns its id and the function that arms it."""
        return await self._start(self._run_blocks)

    async def subscribe_tx(self, tx_hash: bytes) -> tuple[str, Callable[[], None]]:
        """Start a one-shot `txStatus` subscription for `tx_hash`."""
        return await self._start(self._run_tx, tx_hash)

    async def subscribe_task(self, task_id: Hash32 | None) -> tuple[str, Callable[[], None]]:
        """Start a `task` subscription: one task's changes, or every task's with None."""
        return await self._start(self._run_task, task_id)

    async def _start(self, run: Callable[..., Awaitable[None]], *args: Any
                     ) -> tuple[str, Callable[[], None]]:
        """Start `run(sub_id, *args, armed)` in the connection's nursery; its id and the
        function that arms it."""
        sub_id = self._reserve()
        armed = trio.Event()
        self._subs[sub_id] = await self._nursery.start(run, sub_id, *args, armed)
        return sub_id, armed.set

    def unsubscribe(self, sub_id: str) -> bool:
        """End a subscription; False if there is none by that id (or it already ended)."""
        scope = self._subs.pop(sub_id, None)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def _run_blocks(self, sub_id: str, armed: trio.Event,
                          task_status: TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            async with self._api.subscribe_blocks() as blocks:
                self._metrics.subscription_opened()
                try:
                    task_status.started(scope)
                    await armed.wait()
                    async for block in blocks:
                        self._send(NOTIFICATION, {"subscription": sub_id,
                                                  "result": views.block_view(block,
                                                                             full_txs=False)})
                    # The node closed the channel: this subscriber fell too far behind.
                    self._send(CLOSED, {"subscription": sub_id,
                                        "reason": "lagged: the client fell behind the chain"})
                finally:
                    self._subs.pop(sub_id, None)
                    self._metrics.subscription_closed()

    async def _run_tx(self, sub_id: str, tx_hash: bytes, armed: trio.Event,
                      task_status: TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            self._metrics.subscription_opened()
            try:
                task_status.started(scope)
                receipt = await self._api.wait_for_tx(tx_hash)  # at once if already final
                await armed.wait()
                self._send(NOTIFICATION, {"subscription": sub_id,
                                          "result": views.receipt_view(receipt)})
            finally:
                self._subs.pop(sub_id, None)
                self._metrics.subscription_closed()

    async def _run_task(self, sub_id: str, task_id: Hash32 | None, armed: trio.Event,
                        task_status: TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            async with self._api.subscribe_tasks() as changes:
                self._metrics.subscription_opened()
                try:
                    # The first view is the task as it is when the subscription starts: every
                    # later change is in `changes`, so none is missed while it waits to be armed.
                    last = self._task_view(task_id) if task_id is not None else None
                    task_status.started(scope)
                    await armed.wait()
                    if last is not None:  # a task not final yet shows up on its first change
                        self._send(NOTIFICATION, {"subscription": sub_id, "result": last})
                        if last["status"] == "closed":
                            return
                    async for changed in changes:
                        if task_id is not None and changed != task_id:
                            continue
                        view = self._task_view(changed)
                        if view is None or (task_id is not None and view == last):
                            continue
                        self._send(NOTIFICATION, {"subscription": sub_id, "result": view})
                        last = view
                        if task_id is not None and view["status"] == "closed":
                            return
                    self._send(CLOSED, {"subscription": sub_id,
                                        "reason": "lagged: the client fell behind the tasks"})
                finally:
                    self._subs.pop(sub_id, None)
                    self._metrics.subscription_closed()

    def _task_view(self, task_id: Hash32) -> JsonObject | None:
        state = self._api.finalized_state()
        task = state.tasks.get(task_id)
        if task is None:
            return None
        progress = self._api.task_progress(task_id, task.attempt.number)
        return task_view(state, task_id, task, progress)

    def _send(self, method: str, params: dict[str, Any]) -> None:
        message = dumps({"jsonrpc": "2.0", "method": method, "params": params})
        try:
            self._outbox.send_nowait(message)
        except trio.WouldBlock:
            if not self.overflowed.is_set():
                self._metrics.count_rejection("slow_consumer")
            self.overflowed.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the connection is closing; its nursery ends this task next
