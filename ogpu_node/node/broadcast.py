"""Telling waiting tasks that something happened, without the producer ever waiting.

`Broadcast`: one producer, many subscribers: each gets its own bounded channel; a subscriber that
falls a whole buffer behind is disconnected (its channel closed) instead of slowing the producer.
`Notifier`: no items, only a wake-up for every task waiting for the next change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Broadcast(Generic[T]):
    def __init__(self, buffer: int) -> None:
        self.buffer = buffer
        self._channels: set[trio.MemorySendChannel[T]] = set()

    def __len__(self) -> int:
        return len(self._channels)

    def publish(self, item: T) -> None:
        """Hand `item` to every subscriber without waiting."""
        for channel in list(self._channels):
            try:
                channel.send_nowait(item)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                channel.close()
                self._channels.discard(channel)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.MemoryReceiveChannel[T]]:
        """A channel of the items published from now on, closed when the context exits."""
        send, receive = trio.open_memory_channel[T](self.buffer)
        self._channels.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._channels.discard(send)
            send.close()


class Notifier:
    """Wakes every task waiting for the next change (a `trio.Event`, replaced each time it is
    set). A task that looks at some state and then waits for it to change takes `event` before
    looking and waits on that one, so that a change in between is not missed."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def notify(self) -> None:
        """Wake the tasks waiting now; later waiters wait for the next `notify`."""
        self.event.set()
        self.event = trio.Event()

    async def wait(self) -> None:
        """Until the next `notify`."""
        await self.event.wait()
