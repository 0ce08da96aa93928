"""Waiting on another process: poll a condition until it holds or a deadline passes.

Across process boundaries there is no event to wait on, so the devnet demo, the benchmarks and
the integration tests poll a node's RPC; an `RpcCallError` (a node not up yet, say) counts as
"not yet".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ogpu_node.errors import OgpuError
from ogpu_node.sdk import RpcCallError


class WaitTimeout(OgpuError):
    """The condition did not hold before the deadline."""


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60.0,
               interval: float = 0.05) -> Any:
    """The first truthy value of `condition()`, or `WaitTimeout` naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
            if result:
                return result
        except RpcCallError:
            pass
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
