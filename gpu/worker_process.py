"""Running a workload in a child process, so that it has an interpreter (and a GIL) of its own.

A provider node runs consensus, gossip and RPC in Python on its trio loop. A workload in a thread
of the same process shares the GIL with that loop, cannot be killed (only asked to stop at its
next check), and takes the node down with it if the device library crashes the process. In a
child process none of that reaches the node: a cancelled task's process is killed at once, a
crash is a `WorkloadError`, and consensus never waits for the workload's Python.

The child lowers its own scheduling priority (`WORKER_NICENESS`): on a CPU provider the
workload takes every core it can get, and at the node's priority it would starve the node's
consensus, which then falls behind, syncs, and misses the auctions and deadlines it works for.
A niced workload still gets all the CPU the node leaves idle.

`run_in_process` blocks (call it from a worker thread): it starts a fresh interpreter
(`python -m gpu.worker_process`, never a `fork` of a process that runs threads), sends it the spec
and the inputs over a pipe, relays its progress
reports to `progress`, and returns its `WorkloadResult`. When `should_stop()` turns true the child
is killed and `WorkloadCancelled` raised; the errors the child raises on purpose (`GpuError`,
`InvalidSpec`) are raised again here with their type and message; a child that dies raises
`WorkloadError`.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

from gpu.device import detect
from gpu.errors import GpuError, WorkloadCancelled, WorkloadError
from gpu.spec import InvalidSpec, WorkloadSpec
from gpu.workloads import Progress, ShouldStop, WorkloadResult, run_workload

POLL_S = 0.2
"""How often the parent checks `should_stop` while the child works."""
WORKER_NICENESS = 10
"""Added to the child's niceness (`os.nice`): the node's own work comes first."""


def run_in_process(spec: WorkloadSpec, device_kind: str, progress: Progress | None = None,
                   should_stop: ShouldStop | None = None,
                   inputs: bytes | None = None) -> WorkloadResult:
    """`run_workload(spec, detect(device_kind), ...)` in a child process (see the module
    docstring)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "gpu.worker_process", str(to_child_r), str(from_child_w)],
        pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL)
    os.close(to_child_r)
    os.close(from_child_w)
    send = Connection(to_child_w, readable=False)
    receive = Connection(from_child_r, writable=False)
    try:
        send.send((spec, device_kind, inputs))
        while True:
            if should_stop is not None and should_stop():
                raise WorkloadCancelled("stopped: the task is no longer ours")
            if not receive.poll(POLL_S):
                continue
            try:
                kind, value = receive.recv()
            except EOFError:
                raise WorkloadError(f"the workload process died (exit code "
                                    f"{process.wait()})") from None
            if kind == "progress":
                if progress is not None:
                    progress(value)
            elif kind == "result":
                result: WorkloadResult = value
                return result
            else:
                raise _rebuild_error(value)
    finally:
        send.close()
        receive.close()
        if process.poll() is None:
            process.kill()
        process.wait()


def _child_main(receive_fd: int, send_fd: int) -> None:
    os.nice(WORKER_NICENESS)
    receive = Connection(receive_fd, writable=False)
    send = Connection(send_fd, readable=False)
    try:
        spec, device_kind, inputs = receive.recv()
        result = run_workload(spec, detect(device_kind),
                              lambda fraction: send.send(("progress", fraction)), None, inputs)
        send.send(("result", result))
    except (GpuError, InvalidSpec) as exc:
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
    if isinstance(cls, type) and issubclass(cls, GpuError | InvalidSpec):
        return cls(message)
    return WorkloadError(f"{name}: {message}")


if __name__ == "__main__":
    _child_main(int(sys.argv[1]), int(sys.argv[2]))
