from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gpu.data import (
    batch_indices,
    dataset_host,
    infer_inputs_host,
    init_weights,
    matmul_inputs_host,
    model_weights,
)
from ogpu_node.workloads.limits import DatasetTooLarge
from ogpu_node.workloads.spec import MODELS, InferSpec, MatmulSpec
from tests.gpu.conftest import TRAIN


def test_matmul_inputs_are_deterministic_uniform_float32() -> None:
    a, b = matmul_inputs_host(MatmulSpec(64, 9))
    a2, b2 = matmul_inputs_host(MatmulSpec(64, 9))
    assert a.dtype == np.float32 and a.shape == (64, 64)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
    assert not np.array_equal(a, b)
    assert ((a >= -1) & (a < 1)).all() and abs(float(a.mean())) < 0.05
    assert not np.array_equal(a, matmul_inputs_host(MatmulSpec(64, 10))[0])


def test_dataset_is_deterministic_and_labelled_by_every_class() -> None:
    x, y = dataset_host(TRAIN)
    x2, y2 = dataset_host(TRAIN)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.shape == (TRAIN.n_samples, TRAIN.n_features) and x.dtype == np.float32
    assert set(np.unique(y)) == set(range(TRAIN.n_classes))


def test_batch_indices_depend_on_seed_and_step_only() -> None:
    first = batch_indices(TRAIN, 5)
    np.testing.assert_array_equal(first, batch_indices(TRAIN, 5))
    assert first.shape == (TRAIN.batch,)
    assert ((first >= 0) & (first < TRAIN.n_samples)).all()
    assert not np.array_equal(first, batch_indices(TRAIN, 6))
    bigger = replace(TRAIN, steps=999)
    np.testing.assert_array_equal(first, batch_indices(bigger, 5))


def test_weights_and_inference_inputs() -> None:
    init = init_weights(TRAIN)
    assert [w.shape for w, _ in init] == [(8, 16), (16, 16), (16, 3)]
    assert all(not b.any() for _, b in init)
    arch = MODELS["mlp-small"]
    layers = model_weights(arch)
    np.testing.assert_array_equal(layers[0][0], model_weights(arch)[0][0])
    x = infer_inputs_host(InferSpec("mlp-small", 1, 5))
    assert x.shape == (5, arch.n_features)
    np.testing.assert_array_equal(x[:3], infer_inputs_host(InferSpec("mlp-small", 1, 3)))


def test_oversized_dataset_is_refused_before_it_is_made() -> None:
    huge = replace(TRAIN, n_samples=1_000_000, n_features=8192)
    with pytest.raises(DatasetTooLarge):
        dataset_host(huge)
