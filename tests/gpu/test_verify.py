from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu.artifacts import checkpoint_chain, decode_arrays, encode_arrays
from gpu.data import matmul_inputs_host
from gpu.device import Device
from gpu.errors import CheckpointsNeeded
from gpu.verify import (
    Verdict,
    checkpoints_to_check,
    verify_inference,
    verify_matmul,
    verify_training,
)
from gpu.workloads import WorkloadResult, replay
from ogpu_node.blobs import file_id
from ogpu_node.types import Hash32
from ogpu_node.workloads.spec import MatmulSpec
from tests.gpu.conftest import INFER, MATMUL, TRAIN

ALL = len(TRAIN.checkpoint_steps)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def c_of(result: WorkloadResult) -> np.ndarray:
    return decode_arrays(result.output)[0][1].copy()


def check_c(c: np.ndarray, device: Device, rounds: int = 20, seed: int = 0) -> Verdict:
    return verify_matmul(MATMUL, encode_arrays([("C", c)]), rounds, rng(seed), device)


# --- matmul ---------------------------------------------------------------------------------

def test_honest_matmul_passes(device: Device, multiplied: WorkloadResult) -> None:
    verdict = verify_matmul(MATMUL, multiplied.output, 20, rng(), device)
    assert verdict.ok and verdict.code == "ok", verdict
    assert "r=20" in verdict.checked and verdict.seconds >= 0


def test_matmul_from_another_accumulation_order_passes(device: Device) -> None:
    a, b = matmul_inputs_host(MATMUL)
    exact = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    assert check_c(exact, device).ok
    naive = np.zeros_like(exact)
    for k in range(MATMUL.n):  # rank-1 updates: a different rounding of every element
        naive += np.outer(a[:, k], b[k])
    assert check_c(naive, device).ok


@pytest.mark.parametrize("seed", range(8))
def test_one_wrong_element_is_caught_with_one_round(
        device: Device, multiplied: WorkloadResult, seed: int) -> None:
    c = c_of(multiplied)
    r = np.random.default_rng(100 + seed)
    i, j = r.integers(0, MATMUL.n, 2)
    c[i, j] += np.float32(0.01 * max(1.0, abs(float(c[i, j]))))
    verdict = check_c(c, device, rounds=1, seed=seed)
    assert not verdict.ok and verdict.code == "matmul_mismatch"
    assert f"row {i}" in verdict.reason


def test_one_wrong_row_is_caught(device: Device, multiplied: WorkloadResult) -> None:
    c = c_of(multiplied)
    c[17] = c[18]
    assert check_c(c, device).code == "matmul_mismatch"
    c = c_of(multiplied)
    c[40] *= np.float32(1.001)
    assert check_c(c, device).code == "matmul_mismatch"


def test_non_finite_and_zero_results_are_caught(device: Device,
                                                multiplied: WorkloadResult) -> None:
    c = c_of(multiplied)
    c[3, 4] = np.nan
    assert check_c(c, device).code == "matmul_mismatch"
    assert check_c(np.zeros_like(c), device).code == "matmul_mismatch"


def test_malformed_matmul_output(device: Device, multiplied: WorkloadResult) -> None:
    for bad in (b"", multiplied.output[:-4], encode_arrays([("C", c_of(multiplied)[:5])]),
                encode_arrays([("D", c_of(multiplied))])):
        verdict = verify_matmul(MATMUL, bad, 4, rng(), device)
        assert not verdict.ok and verdict.code == "malformed_output", verdict
    other = verify_matmul(MatmulSpec(MATMUL.n, MATMUL.seed + 1), multiplied.output, 4, rng(),
                          device)
    assert other.code == "matmul_mismatch"


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=128))
def test_fuzz_verifiers_never_raise(data: bytes) -> None:
    from gpu.device import cpu_device

    device = cpu_device()
    assert not verify_matmul(MATMUL, data, 2, rng(), device).ok
    assert not verify_inference(INFER, data, 2, rng(), device).ok
    tiny = MatmulSpec(1, 1)
    assert not verify_matmul(tiny, encode_arrays([("C", np.array([[np.inf]], np.float32))]),
                             2, rng(), device).ok


# --- training -------------------------------------------------------------------------------

def check_train(device: Device, checkpoints: list[bytes], metrics: dict[str, int],
                intervals: int = ALL, ids: list[Hash32] | None = None,
                root: bytes | None = None) -> Verdict:
    """The verdict on a (possibly forged) result whose ids and root the cheater computed
    consistently, unless `ids` or `root` are given."""
    ids = ids if ids is not None else [file_id(c) for c in checkpoints]
    root = root if root is not None else checkpoint_chain(ids)
    return verify_training(TRAIN, checkpoints, ids, root, metrics, intervals, rng(), device)


def with_checkpoint(trained: WorkloadResult, k: int, data: bytes) -> list[bytes]:
    forged = list(trained.checkpoints)
    forged[k] = data
    return forged


def test_honest_training_passes(device: Device, trained: WorkloadResult) -> None:
    verdict = check_train(device, trained.checkpoints, trained.metrics)
    assert verdict.ok, verdict
    assert "intervals 0,1,2,3,4 of 5" in verdict.checked and "final metrics" in verdict.checked
    sampled = verify_training(TRAIN, lambda i: trained.checkpoints[i], trained.checkpoint_ids,
                              trained.checkpoint_root, trained.metrics, 1, rng(3), device)
    assert sampled.ok, sampled
    assert check_train(device, trained.checkpoints, trained.metrics, intervals=0).ok


