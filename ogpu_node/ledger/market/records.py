"""The market's state records: providers, tasks (their fixed terms and their current attempt),
committees' checks and pools, with their status and close-reason codes.

Records are immutable; the rules in `rules.py` replace them. Every record has a canonical
encoding, because it is part of the state commitment and of the store: it is derived from the
fields as declared here (`ogpu_node.ledger.codec`), in their order, with their bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, ClassVar

from ogpu_node.hashing import digest
from ogpu_node.ledger.codec import (
    ADDRESS,
    FLAG,
    HASH,
    MAYBE_ADDRESS,
    UINT,
    Enum,
    Maybe,
    Nested,
    Pair,
    Raw,
    Record,
    Seq,
    Text,
    Uint,
)
from ogpu_node.ledger.params import MAX_BIDS_PER_TASK
from ogpu_node.types import HASH_LEN, Address, Hash32
from ogpu_node.workloads.models import MAX_MODEL_NAME, ModelInfo
from ogpu_node.workloads.spec import MAX_BUILTIN_MODEL_NAME

MAX_DEVICES = 16
MAX_DEVICE_NAME = 64
MAX_METRICS = 8
MAX_METRIC_NAME = 24
MAX_CHECKPOINTS = 256
MAX_TRAIL = 256
MAX_REASON = 64
RELEASED_KEY_BYTES = 32
"""An X25519 public key: what a provider releases so that its client can read its result."""
MAX_COMMITTEE = 16
"""Protocol bound of `Params.committee_size`."""
MAX_CHECK_ROUNDS = 5
"""Protocol bound of `Params.max_check_rounds`."""


class TaskStatus(IntEnum):
    """Where a task is in its life. Numbers are part of the protocol."""

    BIDDING = 1
    REVEALING = 2
    RUNNING = 3
    VERIFYING = 4
    CLOSED = 5
    CHECKING_INPUTS = 6
    """The provider reported the client's inputs missing; the committee checks the claim."""
    RELEASING = 7
    """The committee accepted the result; the provider is paid when it releases the key that
    lets the client (and only the client) read it (`RELEASE_RESULT`, `result_crypto.py`)."""


class CloseReason(IntEnum):
    """Why a task closed: every closed task has exactly one. Numbers are part of the protocol."""

    COMPLETED = 1
    REJECTED = 2
    """The last provider's result was rejected and no time was left to re-offer the task."""
    TIMED_OUT = 3
    """The last provider missed its deadline and no time was left to re-offer the task."""
    CANCELLED = 4
    """Cancelled by the client before any award: everything refunded."""
    CANCELLED_AFTER_AWARD = 5
    """Cancelled by the client after an award: its collateral went to the provider."""
    NO_BIDS = 6
    """No usable bid; `Task.why` says why."""
    INPUTS_WITHHELD = 7
    """The committee confirmed that the client's inputs could not be fetched (or were not what
    the spec asks for): its collateral went to the provider."""
    UNCHECKED = 8
    """No committee settled the provider's result (or report): too few eligible validators, or
    every round silent. Nothing is paid on an unchecked claim: the client is refunded and the
    provider's collateral returned."""
    RETURNED = 9
    """The last provider returned the task (`RETURN_TASK`: it could not run it) and no time was
    left to re-offer it."""


class ReturnReason(IntEnum):
    """Why a provider returns an awarded task (`RETURN_TASK`). Numbers are part of the protocol.

    The names, lower-cased, are the `code`s of the errors the worker raises (`workloads.limits`); a
    returned task's `why` is that name."""

    WORKER_FAILED = 1
    """The worker could not run it: it crashed, its device failed, the store filled up."""
    DEVICE_MEMORY = 2
    """The task needs more memory than the provider's device has
    (`workloads.limits.memory_needed_mb`; the bid rule should keep such a provider from bidding)."""
    DATASET_TOO_LARGE = 3
    """Reasons 3-7: the spec is over a protocol limit of the provider's `workloads.limits`. The
    ledger refuses such specs at submission, so these come only from a provider whose limits are
    stricter than the chain's (another version)."""
    MEMORY_TOO_LARGE = 4
    WORK_TOO_LARGE = 5
    CHECKPOINT_TOO_LARGE = 6
    RESULT_TOO_LARGE = 7


@dataclass(frozen=True, slots=True)
class Device(Record):
    """A device a provider declares: its model name and memory."""

    model: Annotated[str, Text(MAX_DEVICE_NAME)]
    memory_mb: Annotated[int, UINT]


def device_model(name: str) -> str:
    """A device's name as a provider registers it (and a verifier compares it): cut to
    MAX_DEVICE_NAME characters."""
    return name[:MAX_DEVICE_NAME]


