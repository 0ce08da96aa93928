"""Verifiers: cheap checks of a provider's result against the spec, with stated tolerances.

Every check returns a `Verdict`; malformed bytes give `Verdict(ok=False, "malformed_output: ...")`
and never an exception. A verdict's `reason` starts with a stable code (`code` property):

- `ok`                 the result passed;
- `malformed_output`   bytes that do not decode, or arrays of the wrong names or shapes;
- `matmul_mismatch`    Freivalds found C != A @ B beyond tolerance;
- `chain_mismatch`     checkpoint ids that do not match the committed hash chain or the bytes;
- `checkpoint_mismatch` a replayed interval that does not reach the committed checkpoint;
- `metrics_mismatch`   final metrics that the final weights do not reproduce;
- `inference_mismatch` a re-executed request whose logits (or a registered model's outputs)
                       differ;
- `inputs_malformed`   the task's uploaded inputs do not hold what its spec asks for.

Tolerances (u = float32 machine epsilon = 2**-23 ~ 1.19e-7):

- Matmul (Freivalds, r rounds of x in {-1,+1}^n): for each row i and round t, reject when
  |(A (B x))_i - (C x)_i| > FREIVALDS_KAPPA * u * ||A_i||_2 * ||B x||_2. The right side is
  KAPPA times u times the Cauchy-Schwarz bound on |(A B x)_i|; for any float32 accumulation order
  on zero-mean inputs the rounding error of either side has a standard deviation near u/2 of that
  bound and shrinks relative to it as n grows (measured maximum over all rows and 20 rounds:
  1.6 u at n = 64, 0.6 u at n = 2048), so KAPPA = 16 leaves a margin of 10 to 30 standard
  deviations. Because x_j = +-1, an element of C that is off by more than the tolerance changes
  (C x)_i by that much for *both* signs of x_j, so at most one sign can hide it: any C with an
  element off by more than the tolerance is accepted with probability <= 2**-r (a single wrong
  element is caught with certainty). Results computed in TF32 or half precision are rejected.
- Training: each replayed interval must reach the committed checkpoint with
  ||replayed - committed||_2 <= REPLAY_RTOL * ||replayed - start||_2 for every array (the error is
  measured against how far the interval moved the weights). Across implementations (Numba vs
  NumPy kernels, float32) the measured ratio stays below 2e-5 for intervals of up to 200 steps;
  a skipped step gives 5e-2 to 0.9, repeated (stale) weights give 1. Replays across devices
  diverge chaotically on long intervals (3e-2 measured after 1,000 steps), so tasks should keep
  `checkpoint_every <= MAX_VERIFIED_INTERVAL`. On the same kind of device replay is bit-exact.
  Final metrics are recomputed from the final checkpoint: loss within
  METRIC_LOSS_RTOL relative + METRIC_LOSS_ATOL_MICROS, accuracy within `1 + n_samples // 10,000`
  samples (argmax near-ties may flip between devices).
- Training a network (`NetTrainSpec`, kind 5): the same rules, one implementation
  (`verify_training`; each kind supplies its replay, initial state and data splits). A
  checkpoint's arrays are the parameters and the optimiser's state (opt.step, moments), and
  every one of them must pass the replay rule. Measured on the 8x8 digits over a 200-step
  interval, float32 replay against the same interval in float64 (a bound on what another
  device's float32 rounding can do): ratio <= 9e-6 (CNN, Adam), 2e-6 (strided CNN with
  average pooling, Adam), 5.9e-5 (CNN, SGD with momentum), 6.3e-5 (MLP with layer norm, GELU,
  dropout, tanh, sigmoid; AdamW, cosine schedule): 16x under REPLAY_RTOL. A skipped step gives
  4e-3 to 2e-2 on the array it moves least, stale weights 1, dropped optimiser state and
  faked metrics are rejected too (tests/gpu/test_net_training.py). Checkpoints are bit-identical
  with 1 and 2 BLAS threads. The metrics are recomputed per split: `train_` and `val_`
  `loss_micros` (and `accuracy_bps` for cross-entropy), with the tolerances above.
- Inference: every sampled row must satisfy max_j |z_j - ref_j| <= INFER_RTOL * max_j |ref_j| +
  INFER_ATOL (measured float32-vs-float64 error: 1.3e-6 relative).
- Registered models (`verify_model_inference`): the sampled rows are run again with the
  provider's repeatable settings (`gpu.onnx_run`). When the provider's runtime fingerprint (its
  result's `runtime` metric) is ours, each row must be identical bit for bit; otherwise, for
  each output array, max_j |z_j - ref_j| <= MODEL_RTOL * max_j |ref_j| + MODEL_ATOL per row
  (NaN and infinities where ours has them, in the same places). Calibrated with
  `scripts/bench onnx` on an MLP, a CNN on the 8 x 8 digits and a transformer block
  (LayerNorm, 4-head attention, Softmax, Gelu), 2,048 rows each, error relative to the row's
  largest output (AVX-512 Zen 4, ONNX Runtime 1.32):

  | compared with the provider's settings | MLP | digits CNN | transformer |
  |---|---|---|---|
  | 1 instead of 2 threads | bit-exact | bit-exact | bit-exact |
  | graph optimisation off / basic / extended instead of all | bit-exact | 5.7e-7 | bit-exact |
  | whole batch, chunks of 7, single rows (padded to 2) | bit-exact | bit-exact | bit-exact |
  | single rows run alone (unpadded) | bit-exact | bit-exact | 5.4e-7 |
  | NumPy float32 (OpenBLAS: another implementation) | 6.1e-7 | 6.1e-7 | 1.0e-6 |
  | NumPy float64 (the exact answer, nearly) | 1.1e-6 | 6.0e-7 | 1.1e-6 |

  Two correct float32 implementations differ by at most the sum of their errors against the
  exact answer (1.1e-6 here), so MODEL_RTOL = 1e-4 leaves a margin of about 90 for other
  kernels (GPU convolution algorithms, other CPUs' instruction sets) while rejecting half
  precision, bfloat16 and TF32 (errors of 1e-3 to 1e-2). MODEL_ATOL = 1e-6 (as INFER_ATOL)
  covers rows whose outputs all cancel to near zero; a model whose outputs are all far below 1
  should scale them, as zeros pass for it. The provider states its own fingerprint, so the
  tolerance is what a cheater can exploit; the bit-exact rule only holds honest providers to
  what they claim.

Sampling: verifying m of K intervals (or rows) uniformly without replacement catches a result
with f falsified intervals with probability 1 - C(K-f, m) / C(K, m) >= 1 - (1 - f/K)**m.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gpu.artifacts import (
    NamedArray,
    Sealer,
    checkpoint_chain,
    decode_arrays,
    encode_arrays,
    expect_shapes,
)
from gpu.cpu_kernels import kernels_for
from gpu.data import dataset, infer_inputs_host, init_weights, matmul_inputs
from gpu.device import Array, Device
from gpu.errors import ArtifactError, CheckpointsNeeded
from gpu.inputs import InputsError, check_inputs
from gpu.mlp import evaluate, named_layers, param_shapes, params_from_arrays
from gpu.net_training import net_evaluations, replay_net, start_state
from gpu.nn.data import net_dataset
from gpu.nn.network import Network
from gpu.workloads import infer_logits, replay
from ogpu_node.blobs import file_id
from ogpu_node.errors import OgpuError
from ogpu_node.workloads.models import FINGERPRINT_METRIC, ModelInferSpec
from ogpu_node.workloads.net import NetTrainSpec
from ogpu_node.workloads.spec import MAX_CHECKPOINT_INTERVAL, InferSpec, MatmulSpec, TrainSpec

F32_EPS = float(np.finfo(np.float32).eps)
FREIVALDS_KAPPA = 16.0
MAX_FREIVALDS_ROUNDS = 64
REPLAY_RTOL = 1e-3
MAX_VERIFIED_INTERVAL = MAX_CHECKPOINT_INTERVAL
METRIC_LOSS_RTOL = 1e-4
METRIC_LOSS_ATOL_MICROS = 10
INFER_RTOL = 1e-4
INFER_ATOL = 1e-6
MODEL_RTOL = 1e-4
MODEL_ATOL = 1e-6

CheckpointSource = Sequence[bytes] | Mapping[int, bytes] | Callable[[int], bytes]
"""The committed checkpoints (all of them, or by index at least those `checkpoints_to_check`
names), or a function fetching checkpoint `i` (only sampled ones are read; its own exceptions,
e.g. a blob that cannot be fetched, propagate). A mapping may leave out the ends of the
replayed intervals (`checkpoints_to_check(..., ends=False)`): a replay that hashes to the
committed id needs no bytes to compare with, and one that does not raises `CheckpointsNeeded`."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check: `reason` is "code: text"; `checked` says what was checked."""

    ok: bool
    reason: str
    checked: str
    seconds: float

    @property
    def code(self) -> str:
        return self.reason.split(":", 1)[0]


