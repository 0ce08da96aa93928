"""Transaction payloads of the GPU task market (registered in `ledger.tx.PAYLOAD_TYPES`).

Each payload lists in `amounts()` the amounts that must lie in 1..MAX_AMOUNT; everything that
depends on state is checked by the rules in `rules.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ogpu_node.encoding import read_array, read_bytes, read_str, read_uint
from ogpu_node.errors import DecodeError
from ogpu_node.ledger.market.records import (
    MAX_REASON,
    RELEASED_KEY_BYTES,
    Device,
    ReturnReason,
    TaskResult,
    read_devices,
)
from ogpu_node.types import HASH_LEN, Hash32
from ogpu_node.workloads.models import MAX_MODEL_NAME, ModelInfo
from ogpu_node.workloads.spec import MAX_BUILTIN_MODEL_NAME

MAX_SPEC_BYTES = 1024
MAX_SALT = 32


@dataclass(frozen=True, slots=True)
class RegisterProvider:
    """Register as a provider, or update the declaration, adding `stake` to the provider bond."""

    devices: tuple[Device, ...]
    benchmark: int
    price_floor: int
    stake: int

    MAX_BYTES: ClassVar[int] = 2048

    def amounts(self) -> tuple[int, ...]:
        return (self.stake,) if self.stake else ()

    def to_fields(self) -> list[Any]:
        return [[d.to_fields() for d in self.devices], self.benchmark, self.price_floor,
                self.stake]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        devices, benchmark, floor, stake = read_array(value, 4, "register_provider")
        return cls(read_devices(devices), read_uint(benchmark, "register_provider.benchmark"),
                   read_uint(floor, "register_provider.price_floor"),
                   read_uint(stake, "register_provider.stake"))


@dataclass(frozen=True, slots=True)
class WithdrawProvider:
    """Take `amount` of free (unlocked) provider stake back; all of it deregisters."""

    amount: int

    MAX_BYTES: ClassVar[int] = 16

    def amounts(self) -> tuple[int, ...]:
        return (self.amount,)

    def to_fields(self) -> list[Any]:
        return [self.amount]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (amount,) = read_array(value, 1, "withdraw_provider")
        return cls(read_uint(amount, "withdraw_provider.amount"))


@dataclass(frozen=True, slots=True)
class SubmitTask:
    """Offer a workload at up to `max_price` per work unit; the task id is this tx's hash.

    The client escrows budget (max_price x work units), a verification reserve and its
    collateral. Each provider gets `exec_ms` from its award to commit a result; the task is
    offered again after a failure while `ttl_ms` from submission allows a full new round.
    """

    kind: int
    spec: bytes
    max_price: int
    min_benchmark: int
    exec_ms: int
    ttl_ms: int

    MAX_BYTES: ClassVar[int] = MAX_SPEC_BYTES + 64

    def amounts(self) -> tuple[int, ...]:
        return (self.max_price,)

    def to_fields(self) -> list[Any]:
        return [self.kind, self.spec, self.max_price, self.min_benchmark, self.exec_ms,
                self.ttl_ms]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        kind, spec, price, bench, exec_ms, ttl = read_array(value, 6, "submit_task")
        return cls(read_uint(kind, "submit_task.kind", max_value=0xFFFF),
                   read_bytes(spec, "submit_task.spec", max_len=MAX_SPEC_BYTES),
                   read_uint(price, "submit_task.max_price"),
                   read_uint(bench, "submit_task.min_benchmark"),
                   read_uint(exec_ms, "submit_task.exec_ms"),
                   read_uint(ttl, "submit_task.ttl_ms"))


def _task_id(value: Any, what: str) -> Hash32:
    return Hash32(read_bytes(value, what, size=HASH_LEN))


@dataclass(frozen=True, slots=True)
class CommitBid:
    """A sealed bid: `commitment = bid_commitment(task, attempt, bidder, price, salt)`."""

    task_id: Hash32
    commitment: Hash32

    MAX_BYTES: ClassVar[int] = 80

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.task_id, self.commitment]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        task, commitment = read_array(value, 2, "commit_bid")
        return cls(_task_id(task, "commit_bid.task_id"),
                   Hash32(read_bytes(commitment, "commit_bid.commitment", size=HASH_LEN)))


@dataclass(frozen=True, slots=True)
class RevealBid:
    """Open a sealed bid during the reveal window."""

    task_id: Hash32
    price: int
    salt: bytes

    MAX_BYTES: ClassVar[int] = 96

    def amounts(self) -> tuple[int, ...]:
        return (self.price,)

    def to_fields(self) -> list[Any]:
        return [self.task_id, self.price, self.salt]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        task, price, salt = read_array(value, 3, "reveal_bid")
        return cls(_task_id(task, "reveal_bid.task_id"), read_uint(price, "reveal_bid.price"),
                   read_bytes(salt, "reveal_bid.salt", max_len=MAX_SALT))


@dataclass(frozen=True, slots=True)
class CommitResult:
    """The awarded provider commits its result before its deadline."""

    task_id: Hash32
    result: TaskResult

    MAX_BYTES: ClassVar[int] = TaskResult.MAX_BYTES + 48

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.task_id, self.result.to_fields()]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        task, result = read_array(value, 2, "commit_result")
        return cls(_task_id(task, "commit_result.task_id"), TaskResult.from_fields(result))


@dataclass(frozen=True, slots=True)
class SealVerdict:
    """A committee member's sealed vote on a claim: a task's result or report of missing
    inputs (`target` the task id, `request_id` empty), or a pool request's sampled answer
    (`target` the pool id). `seal` is `verification.verdict_seal(...)` of the vote and a salt
    the member keeps until it reveals."""

    target: Hash32
    request_id: bytes
    attempt: int
    round: int
    seal: Hash32

    MAX_BYTES: ClassVar[int] = 160

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.target, self.request_id, self.attempt, self.round, self.seal]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        target, request, attempt, round_, seal = read_array(value, 5, "seal_verdict")
        return cls(_task_id(target, "seal_verdict.target"), _request_id(request),
                   read_uint(attempt, "seal_verdict.attempt"),
                   read_uint(round_, "seal_verdict.round"),
                   Hash32(read_bytes(seal, "seal_verdict.seal", size=HASH_LEN)))


@dataclass(frozen=True, slots=True)
class RevealVerdict:
    """Opens a member's sealed vote (see `SealVerdict`): the vote, its reason and the salt."""

    target: Hash32
    request_id: bytes
    attempt: int
    round: int
    accept: bool
    reason: str
    salt: bytes

    MAX_BYTES: ClassVar[int] = 256

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.target, self.request_id, self.attempt, self.round, int(self.accept),
                self.reason, self.salt]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        target, request, attempt, round_, accept, reason, salt = read_array(
            value, 7, "reveal_verdict")
        return cls(_task_id(target, "reveal_verdict.target"), _request_id(request),
                   read_uint(attempt, "reveal_verdict.attempt"),
                   read_uint(round_, "reveal_verdict.round"),
                   bool(read_uint(accept, "reveal_verdict.accept", max_value=1)),
                   read_str(reason, "reveal_verdict.reason", max_len=MAX_REASON),
                   read_bytes(salt, "reveal_verdict.salt", max_len=MAX_SALT))