DEVICES = Seq(Nested(Device), MAX_DEVICES)
"""The codec of a provider's declared devices (also in `RegisterProvider`)."""


def read_devices(value: Any) -> tuple[Device, ...]:
    devices: tuple[Device, ...] = DEVICES.decode(value, "devices")
    return devices


@dataclass(frozen=True, slots=True)
class Provider(Record):
    """A registered provider: what it declared, its bonded stake and its track record.

    `locked` is the part of `stake` held as collateral by running tasks. The counters feed the
    reputation and the anomaly flags (`reputation.py`).
    """

    devices: Annotated[tuple[Device, ...], DEVICES]
    benchmark: Annotated[int, UINT]
    """Declared device benchmark, GFLOP/s (float32 matrix product), measured by `gpu`."""
    price_floor: Annotated[int, UINT]
    """Lowest price per work unit the provider says it takes: advisory, used to explain no-bids."""
    stake: Annotated[int, UINT]
    locked: Annotated[int, UINT] = 0
    completed: Annotated[int, UINT] = 0
    failed: Annotated[int, UINT] = 0
    """Results rejected or deadlines missed (each one slashed), and tasks returned (each one
    paying the smaller return penalty)."""
    fail_streak: Annotated[int, UINT] = 0
    bids: Annotated[int, UINT] = 0
    unrevealed: Annotated[int, UINT] = 0
    work_done: Annotated[int, UINT] = 0
    """Work units of accepted results."""
    compute_ms: Annotated[int, UINT] = 0
    """Block time from award to result commitment, summed over accepted results."""

    MAX_BYTES: ClassVar[int] = 2048

    @property
    def free_stake(self) -> int:
        return self.stake - self.locked


@dataclass(frozen=True, slots=True)
class Bid(Record):
    """A sealed bid (its commitment and the deposit it locked from the bidder's provider stake)
    and, once revealed, its price per work unit. The deposit is held (as part of
    `Provider.locked`) while the bid is sealed and the task bidding or revealing."""

    bidder: Annotated[Address, ADDRESS]
    commitment: Annotated[Hash32, HASH]
    deposit: Annotated[int, UINT]
    price: Annotated[int, UINT] = 0
    revealed: Annotated[bool, FLAG] = False


def key_commitment(public_key: bytes) -> Hash32:
    """What a result commits to: the hash of the public key released once it is accepted."""
    return digest(b"result-key", public_key)


@dataclass(frozen=True, slots=True)
class TaskResult(Record):
    """What a provider commits to: the output's file id, checkpoint ids and their chain root
    (all of encrypted files), integer metrics (e.g. loss in millionths), and the hash of the
    public key that, released once the result is accepted, lets the client read the files
    (`result_crypto.py`)."""

    NAME = "result"

    output_id: Annotated[Hash32, HASH]
    checkpoint_root: Annotated[Hash32, HASH]
    checkpoint_ids: Annotated[tuple[Hash32, ...], Seq(HASH, MAX_CHECKPOINTS)]
    metrics: Annotated[tuple[tuple[str, int], ...],
                       Seq(Pair(Text(MAX_METRIC_NAME), UINT), MAX_METRICS)]
    key_commitment: Annotated[Hash32, HASH]

    MAX_BYTES: ClassVar[int] = 560 + MAX_CHECKPOINTS * (HASH_LEN + 2)


class CheckPhase(IntEnum):
    """Where a check is. Numbers are part of the protocol."""

    DRAWING = 1
    SEALING = 2
    REVEALING = 3


@dataclass(frozen=True, slots=True)
class Vote(Record):
    """A member's sealed vote and, once revealed, what it says."""

    member: Annotated[Address, ADDRESS]
    seal: Annotated[Hash32, HASH]
    revealed: Annotated[bool, FLAG] = False
    accept: Annotated[bool, FLAG] = False
    reason: Annotated[str, Text(MAX_REASON)] = ""


@dataclass(frozen=True, slots=True)
class Check(Record):
    """One claim's check: its phase, the current round's committee and votes, and the members
    of earlier rounds (never drawn again for this claim)."""

    phase: Annotated[CheckPhase, Enum(CheckPhase)]
    draw_height: Annotated[int, UINT]
    """The committee is drawn in the first block at this height or above."""
    ends_ms: Annotated[int, UINT] = 0
    """End of the sealing or revealing window (0 while drawing)."""
    round: Annotated[int, Uint(max_value=MAX_CHECK_ROUNDS, min_value=1)] = 1
    committee: Annotated[tuple[Address, ...], Seq(ADDRESS, MAX_COMMITTEE)] = ()
    votes: Annotated[tuple[Vote, ...], Seq(Nested(Vote), MAX_COMMITTEE)] = ()
    earlier: Annotated[tuple[Address, ...], Seq(ADDRESS, MAX_COMMITTEE * MAX_CHECK_ROUNDS)] = ()

    @property
    def quorum(self) -> int:
        return len(self.committee) // 2 + 1

    def vote_of(self, member: Address) -> Vote | None:
        return next((v for v in self.votes if v.member == member), None)