class _Reject(Exception):
    """Internal: stops a check with a reason code and text."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code


def _run(check: Callable[[list[str]], None]) -> Verdict:
    start = time.perf_counter()
    checked: list[str] = []
    try:
        check(checked)
    except _Reject as exc:
        return Verdict(False, str(exc), "; ".join(checked), time.perf_counter() - start)
    except ArtifactError as exc:
        return Verdict(False, f"malformed_output: {exc}", "; ".join(checked),
                       time.perf_counter() - start)
    except InputsError as exc:  # the provider should have reported them (`ReportMissingInputs`)
        return Verdict(False, f"inputs_malformed: {exc}", "; ".join(checked),
                       time.perf_counter() - start)
    return Verdict(True, "ok: result verified", "; ".join(checked), time.perf_counter() - start)


def _as_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ArtifactError(f"{what} is {type(value).__name__}, not bytes")
    return bytes(value) if not isinstance(value, bytes) else value


def freivalds_vectors(n: int, rounds: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """`rounds` random sign vectors (columns of an n x rounds matrix) in {-1, +1}."""
    signs = rng.integers(0, 2, size=(n, rounds), dtype=np.int8)
    return (signs.astype(np.float32) * 2) - 1


def verify_matmul(spec: MatmulSpec, c_bytes: bytes, rounds: int, rng: np.random.Generator,
                  device: Device, inputs: tuple[Array, Array] | None = None,
                  uploaded: bytes | None = None) -> Verdict:
    """Freivalds' check of C = A @ B with `rounds` random sign vectors (false acceptance of a C
    with an element off by more than the tolerance <= 2**-rounds); O(rounds * n**2) work.
    `inputs` may pass A and B already on the device (else they come from the seed, or from
    `uploaded`, the task's inputs file)."""

    def check(checked: list[str]) -> None:
        if not 1 <= rounds <= MAX_FREIVALDS_ROUNDS:
            raise ValueError(f"rounds must be within 1..{MAX_FREIVALDS_ROUNDS}")
        arrays = decode_arrays(_as_bytes(c_bytes, "C"))
        expect_shapes(arrays, [("C", (spec.n, spec.n))], "matmul output")
        xp = device.xp
        thin = kernels_for(device).thin_matmul
        a, b = inputs if inputs is not None else matmul_inputs(spec, device, uploaded)
        c = device.asarray(arrays[0][1])
        x = device.asarray(freivalds_vectors(spec.n, rounds, rng))
        y, _ = thin(b, x, False)
        ay, a_norms = thin(a, y, True)
        cx, _ = thin(c, x, False)
        diff = xp.abs(ay - cx)
        scale = (xp.sqrt(a_norms)[:, None] * xp.sqrt(xp.einsum("ij,ij->j", y, y))[None, :])
        tol = np.float32(FREIVALDS_KAPPA * F32_EPS) * scale
        bad = ~(diff <= tol)  # NaN and inf in C fail here too
        checked.append(f"freivalds r={rounds} n={spec.n}")
        if bool(bad.any()):
            rows = device.to_host(bad.any(axis=1)).nonzero()[0]
            i = int(rows[0])
            excess = float(device.to_host((diff[i] / tol[i]).max()))
            raise _Reject("matmul_mismatch", f"{len(rows)} rows fail, first row {i} "
                          f"(error {excess:.3g} x tolerance)")

    return _run(check)


class _Training(Protocol):
    """What checking a training result needs of its kind: the rest (the chain, the sampled
    intervals, the replay tolerance, the metrics' tolerances) is one rule for every kind."""

    def marks(self) -> tuple[int, ...]: ...

    def replay(self, start: bytes | None, from_step: int, to_step: int) -> list[NamedArray]: ...

    def start_arrays(self) -> list[NamedArray]:
        """The checkpoint arrays before step 0 (the initial weights)."""
        ...

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]: ...

    def splits(self, final: bytes) -> list[tuple[str, float, int, int]]:
        """Recomputed from the final checkpoint: per data split, its metrics' prefix ("" for
        the MLP's whole data set), summed loss, correct rows (-1: no accuracy) and rows."""
        ...


