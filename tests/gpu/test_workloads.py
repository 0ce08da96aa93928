from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gpu import cpu_kernels
from gpu.artifacts import checkpoint_chain, decode_arrays
from gpu.cpu_kernels import kernels_for, numba_kernels, warm_up, xp_kernels
from gpu.data import dataset, matmul_inputs_host
from gpu.device import Device
from gpu.errors import WorkloadCancelled
from gpu.workloads import WorkloadResult, replay, run_workload
from ogpu_node.blobs import file_id
from ogpu_node.workloads.spec import InvalidSpec, MatmulSpec, TrainSpec
from tests.gpu.conftest import INFER, MATMUL, TRAIN


def test_same_spec_twice_gives_identical_ids(
        device: Device, multiplied: WorkloadResult, trained: WorkloadResult,
        inferred: WorkloadResult) -> None:
    for spec, first in ((MATMUL, multiplied), (TRAIN, trained), (INFER, inferred)):
        again = run_workload(spec, device)
        assert again.output_id == first.output_id
        assert again.checkpoint_ids == first.checkpoint_ids
        assert again.metrics == first.metrics


def test_a_sink_takes_each_file_as_it_is_made_and_the_result_keeps_only_ids(
        device: Device, multiplied: WorkloadResult, trained: WorkloadResult) -> None:
    files: list[bytes] = []
    streamed = run_workload(TRAIN, device, sink=files.append)
    assert files == trained.checkpoints  # in order, the output (final weights) last
    assert streamed.checkpoints == [] and streamed.output == b""
    assert (streamed.output_id, streamed.checkpoint_ids, streamed.checkpoint_root,
            streamed.metrics) == (trained.output_id, trained.checkpoint_ids,
                                  trained.checkpoint_root, trained.metrics)
    files.clear()
    product = run_workload(MATMUL, device, sink=files.append)
    assert files == [multiplied.output] and product.output == b""
    assert product.output_id == multiplied.output_id


def test_matmul_output_is_the_product(multiplied: WorkloadResult) -> None:
    (name, c), = decode_arrays(multiplied.output)
    a, b = matmul_inputs_host(MATMUL)
    assert name == "C"
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=0, atol=1e-4)
    assert multiplied.output_id == file_id(multiplied.output)
    assert multiplied.checkpoints == [] and multiplied.checkpoint_root == checkpoint_chain([])
    assert multiplied.compute_seconds > 0


def test_matmul_in_panels_matches(device: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gpu.workloads.MATMUL_MIN_PANEL_ROWS", 256)
    spec = MatmulSpec(300, 1)
    seen: list[float] = []
    result = run_workload(spec, device, progress=seen.append)
    (_, c), = decode_arrays(result.output)
    a, b = matmul_inputs_host(spec)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=0, atol=1e-4)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 2


def test_training_commits_every_checkpoint(trained: WorkloadResult) -> None:
    assert len(trained.checkpoints) == len(TRAIN.checkpoint_steps) == 5
    assert trained.output == trained.checkpoints[-1]
    assert trained.output_id == file_id(trained.output) == trained.checkpoint_ids[-1]
    assert trained.checkpoint_ids == [file_id(c) for c in trained.checkpoints]
    assert trained.checkpoint_root == checkpoint_chain(trained.checkpoint_ids)
    names = [n for n, _ in decode_arrays(trained.output)]
    assert names == ["w0", "b0", "w1", "b1", "w2", "b2"]
    assert set(trained.metrics) == {"loss_micros", "accuracy_bps"}
    assert trained.metrics["accuracy_bps"] > 5000  # it learns: 3 classes, chance is 3333


def test_replay_reproduces_checkpoints_exactly(device: Device, trained: WorkloadResult) -> None:
    marks = TRAIN.checkpoint_steps
    first = replay(TRAIN, None, 0, marks[0], device)
    for (_, got), (_, want) in zip(first, decode_arrays(trained.checkpoints[0]), strict=True):
        np.testing.assert_array_equal(got, want)
    mid = replay(TRAIN, trained.checkpoints[1], marks[1], marks[2], device)
    for (_, got), (_, want) in zip(mid, decode_arrays(trained.checkpoints[2]), strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError):
        replay(TRAIN, None, 3, 5, device)