def _request_id(value: Any) -> bytes:
    """A pool request's id, or empty for a task's claim."""
    request = read_bytes(value, "verdict.request_id", max_len=HASH_LEN)
    if request and len(request) != HASH_LEN:
        raise DecodeError(f"verdict.request_id: expected {HASH_LEN} bytes or none")
    return request


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """The provider of an accepted result releases its attempt's public key (whose hash the
    result committed to): the client can then read the result, and the provider is paid."""

    task_id: Hash32
    attempt: int
    key: bytes

    MAX_BYTES: ClassVar[int] = 96

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.task_id, self.attempt, self.key]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        task, attempt, key = read_array(value, 3, "release_result")
        return cls(_task_id(task, "release_result.task_id"),
                   read_uint(attempt, "release_result.attempt"),
                   read_bytes(key, "release_result.key", size=RELEASED_KEY_BYTES))


@dataclass(frozen=True, slots=True)
class ReportMissingInputs:
    """The awarded provider says the task's uploaded inputs cannot be fetched, or are not what
    the spec asks for; `reason` is a short code ("inputs_missing", "inputs_malformed")."""

    task_id: Hash32
    reason: str

    MAX_BYTES: ClassVar[int] = 112

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.task_id, self.reason]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        task, reason = read_array(value, 2, "report_missing_inputs")
        return cls(_task_id(task, "report_missing_inputs.task_id"),
                   read_str(reason, "report_missing_inputs.reason", max_len=MAX_REASON))


