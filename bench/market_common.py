"""What the parts of `scripts/bench market` share: a part's result, the goals, timing, and
waiting for a devnet to settle."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpu.device import Device
from ogpu_node.polling import wait_until
from ogpu_node.sdk.sync_client import rpc_call

GOAL_VERIFY_FRACTION = 0.02
GOAL_SPEED_RATIO = 0.90


@dataclass
class PartResult:
    """One part's table and its JSON results."""

    title: str
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


def timed(device: Device, fn: Callable[[], object]) -> float:
    """Seconds `fn` takes, the device synchronised before and after."""
    device.synchronize()
    start = time.perf_counter()
    fn()
    device.synchronize()
    return time.perf_counter() - start


def settle(url: str, blocks: int = 3) -> None:
    """Wait until the node at `url` has finalised `blocks` more blocks and is not syncing: the
    start's CPU burst (interpreters, kernels, the device benchmark) is over."""
    start = rpc_call(url, "chain_status")["height"]
    wait_until(lambda: (status := rpc_call(url, "chain_status"))["syncing"] is False
               and status["height"] >= start + blocks, "the devnet to settle", 60)
