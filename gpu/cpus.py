"""Pinning processes to CPUs: a CPU provider's workloads and its node's consensus keep off each
other's cores (`provider_cpus`, `cpus` in the node's config)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from gpu.errors import DeviceError

MAX_CPU = 8191
"""Highest CPU number a list may name (Linux's largest NR_CPUS is 8192): a typo such as
`0-36000000000` is refused instead of building a set of 36 billion numbers."""


def parse_cpu_list(text: str) -> frozenset[int]:
    """A Linux CPU list ("0-3,6", as `taskset -c` and Docker's `--cpuset-cpus` take it) as CPU
    numbers; "" is the empty set (no pinning). Raises `DeviceError` on bad syntax."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, dash, last = part.partition("-")
        if not _number(first) or (dash and not _number(last)):
            raise DeviceError(f"bad CPU list {text!r}: expected numbers and ranges like 0-3,6")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise DeviceError(f"bad CPU list {text!r}: range {part} runs backwards")
        if high > MAX_CPU:
            raise DeviceError(f"bad CPU list {text!r}: CPU {high} is above {MAX_CPU}")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def _number(text: str) -> bool:
    # isdigit alone passes '²', which int() refuses; a CPU number has at most 4 digits
    return text.isascii() and text.isdigit() and len(text) <= len(str(MAX_CPU))


def format_cpu_list(cpus: frozenset[int]) -> str:
    """`cpus` as a CPU list `parse_cpu_list` reads back ("" for none)."""
    return ",".join(map(str, sorted(cpus)))


def pin_to_cpus(cpus: frozenset[int]) -> None:
    """Run this process's calling thread, and the threads and processes it starts later, only
    on `cpus` (no-op when empty). Raises `DeviceError` where that cannot be done."""
    if not cpus:
        return
    if not hasattr(os, "sched_setaffinity"):
        raise DeviceError("pinning to CPUs needs Linux (os.sched_setaffinity)")
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        raise DeviceError(f"cannot run on CPUs {sorted(cpus)}: {exc.strerror} (this machine "
                          f"has {os.cpu_count()} CPUs, numbered from 0)") from None


@contextmanager
def on_cpus(cpus: frozenset[int]) -> Iterator[None]:
    """Run the calling thread on `cpus` meanwhile (no-op when empty), then where it ran before."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    pin_to_cpus(cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