@dataclass(frozen=True, slots=True)
class Movement(Record):
    """One line of a task's money trail: what happened, to or from whom, how much."""

    event: Annotated[str, Text(32)]
    address: Annotated[Address, ADDRESS]
    amount: Annotated[int, UINT]


TRAIL = Seq(Nested(Movement), MAX_TRAIL)


@dataclass(frozen=True, slots=True)
class Attempt(Record):
    """One offer of a task: its sealed bids, the award, the result, the committee's check and
    the released key. A re-offer starts a new attempt (`number` + 1) with nothing of the last."""

    number: Annotated[int, Uint(min_value=1)] = 1
    bids: Annotated[tuple[Bid, ...], Seq(Nested(Bid), MAX_BIDS_PER_TASK)] = ()
    provider: Annotated[Address | None, MAYBE_ADDRESS] = None
    price: Annotated[int, UINT] = 0
    """Price per work unit the provider is paid (the second price)."""
    collateral: Annotated[int, UINT] = 0
    awarded_ms: Annotated[int, UINT] = 0
    result: Annotated[TaskResult | None, Maybe(Nested(TaskResult), [])] = None
    result_ms: Annotated[int, UINT] = 0
    check: Annotated[Check | None, Maybe(Nested(Check), [])] = None
    """The committee's check of the result or of a report of missing inputs (VERIFYING,
    CHECKING_INPUTS; kept once the task closes)."""
    released_key: Annotated[bytes, Raw(max_len=RELEASED_KEY_BYTES)] = b""
    """The provider's released public key (RELEASING -> closed): with it the client reads the
    result."""


@dataclass(frozen=True, slots=True)
class Task(Record):
    """A task from submission to close: its fixed terms, where it is, its money, and its current
    `attempt`.

    `escrow` is what the chain holds for the client right now (budget, verification reserve and
    client collateral, less what has been paid out); the provider's collateral is held as
    `Provider.locked`. Both are zero once the task is closed.
    """

    client: Annotated[Address, ADDRESS]
    kind: Annotated[int, Uint(max_value=0xFFFF)]
    spec: Annotated[bytes, Raw(max_len=1024)]
    work_units: Annotated[int, UINT]
    memory_mb: Annotated[int, UINT]
    """Device memory the task needs (`workloads.limits.memory_needed_mb`, computed at
    submission): a provider bids only with a device at least this large."""
    max_price: Annotated[int, UINT]
    """Highest price per work unit the client pays."""
    min_benchmark: Annotated[int, UINT]
    exec_ms: Annotated[int, UINT]
    """Time a provider has from its award to commit a result."""
    expires_ms: Annotated[int, UINT]
    """Block time after which the task is not offered again."""
    created_ms: Annotated[int, UINT]
    escrow: Annotated[int, UINT]
    status: Annotated[TaskStatus, Enum(TaskStatus)] = TaskStatus.BIDDING
    phase_end_ms: Annotated[int, UINT] = 0
    attempt: Annotated[Attempt, Nested(Attempt)] = Attempt()
    excluded: Annotated[tuple[Address, ...], Seq(ADDRESS, 1024)] = ()
    """Providers slashed on this task (they may not bid on it again)."""
    close_reason: Annotated[CloseReason | None, Maybe(Enum(CloseReason), 0)] = None
    why: Annotated[str, Text(MAX_REASON)] = ""
    """For NO_BIDS (and re-offers): a stable code saying why no bid was usable."""
    trail: Annotated[tuple[Movement, ...], TRAIL] = ()

    MAX_BYTES: ClassVar[int] = 64 * 1024

    @property
    def budget(self) -> int:
        return self.max_price * self.work_units

    @property
    def payment(self) -> int:
        return self.attempt.price * self.work_units


# --- pools: continuous inference ------------------------------------------------------------


MAX_POOL_REQUESTS = 64
"""Requests a pool record keeps: every open one and the most recent finished ones."""
MAX_SUBSCRIBERS = 64


class RequestStatus(IntEnum):
    """Where a pool request is. Numbers are part of the protocol."""

    OPEN = 1
    VERIFYING = 2
    PAID = 3
    REJECTED = 4
    EXPIRED = 5
    UNCHECKED = 6
    """No committee settled the sampled answer: not paid, the winner not slashed."""
    ANSWERED = 7
    """Answered and not sampled: paid when `deadline_ms` (the owner's dispute window) passes,
    unless the owner disputes it (it cannot fetch the answer, or doubts it): then a committee
    checks it as a sampled one."""