@dataclass(frozen=True, slots=True)
class ReturnTask:
    """The awarded provider gives back a task it cannot run, saying why (`ReturnReason`), rather
    than let its deadline pass: it pays `Params.return_penalty_bps` of its collateral, not all of
    it, and the task is offered to the others again."""

    task_id: Hash32
    reason: ReturnReason

    MAX_BYTES: ClassVar[int] = 48

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.task_id, int(self.reason)]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        task, reason = read_array(value, 2, "return_task")
        return cls(_task_id(task, "return_task.task_id"),
                   ReturnReason(read_uint(reason, "return_task.reason", min_value=1,
                                          max_value=max(ReturnReason))))


@dataclass(frozen=True, slots=True)
class CancelTask:
    """The client withdraws its task (see `CloseReason.CANCELLED*` for what it costs)."""

    task_id: Hash32

    MAX_BYTES: ClassVar[int] = 48

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.task_id]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (task,) = read_array(value, 1, "cancel_task")
        return cls(_task_id(task, "cancel_task.task_id"))


# --- pools ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenPool:
    """Open an inference pool for built-in model `model`, or (with `model` empty) for the
    registered model `model_id`; escrows `budget`. The pool id is this transaction's hash."""

    model: str
    max_batch: int
    price: int
    budget: int
    max_racers: int
    sample_bps: int
    min_stake: int
    request_ms: int
    ttl_ms: int
    model_id: bytes = b""
    """A registered model's id (32 bytes), or b"" for a built-in model (then not encoded, so a
    built-in pool encodes as before registered models existed)."""

    MAX_BYTES: ClassVar[int] = 128 + HASH_LEN

    def amounts(self) -> tuple[int, ...]:
        return (self.price, self.budget, self.min_stake)

    def to_fields(self) -> list[Any]:
        fields = [self.model, self.max_batch, self.price, self.budget, self.max_racers,
                  self.sample_bps, self.min_stake, self.request_ms, self.ttl_ms]
        return [*fields, self.model_id] if self.model_id else fields

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        if type(value) is list and len(value) == 10:
            *value, model_id = value
            model_id = read_bytes(model_id, "open_pool.model_id", size=HASH_LEN)
        else:
            model_id = b""
        model, *rest = read_array(value, 9, "open_pool")
        names = ("max_batch", "price", "budget", "max_racers", "sample_bps", "min_stake",
                 "request_ms", "ttl_ms")
        amounts = {n: read_uint(v, f"open_pool.{n}") for n, v in zip(names, rest, strict=True)}
        return cls(read_str(model, "open_pool.model", max_len=MAX_BUILTIN_MODEL_NAME),
                   **amounts, model_id=model_id)


@dataclass(frozen=True, slots=True)
class JoinPool:
    """Subscribe to a pool, bonding `stake` of free provider stake."""

    pool_id: Hash32
    stake: int

    MAX_BYTES: ClassVar[int] = 56

    def amounts(self) -> tuple[int, ...]:
        return (self.stake,)

    def to_fields(self) -> list[Any]:
        return [self.pool_id, self.stake]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        pool, stake = read_array(value, 2, "join_pool")
        return cls(_task_id(pool, "join_pool.pool_id"), read_uint(stake, "join_pool.stake"))


@dataclass(frozen=True, slots=True)
class LeavePool:
    """Unsubscribe from a pool; the bond is released."""

    pool_id: Hash32

    MAX_BYTES: ClassVar[int] = 48

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.pool_id]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (pool,) = read_array(value, 1, "leave_pool")
        return cls(_task_id(pool, "leave_pool.pool_id"))


