"""Training a network of the client's own layers (workload kind 5) through `run_workload`, on
the real 8x8 digits, and checking it as a committee does: honest results pass, cheating ones
(skipped steps, stale weights, optimiser state dropped, faked metrics) are rejected."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gpu.artifacts import checkpoint_chain, decode_arrays, encode_arrays
from gpu.device import Device, cuda_device
from gpu.inputs import InputsError, encode_inputs
from gpu.net_training import replay_net, run_net_steps
from gpu.nn.data import net_dataset
from gpu.nn.network import Network
from gpu.verify import verify_training
from gpu.workloads import WorkloadResult, run_workload
from ogpu_node.blobs import file_id
from ogpu_node.datasets import digits
from ogpu_node.workloads.net import (
    FLATTEN,
    SIGMOID,
    TANH,
    LossKind,
    NetTrainSpec,
    Optimizer,
    OptimizerKind,
    Schedule,
    ScheduleKind,
    dense,
    embedding,
)
from tests.gpu.conftest import DIGITS_CNN


def test_a_cnn_learns_the_digits(digits_run: WorkloadResult) -> None:
    # measured: 97.2% of the 359 held-out digits after 300 steps (0.3 s on one core)
    metrics = digits_run.metrics
    assert sorted(metrics) == ["train_accuracy_bps", "train_loss_micros", "val_accuracy_bps",
                               "val_loss_micros"]
    assert metrics["val_accuracy_bps"] >= 9_300
    assert metrics["val_loss_micros"] < 200_000
    assert len(digits_run.checkpoints) == 6 and digits_run.output == digits_run.checkpoints[-1]


def test_training_is_bit_identical_and_replays_exactly(
        digits_task: tuple[NetTrainSpec, bytes], digits_run: WorkloadResult,
        device: Device) -> None:
    spec, raw = digits_task
    again = run_workload(spec, device, inputs=raw, sink=lambda _: None)
    assert again.checkpoint_ids == digits_run.checkpoint_ids and again.metrics == (
        digits_run.metrics)
    replayed = replay_net(spec, digits_run.checkpoints[2], 150, 200, device, inputs=raw)
    assert encode_arrays(replayed) == digits_run.checkpoints[3]
    first = replay_net(spec, None, 0, 50, device, inputs=raw)
    assert encode_arrays(first) == digits_run.checkpoints[0]


def verify(spec: NetTrainSpec, raw: bytes, checkpoints: list[bytes], metrics: dict[str, int],
           device: Device, weights: bytes | None = None) -> str:
    ids = [file_id(c) for c in checkpoints]
    verdict = verify_training(spec, checkpoints, ids, checkpoint_chain(ids), metrics,
                              len(checkpoints), np.random.default_rng(0), device, uploaded=raw,
                              weights=weights)
    return verdict.reason


def test_an_honest_result_passes(digits_task: tuple[NetTrainSpec, bytes],
                                 digits_run: WorkloadResult, device: Device) -> None:
    spec, raw = digits_task
    reason = verify(spec, raw, digits_run.checkpoints, digits_run.metrics, device)
    assert reason == "ok: result verified"


def cheated_interval(spec: NetTrainSpec, raw: bytes, start: bytes, from_step: int,
                     device: Device, how: str) -> bytes:
    """The checkpoint after interval from_step..from_step + 50, made dishonestly."""
    network = Network(spec, device)
    state = network.from_arrays(decode_arrays(start), from_step)
    if how == "skip_a_step":
        state.step += 1
    if how == "drop_the_optimiser_state":
        for slot in state.slots:
            slot[...] = 0
    run_net_steps(spec, network, state, net_dataset(spec, device, raw), from_step + 50)
    return encode_arrays(network.to_arrays(state))


@pytest.mark.parametrize("how", ["skip_a_step", "drop_the_optimiser_state", "stale_weights"])
def test_a_cheated_interval_is_rejected(how: str, digits_task: tuple[NetTrainSpec, bytes],
                                        digits_run: WorkloadResult, device: Device) -> None:
    spec, raw = digits_task
    checkpoints = list(digits_run.checkpoints)
    if how == "stale_weights":  # the weights of checkpoint 3 again, relabelled as step 250
        arrays = decode_arrays(checkpoints[3])
        step = next(i for i, (name, _) in enumerate(arrays) if name == "opt.step")
        arrays[step] = ("opt.step", np.array([250], dtype=np.float32))
        checkpoints[4] = encode_arrays(arrays)
    else:
        checkpoints[4] = cheated_interval(spec, raw, checkpoints[3], 200, device, how)
    reason = verify(spec, raw, checkpoints, digits_run.metrics, device)
    assert reason.startswith("checkpoint_mismatch: checkpoint 4 (step 250)"), reason


@pytest.mark.parametrize(("name", "change"), [
    ("val_accuracy_bps", 300), ("val_loss_micros", -20_000), ("train_loss_micros", 500)])
def test_faked_metrics_are_rejected(name: str, change: int,
                                    digits_task: tuple[NetTrainSpec, bytes],
                                    digits_run: WorkloadResult, device: Device) -> None:
    spec, raw = digits_task
    metrics = {**digits_run.metrics, name: digits_run.metrics[name] + change}
    assert verify(spec, raw, digits_run.checkpoints, metrics, device).startswith(
        f"metrics_mismatch: {name}")
    del metrics[name]
    assert verify(spec, raw, digits_run.checkpoints, metrics, device).startswith(
        "metrics_mismatch: metrics must be")


def test_fine_tuning_starts_from_an_uploaded_weights_file(
        digits_task: tuple[NetTrainSpec, bytes], digits_run: WorkloadResult,
        device: Device) -> None:
    spec, raw = digits_task
    weights = digits_run.output  # a checkpoint of the same network is a weights file
    tuned = replace(spec, init=bytes(file_id(weights)), steps=100, checkpoint_every=50,
                    optimizer=Optimizer(OptimizerKind.SGD, 10_000, beta1_micros=900_000))
    result = run_workload(tuned, device, inputs=raw, weights=weights)
    assert result.metrics["val_accuracy_bps"] >= digits_run.metrics["val_accuracy_bps"] - 100
    assert verify(tuned, raw, result.checkpoints, result.metrics, device,
                  weights=weights) == "ok: result verified"
    other = encode_arrays([(n, np.zeros_like(a)) for n, a in decode_arrays(weights)])
    assert verify(tuned, raw, result.checkpoints, result.metrics, device,
                  weights=other).startswith("checkpoint_mismatch")
    with pytest.raises(InputsError, match="weights: arrays"):
        run_workload(tuned, device, inputs=raw, weights=encode_arrays([("l0.w", np.zeros(3,
                                                                                        np.float32))]))
    assert verify(tuned, raw, result.checkpoints, result.metrics, device).startswith(
        "inputs_malformed: the spec's weights file")


def test_a_token_model_learns_with_mse(device: Device) -> None:
    rng = np.random.default_rng(3)
    spec = NetTrainSpec(
        seed=4, input_shape=(6,), layers=(embedding(20, 8), TANH, dense(1), FLATTEN, SIGMOID),
        loss=LossKind.MSE, optimizer=Optimizer(OptimizerKind.ADAMW, 20_000, 900_000, 999_000,
                                               weight_decay_micros=1_000),
        schedule=Schedule(ScheduleKind.STEP, every=100, gamma_micros=500_000), n_samples=400,
        val_bps=2_500, batch=32, steps=200, checkpoint_every=100, inputs=b"\x00" * 32)
    ids = rng.integers(0, 20, size=(400, 6))
    targets = (ids % 2).astype(np.float32)  # whether each token is odd
    raw = encode_inputs(spec, {"x": ids, "targets": targets})
    spec = replace(spec, inputs=bytes(file_id(raw)))
    result = run_workload(spec, device, inputs=raw)
    assert sorted(result.metrics) == ["train_loss_micros", "val_loss_micros"]
    assert result.metrics["val_loss_micros"] < 20_000  # from 250,000 for a constant 0.5
    assert verify(spec, raw, result.checkpoints, result.metrics, device) == (
        "ok: result verified")
    with pytest.raises(InputsError, match="token ids"):
        encode_inputs(spec, {"x": ids + 0.5, "targets": targets})
    with pytest.raises(InputsError, match="token ids"):
        encode_inputs(spec, {"x": ids + 20, "targets": targets})


def test_labels_outside_the_output_are_refused() -> None:
    data = digits()
    with pytest.raises(InputsError, match=r"labels must be whole numbers in 0\.\.9"):
        encode_inputs(DIGITS_CNN, {"x": data.x, "labels": data.labels + 1})


@pytest.mark.cuda
def test_a_network_trained_on_a_cuda_device_verifies_on_the_cpu(
        digits_task: tuple[NetTrainSpec, bytes], device: Device) -> None:
    """The engine is written once against the array module: CuPy trains, a CPU committee
    member replays intervals and recomputes the metrics within the stated tolerances."""
    gpu = cuda_device()
    assert gpu is not None
    spec, raw = digits_task
    spec = replace(spec, steps=200, checkpoint_every=50)
    result = run_workload(spec, gpu, inputs=raw)
    assert result.metrics["val_accuracy_bps"] > 8_000
    verdict = verify_training(spec, result.checkpoints, result.checkpoint_ids,
                              result.checkpoint_root, result.metrics, 4,
                              np.random.default_rng(1), device, uploaded=raw)
    assert verdict.ok, verdict.reason
