"""The flag an agent's worker threads read to learn that the agent is shutting down."""

from __future__ import annotations

import trio


class Closing:
    """Turns true as soon as the agent's task tree is cancelled, before its nursery waits for
    the worker threads (which trio cannot cancel: each reads `set` at its next check and stops,
    killing its worker process if it has one). Start `watch` in the agent's nursery."""

    def __init__(self) -> None:
        self.set = False

    async def watch(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.set = True
