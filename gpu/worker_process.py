"""Running workloads and checks in a child process, so that each has an interpreter (and a GIL)
of its own.

A node runs consensus, gossip and RPC in Python on its trio loop. A workload or a check in a
thread of the same process shares the GIL with that loop, cannot be killed (only asked to stop at
its next check), and takes the node down with it if the device library crashes the process. In a
child process none of that reaches the node: a cancelled job's process is killed at once, a
crash is a `WorkloadError`, and consensus never waits for the job's Python.

A `Worker` is one child interpreter (`python -m gpu.worker_process`, never a `fork` of a process
that runs threads) that runs one job. It starts at once, imports the libraries, opens its
device and loads its compiled kernels while it waits for the job, so `WorkerPool` keeps one
started spare per agent: a job begins without the seconds that all this takes.

The child lowers its own scheduling priority (`WORKER_NICENESS`): on a CPU provider the workload
takes every core it can get, and at the node's priority it would starve the node's consensus,
which then falls behind, syncs, and misses the auctions and deadlines it works for. A niced job
still gets all the CPU the node leaves idle. Given `cpus`, the child runs only on those CPUs
(a provider's `provider_cpus`: its workloads keep off the cores its node and checks use).

`InThread` has the same `call` for jobs run in the caller's own thread (`workers_for` picks).

`Worker.call` blocks (call it from a worker thread): it sends the job's name and arguments over a
pipe, relays progress reports to `progress` and, with `on_file`, hands it each file of a
`run_workload` result as the child makes it (the workload's `sink`: a provider stores a training
run's checkpoints while the run goes on), and returns the job's value. When `should_stop()`
turns true the child is killed and `WorkloadCancelled` raised; the errors the child raises on
purpose (`GpuError`, `InvalidSpec`) are raised again here with their type and message; a child
that dies raises `WorkloadError`. The jobs (`JOBS`) are `gpu`'s own functions, called with the
child's device.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from gpu.cpu_kernels import warm_up
from gpu.cpus import format_cpu_list, parse_cpu_list, pin_to_cpus
from gpu.device import Device, detect
from gpu.errors import GpuError, WorkloadCancelled, WorkloadError
from gpu.verify import (
    model_inputs_run,
    verify_inference,
    verify_matmul,
    verify_model_inference,
    verify_training,
)
from gpu.worker_usage import WorkerUsage
from gpu.workloads import Progress, ShouldStop, Sink, run_workload
from ogpu_node.workloads.limits import DeviceMemoryTooSmall
from ogpu_node.workloads.spec import InvalidSpec

POLL_S = 0.2
"""How often the parent checks `should_stop` while the child works."""
WORKER_NICENESS = 10
"""Added to the child's niceness (`os.nice`): the node's own work comes first."""

def _onnx_run() -> Any:
    """`gpu.onnx_run`, imported by the first job that needs ONNX Runtime (about a second)."""
    return importlib.import_module("gpu.onnx_run")


JOBS: dict[str, Callable[..., Any]] = {
    "run_workload": run_workload,
    "verify_matmul": verify_matmul,
    "verify_training": verify_training,
    "verify_inference": verify_inference,
    "verify_model_inference": verify_model_inference,
    "model_inputs_run": model_inputs_run,
    "check_model_file": lambda **kwargs: _onnx_run().check_model_file(**kwargs),
}
"""What a worker runs: each is called with the job's keyword arguments and `device=`."""