def test_progress_and_cancel(device: Device) -> None:
    seen: list[float] = []
    run_workload(TRAIN, device, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0] < 1
    calls = iter(range(100))
    with pytest.raises(WorkloadCancelled):
        run_workload(TRAIN, device, should_stop=lambda: next(calls) >= 3)


def test_invalid_spec_is_refused(device: Device) -> None:
    with pytest.raises(InvalidSpec):
        run_workload(MatmulSpec(0, 1), device)
    with pytest.raises(InvalidSpec):
        run_workload(TrainSpec(1, 4, (), 1, 10, 5, 10, 1000, 5), device)


def test_inference_output_shape(inferred: WorkloadResult) -> None:
    (name, logits), = decode_arrays(inferred.output)
    assert name == "logits" and logits.shape == (INFER.batch, INFER.arch.n_classes)
    assert np.isfinite(logits).all() and logits.std() > 0


def test_numba_and_array_kernels_agree(device: Device) -> None:
    assert warm_up(device) >= 0
    fast = numba_kernels()
    if fast is None:
        pytest.skip("Numba is not installed")
    assert kernels_for(device).name == "numba"
    slow = xp_kernels(np)
    rng = np.random.default_rng(1)
    z = rng.standard_normal((7, 5), dtype=np.float32)
    bias = rng.standard_normal(5, dtype=np.float32)
    labels = rng.integers(0, 5, 7).astype(np.int32)
    cases: list[tuple[str, tuple[object, ...]]] = [
        ("bias_relu_", (bias,)), ("relu_backward_", (z > 0.3,)),
        ("softmax_xent_grad_", (labels, 0.25))]
    for name, args in cases:
        a, b = z.copy(), z.copy()
        getattr(fast, name)(a, *args)
        getattr(slow, name)(b, *args)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("rows,inner,cols",
                         [(7, 5, 3), (9, 33, 8), (64, 64, 20), (2, 1, 1), (13, 40, 6)])
def test_thin_matmul_kernels_compute_the_product_and_row_norms(rows: int, inner: int,
                                                                cols: int) -> None:
    fast = numba_kernels()
    if fast is None:
        pytest.skip("Numba is not installed")
    rng = np.random.default_rng(rows)
    m = rng.standard_normal((rows, inner), dtype=np.float32)
    x = rng.standard_normal((inner, cols), dtype=np.float32)
    for kernels in (fast, xp_kernels(np)):
        product, norms = kernels.thin_matmul(m, x, True)
        assert product.shape == (rows, cols) and norms is not None
        np.testing.assert_allclose(product, m.astype(np.float64) @ x, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(norms, (m.astype(np.float64) ** 2).sum(axis=1), rtol=1e-5)
        assert kernels.thin_matmul(m, x, False)[1] is None


@pytest.mark.parametrize("block,block_rows", [(cpu_kernels._thin_matmul_6x4, 6),
                                              (cpu_kernels._thin_matmul_3x4, 3)])
def test_both_thin_matmul_block_shapes_are_right(block: Any, block_rows: int) -> None:
    # run as plain Python (Numba compiles only the one this CPU gets): rows that fill blocks
    # and rows left over, with and without the row norms
    rng = np.random.default_rng(5)
    m = rng.standard_normal((14, 9), dtype=np.float32)
    xt = rng.standard_normal((2 * cpu_kernels.THIN_COLS, 9), dtype=np.float32)
    out, norms = cpu_kernels.thin_product(block, block_rows, m, xt.T, True)
    assert norms is not None
    np.testing.assert_allclose(out, m.astype(np.float64) @ xt.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norms, (m.astype(np.float64) ** 2).sum(axis=1), rtol=1e-5)
    out, _ = cpu_kernels.thin_product(block, block_rows, m, xt.T, False)
    np.testing.assert_allclose(out, m.astype(np.float64) @ xt.T, rtol=1e-5, atol=1e-5)


def test_numba_off_gives_close_training(device: Device, monkeypatch: pytest.MonkeyPatch,
                                        trained: WorkloadResult) -> None:
    monkeypatch.setenv("OGPU_NUMBA", "0")
    assert kernels_for(device).name == "numpy"
    plain = run_workload(TRAIN, device)
    for (_, a), (_, b) in zip(decode_arrays(plain.output), decode_arrays(trained.output),
                              strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert dataset(TRAIN, device)[0].shape == (TRAIN.n_samples, TRAIN.n_features)