LIVE_REQUESTS = (RequestStatus.OPEN, RequestStatus.VERIFYING, RequestStatus.ANSWERED)
"""Requests whose escrow is still held (answered or not)."""


@dataclass(frozen=True, slots=True)
class PoolRequest(Record):
    """One inference request of a pool, raced by at most `max_racers` subscribers.

    `escrow` holds the price and the verification fee while the request is open or under
    verification; it goes back to the pool (or to whom it is paid) when the request ends.
    """

    NAME = "request"

    request_id: Annotated[Hash32, HASH]
    seed: Annotated[int, UINT]
    batch: Annotated[int, UINT]
    created_ms: Annotated[int, UINT]
    deadline_ms: Annotated[int, UINT]
    racers: Annotated[tuple[Address, ...], Seq(ADDRESS, MAX_SUBSCRIBERS)]
    escrow: Annotated[int, UINT]
    status: Annotated[RequestStatus, Enum(RequestStatus)] = RequestStatus.OPEN
    winner: Annotated[Address | None, MAYBE_ADDRESS] = None
    output_id: Annotated[Hash32 | None, Maybe(HASH)] = None
    key: Annotated[bytes, Raw(max_len=RELEASED_KEY_BYTES)] = b""
    """The public half of the ephemeral key that seals the answer for the owner (its commitment,
    `key_commitment(key)`, is what a committee member checks the key it is given against)."""
    check: Annotated[Check | None, Maybe(Nested(Check), [])] = None
    """The committee's check of a sampled or disputed answer."""
    inputs: Annotated[bytes, Raw(max_len=HASH_LEN)] = b""
    """The owner's uploaded inputs (a file id), or b"": generated from `seed`."""


@dataclass(frozen=True, slots=True)
class Pool(Record):
    """A pool for continuous inference: a budget, a price per request, subscribed providers.

    `escrow` is the budget not yet committed to a request. Subscribers bond `stake` each (held
    as `Provider.locked`); a subscriber whose result is rejected loses its bond and leaves.
    """

    owner: Annotated[Address, ADDRESS]
    model: Annotated[str, Text(MAX_BUILTIN_MODEL_NAME)]
    max_batch: Annotated[int, UINT]
    price: Annotated[int, UINT]
    """Paid per request to the first valid result."""
    max_racers: Annotated[int, UINT]
    sample_bps: Annotated[int, UINT]
    """Share of requests whose result is verified by a committee before it is paid."""
    min_stake: Annotated[int, UINT]
    request_ms: Annotated[int, UINT]
    expires_ms: Annotated[int, UINT]
    created_ms: Annotated[int, UINT]
    escrow: Annotated[int, UINT]
    subscribers: Annotated[tuple[tuple[Address, int], ...],
                           Seq(Pair(ADDRESS, UINT), MAX_SUBSCRIBERS)] = ()
    requests: Annotated[tuple[PoolRequest, ...],
                        Seq(Nested(PoolRequest), MAX_POOL_REQUESTS)] = ()
    served: Annotated[int, UINT] = 0
    rejected: Annotated[int, UINT] = 0
    expired: Annotated[int, UINT] = 0
    paid: Annotated[int, UINT] = 0
    closed: Annotated[bool, FLAG] = False
    trail: Annotated[tuple[Movement, ...], TRAIL] = ()
    model_id: Annotated[Hash32 | None, Maybe(HASH)] = None
    """The registered model the pool serves (then `model` is empty), or None: built-in `model`."""

    MAX_BYTES: ClassVar[int] = 96 * 1024

    def request(self, request_id: bytes) -> PoolRequest | None:
        return next((r for r in self.requests if r.request_id == request_id), None)

    def stake_of(self, address: Address) -> int:
        return next((s for a, s in self.subscribers if a == address), 0)


@dataclass(frozen=True, slots=True)
class Model(Record):
    """A registered model (`REGISTER_MODEL`): its file (a blob) and the info the registrant
    computed from it (`workloads.models.ModelInfo`), which providers check before they run it.
    Its id is the registering transaction's hash; a model is never changed or removed."""

    owner: Annotated[Address, ADDRESS]
    name: Annotated[str, Text(MAX_MODEL_NAME)]
    file_id: Annotated[Hash32, HASH]
    info: Annotated[ModelInfo, Nested(ModelInfo)]
    registered_ms: Annotated[int, UINT]

    MAX_BYTES: ClassVar[int] = 256 + MAX_MODEL_NAME + ModelInfo.MAX_BYTES