class _MlpTraining:
    def __init__(self, spec: TrainSpec, device: Device, uploaded: bytes | None) -> None:
        self.spec, self.device = spec, device
        self.data = dataset(spec, device, uploaded)

    def marks(self) -> tuple[int, ...]:
        return self.spec.checkpoint_steps

    def replay(self, start: bytes | None, from_step: int, to_step: int) -> list[NamedArray]:
        return replay(self.spec, start, from_step, to_step, self.device, self.data)

    def start_arrays(self) -> list[NamedArray]:
        return named_layers(init_weights(self.spec))

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return param_shapes(self.spec.widths)

    def splits(self, final: bytes) -> list[tuple[str, float, int, int]]:
        params = params_from_arrays(decode_arrays(final), self.spec.widths, self.device)
        x, y = self.data
        loss, correct = evaluate(params, x, y, kernels_for(self.device), self.device.xp)
        return [("", loss, correct, self.spec.n_samples)]


class _NetTraining:
    def __init__(self, spec: NetTrainSpec, device: Device, uploaded: bytes | None,
                 weights: bytes | None) -> None:
        self.spec, self.device, self.weights = spec, device, weights
        self.data = net_dataset(spec, device, uploaded)
        self.network = Network(spec, device)

    def marks(self) -> tuple[int, ...]:
        return self.spec.checkpoint_steps

    def replay(self, start: bytes | None, from_step: int, to_step: int) -> list[NamedArray]:
        return replay_net(self.spec, start, from_step, to_step, self.device, self.data,
                          weights=self.weights)

    def start_arrays(self) -> list[NamedArray]:
        return self.network.to_arrays(start_state(self.spec, self.network, None, 0,
                                                  self.weights))

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return self.network.checkpoint_shapes()

    def splits(self, final: bytes) -> list[tuple[str, float, int, int]]:
        state = self.network.from_arrays(decode_arrays(final), self.spec.steps)
        return [(f"{split}_", loss, correct, rows) for split, loss, correct, rows in
                net_evaluations(self.spec, self.network, state, self.data)]


