"""Workloads and checks in a child process: the same result as in this process, progress
relayed, stopped on request, the child's errors raised again with their type, spares reused."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpu.device import Device
from gpu.errors import DeviceError, WorkloadCancelled, WorkloadError
from gpu.inputs import InputsError
from gpu.verify import checkpoints_to_check, verify_training
from gpu.worker_process import WORKER_NICENESS, Worker, WorkerPool
from gpu.worker_usage import resident_bytes
from gpu.workloads import Progress, ShouldStop, WorkloadResult
from ogpu_node.workloads.kinds import WorkloadSpec
from ogpu_node.workloads.spec import InvalidSpec
from tests.gpu.conftest import MATMUL, TRAIN


def run_in_process(spec: WorkloadSpec, progress: Progress | None = None,
                   should_stop: ShouldStop | None = None) -> WorkloadResult:
    result: WorkloadResult = Worker("cpu").call("run_workload", {"spec": spec}, progress,
                                                should_stop)
    return result


def test_a_child_process_computes_the_same_bytes_and_reports_progress(
        trained: WorkloadResult) -> None:
    reports: list[float] = []
    result = run_in_process(TRAIN, reports.append)
    assert result.output_id == trained.output_id
    assert result.checkpoint_ids == trained.checkpoint_ids
    assert result.metrics == trained.metrics
    assert reports and reports == sorted(reports) and reports[-1] == 1.0


def test_a_child_process_hands_over_each_file_as_it_makes_it(trained: WorkloadResult) -> None:
    files: list[bytes] = []
    result = Worker("cpu").call("run_workload", {"spec": TRAIN}, on_file=files.append)
    assert files == trained.checkpoints and result.checkpoints == [] and result.output == b""
    assert result.checkpoint_ids == trained.checkpoint_ids


def test_a_workload_asked_to_stop_stops_at_the_next_check() -> None:
    long = replace(TRAIN, steps=50_000, checkpoint_every=200)
    reports: list[float] = []
    with pytest.raises(WorkloadCancelled):
        run_in_process(long, reports.append, lambda: bool(reports))
    assert 0 < reports[-1] < 0.5  # it ran, then stopped at the first check after a report


def test_the_childs_errors_come_back_with_their_type(device: Device) -> None:
    with pytest.raises(InputsError, match="not supplied"):
        run_in_process(replace(MATMUL, inputs=bytes(32)))
    with pytest.raises(InvalidSpec, match="n must be within"):
        run_in_process(replace(MATMUL, n=0))


def _children_niceness() -> list[int]:
    """The niceness of this process's `gpu.worker_process` children (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"gpu.worker_process" in cmdline:
            found.append(int(fields[16]))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_the_workload_runs_at_a_lower_priority_than_the_node() -> None:
    seen: list[list[int]] = []
    run_in_process(TRAIN, lambda _: seen.append(_children_niceness()))
    expected = min(19, os.nice(0) + WORKER_NICENESS)
    assert any(seen) and all(n == expected for children in seen for n in children)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity (Linux)")
def test_a_worker_given_cpus_runs_its_job_on_those_only() -> None:
    mine = os.sched_getaffinity(0)
    cpu = max(mine)
    worker = Worker("cpu", cpus=frozenset({cpu}))
    seen: list[set[int]] = []
    worker.call("run_workload", {"spec": TRAIN},
                lambda _: seen.append(os.sched_getaffinity(worker.process.pid)))
    assert seen and all(cpus == {cpu} for cpus in seen)
    assert os.sched_getaffinity(0) == mine  # the parent's own CPUs are left as they were
    with pytest.raises(DeviceError, match="cannot run on CPUs"):
        Worker("cpu", cpus=frozenset({4095})).call("run_workload", {"spec": MATMUL})


def test_a_check_in_a_child_gives_the_verdict_of_the_same_check_here(
        trained: WorkloadResult, device: Device) -> None:
    rng = np.random.default_rng(7)
    wanted = checkpoints_to_check(TRAIN, 2, rng)
    assert wanted[-1] == len(trained.checkpoints) - 1 and len(wanted) <= 5
    args: dict[str, Any] = dict(spec=TRAIN, checkpoints={i: trained.checkpoints[i] for i in wanted},
                checkpoint_ids=trained.checkpoint_ids, checkpoint_root=trained.checkpoint_root,
                metrics=trained.metrics, intervals=2)
    here = verify_training(**args, rng=copy.deepcopy(rng), device=device)
    there = Worker("cpu").call("verify_training", {**args, "rng": rng})
    assert here.ok and there.ok and there.checked == here.checked
    forged = dict(args, metrics={**trained.metrics, "loss_micros": 1})
    assert not Worker("cpu").call("verify_training", {**forged, "rng": rng}).ok


def test_a_pool_keeps_one_started_spare_and_replaces_it_after_each_job() -> None:
    with WorkerPool("cpu") as pool:
        first = pool._spare
        assert first is not None and first.process.poll() is None  # started, waiting for a job
        assert pool.usage.memory_bytes() > 0 and pool.usage.busy_seconds() == 0
        assert pool.call("run_workload", {"spec": MATMUL}).output_id
        assert first.process.poll() is not None  # it ran the job and ended
        second = pool._spare
        assert second is not None and second is not first
        # the job's time is counted; only the new spare's memory is (the first one ended)
        assert pool.usage.busy_seconds() > 0 and pool.usage.jobs_done == 1
        assert pool.usage.processes() == {second.process.pid}
        assert resident_bytes(first.process.pid) == 0 and pool.usage.memory_bytes() > 0
    with pytest.raises(WorkloadError, match="one job"):
        first.call("run_workload", {"spec": MATMUL})
    assert second.process.poll() is not None and pool._spare is None  # closed on exit
    with pytest.raises(WorkloadCancelled):
        pool.call("run_workload", {"spec": MATMUL})
