"""Every workload kind, and decoding a spec of any kind: what a task's `(kind, spec bytes)`
means. The built-in kinds are in `spec`, registered models' inference in `models`, training a
network of the client's own architecture in `net`."""

from __future__ import annotations

from ogpu_node.encoding import decode
from ogpu_node.errors import DecodeError
from ogpu_node.workloads.models import ModelInferSpec, ModelLookup
from ogpu_node.workloads.net import NetTrainSpec
from ogpu_node.workloads.spec import (
    InferSpec,
    InvalidSpec,
    MatmulSpec,
    TrainSpec,
    WorkloadKind,
    check_spec,
)

WorkloadSpec = MatmulSpec | TrainSpec | InferSpec | ModelInferSpec | NetTrainSpec

SpecType = (type[MatmulSpec] | type[TrainSpec] | type[InferSpec] | type[ModelInferSpec]
            | type[NetTrainSpec])

SPEC_TYPES: dict[int, SpecType] = {
    WorkloadKind.MATMUL: MatmulSpec,
    WorkloadKind.TRAIN: TrainSpec,
    WorkloadKind.INFER: InferSpec,
    WorkloadKind.MODEL_INFER: ModelInferSpec,
    WorkloadKind.TRAIN_NET: NetTrainSpec,
}


def decode_spec(kind: int, data: bytes) -> WorkloadSpec:
    """Decode and check a spec of `kind`; raises `InvalidSpec` with the reason."""
    spec_type = SPEC_TYPES.get(kind)
    if spec_type is None:
        raise InvalidSpec(f"unknown workload kind {kind}")
    try:
        spec: WorkloadSpec = decode(spec_type, data)
    except DecodeError as exc:
        raise InvalidSpec(f"bad {WorkloadKind(kind).name.lower()} spec: {exc}") from exc
    check_spec(spec)
    return spec


def bind_spec(spec: WorkloadSpec, models: ModelLookup) -> WorkloadSpec:
    """`spec` with its registered model's info attached (a `ModelInferSpec`; other kinds come
    back unchanged); `InvalidSpec` when the model is not registered."""
    if not isinstance(spec, ModelInferSpec):
        return spec
    info = models(spec.model)
    if info is None:
        raise InvalidSpec(f"unknown model {spec.model.hex()}")
    return spec.bound(info)


def decode_bound_spec(kind: int, data: bytes, models: ModelLookup) -> WorkloadSpec:
    """`decode_spec`, then `bind_spec`: what a task on the chain asks, ready to price and run."""
    return bind_spec(decode_spec(kind, data), models)


def checkpoint_total(spec: WorkloadSpec) -> int:
    """The checkpoints a result of `spec` commits: a training's, 0 for the other kinds."""
    return spec.checkpoint_count if isinstance(spec, TrainSpec | NetTrainSpec) else 0


def client_files(spec: WorkloadSpec) -> list[bytes]:
    """The ids of the files the client uploaded for `spec` (its inputs, a network's initial
    weights), which a provider fetches before it runs it (a registered model's file is the
    model's, not the task's: `ModelInferSpec.model`)."""
    files = [spec.inputs] if spec.inputs else []
    if isinstance(spec, NetTrainSpec) and spec.init:
        files.append(spec.init)
    return files
