"""Workload specifications: what a task asks a provider to compute, in pure Python.

The ledger reads these (to price a task by its work units and to check its limits), the provider
runs them (`gpu.workloads`) and verifiers check them (`gpu.verify`). Nothing here imports NumPy or
CuPy, so the state machine stays pure and fast.

One unit of work is one GFLOP (10**9 floating-point operations) of the workload's arithmetic,
rounded up, at least 1. Prices are quoted per unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import Any, ClassVar, Protocol, Self

from ogpu_node.encoding import read_array, read_bytes, read_list, read_str, read_uint
from ogpu_node.errors import OgpuError
from ogpu_node.types import HASH_LEN

FLOPS_PER_UNIT = 10**9
MAX_MATMUL_N = 16_384
MAX_LAYERS = 4
MAX_WIDTH = 8_192
MAX_SAMPLES = 1_000_000
MAX_BATCH = 65_536
MAX_STEPS = 1_000_000
MAX_CHECKPOINTS = 256
"""A training result commits one hash per checkpoint; this bounds the result transaction."""
MAX_CHECKPOINT_INTERVAL = 200
"""Longest interval between checkpoints: replays of longer ones drift apart across devices as
much as a skipped step does, so they could not be verified (see `gpu/verify.py`)."""
MAX_LR_MICROS = 10_000_000
"""Largest learning rate (10.0), in millionths."""
TEACHER_HIDDEN = 32
"""Width of the random teacher network whose argmax labels a generated training set."""


class InvalidSpec(OgpuError):
    """A workload specification outside its limits, or one that does not decode."""

    code = "invalid_spec"


class WorkloadKind(IntEnum):
    """Workload kinds. Numbers are part of the protocol: never reuse one."""

    MATMUL = 1
    TRAIN = 2
    INFER = 3
    MODEL_INFER = 4
    TRAIN_NET = 5


def workload_kind_name(kind: int) -> str:
    """A kind's name in lower case (`train`), `unknown` for a number no kind has."""
    try:
        return WorkloadKind(kind).name.lower()
    except ValueError:
        return "unknown"


def _with_inputs(fields: list[Any], inputs: bytes) -> list[Any]:
    """A spec's fields, then its inputs file id when it has one (a spec without uploaded
    inputs encodes exactly as before inputs existed)."""
    return [*fields, inputs] if inputs else fields


def _read_fields(value: Any, count: int, what: str) -> tuple[list[Any], bytes]:
    """The `count` fields of a spec and its optional trailing inputs file id (32 bytes)."""
    if type(value) is list and len(value) == count + 1:
        return value[:count], read_bytes(value[count], f"{what}.inputs", size=HASH_LEN)
    return read_array(value, count, what), b""


def _inputs_problems(inputs: bytes) -> list[str]:
    return [] if len(inputs) in (0, HASH_LEN) else [f"inputs must be a {HASH_LEN}-byte file id"]