@dataclass(frozen=True, slots=True)
class SendRequest:
    """The pool's owner sends one inference request on `batch` rows: generated from `seed`, or
    the client's uploaded file `inputs` (a file id; required by a registered model's pool). The
    request id is this transaction's hash."""

    pool_id: Hash32
    seed: int
    batch: int
    inputs: bytes = b""
    """b"" (not encoded) or a 32-byte file id."""

    MAX_BYTES: ClassVar[int] = 64 + HASH_LEN

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        fields = [self.pool_id, self.seed, self.batch]
        return [*fields, self.inputs] if self.inputs else fields

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        if type(value) is list and len(value) == 4:
            *value, inputs = value
            inputs = read_bytes(inputs, "send_request.inputs", size=HASH_LEN)
        else:
            inputs = b""
        pool, seed, batch = read_array(value, 3, "send_request")
        return cls(_task_id(pool, "send_request.pool_id"), read_uint(seed, "send_request.seed"),
                   read_uint(batch, "send_request.batch"), inputs)


@dataclass(frozen=True, slots=True)
class DisputeAnswer:
    """The owner of a pool disputes an answered, unsampled request within its dispute window
    (it cannot fetch the answer, or doubts it): a committee checks it before any payment."""

    pool_id: Hash32
    request_id: Hash32

    MAX_BYTES: ClassVar[int] = 80

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.pool_id, self.request_id]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        pool, request = read_array(value, 2, "dispute_answer")
        return cls(_task_id(pool, "dispute_answer.pool_id"),
                   _task_id(request, "dispute_answer.request_id"))


@dataclass(frozen=True, slots=True)
class PoolResult:
    """A racer's result for a request: the file id of its output (the logits), sealed for the
    pool's owner, and the public half of the ephemeral key that seals it
    (`ogpu_node.result_crypto`): with it the owner, and nobody else, opens the answer."""

    pool_id: Hash32
    request_id: Hash32
    output_id: Hash32
    key: bytes

    MAX_BYTES: ClassVar[int] = 160

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.pool_id, self.request_id, self.output_id, self.key]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        pool, request, output, key = read_array(value, 4, "pool_result")
        return cls(_task_id(pool, "pool_result.pool_id"),
                   _task_id(request, "pool_result.request_id"),
                   _task_id(output, "pool_result.output_id"),
                   read_bytes(key, "pool_result.key", size=RELEASED_KEY_BYTES))


@dataclass(frozen=True, slots=True)
class ClosePool:
    """The owner closes its pool: open requests expire, bonds are released, the rest refunded."""

    pool_id: Hash32

    MAX_BYTES: ClassVar[int] = 48

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.pool_id]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (pool,) = read_array(value, 1, "close_pool")
        return cls(_task_id(pool, "close_pool.pool_id"))


@dataclass(frozen=True, slots=True)
class TopUpPool:
    """The owner adds `amount` to its open pool's escrow, so that it keeps serving."""

    pool_id: Hash32
    amount: int

    MAX_BYTES: ClassVar[int] = 64

    def amounts(self) -> tuple[int, ...]:
        return (self.amount,)

    def to_fields(self) -> list[Any]:
        return [self.pool_id, self.amount]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        pool, amount = read_array(value, 2, "top_up_pool")
        return cls(_task_id(pool, "top_up_pool.pool_id"), read_uint(amount, "top_up_pool.amount"))


@dataclass(frozen=True, slots=True)
class RegisterModel:
    """Register the ONNX model in blob `file_id` under `name`, with the info computed from the
    file (`gpu.onnx_models.inspect_model`); the model id is this transaction's hash. Burns
    `Params.model_registration_fee`."""

    name: str
    file_id: Hash32
    info: ModelInfo

    MAX_BYTES: ClassVar[int] = 64 + MAX_MODEL_NAME + ModelInfo.MAX_BYTES

    def amounts(self) -> tuple[int, ...]:
        return ()

    def to_fields(self) -> list[Any]:
        return [self.name, self.file_id, self.info.to_fields()]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        name, file_id, info = read_array(value, 3, "register_model")
        return cls(read_str(name, "register_model.name", max_len=MAX_MODEL_NAME),
                   _task_id(file_id, "register_model.file_id"), ModelInfo.from_fields(info))


MarketPayload = (RegisterProvider | WithdrawProvider | SubmitTask | CommitBid | RevealBid
                 | CommitResult | SealVerdict | RevealVerdict | CancelTask | OpenPool | JoinPool
                 | LeavePool | SendRequest | PoolResult | ClosePool | ReportMissingInputs
                 | ReleaseResult | DisputeAnswer | ReturnTask | RegisterModel | TopUpPool)
