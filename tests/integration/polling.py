"""Waiting on another process: poll a condition until it holds or a deadline passes (there is no
event to wait on across process boundaries)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ogpu_node.rpc_client import RpcCallError


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60.0,
               interval: float = 0.05) -> Any:
    """The first truthy value of `condition()` (RPC errors count as not yet), or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
            if result:
                return result
        except RpcCallError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