class Worker:
    """One started child interpreter for one job (see the module docstring)."""

    def __init__(self, device_kind: str, niceness: int = WORKER_NICENESS,
                 cpus: frozenset[int] = frozenset(), usage: WorkerUsage | None = None) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gpu.worker_process", str(to_child_r), str(from_child_w),
             device_kind, str(niceness), format_cpu_list(cpus)],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._receive = Connection(from_child_r, writable=False)
        self.used = False
        self._usage = usage
        if usage is not None:
            usage.process_started(self.process.pid)

    def call(self, job: str, kwargs: dict[str, Any], progress: Progress | None = None,
             should_stop: ShouldStop | None = None, on_file: Sink | None = None) -> Any:
        """`JOBS[job](**kwargs, device=<the child's device>)` in the child; once per worker.
        `on_file` (run_workload only) is the workload's sink, called here."""
        if self.used:
            raise WorkloadError("a worker runs one job")
        self.used = True
        try:
            with contextlib.suppress(OSError):  # a child that ended already (its device failed)
                self._send.send((job, kwargs, on_file is not None))  # left its error in the pipe
            while True:
                if should_stop is not None and should_stop():
                    raise WorkloadCancelled("stopped: the job is no longer wanted")
                if not self._receive.poll(POLL_S):
                    continue
                try:
                    kind, value = self._receive.recv()
                except EOFError:
                    raise WorkloadError(f"the worker process died (exit code "
                                        f"{self.process.wait()})") from None
                if kind == "progress":
                    if progress is not None:
                        progress(value)
                elif kind == "file":  # sent only when asked for
                    if on_file is not None:
                        on_file(value)
                elif kind == "result":
                    return value
                else:
                    raise _rebuild_error(value)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the child (at once if it is still working) and release the pipes."""
        self._send.close()
        self._receive.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self._usage is not None:
            self._usage.process_ended(self.process.pid)


class WorkerPool:
    """Hands out workers, keeping one started spare so that a job starts without waiting for an
    interpreter; the spare that a job takes is replaced when the job ends. As a context manager
    it starts the spare on entry and closes on exit."""

    def __init__(self, device_kind: str, niceness: int = WORKER_NICENESS,
                 cpus: frozenset[int] = frozenset()) -> None:
        self.device_kind = device_kind
        self.niceness = niceness
        self.cpus = cpus
        self._lock = threading.Lock()
        self._spare: Worker | None = None
        self._closed = False
        self.usage = WorkerUsage()

    def start(self) -> None:
        """Start the spare (no-op when there is one)."""
        with self._lock:
            if self._spare is None and not self._closed:
                self._spare = Worker(self.device_kind, self.niceness, self.cpus, self.usage)

    def call(self, job: str, kwargs: dict[str, Any], progress: Progress | None = None,
             should_stop: ShouldStop | None = None, on_file: Sink | None = None) -> Any:
        """`Worker.call` on the spare (or a new worker), then start the next spare."""
        with self._lock:
            if self._closed:
                raise WorkloadCancelled("the worker pool is closed")
            worker, self._spare = self._spare, None
        try:
            with self.usage.job():
                return (worker or Worker(self.device_kind, self.niceness, self.cpus,
                                         self.usage)).call(job, kwargs, progress, should_stop,
                                                           on_file)
        finally:
            self.start()

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the spare; later calls raise `WorkloadCancelled` (running jobs stop through
        their own `should_stop`)."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()


class InThread:
    """`WorkerPool`'s interface for jobs run in the calling thread (an agent's `process=False`):
    they share the caller's interpreter and GIL, and stop only where they check `should_stop`
    (a workload does; a check runs to its end)."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.usage = WorkerUsage()

    def call(self, job: str, kwargs: dict[str, Any], progress: Progress | None = None,
             should_stop: ShouldStop | None = None, on_file: Sink | None = None) -> Any:
        if job == "run_workload":
            kwargs = {**kwargs, "progress": progress, "should_stop": should_stop,
                      "sink": on_file}
        with self.usage.job():
            return JOBS[job](**kwargs, device=self.device)

    def __enter__(self) -> InThread:
        return self

    def __exit__(self, *_: object) -> None:
        pass


Workers = WorkerPool | InThread
"""Where an agent runs its jobs: child processes, or its own worker threads."""


def workers_for(device: Device, process: bool, cpus: frozenset[int] = frozenset()) -> Workers:
    """A pool of child processes on `device`'s kind (each pinned to `cpus` when given) when
    `process`, else `InThread` (which runs where its caller does)."""
    return WorkerPool(device.kind, cpus=cpus) if process else InThread(device)


def _child_main(receive_fd: int, send_fd: int, device_kind: str, niceness: int,
                cpus: frozenset[int]) -> None:
    os.nice(niceness)
    receive = Connection(receive_fd, writable=False)
    send = Connection(send_fd, readable=False)
    try:
        pin_to_cpus(cpus)
        device: Device = detect(device_kind)  # while the job is still on its way:
        warm_up(device)  # a second or more of Numba's cache (or compiling) comes off the job
        try:
            job, kwargs, stream_files = receive.recv()
        except EOFError:
            return  # a spare that was never used
        if job == "run_workload":
            kwargs["progress"] = lambda fraction: send.send(("progress", fraction))
            if stream_files:
                kwargs["sink"] = lambda raw: send.send(("file", raw))
        send.send(("result", JOBS[job](**kwargs, device=device)))
    except (GpuError, InvalidSpec, DeviceMemoryTooSmall) as exc:
        send.send(("error", (type(exc).__module__, type(exc).__name__, str(exc))))
    finally:
        send.close()
        receive.close()


def _rebuild_error(value: Any) -> Exception:
    """The child's error as an instance of its own class (one of the `gpu` errors)."""
    module, name, message = value
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        cls = None
    if isinstance(cls, type) and issubclass(cls, GpuError | InvalidSpec | DeviceMemoryTooSmall):
        return cls(message)
    return WorkloadError(f"{name}: {message}")


if __name__ == "__main__":
    _child_main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]),
                parse_cpu_list(sys.argv[5]))
