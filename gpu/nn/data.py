"""What a `NetTrainSpec` run reads, as pure functions of the spec and the client's files: the
data set and its validation split, the initial weights (drawn from the seed or uploaded), each
step's minibatch and dropout masks. Every random draw comes from a numbered stream of
`gpu.data` on the host, so a provider and a verifier on any devices draw the same."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gpu.artifacts import NamedArray, decode_arrays
from gpu.data import STREAM_DROPOUT, STREAM_NET_INIT, STREAM_NET_SPLIT, draw_batch, stream
from gpu.device import Array, Device
from gpu.errors import ArtifactError
from gpu.inputs import InputsError, uploaded_inputs
from ogpu_node.workloads.limits import check_limits
from ogpu_node.workloads.net import BPS, LayerKind, LossKind, NetTrainSpec

Rows = npt.NDArray[np.int64]
OPT_PREFIX = "opt."
"""Names of a checkpoint's optimiser arrays start with this; a weights file may carry them (a
checkpoint of the same network is a valid weights file) and they are then ignored."""


@dataclass(frozen=True, slots=True)
class NetData:
    """The data set on the device and its split: host row indices, sorted."""

    x: Array
    target: Array
    """int32 labels (cross-entropy) or float32 targets (MSE)."""
    train_rows: Rows
    val_rows: Rows


def split_rows(spec: NetTrainSpec) -> tuple[Rows, Rows]:
    """(training rows, validation rows): `spec.n_val` rows drawn from the seed are held out."""
    order = stream(spec.seed, STREAM_NET_SPLIT).permutation(spec.n_samples)
    return np.sort(order[spec.n_val:]), np.sort(order[:spec.n_val])


def net_dataset(spec: NetTrainSpec, device: Device, uploaded: bytes | None) -> NetData:
    """The uploaded data set on `device`, split. Raises `SpecOverLimit` for a spec over a limit
    (a verifier's replay comes here too) and `InputsError` for a wrong or missing file."""
    check_limits(spec)
    arrays = uploaded_inputs(spec, uploaded)
    if arrays is None:  # `problems()` makes `inputs` required; a spec built by hand may not be
        raise InputsError("a network's training needs its inputs file")
    if spec.loss is LossKind.CROSS_ENTROPY:
        target = device.asarray(arrays["labels"].astype(np.int32))
    else:
        target = device.asarray(arrays["targets"])
    train, val = split_rows(spec)
    return NetData(device.asarray(arrays["x"]), target, train, val)


def batch_rows(spec: NetTrainSpec, data: NetData, step: int) -> Rows:
    """The data set rows of step `step`'s minibatch (drawn from the training rows)."""
    return data.train_rows[draw_batch(spec.seed, step, data.train_rows.shape[0], spec.batch)]


def dropout_mask(spec: NetTrainSpec, step: int, layer: int, rows: int
                 ) -> npt.NDArray[np.float32]:
    """Layer `layer`'s dropout mask at step `step`: 0 with probability rate, else 1 / (1 - rate),
    for a batch of `rows` rows of the layer's input shape."""
    rate = spec.layers[layer].arg("rate_bps") / BPS
    shape = (rows, *spec.shapes()[layer])
    draw = stream(spec.seed, STREAM_DROPOUT, step, layer).random(shape, dtype=np.float32)
    keep = draw >= np.float32(rate)
    del draw
    mask = keep.astype(np.float32)
    mask *= np.float32(1.0 / (1.0 - rate))
    return mask


def seed_params(spec: NetTrainSpec) -> list[NamedArray]:
    """Initial weights from the seed, layer i's from (seed, i): He-normal weights for dense and
    convolution layers (std sqrt(2 / fan_in)) with zero biases, standard normal embeddings,
    unit scales and zero shifts for layer normalisation."""
    shapes = dict(spec.param_shapes())
    out: list[NamedArray] = []
    for i, layer in enumerate(spec.layers):
        names = [name for name in (f"l{i}.w", f"l{i}.b") if name in shapes]
        if not names:
            continue
        w_shape = shapes[names[0]]
        if layer.kind is LayerKind.LAYER_NORM:
            w = np.ones(w_shape, dtype=np.float32)
        else:
            w = stream(spec.seed, STREAM_NET_INIT, i).standard_normal(w_shape, dtype=np.float32)
            if layer.kind is not LayerKind.EMBEDDING:
                fan_in = math.prod(w_shape[1:]) if layer.kind is LayerKind.CONV2D else w_shape[0]
                w *= np.float32(math.sqrt(2.0 / fan_in))
        out.append((names[0], w))
        if len(names) > 1:
            out.append((names[1], np.zeros(shapes[names[1]], dtype=np.float32)))
    return out


def uploaded_params(spec: NetTrainSpec, raw: bytes | None) -> list[NamedArray]:
    """The initial weights of the client's weights file `spec.init`: the network's parameters
    by name and shape (`spec.param_shapes()`, in order; optimiser arrays after them are
    ignored), finite. Raises `InputsError` saying what is wrong."""
    if raw is None:
        raise InputsError(f"the spec's weights file {spec.init.hex()[:16]}... was not supplied")
    try:
        arrays = decode_arrays(raw)
    except ArtifactError as exc:
        raise InputsError(f"weights: {exc}") from exc
    wanted = spec.param_shapes()
    got = [(name, tuple(a.shape)) for name, a in arrays[:len(wanted)]]
    if got != wanted or not all(name.startswith(OPT_PREFIX) for name, _ in arrays[len(wanted):]):
        raise InputsError(f"weights: arrays {[(n, tuple(a.shape)) for n, a in arrays]} where "
                          f"{wanted} were expected")
    for name, array in arrays[:len(wanted)]:
        if not np.isfinite(array).all():
            raise InputsError(f"weights: array {name!r} holds NaN or infinite values")
    return arrays[:len(wanted)]


def initial_params(spec: NetTrainSpec, weights: bytes | None) -> list[NamedArray]:
    """The weights training starts from: the uploaded file's when the spec names one (`weights`
    is its bytes), else drawn from the seed."""
    return uploaded_params(spec, weights) if spec.init else seed_params(spec)