def verify_training(spec: TrainSpec | NetTrainSpec, checkpoints: CheckpointSource,
                    checkpoint_ids: Sequence[bytes], checkpoint_root: bytes,
                    metrics: Mapping[str, int], intervals: int, rng: np.random.Generator,
                    device: Device, uploaded: bytes | None = None,
                    sealer: Sealer | None = None, weights: bytes | None = None) -> Verdict:
    """Check the committed chain, replay `intervals` randomly chosen checkpoint intervals
    (interval 0 starts from the initial weights) and recompute the final metrics.
    `uploaded` is the task's inputs file when its spec names one, `weights` a network's
    initial weights file (`NetTrainSpec.init`); `sealer` opens checkpoints that were sealed
    (their ids are those of the ciphertexts) and seals replays to compare."""

    def check(checked: list[str]) -> None:
        training: _Training = (_MlpTraining(spec, device, uploaded) if isinstance(spec, TrainSpec)
                               else _NetTraining(spec, device, uploaded, weights))
        marks = training.marks()
        ids = [bytes(h) for h in checkpoint_ids]
        if len(ids) != len(marks):
            raise _Reject("chain_mismatch", f"{len(ids)} checkpoint ids for {len(marks)} "
                          "checkpoints")
        if checkpoint_chain(ids) != bytes(checkpoint_root):
            raise _Reject("chain_mismatch", "checkpoint ids do not hash to the committed root")
        checked.append(f"chain of {len(ids)}")
        fetched: dict[int, bytes] = {}

        def fetch(i: int) -> bytes:
            if i not in fetched:
                if isinstance(checkpoints, Mapping) and i not in checkpoints:
                    raise CheckpointsNeeded(f"checkpoint {i} is needed: its interval's replay "
                                            "is not bit-exact")
                raw = _as_bytes(checkpoints(i) if callable(checkpoints) else checkpoints[i],
                                f"checkpoint {i}")
                if file_id(raw) != ids[i]:
                    raise _Reject("chain_mismatch", f"checkpoint {i} does not match its id")
                fetched[i] = _open(sealer, i, raw)
            return fetched[i]

        chosen = _choose_intervals(len(marks), intervals, rng)
        exact = sum(_check_interval(training, k, ids[k], fetch, sealer) for k in chosen)
        if chosen:
            checked.append(f"intervals {','.join(map(str, chosen))} of {len(marks)} "
                           f"({exact} bit-exact)")
        _check_metrics(training.splits(fetch(len(marks) - 1)), metrics)
        checked.append("final metrics")

    return _run(check)


