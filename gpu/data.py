"""Deterministic workload inputs, generated on the host from a seed (or taken from the client's
uploaded file, see `gpu.inputs`) and then moved to the device.

Every input is a pure function of the spec (and its uploaded file), so a provider and a verifier
(on a CPU or a GPU) get bit-identical inputs. `uploaded` is the raw inputs file when the spec
names one, else None. Each kind of input draws from its own stream:
`Generator(PCG64(SeedSequence(seed, spawn_key=(STREAM, *index))))`; the stream numbers below are
part of the protocol, never reuse or renumber one.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from gpu.device import Array, Device
from gpu.inputs import uploaded_inputs
from ogpu_node.workloads.limits import LABEL_CHUNK_ROWS, check_limits
from ogpu_node.workloads.spec import TEACHER_HIDDEN, InferSpec, MatmulSpec, ModelArch, TrainSpec

STREAM_MATMUL = 1
STREAM_FEATURES = 2
STREAM_TEACHER = 3
STREAM_INIT = 4
STREAM_BATCH = 5
STREAM_MODEL = 6
STREAM_INFER = 7
STREAM_NET_SPLIT = 8
"""`NetTrainSpec`: which rows are held out for validation."""
STREAM_NET_INIT = 9
"""`NetTrainSpec`: layer i's initial weights from (seed, i)."""
STREAM_DROPOUT = 10
"""`NetTrainSpec`: the dropout mask of layer i at step t from (seed, t, i); its minibatches
come from STREAM_BATCH, as `TrainSpec`'s do."""

HostF32 = npt.NDArray[np.float32]
Layer = tuple[HostF32, HostF32]
"""Weights (fan_in x fan_out) and biases (fan_out) of one dense layer."""


def stream(seed: int, kind: int, *index: int) -> np.random.Generator:
    """The generator of stream `kind` (and `index`, e.g. a step number) of `seed`."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        seed, spawn_key=(kind, *index))))


def uniform_f32(rng: np.random.Generator, shape: tuple[int, ...]) -> HostF32:
    """float32 uniform in [-1, 1), generated directly in float32."""
    out = rng.random(shape, dtype=np.float32)
    out *= 2
    out -= 1
    return out


def matmul_inputs_host(spec: MatmulSpec, uploaded: bytes | None = None
                       ) -> tuple[HostF32, HostF32]:
    """A and B of a matmul task: uploaded, or n x n float32 uniform in [-1, 1)."""
    arrays = uploaded_inputs(spec, uploaded)
    if arrays is not None:
        return arrays["A"], arrays["B"]
    rng = stream(spec.seed, STREAM_MATMUL)
    a = uniform_f32(rng, (spec.n, spec.n))
    b = uniform_f32(rng, (spec.n, spec.n))
    return a, b


def matmul_inputs(spec: MatmulSpec, device: Device, uploaded: bytes | None = None
                  ) -> tuple[Array, Array]:
    """A and B on `device`."""
    a, b = matmul_inputs_host(spec, uploaded)
    return device.asarray(a), device.asarray(b)


def dataset_host(spec: TrainSpec, uploaded: bytes | None = None
                 ) -> tuple[HostF32, npt.NDArray[np.int32]]:
    """Features (n_samples x n_features) and labels: uploaded, or generated (standard normal
    features, labelled by the argmax of a random one-hidden-layer tanh teacher, evaluated in
    float64 so that near-ties resolve the same way on every machine). Raises `SpecOverLimit`
    for a spec over a limit of `ogpu_node.workloads.limits` (a verifier's replay comes here too)."""
    check_limits(spec)
    arrays = uploaded_inputs(spec, uploaded)
    if arrays is not None:
        return arrays["x"], arrays["labels"].astype(np.int32)
    x = stream(spec.seed, STREAM_FEATURES).standard_normal(
        (spec.n_samples, spec.n_features), dtype=np.float32)
    rng = stream(spec.seed, STREAM_TEACHER)
    w1 = rng.standard_normal((spec.n_features, TEACHER_HIDDEN)) / np.sqrt(spec.n_features)
    w2 = rng.standard_normal((TEACHER_HIDDEN, spec.n_classes)) / np.sqrt(TEACHER_HIDDEN)
    labels = np.empty(spec.n_samples, dtype=np.int32)
    chunk = LABEL_CHUNK_ROWS
    for start in range(0, spec.n_samples, chunk):
        part = x[start:start + chunk].astype(np.float64)
        labels[start:start + chunk] = np.argmax(np.tanh(part @ w1) @ w2, axis=1)
    return x, labels


def dataset(spec: TrainSpec, device: Device, uploaded: bytes | None = None
            ) -> tuple[Array, Array]:
    """The training set on `device`."""
    x, y = dataset_host(spec, uploaded)
    return device.asarray(x), device.asarray(y)


def batch_indices(spec: TrainSpec, step: int) -> npt.NDArray[np.int64]:
    """Row indices of the minibatch of step `step` (0-based), drawn with replacement; a pure
    function of the seed and the step, so any interval of steps can be replayed alone."""
    return draw_batch(spec.seed, step, spec.n_samples, spec.batch)


def draw_batch(seed: int, step: int, rows: int, batch: int) -> npt.NDArray[np.int64]:
    """`batch` indices below `rows` for step `step`, drawn with replacement from (seed, step)."""
    return stream(seed, STREAM_BATCH, step).integers(0, rows, size=batch)


def he_layers(widths: tuple[int, ...], rng: np.random.Generator) -> list[Layer]:
    """He-initialised dense layers for `widths` (weights N(0, 2/fan_in), biases zero)."""
    layers: list[Layer] = []
    for fan_in, fan_out in pairwise(widths):
        w = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
        w *= np.float32(np.sqrt(2.0 / fan_in))
        layers.append((w, np.zeros(fan_out, dtype=np.float32)))
    return layers


def init_weights(spec: TrainSpec) -> list[Layer]:
    """The weights training starts from."""
    return he_layers(spec.widths, stream(spec.seed, STREAM_INIT))


def model_weights(arch: ModelArch) -> list[Layer]:
    """The weights of a registered model, from its `weights_seed`; biases are small and nonzero
    so that a wrong bias shows in the output."""
    rng = stream(arch.weights_seed, STREAM_MODEL)
    layers = he_layers(arch.widths, rng)
    for _, b in layers:
        b[:] = rng.standard_normal(b.shape, dtype=np.float32) * np.float32(0.1)
    return layers


def infer_inputs_host(spec: InferSpec, uploaded: bytes | None = None) -> HostF32:
    """The batch x n_features inputs of an inference: uploaded, or standard normal."""
    arrays = uploaded_inputs(spec, uploaded)
    if arrays is not None:
        return arrays["x"]
    return stream(spec.seed, STREAM_INFER).standard_normal(
        (spec.batch, spec.arch.n_features), dtype=np.float32)


def infer_inputs(spec: InferSpec, device: Device, uploaded: bytes | None = None) -> Array:
    return device.asarray(infer_inputs_host(spec, uploaded))


def layers_to_device(layers: list[Layer], device: Device) -> list[tuple[Any, Any]]:
    """Writable device copies of `layers`."""
    return [(device.xp.array(w, copy=True), device.xp.array(b, copy=True)) for w, b in layers]
