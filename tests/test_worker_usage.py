"""`WorkerUsage`: busy time counts finished jobs and running ones up to now, under a fake clock."""

from __future__ import annotations

import os

from gpu.worker_usage import WorkerUsage, device_memory, resident_bytes


def test_busy_time_counts_finished_and_running_jobs() -> None:
    now = [100.0]
    usage = WorkerUsage(clock=lambda: now[0])
    with usage.job():
        now[0] += 2.5
    assert usage.busy_seconds() == 2.5 and usage.running() == 0 and usage.jobs_done == 1
    with usage.job(), usage.job():  # two at once: both count
        now[0] += 1.0
        assert usage.running() == 2 and usage.busy_seconds() == 4.5
    assert usage.busy_seconds() == 4.5 and usage.jobs_done == 3


def test_a_job_that_fails_is_counted_too() -> None:
    now = [0.0]
    usage = WorkerUsage(clock=lambda: now[0])
    try:
        with usage.job():
            now[0] += 3.0
            raise RuntimeError("the workload failed")
    except RuntimeError:
        pass
    assert usage.busy_seconds() == 3.0 and usage.running() == 0


def test_memory_is_the_live_processes_resident_memory() -> None:
    usage = WorkerUsage()
    assert usage.memory_bytes() == 0
    usage.process_started(os.getpid())
    assert usage.memory_bytes() > 0
    usage.process_ended(os.getpid())
    assert usage.memory_bytes() == 0
    assert resident_bytes(2**22 + 12345) == 0  # no such process


def test_the_cpu_has_no_driver_memory_to_report() -> None:
    import numpy as np

    assert device_memory(np) is None