def _choose_intervals(count: int, intervals: int, rng: np.random.Generator) -> list[int]:
    chosen = rng.choice(count, size=min(max(0, intervals), count), replace=False)
    return sorted(int(k) for k in chosen)


def checkpoints_to_check(spec: TrainSpec | NetTrainSpec, intervals: int,
                         rng: np.random.Generator, *, ends: bool = True) -> list[int]:
    """The checkpoint indices `verify_training(spec, ..., intervals, rng, ...)` will read, so
    that a caller can fetch them first (drawn from a copy: `rng` is left as it is). Without
    `ends`, the ends of the replayed intervals are left out, as a replay on the provider's kind
    of device reproduces them bit for bit (the final checkpoint, for the metrics, stays)."""
    marks = spec.checkpoint_steps
    chosen = _choose_intervals(len(marks), intervals, copy.deepcopy(rng))
    reads = {k - 1 for k in chosen} | (set(chosen) if ends else set())
    return sorted({i for i in reads if i >= 0} | {len(marks) - 1})


def _open(sealer: Sealer | None, number: int, raw: bytes) -> bytes:
    if sealer is None:
        return raw
    try:
        return sealer.open(number, raw)
    except OgpuError as exc:
        raise _Reject("output_unreadable", f"file {number}: {exc}") from exc


def _check_interval(training: _Training, k: int, committed_id: bytes,
                    fetch: Callable[[int], bytes], sealer: Sealer | None = None) -> bool:
    """Replay interval `k`; True when the replay is the committed checkpoint bit for bit (its
    bytes are then not needed), False when it is within tolerance of it."""
    marks = training.marks()
    start_bytes = None if k == 0 else fetch(k - 1)
    from_step = 0 if k == 0 else marks[k - 1]
    replayed = training.replay(start_bytes, from_step, marks[k])
    replayed_bytes = encode_arrays(replayed)
    if sealer is not None:
        replayed_bytes = sealer.seal(k, replayed_bytes)
    if file_id(replayed_bytes) == committed_id:
        return True
    committed = decode_arrays(fetch(k))
    expect_shapes(committed, training.shapes(), f"checkpoint {k}")
    start = training.start_arrays() if start_bytes is None else decode_arrays(start_bytes)
    for (name, got), (_, want), (_, was) in zip(replayed, committed, start, strict=True):
        err = _norm(got - want)
        moved = _norm(got - was)
        if not err <= REPLAY_RTOL * moved + 1e-30:
            raise _Reject("checkpoint_mismatch", f"checkpoint {k} (step {marks[k]}): {name} is "
                          f"off by {err:.3g} after the interval moved it {moved:.3g}")
    return False