def flops_to_units(flops: int) -> int:
    """Work units of `flops` floating-point operations: GFLOP rounded up, at least 1."""
    return max(1, -(-flops // FLOPS_PER_UNIT))


def mlp_weight_count(widths: tuple[int, ...]) -> int:
    """Multiply-accumulate weights of an MLP of layer `widths` (biases are negligible and not
    counted as work)."""
    return sum(a * b for a, b in pairwise(widths))


def checkpoint_count(steps: int, every: int) -> int:
    """How many checkpoints a training of `steps` steps takes, one every `every` steps and one
    after the last, computed without listing them (a spec is checked before its limits are
    known to hold: `steps` may be 2**64 - 1)."""
    return -(-steps // max(1, every)) if steps else 1


def checkpoint_steps(steps: int, every: int) -> tuple[int, ...]:
    """The step counts after which a checkpoint is taken (the last one is `steps`).

    Lists them: call only on a spec without `problems()`."""
    if checkpoint_count(steps, every) > MAX_CHECKPOINTS:
        raise InvalidSpec(f"at most {MAX_CHECKPOINTS} checkpoints (raise checkpoint_every)")
    every = max(1, every)
    return (*range(every, steps, every), steps)


def checkpoint_problems(steps: int, every: int) -> list[str]:
    """What is wrong with a training's `steps` and `checkpoint_every` (every training kind)."""
    out = []
    if not 1 <= steps <= MAX_STEPS:
        out.append(f"steps must be within 1..{MAX_STEPS}")
    if not 1 <= every <= max(1, min(steps, MAX_CHECKPOINT_INTERVAL)):
        out.append(f"checkpoint_every must be within 1..min(steps, {MAX_CHECKPOINT_INTERVAL})")
    elif checkpoint_count(steps, every) > MAX_CHECKPOINTS:
        out.append(f"at most {MAX_CHECKPOINTS} checkpoints (raise checkpoint_every)")
    return out


@dataclass(frozen=True, slots=True)
class MatmulSpec:
    """C = A @ B for n x n float32 matrices A and B: generated from `seed`, or the arrays
    "A" and "B" of the client's uploaded file `inputs` (see `gpu.inputs`)."""

    n: int
    seed: int
    inputs: bytes = b""

    KIND: ClassVar[WorkloadKind] = WorkloadKind.MATMUL
    MAX_BYTES: ClassVar[int] = 32 + HASH_LEN

    def to_fields(self) -> list[Any]:
        return _with_inputs([self.n, self.seed], self.inputs)

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (n, seed), inputs = _read_fields(value, 2, "matmul")
        return cls(read_uint(n, "matmul.n"), read_uint(seed, "matmul.seed"), inputs)

    def problems(self) -> list[str]:
        out = [] if 1 <= self.n <= MAX_MATMUL_N else [f"n must be within 1..{MAX_MATMUL_N}"]
        return out + _inputs_problems(self.inputs)

    def work_units(self) -> int:
        return flops_to_units(2 * self.n**3)


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """Train an MLP classifier with plain SGD on a dataset generated from `seed`, or on the
    arrays "x" and "labels" of the client's uploaded file `inputs` (see `gpu.inputs`).

    A generated dataset is `n_samples` points labelled by a random teacher network; step `i` uses
    the minibatch that `seed` and `i` determine, so any interval of steps can be replayed from the
    checkpoint before it. A checkpoint (all weights) is taken every `checkpoint_every` steps and
    after the last step.
    """

    seed: int
    n_features: int
    hidden: tuple[int, ...]
    n_classes: int
    n_samples: int
    batch: int
    steps: int
    lr_micros: int
    """Learning rate in millionths (integers only on the chain)."""
    checkpoint_every: int
    inputs: bytes = b""

    KIND: ClassVar[WorkloadKind] = WorkloadKind.TRAIN
    MAX_BYTES: ClassVar[int] = 128 + HASH_LEN

    def to_fields(self) -> list[Any]:
        return _with_inputs([self.seed, self.n_features, list(self.hidden), self.n_classes,
                             self.n_samples, self.batch, self.steps, self.lr_micros,
                             self.checkpoint_every], self.inputs)

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (seed, feats, hidden, classes, samples, batch, steps, lr, every), inputs = _read_fields(
            value, 9, "train")
        return cls(
            seed=read_uint(seed, "train.seed"),
            n_features=read_uint(feats, "train.n_features"),
            hidden=tuple(read_uint(h, "train.hidden") for h in
                         read_list(hidden, MAX_LAYERS, "train.hidden")),
            n_classes=read_uint(classes, "train.n_classes"),
            n_samples=read_uint(samples, "train.n_samples"),
            batch=read_uint(batch, "train.batch"),
            steps=read_uint(steps, "train.steps"),
            lr_micros=read_uint(lr, "train.lr_micros"),
            checkpoint_every=read_uint(every, "train.checkpoint_every"),
            inputs=inputs,
        )

    @property
    def learning_rate(self) -> float:
        return self.lr_micros / 1_000_000

    @property
    def widths(self) -> tuple[int, ...]:
        """Layer widths: features, hidden layers, classes."""
        return (self.n_features, *self.hidden, self.n_classes)

    @property
    def checkpoint_count(self) -> int:
        return checkpoint_count(self.steps, self.checkpoint_every)

    @property
    def checkpoint_steps(self) -> tuple[int, ...]:
        return checkpoint_steps(self.steps, self.checkpoint_every)

    def problems(self) -> list[str]:
        out = []
        if not all(1 <= w <= MAX_WIDTH for w in self.widths):
            out.append(f"every layer width must be within 1..{MAX_WIDTH}")
        if self.n_classes < 2:
            out.append("n_classes must be at least 2")
        if not 1 <= self.n_samples <= MAX_SAMPLES:
            out.append(f"n_samples must be within 1..{MAX_SAMPLES}")
        if not 1 <= self.batch <= min(MAX_BATCH, max(1, self.n_samples)):
            out.append("batch must be within 1..n_samples")
        if not 1 <= self.lr_micros <= MAX_LR_MICROS:
            out.append(f"lr_micros must be within 1..{MAX_LR_MICROS:,}")
        out += checkpoint_problems(self.steps, self.checkpoint_every)
        return out + _inputs_problems(self.inputs)

    def weight_count(self) -> int:
        return mlp_weight_count(self.widths)

    def work_units(self) -> int:
        # forward 2, backward 4 flops per weight per sample; a final evaluation pass over the data
        weights = self.weight_count()
        return flops_to_units(6 * weights * self.batch * self.steps + 2 * weights * self.n_samples)


@dataclass(frozen=True, slots=True)
class ModelArch:
    """A registered model: an MLP whose weights are generated from `weights_seed`."""

    n_features: int
    hidden: tuple[int, ...]
    n_classes: int
    weights_seed: int

    @property
    def widths(self) -> tuple[int, ...]:
        """Layer widths: features, hidden layers, classes."""
        return (self.n_features, *self.hidden, self.n_classes)

    def weight_count(self) -> int:
        return mlp_weight_count(self.widths)


MODELS: dict[str, ModelArch] = {
    "mlp-small": ModelArch(n_features=64, hidden=(256, 256), n_classes=10, weights_seed=7),
    "mlp-large": ModelArch(n_features=1024, hidden=(4096, 4096), n_classes=1000,
                           weights_seed=11),
}
"""Models any provider can serve by name; an inference's inputs come from a seed or an upload."""

MAX_BUILTIN_MODEL_NAME = 32
"""A built-in model's name (`MODELS`), as tasks and pools name it."""


@dataclass(frozen=True, slots=True)
class InferSpec:
    """A batched forward pass of registered model `model` on `batch` inputs made from `seed`,
    or on the array "x" of the client's uploaded file `inputs` (see `gpu.inputs`)."""

    model: str
    seed: int
    batch: int
    inputs: bytes = b""

    KIND: ClassVar[WorkloadKind] = WorkloadKind.INFER
    MAX_BYTES: ClassVar[int] = 64 + HASH_LEN

    def to_fields(self) -> list[Any]:
        return _with_inputs([self.model, self.seed, self.batch], self.inputs)

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (model, seed, batch), inputs = _read_fields(value, 3, "infer")
        return cls(read_str(model, "infer.model", max_len=MAX_BUILTIN_MODEL_NAME),
                   read_uint(seed, "infer.seed"), read_uint(batch, "infer.batch"), inputs)

    @property
    def arch(self) -> ModelArch:
        found = MODELS.get(self.model)
        if found is None:
            raise InvalidSpec(f"unknown model {self.model!r}; known: {', '.join(sorted(MODELS))}")
        return found

    def problems(self) -> list[str]:
        out = []
        if self.model not in MODELS:
            out.append(f"unknown model {self.model!r}")
        if not 1 <= self.batch <= MAX_BATCH:
            out.append(f"batch must be within 1..{MAX_BATCH}")
        return out + _inputs_problems(self.inputs)

    def work_units(self) -> int:
        return flops_to_units(2 * self.arch.weight_count() * self.batch)


class HasProblems(Protocol):
    def problems(self) -> list[str]: ...


def check_spec(spec: HasProblems) -> None:
    """Raise `InvalidSpec` with the spec's problems, if it has any."""
    problems = spec.problems()
    if problems:
        raise InvalidSpec("; ".join(problems))
