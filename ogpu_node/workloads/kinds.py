"""Every workload kind, and decoding a spec of any kind: what a task's `(kind, spec bytes)`
means. The built-in kinds are in `spec`, registered models' inference in `models`, training a
network of the client's own architecture in `net`."""

from __future__ import annotations

from ogpu_node.encoding import decode
from ogpu_node.errors import DecodeError
from ogpu_node.workloads.models import ModelInferSpec
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
