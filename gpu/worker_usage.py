"""How busy an agent's workers are and how much memory they hold, for `/metrics`.

`WorkerUsage` counts the seconds jobs have run (finished ones plus the running ones so far, so
that a scrape during a long job sees it), the jobs running now, and the processes that hold
memory (a `WorkerPool`'s spare and busy children). `device_memory` is a device's used and total
memory as its driver reports it (CUDA only: on the CPU the workers' own memory is what counts).
Standard library only, so the node's metrics read it without importing the workloads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class WorkerUsage:
    """Busy time, running jobs and live processes of one agent's workers (thread-safe: jobs run
    in worker threads, scrapes on the node's loop)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._done_s = 0.0
        self._started: dict[int, float] = {}
        self._next = 0
        self._pids: set[int] = set()
        self.jobs_done = 0

    @contextmanager
    def job(self) -> Iterator[None]:
        """Count the time of one job, from entry to exit."""
        with self._lock:
            token, self._next = self._next, self._next + 1
            self._started[token] = self._clock()
        try:
            yield
        finally:
            with self._lock:
                self._done_s += self._clock() - self._started.pop(token)
                self.jobs_done += 1

    def busy_seconds(self) -> float:
        """Seconds jobs have run in all, the running ones up to now."""
        now = self._clock()
        with self._lock:
            return self._done_s + sum(now - start for start in self._started.values())

    def running(self) -> int:
        with self._lock:
            return len(self._started)

    def process_started(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)

    def process_ended(self, pid: int) -> None:
        with self._lock:
            self._pids.discard(pid)

    def processes(self) -> set[int]:
        """The pids of the live worker processes."""
        with self._lock:
            return set(self._pids)

    def memory_bytes(self) -> int:
        """Resident memory of the live worker processes (0 for jobs run in threads)."""
        return sum(resident_bytes(pid) for pid in self.processes())


def resident_bytes(pid: int) -> int:
    """A process's resident memory (0 when it has ended or /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


def device_memory(xp: Any) -> tuple[int, int] | None:
    """(used, total) bytes of the current CUDA device of array module `xp` (CuPy), as the driver
    reports them for every process; None for NumPy (the CPU)."""
    cuda = getattr(xp, "cuda", None)
    if cuda is None:
        return None
    free, total = cuda.runtime.memGetInfo()
    return int(total) - int(free), int(total)