def _norm(a: npt.NDArray[np.float32]) -> float:
    value = float(np.linalg.norm(a.astype(np.float64)))
    return value if math.isfinite(value) else math.inf


def _check_metrics(splits: list[tuple[str, float, int, int]],
                   metrics: Mapping[str, int]) -> None:
    """Each split's claimed loss (`<prefix>loss_micros`) within METRIC_LOSS_RTOL relative +
    METRIC_LOSS_ATOL_MICROS of the recomputed one, its accuracy (`<prefix>accuracy_bps`, where
    there is one) within `1 + rows // 10,000` rows of it; no other metric."""
    wanted = {f"{prefix}{name}" for prefix, _, correct, _ in splits
              for name in ("loss_micros", *(("accuracy_bps",) if correct >= 0 else ()))}
    if set(metrics) != wanted or not all(isinstance(v, int) and v >= 0
                                         for v in metrics.values()):
        raise _Reject("metrics_mismatch", f"metrics must be {sorted(wanted)}, got "
                      f"{sorted(metrics)}")
    for prefix, loss_sum, correct, n in splits:
        loss = loss_sum / n * 1e6
        claimed = metrics[f"{prefix}loss_micros"]
        if not abs(claimed - loss) <= METRIC_LOSS_RTOL * abs(loss) + METRIC_LOSS_ATOL_MICROS:
            raise _Reject("metrics_mismatch", f"{prefix}loss_micros {claimed}, recomputed "
                          f"{loss:.0f}")
        if correct < 0:
            continue
        slack = 1 + n // 10_000
        low = max(0, correct - slack) * 10_000 // n
        high = min(n, correct + slack) * 10_000 // n
        claimed = metrics[f"{prefix}accuracy_bps"]
        if not low <= claimed <= high:
            raise _Reject("metrics_mismatch", f"{prefix}accuracy_bps {claimed}, recomputed "
                          f"{correct * 10_000 // n}")


def verify_inference(spec: InferSpec, output_bytes: bytes, samples: int,
                     rng: np.random.Generator, device: Device,
                     uploaded: bytes | None = None) -> Verdict:
    """Re-execute `samples` randomly chosen rows of the batch and compare their logits.
    `uploaded` is the task's inputs file when its spec names one."""

    def check(checked: list[str]) -> None:
        arrays = decode_arrays(_as_bytes(output_bytes, "logits"))
        expect_shapes(arrays, [("logits", (spec.batch, spec.arch.n_classes))],
                      "inference output")
        count = min(max(0, samples), spec.batch)
        rows = np.sort(rng.choice(spec.batch, size=count, replace=False))
        chosen = device.asarray(infer_inputs_host(spec, uploaded)[rows])
        ref = device.to_host(infer_logits(spec, chosen, device))
        got = arrays[0][1][rows]
        err = np.abs(got - ref).max(axis=1, initial=0.0)
        tol = INFER_RTOL * np.abs(ref).max(axis=1, initial=0.0) + INFER_ATOL
        bad = ~(err <= tol)
        checked.append(f"{count} of {spec.batch} rows")
        if bad.any():
            i = int(rows[bad.nonzero()[0][0]])
            raise _Reject("inference_mismatch", f"{int(bad.sum())} sampled rows differ, first "
                          f"row {i}")

    return _run(check)


