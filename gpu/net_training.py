"""Running a `NetTrainSpec` (workload kind 5): training with checkpoints, and replaying an
interval of it for a verifier.

`train_net` is what `gpu.workloads.run_workload` calls for kind 5, with the same progress,
cancelling, sink and sealer as MLP training (`gpu.workloads.train`); `weights` is the client's
weights file when the spec names one (`spec.init`). The output is the final checkpoint (the
trained parameters by name, then the optimiser's state: `gpu.nn.network`); the metrics are
computed from it with dropout off: mean loss in millionths on the training and validation rows
(`train_loss_micros`, `val_loss_micros`) and, for cross-entropy, accuracy in basis points
(`train_accuracy_bps`, `val_accuracy_bps`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gpu.artifacts import NamedArray, Sealer, decode_arrays
from gpu.device import Device
from gpu.errors import WorkloadError
from gpu.nn.data import NetData, batch_rows, initial_params, net_dataset
from gpu.nn.network import Network, TrainState
from ogpu_node.workloads.net import BPS, LossKind, NetTrainSpec
from ogpu_node.workloads.spec import check_spec

if TYPE_CHECKING:
    from gpu.workloads import Progress, ShouldStop, Sink, WorkloadResult

LOSS_OVERFLOW = 2**63 - 1
"""The loss metric of a run whose loss is not finite (it diverged)."""


def net_evaluations(spec: NetTrainSpec, network: Network, state: TrainState, data: NetData
                    ) -> list[tuple[str, float, int, int]]:
    """Per split ("train", "val"): the summed loss, correct rows (-1 for MSE: no accuracy) and
    rows, from the state's parameters with dropout off."""
    out = []
    for split, rows in (("train", data.train_rows), ("val", data.val_rows)):
        loss, correct = network.evaluate(state.params, data, rows)
        right = correct if spec.loss is LossKind.CROSS_ENTROPY else -1
        out.append((split, loss, right, int(rows.shape[0])))
    return out


def net_metrics(spec: NetTrainSpec, network: Network, state: TrainState,
                data: NetData) -> dict[str, int]:
    """The result's metrics (see the module docstring)."""
    out: dict[str, int] = {}
    for split, loss, correct, rows in net_evaluations(spec, network, state, data):
        mean = loss / rows
        out[f"{split}_loss_micros"] = round(mean * 1e6) if math.isfinite(mean) else LOSS_OVERFLOW
        if correct >= 0:
            out[f"{split}_accuracy_bps"] = correct * BPS // rows
    return out


def run_net_steps(spec: NetTrainSpec, network: Network, state: TrainState, data: NetData,
                  to_step: int, on_step: Callable[[int], None] | None = None) -> None:
    """Train from `state.step` up to step `to_step` (exclusive)."""
    while state.step < to_step:
        rows = network.device.asarray(batch_rows(spec, data, state.step))
        network.train_step(state, data.x[rows], data.target[rows])
        if on_step is not None:
            on_step(state.step)


def train_net(spec: NetTrainSpec, device: Device, progress: Progress | None = None,
              should_stop: ShouldStop | None = None, inputs: bytes | None = None,
              sink: Sink | None = None, sealer: Sealer | None = None,
              weights: bytes | None = None) -> WorkloadResult:
    """Train the spec's network; checkpoint after each of `spec.checkpoint_steps` (sealed by
    `sealer`, handed to `sink` as they are made, as `gpu.workloads.train` does)."""
    from gpu.workloads import _Pacer, _result, take_checkpoints

    check_spec(spec)
    start = time.perf_counter()
    data = net_dataset(spec, device, inputs)
    network = Network(spec, device)
    state = network.state(initial_params(spec, weights))
    device.synchronize()
    phases = {"inputs": time.perf_counter() - start, "compute": 0.0, "encode": 0.0}
    pacer = _Pacer(spec.steps, progress, should_stop)
    checkpoints, ids = take_checkpoints(
        spec.checkpoint_steps,
        lambda mark: run_net_steps(spec, network, state, data, mark, pacer.tick),
        lambda: network.to_arrays(state), device, phases, sealer, sink)
    t0 = time.perf_counter()
    metrics = net_metrics(spec, network, state, data)
    phases["evaluate"] = time.perf_counter() - t0
    return _result(checkpoints[-1] if checkpoints else b"", ids[-1], checkpoints, ids, metrics,
                   phases, start)


def start_state(spec: NetTrainSpec, network: Network, checkpoint: bytes | None, from_step: int,
                weights: bytes | None) -> TrainState:
    """The state an interval starts from: a checkpoint taken after `from_step` steps, or (None)
    the initial weights with fresh optimiser state. Raises `ArtifactError` for a malformed
    checkpoint and `InputsError` for a wrong weights file."""
    if checkpoint is None:
        return network.state(initial_params(spec, weights))
    return network.from_arrays(decode_arrays(checkpoint), from_step)


def replay_net(spec: NetTrainSpec, checkpoint: bytes | None, from_step: int, to_step: int,
               device: Device, data: NetData | None = None, inputs: bytes | None = None,
               weights: bytes | None = None) -> list[NamedArray]:
    """The checkpoint arrays after steps `from_step`..`to_step - 1`, starting from `checkpoint`
    (None: the initial weights, with `from_step` 0). `data` may pass the data set already on
    the device (else it comes from `inputs`)."""
    if not 0 <= from_step <= to_step <= spec.steps:
        raise WorkloadError(f"bad interval {from_step}..{to_step} of {spec.steps} steps")
    if checkpoint is None and from_step != 0:
        raise WorkloadError("replay from a step other than 0 needs its checkpoint")
    data = data if data is not None else net_dataset(spec, device, inputs)
    network = Network(spec, device)
    state = start_state(spec, network, checkpoint, from_step, weights)
    run_net_steps(spec, network, state, data, to_step)
    return network.to_arrays(state)