def test_perturbed_weights_in_one_checkpoint_are_caught(
        device: Device, trained: WorkloadResult) -> None:
    arrays = [(n, a.copy()) for n, a in decode_arrays(trained.checkpoints[2])]
    arrays[2][1][3, 4] += np.float32(0.05)
    verdict = check_train(device, with_checkpoint(trained, 2, encode_arrays(arrays)),
                          trained.metrics)
    assert verdict.code == "checkpoint_mismatch", verdict
    assert "checkpoint 2" in verdict.reason


@pytest.mark.parametrize("k", [0, 3])
def test_a_skipped_step_is_caught(device: Device, trained: WorkloadResult, k: int) -> None:
    marks = TRAIN.checkpoint_steps
    start = None if k == 0 else trained.checkpoints[k - 1]
    short = replay(TRAIN, start, 0 if k == 0 else marks[k - 1], marks[k] - 1, device)
    verdict = check_train(device, with_checkpoint(trained, k, encode_arrays(short)),
                          trained.metrics)
    assert verdict.code == "checkpoint_mismatch", verdict


def test_stale_weights_are_caught(device: Device, trained: WorkloadResult) -> None:
    stale = with_checkpoint(trained, 2, trained.checkpoints[1])
    assert check_train(device, stale, trained.metrics).code == "checkpoint_mismatch"


def test_wrong_final_metrics_are_caught(device: Device, trained: WorkloadResult) -> None:
    for key, delta in (("accuracy_bps", 200), ("loss_micros", 5_000), ("loss_micros", -5_000)):
        metrics = {**trained.metrics, key: trained.metrics[key] + delta}
        verdict = check_train(device, trained.checkpoints, metrics, intervals=0)
        assert verdict.code == "metrics_mismatch", (key, delta, verdict)
    assert check_train(device, trained.checkpoints, {"accuracy_bps": 1},
                       intervals=0).code == "metrics_mismatch"


def test_chain_mismatches(device: Device, trained: WorkloadResult) -> None:
    ids = list(trained.checkpoint_ids)
    wrong_root = check_train(device, trained.checkpoints, trained.metrics, root=bytes(32))
    assert wrong_root.code == "chain_mismatch"
    assert check_train(device, trained.checkpoints, trained.metrics,
                       ids=ids[:-1]).code == "chain_mismatch"
    # bytes served that are not the committed ones
    swapped = with_checkpoint(trained, 1, trained.checkpoints[2])
    verdict = check_train(device, swapped, trained.metrics, ids=ids,
                          root=trained.checkpoint_root)
    assert verdict.code == "chain_mismatch", verdict


def test_a_bit_exact_replay_needs_not_read_its_interval_end(
        device: Device, trained: WorkloadResult) -> None:
    # seed 1 picks interval 2 (checkpoint 1 -> 2): without ends, checkpoint 2 is not fetched
    assert checkpoints_to_check(TRAIN, 1, rng(1)) == [1, 2, 4]
    starts = checkpoints_to_check(TRAIN, 1, rng(1), ends=False)
    assert starts == [1, 4]

    def check(checkpoints: list[bytes], given: list[int]) -> Verdict:
        ids = [file_id(c) for c in checkpoints]
        return verify_training(TRAIN, {i: checkpoints[i] for i in given}, ids,
                               checkpoint_chain(ids), trained.metrics, 1, rng(1), device)

    verdict = check(trained.checkpoints, starts)
    assert verdict.ok and "intervals 2 of 5 (1 bit-exact)" in verdict.checked, verdict
    # a forged end (stale weights) does not hash to its replay: the check asks for its bytes,
    # and given them, rejects it
    stale = with_checkpoint(trained, 2, trained.checkpoints[1])
    with pytest.raises(CheckpointsNeeded, match="checkpoint 2"):
        check(stale, starts)
    assert check(stale, [1, 2, 4]).code == "checkpoint_mismatch"


def test_malformed_checkpoints(device: Device, trained: WorkloadResult) -> None:
    for bad in (b"junk", encode_arrays([("w0", np.zeros(3, np.float32))])):
        verdict = check_train(device, with_checkpoint(trained, 4, bad), trained.metrics)
        assert verdict.code == "malformed_output", verdict
    not_bytes = verify_training(TRAIN, lambda i: None, trained.checkpoint_ids,  # type: ignore
                                trained.checkpoint_root, trained.metrics, 1, rng(), device)
    assert not_bytes.code == "malformed_output"


# --- inference ------------------------------------------------------------------------------

def test_honest_inference_passes(device: Device, inferred: WorkloadResult) -> None:
    verdict = verify_inference(INFER, inferred.output, INFER.batch, rng(), device)
    assert verdict.ok, verdict
    assert verify_inference(INFER, inferred.output, 3, rng(1), device).ok


def test_corrupted_inference_rows_are_caught(device: Device, inferred: WorkloadResult) -> None:
    logits = decode_arrays(inferred.output)[0][1].copy()
    for row in (2, 11, 20):
        logits[row, row % logits.shape[1]] *= np.float32(1.01)
    forged = encode_arrays([("logits", logits)])
    verdict = verify_inference(INFER, forged, INFER.batch, rng(), device)
    assert verdict.code == "inference_mismatch" and "3 sampled rows" in verdict.reason
    swapped = decode_arrays(inferred.output)[0][1].copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert not verify_inference(INFER, encode_arrays([("logits", swapped)]), INFER.batch,
                                rng(), device).ok


def test_malformed_inference_output(device: Device, inferred: WorkloadResult) -> None:
    logits = decode_arrays(inferred.output)[0][1]
    verdict = verify_inference(INFER, encode_arrays([("logits", logits[:-1])]), 4, rng(),
                               device)
    assert verdict.code == "malformed_output"