def verify_model_inference(spec: ModelInferSpec, model_file: bytes, inputs: bytes,
                           output: bytes, rows_to_check: Sequence[int], fingerprint: int,
                           device: Device | None = None) -> Verdict:
    """Run rows `rows_to_check` of a registered model's task again and compare them with the
    provider's `output`: bit for bit when `fingerprint` (the provider's `runtime` metric) is
    this machine's, else within MODEL_RTOL / MODEL_ATOL (see the module docstring). `inputs` is
    the task's uploaded file, `model_file` the registered model's; a file that does not give
    the registered info raises `ModelRefused` (the task, not the result, is at fault)."""
    from gpu.onnx_run import load_model, run_chunks  # ONNX Runtime only for the models' checks

    def check(checked: list[str]) -> None:
        info = spec.model_info
        arrays = decode_arrays(_as_bytes(output, "output"))
        expect_shapes(arrays, [(t.name, (spec.batch, *t.shape)) for t in info.outputs],
                      "model output")
        rows = sorted({int(r) for r in rows_to_check})
        if rows and not 0 <= rows[0] <= rows[-1] < spec.batch:
            raise ValueError(f"rows to check must be within 0..{spec.batch - 1}")
        named = check_inputs(spec, _as_inputs(inputs))
        loaded = load_model(model_file, info, device)
        chosen = {name: values[rows] for name, values in named.items()}
        ours = run_chunks(loaded, chosen, len(rows)) if rows else []
        exact = fingerprint == loaded.fingerprint
        checked.append(f"{len(rows)} of {spec.batch} rows "
                       f"({'bit-exact' if exact else 'within tolerance'})")
        for (name, theirs), want in zip(arrays, ours, strict=True):
            got = theirs[rows].reshape(len(rows), -1)
            bad = _rows_differ(got, want.reshape(len(rows), -1), exact)
            if bad.any():
                i = rows[int(bad.nonzero()[0][0])]
                raise _Reject("inference_mismatch", f"{int(bad.sum())} sampled rows of "
                              f"{name!r} differ, first row {i}")

    return _run(check)


def model_fingerprint(metrics: Mapping[str, int]) -> int:
    """The runtime fingerprint a model's result states, its only metric (the client sees the
    metrics: a provider may not add any the check does not recompute); `ValueError` else."""
    if set(metrics) != {FINGERPRINT_METRIC}:
        raise ValueError(f"a model's result states its {FINGERPRINT_METRIC} alone, "
                         f"not {sorted(metrics)}")
    return metrics[FINGERPRINT_METRIC]


def model_inputs_run(spec: ModelInferSpec, model_file: bytes, inputs: bytes,
                     device: Device | None = None) -> Verdict:
    """Whether a registered model runs on the task's uploaded inputs: a committee's check of a
    provider's report that they are malformed when they pass the static checks (`check_inputs`)
    but the model fails on them (an embedding's id out of range). *ok* when the model runs on
    every row; `inputs_malformed` naming the rows where it fails. It costs the task's work: it
    runs only on such a report, which costs its provider its collateral when it is false."""
    from gpu.onnx_run import run_model

    def check(checked: list[str]) -> None:
        run_model(spec, model_file, device, inputs=_as_inputs(inputs))
        checked.append(f"the model ran on all {spec.batch} rows")

    return _run(check)


def _as_inputs(raw: object) -> bytes:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise InputsError(f"the inputs file is {type(raw).__name__}, not bytes")
    return bytes(raw)


def _rows_differ(got: npt.NDArray[np.float32], want: npt.NDArray[np.float32],
                 exact: bool) -> npt.NDArray[np.bool_]:
    """Per row: whether `got` is not `want` (bit for bit, or within the model tolerance)."""
    if exact:
        differs: npt.NDArray[np.bool_] = np.any(got.view(np.uint32) != want.view(np.uint32),
                                                 axis=1)
        return differs
    finite = np.isfinite(want)
    special_ok = np.all(finite | (np.isnan(want) & np.isnan(got)) | (want == got), axis=1)
    err = np.abs(np.where(finite, got, 0) - np.where(finite, want, 0)).max(axis=1, initial=0.0)
    tol = MODEL_RTOL * np.abs(np.where(finite, want, 0)).max(axis=1, initial=0.0) + MODEL_ATOL
    bad: npt.NDArray[np.bool_] = ~(err <= tol) | ~special_ok
    return bad
