"""The market's state records: providers and tasks, with their status and close-reason codes.

Records are immutable; the rules in `rules.py` replace them. Every record has a canonical
encoding, because it is part of the state commitment and of the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, Self

from ogpu_node.encoding import read_array, read_bytes, read_list, read_str, read_uint
from ogpu_node.errors import DecodeError
from ogpu_node.hashing import digest
from ogpu_node.ledger.params import MAX_BIDS_PER_TASK
from ogpu_node.types import ADDRESS_LEN, HASH_LEN, Address, Hash32

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


@dataclass(frozen=True, slots=True)
class Device:
    """A device a provider declares: its model name and memory."""

    model: str
    memory_mb: int

    def to_fields(self) -> list[Any]:
        return [self.model, self.memory_mb]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        model, memory = read_array(value, 2, "device")
        return cls(read_str(model, "device.model", max_len=MAX_DEVICE_NAME),
                   read_uint(memory, "device.memory_mb"))


def device_model(name: str) -> str:
    """A device's name as a provider registers it (and a verifier compares it): cut to
    MAX_DEVICE_NAME characters."""
    return name[:MAX_DEVICE_NAME]


def read_devices(value: Any) -> tuple[Device, ...]:
    return tuple(Device.from_fields(d) for d in read_list(value, MAX_DEVICES, "devices"))


@dataclass(frozen=True, slots=True)
class Provider:
    """A registered provider: what it declared, its bonded stake and its track record.

    `locked` is the part of `stake` held as collateral by running tasks. The counters feed the
    reputation and the anomaly flags (`reputation.py`).
    """

    devices: tuple[Device, ...]
    benchmark: int
    """Declared device benchmark, GFLOP/s (float32 matrix product), measured by `gpu`."""
    price_floor: int
    """Lowest price per work unit the provider says it takes: advisory, used to explain no-bids."""
    stake: int
    locked: int = 0
    completed: int = 0
    failed: int = 0
    """Results rejected or deadlines missed (each one slashed)."""
    fail_streak: int = 0
    bids: int = 0
    unrevealed: int = 0
    work_done: int = 0
    """Work units of accepted results."""
    compute_ms: int = 0
    """Block time from award to result commitment, summed over accepted results."""

    MAX_BYTES: ClassVar[int] = 2048

    @property
    def free_stake(self) -> int:
        return self.stake - self.locked

    def to_fields(self) -> list[Any]:
        return [[d.to_fields() for d in self.devices], self.benchmark, self.price_floor,
                self.stake, self.locked, self.completed, self.failed, self.fail_streak,
                self.bids, self.unrevealed, self.work_done, self.compute_ms]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        devices, *numbers = read_array(value, 12, "provider")
        names = ("benchmark", "price_floor", "stake", "locked", "completed", "failed",
                 "fail_streak", "bids", "unrevealed", "work_done", "compute_ms")
        ints = [read_uint(v, f"provider.{n}") for n, v in zip(names, numbers, strict=True)]
        return cls(read_devices(devices), *ints)


@dataclass(frozen=True, slots=True)
class Bid:
    """A sealed bid (its commitment and the deposit it locked from the bidder's provider stake)
    and, once revealed, its price per work unit. The deposit is held (as part of
    `Provider.locked`) while the bid is sealed and the task bidding or revealing."""

    bidder: Address
    commitment: Hash32
    deposit: int
    price: int = 0
    revealed: bool = False

    def to_fields(self) -> list[Any]:
        return [self.bidder, self.commitment, self.deposit, self.price, int(self.revealed)]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        bidder, commitment, deposit, price, revealed = read_array(value, 5, "bid")
        return cls(Address(read_bytes(bidder, "bid.bidder", size=ADDRESS_LEN)),
                   Hash32(read_bytes(commitment, "bid.commitment", size=HASH_LEN)),
                   read_uint(deposit, "bid.deposit"), read_uint(price, "bid.price"),
                   bool(read_uint(revealed, "bid.revealed", max_value=1)))


def key_commitment(public_key: bytes) -> Hash32:
    """What a result commits to: the hash of the public key released once it is accepted."""
    return digest(b"result-key", public_key)


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What a provider commits to: the output's file id, checkpoint ids and their chain root
    (all of encrypted files), integer metrics (e.g. loss in millionths), and the hash of the
    public key that, released once the result is accepted, lets the client read the files
    (`result_crypto.py`)."""

    output_id: Hash32
    checkpoint_root: Hash32
    checkpoint_ids: tuple[Hash32, ...]
    metrics: tuple[tuple[str, int], ...]
    key_commitment: Hash32

    MAX_BYTES: ClassVar[int] = 560 + MAX_CHECKPOINTS * (HASH_LEN + 2)

    def to_fields(self) -> list[Any]:
        return [self.output_id, self.checkpoint_root, list(self.checkpoint_ids),
                [[k, v] for k, v in self.metrics], self.key_commitment]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        output, root, ids, metrics, commitment = read_array(value, 5, "result")
        pairs = []
        for item in read_list(metrics, MAX_METRICS, "result.metrics"):
            name, number = read_array(item, 2, "result.metric")
            pairs.append((read_str(name, "metric.name", max_len=MAX_METRIC_NAME),
                          read_uint(number, "metric.value")))
        return cls(Hash32(read_bytes(output, "result.output_id", size=HASH_LEN)),
                   Hash32(read_bytes(root, "result.checkpoint_root", size=HASH_LEN)),
                   tuple(Hash32(read_bytes(i, "result.checkpoint_id", size=HASH_LEN))
                         for i in read_list(ids, MAX_CHECKPOINTS, "result.checkpoint_ids")),
                   tuple(pairs),
                   Hash32(read_bytes(commitment, "result.key_commitment", size=HASH_LEN)))


class CheckPhase(IntEnum):
    """Where a check is. Numbers are part of the protocol."""

    DRAWING = 1
    SEALING = 2
    REVEALING = 3



@dataclass(frozen=True, slots=True)
class Vote:
    """A member's sealed vote and, once revealed, what it says."""

    member: Address
    seal: Hash32
    revealed: bool = False
    accept: bool = False
    reason: str = ""

    def to_fields(self) -> list[Any]:
        return [self.member, self.seal, int(self.revealed), int(self.accept), self.reason]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        member, seal, revealed, accept, reason = read_array(value, 5, "vote")
        return cls(Address(read_bytes(member, "vote.member", size=ADDRESS_LEN)),
                   Hash32(read_bytes(seal, "vote.seal", size=HASH_LEN)),
                   bool(read_uint(revealed, "vote.revealed", max_value=1)),
                   bool(read_uint(accept, "vote.accept", max_value=1)),
                   read_str(reason, "vote.reason", max_len=MAX_REASON))


def _addresses(value: Any, what: str, limit: int) -> tuple[Address, ...]:
    return tuple(Address(read_bytes(a, what, size=ADDRESS_LEN))
                 for a in read_list(value, limit, what))


@dataclass(frozen=True, slots=True)
class Check:
    """One claim's check: its phase, the current round's committee and votes, and the members
    of earlier rounds (never drawn again for this claim)."""

    phase: CheckPhase
    draw_height: int
    """The committee is drawn in the first block at this height or above."""
    ends_ms: int = 0
    """End of the sealing or revealing window (0 while drawing)."""
    round: int = 1
    committee: tuple[Address, ...] = ()
    votes: tuple[Vote, ...] = ()
    earlier: tuple[Address, ...] = ()

    def to_fields(self) -> list[Any]:
        return [int(self.phase), self.draw_height, self.ends_ms, self.round,
                list(self.committee), [v.to_fields() for v in self.votes], list(self.earlier)]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        phase, draw, ends, round_, committee, votes, earlier = read_array(value, 7, "check")
        return cls(
            CheckPhase(read_uint(phase, "check.phase", min_value=1, max_value=max(CheckPhase))),
            read_uint(draw, "check.draw_height"), read_uint(ends, "check.ends_ms"),
            read_uint(round_, "check.round", min_value=1, max_value=MAX_CHECK_ROUNDS),
            _addresses(committee, "check.committee", MAX_COMMITTEE),
            tuple(Vote.from_fields(v) for v in read_list(votes, MAX_COMMITTEE, "check.votes")),
            _addresses(earlier, "check.earlier", MAX_COMMITTEE * MAX_CHECK_ROUNDS))

    @property
    def quorum(self) -> int:
        return len(self.committee) // 2 + 1

    def vote_of(self, member: Address) -> Vote | None:
        return next((v for v in self.votes if v.member == member), None)


@dataclass(frozen=True, slots=True)
class Movement:
    """One line of a task's money trail: what happened, to or from whom, how much."""

    event: str
    address: Address
    amount: int

    def to_fields(self) -> list[Any]:
        return [self.event, self.address, self.amount]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        event, address, amount = read_array(value, 3, "movement")
        return cls(read_str(event, "movement.event", max_len=32),
                   Address(read_bytes(address, "movement.address", size=ADDRESS_LEN)),
                   read_uint(amount, "movement.amount"))


@dataclass(frozen=True, slots=True)
class Task:
    """A task from submission to close.

    `escrow` is what the chain holds for the client right now (budget, verification reserve and
    client collateral, less what has been paid out); the provider's collateral is held as
    `Provider.locked`. Both are zero once the task is closed.
    """

    client: Address
    kind: int
    spec: bytes
    work_units: int
    max_price: int
    """Highest price per work unit the client pays."""
    min_benchmark: int
    exec_ms: int
    """Time a provider has from its award to commit a result."""
    expires_ms: int
    """Block time after which the task is not offered again."""
    created_ms: int
    escrow: int
    status: TaskStatus = TaskStatus.BIDDING
    phase_end_ms: int = 0
    attempt: int = 1
    bids: tuple[Bid, ...] = ()
    excluded: tuple[Address, ...] = ()
    provider: Address | None = None
    price: int = 0
    """Price per work unit the provider is paid (the second price)."""
    collateral: int = 0
    awarded_ms: int = 0
    result: TaskResult | None = None
    result_ms: int = 0
    check: Check | None = None
    """The committee's check of the result or of a report of missing inputs (VERIFYING,
    CHECKING_INPUTS; kept once the task closes)."""
    released_key: bytes = b""
    """The provider's released public key (RELEASING -> closed): with it the client reads the
    result."""
    close_reason: CloseReason | None = None
    why: str = ""
    """For NO_BIDS (and re-offers): a stable code saying why no bid was usable."""
    trail: tuple[Movement, ...] = field(default=())

    MAX_BYTES: ClassVar[int] = 64 * 1024

    @property
    def budget(self) -> int:
        return self.max_price * self.work_units

    @property
    def payment(self) -> int:
        return self.price * self.work_units

    def to_fields(self) -> list[Any]:
        return [
            self.client, self.kind, self.spec, self.work_units, self.max_price,
            self.min_benchmark, self.exec_ms, self.expires_ms, self.created_ms, self.escrow,
            int(self.status), self.phase_end_ms, self.attempt, [b.to_fields() for b in self.bids],
            list(self.excluded), self.provider or b"", self.price, self.collateral,
            self.awarded_ms, self.result.to_fields() if self.result else [], self.result_ms,
            self.check.to_fields() if self.check else [], self.released_key,
            int(self.close_reason or 0), self.why, [m.to_fields() for m in self.trail],
        ]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        f = read_array(value, 26, "task")
        provider = read_bytes(f[15], "task.provider", max_len=ADDRESS_LEN)
        if provider and len(provider) != ADDRESS_LEN:
            raise DecodeError(f"task.provider: expected {ADDRESS_LEN} bytes or none")
        reason = read_uint(f[23], "task.close_reason", max_value=max(CloseReason))
        released = read_bytes(f[22], "task.released_key", max_len=RELEASED_KEY_BYTES)
        if released and len(released) != RELEASED_KEY_BYTES:
            raise DecodeError(f"task.released_key: expected {RELEASED_KEY_BYTES} bytes or none")
        status = read_uint(f[10], "task.status", min_value=1, max_value=max(TaskStatus))

        def addresses(v: Any, what: str, limit: int) -> tuple[Address, ...]:
            return tuple(Address(read_bytes(a, what, size=ADDRESS_LEN))
                         for a in read_list(v, limit, what))

        return cls(
            client=Address(read_bytes(f[0], "task.client", size=ADDRESS_LEN)),
            kind=read_uint(f[1], "task.kind", max_value=0xFFFF),
            spec=read_bytes(f[2], "task.spec", max_len=1024),
            work_units=read_uint(f[3], "task.work_units"),
            max_price=read_uint(f[4], "task.max_price"),
            min_benchmark=read_uint(f[5], "task.min_benchmark"),
            exec_ms=read_uint(f[6], "task.exec_ms"),
            expires_ms=read_uint(f[7], "task.expires_ms"),
            created_ms=read_uint(f[8], "task.created_ms"),
            escrow=read_uint(f[9], "task.escrow"),
            status=TaskStatus(status),
            phase_end_ms=read_uint(f[11], "task.phase_end_ms"),
            attempt=read_uint(f[12], "task.attempt"),
            bids=tuple(Bid.from_fields(b)
                       for b in read_list(f[13], MAX_BIDS_PER_TASK, "task.bids")),
            excluded=addresses(f[14], "task.excluded", 1024),
            provider=Address(provider) if provider else None,
            price=read_uint(f[16], "task.price"),
            collateral=read_uint(f[17], "task.collateral"),
            awarded_ms=read_uint(f[18], "task.awarded_ms"),
            result=TaskResult.from_fields(f[19]) if f[19] != [] else None,
            result_ms=read_uint(f[20], "task.result_ms"),
            check=Check.from_fields(f[21]) if f[21] != [] else None,
            released_key=released,
            close_reason=CloseReason(reason) if reason else None,
            why=read_str(f[24], "task.why", max_len=MAX_REASON),
            trail=tuple(Movement.from_fields(m) for m in read_list(f[25], MAX_TRAIL, "trail")),
        )


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
class PoolRequest:
    """One inference request of a pool, raced by at most `max_racers` subscribers.

    `escrow` holds the price and the verification fee while the request is open or under
    verification; it goes back to the pool (or to whom it is paid) when the request ends.
    """

    request_id: Hash32
    seed: int
    batch: int
    created_ms: int
    deadline_ms: int
    racers: tuple[Address, ...]
    escrow: int
    status: RequestStatus = RequestStatus.OPEN
    winner: Address | None = None
    output_id: Hash32 | None = None
    check: Check | None = None
    """The committee's check of a sampled answer."""

    def to_fields(self) -> list[Any]:
        return [self.request_id, self.seed, self.batch, self.created_ms, self.deadline_ms,
                list(self.racers), self.escrow, int(self.status), self.winner or b"",
                self.output_id or b"", self.check.to_fields() if self.check else []]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        f = read_array(value, 11, "request")
        winner = read_bytes(f[8], "request.winner", max_len=ADDRESS_LEN)
        output = read_bytes(f[9], "request.output_id", max_len=HASH_LEN)
        if (winner and len(winner) != ADDRESS_LEN) or (output and len(output) != HASH_LEN):
            raise DecodeError("request: malformed winner or output id")
        return cls(
            request_id=Hash32(read_bytes(f[0], "request.id", size=HASH_LEN)),
            seed=read_uint(f[1], "request.seed"), batch=read_uint(f[2], "request.batch"),
            created_ms=read_uint(f[3], "request.created_ms"),
            deadline_ms=read_uint(f[4], "request.deadline_ms"),
            racers=tuple(Address(read_bytes(a, "request.racer", size=ADDRESS_LEN))
                         for a in read_list(f[5], MAX_SUBSCRIBERS, "request.racers")),
            escrow=read_uint(f[6], "request.escrow"),
            status=RequestStatus(read_uint(f[7], "request.status", min_value=1,
                                           max_value=max(RequestStatus))),
            winner=Address(winner) if winner else None,
            output_id=Hash32(output) if output else None,
            check=Check.from_fields(f[10]) if f[10] != [] else None,
        )


@dataclass(frozen=True, slots=True)
class Pool:
    """A pool for continuous inference: a budget, a price per request, subscribed providers.

    `escrow` is the budget not yet committed to a request. Subscribers bond `stake` each (held
    as `Provider.locked`); a subscriber whose result is rejected loses its bond and leaves.
    """

    owner: Address
    model: str
    max_batch: int
    price: int
    """Paid per request to the first valid result."""
    max_racers: int
    sample_bps: int
    """Share of requests whose result is verified by a committee before it is paid."""
    min_stake: int
    request_ms: int
    expires_ms: int
    created_ms: int
    escrow: int
    subscribers: tuple[tuple[Address, int], ...] = ()
    requests: tuple[PoolRequest, ...] = ()
    served: int = 0
    rejected: int = 0
    expired: int = 0
    paid: int = 0
    closed: bool = False
    trail: tuple[Movement, ...] = ()

    MAX_BYTES: ClassVar[int] = 96 * 1024

    def to_fields(self) -> list[Any]:
        return [self.owner, self.model, self.max_batch, self.price, self.max_racers,
                self.sample_bps, self.min_stake, self.request_ms, self.expires_ms,
                self.created_ms, self.escrow, [[a, s] for a, s in self.subscribers],
                [r.to_fields() for r in self.requests], self.served, self.rejected,
                self.expired, self.paid, int(self.closed), [m.to_fields() for m in self.trail]]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        f = read_array(value, 19, "pool")
        subscribers = []
        for item in read_list(f[11], MAX_SUBSCRIBERS, "pool.subscribers"):
            address, stake = read_array(item, 2, "pool.subscriber")
            subscribers.append((Address(read_bytes(address, "subscriber", size=ADDRESS_LEN)),
                                read_uint(stake, "subscriber.stake")))
        names = ("max_batch", "price", "max_racers", "sample_bps", "min_stake", "request_ms",
                 "expires_ms", "created_ms", "escrow")
        ints = {n: read_uint(v, f"pool.{n}") for n, v in zip(names, f[2:11], strict=True)}
        counters = [read_uint(v, "pool.counter") for v in f[13:17]]
        return cls(
            owner=Address(read_bytes(f[0], "pool.owner", size=ADDRESS_LEN)),
            model=read_str(f[1], "pool.model", max_len=32), subscribers=tuple(subscribers),
            **ints,
            requests=tuple(PoolRequest.from_fields(r)
                           for r in read_list(f[12], MAX_POOL_REQUESTS, "pool.requests")),
            served=counters[0], rejected=counters[1], expired=counters[2], paid=counters[3],
            closed=bool(read_uint(f[17], "pool.closed", max_value=1)),
            trail=tuple(Movement.from_fields(m) for m in read_list(f[18], MAX_TRAIL, "trail")),
        )

    def request(self, request_id: bytes) -> PoolRequest | None:
        return next((r for r in self.requests if r.request_id == request_id), None)

    def stake_of(self, address: Address) -> int:
        return next((s for a, s in self.subscribers if a == address), 0)
