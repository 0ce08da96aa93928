"""The market's stateless checks: what a payload must satisfy whatever the state, and what it
escrows from its sender's balance.

Mempool admission (`ledger.tx.check_transaction`) and block processing (`rules.py`, `pools.py`)
call the same functions, so a transaction that a block would refuse for its own content never
enters a mempool or travels by gossip. Every check here is bounded: a spec's counts are computed
arithmetically (`workloads.spec`), never by listing what they count, so a field at 2**64 - 1
costs what a field at 1 does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ogpu_node.ledger.errors import (
    AmountOutOfRange,
    InvalidModel,
    InvalidTaskSpec,
    NotPermitted,
    TaskOverLimit,
)
from ogpu_node.ledger.market.payloads import (
    MarketPayload,
    OpenPool,
    RegisterModel,
    RegisterProvider,
    SubmitTask,
    TopUpPool,
)
from ogpu_node.ledger.market.records import MAX_DEVICES
from ogpu_node.ledger.params import BPS, Params
from ogpu_node.types import HASH_LEN, MAX_AMOUNT, Hash32
from ogpu_node.workloads.kinds import WorkloadSpec, decode_bound_spec, decode_spec
from ogpu_node.workloads.limits import Needs, limit_refusal, needs, over_limit
from ogpu_node.workloads.models import ModelInferSpec, ModelLookup
from ogpu_node.workloads.spec import MAX_BATCH, MODELS, InvalidSpec, WorkloadKind

MAX_TTL_MS = 30 * 24 * 3600 * 1000
"""Longest a task may stay open from its submission."""
MAX_POOL_TTL_MS = 30 * 24 * 3600 * 1000
"""Longest a pool may stay open."""
MAX_RACERS = 8
"""Most members that race one pool request."""


@dataclass(frozen=True, slots=True)
class TaskTerms:
    """What a valid `SubmitTask` commits its client to."""

    spec: WorkloadSpec
    """Bound to its registered model's info when it runs one."""
    work_units: int
    memory_mb: int
    """`memory_needed_mb(spec)`: the device a provider needs to bid."""
    escrow: int
    """Budget + verification reserve + client collateral, taken from the client's balance."""


def task_escrow(params: Params, max_price: int, work_units: int) -> tuple[int, int, int]:
    """(budget, verification reserve, client collateral) a task escrows."""
    budget = max_price * work_units
    return (budget, budget * params.verifier_fee_bps // BPS,
            budget * params.client_collateral_bps // BPS)


def task_terms(params: Params, p: SubmitTask, models: ModelLookup) -> TaskTerms:
    """The terms of a task submission, or `InvalidTaskSpec` saying what is wrong with it
    (`TaskOverLimit` for a spec over a limit of `workloads.limits`, which the worker checks again
    before it starts). A registered model's inference is priced by the model's info (`models`),
    and the spec comes back bound to it."""
    try:
        if p.kind == WorkloadKind.MODEL_INFER:
            spec = decode_bound_spec(p.kind, p.spec, models)
            found = needs(spec)
        else:
            spec, found = _spec_needs(p.kind, p.spec)
    except InvalidSpec as exc:
        raise InvalidTaskSpec(str(exc)) from exc
    refusal = over_limit(found)
    if refusal is not None:
        raise TaskOverLimit(str(refusal)) from refusal
    if p.exec_ms < 1:
        raise InvalidTaskSpec("exec_ms must be positive")
    one_round = params.bid_window_ms + params.reveal_window_ms + p.exec_ms
    if not one_round <= p.ttl_ms <= MAX_TTL_MS:
        raise InvalidTaskSpec(f"ttl_ms must cover one round ({one_round} ms) and at most 30 days")
    units = found.work_units
    budget, reserve, collateral = task_escrow(params, p.max_price, units)
    escrow = budget + reserve + collateral
    if escrow > MAX_AMOUNT:
        raise InvalidTaskSpec("budget too large")
    return TaskTerms(spec, units, found.memory_mb, escrow)


@functools.lru_cache(maxsize=4_096)
def _spec_needs(kind: int, data: bytes) -> tuple[WorkloadSpec, Needs]:
    """A spec that names no registered model, decoded, and what it needs: computed once per
    submission, although the mempool and then the block check each submission twice (a deep
    network's needs walk its layers a few times: ~0.3 ms). Failures are not cached."""
    spec = decode_spec(kind, data)
    return spec, needs(spec)


def check_open_pool(params: Params, p: OpenPool, models: ModelLookup) -> None:
    """Raise `InvalidTaskSpec` unless `p` describes a pool that could run: a built-in model, or
    a registered one (`models`) whose largest request is within the protocol's limits."""
    if not 1 <= p.max_batch <= MAX_BATCH:
        raise InvalidTaskSpec(f"max_batch must be within 1..{MAX_BATCH}")
    if p.model_id:
        info = models(Hash32(p.model_id))
        if p.model or info is None:
            raise InvalidTaskSpec(f"unknown model {p.model_id.hex()} (a registered model's "
                                  "pool names no built-in model)")
        largest = ModelInferSpec(Hash32(p.model_id), p.max_batch, bytes(HASH_LEN), info)
        refusal = limit_refusal(largest)
        if refusal is not None:
            raise TaskOverLimit(f"a request of max_batch rows: {refusal}") from refusal
    elif p.model not in MODELS:
        raise InvalidTaskSpec(f"unknown model {p.model!r}; known: {', '.join(sorted(MODELS))}")
    if not 1 <= p.max_racers <= MAX_RACERS:
        raise InvalidTaskSpec(f"max_racers must be within 1..{MAX_RACERS}")
    if p.sample_bps > BPS:
        raise InvalidTaskSpec(f"sample_bps must be within 0..{BPS}")
    if not 1 <= p.request_ms <= p.ttl_ms <= MAX_POOL_TTL_MS:
        raise InvalidTaskSpec("need 1 <= request_ms <= ttl_ms <= 30 days")
    if p.budget < p.price + p.price * params.verifier_fee_bps // BPS:
        raise InvalidTaskSpec("the budget does not cover one request and its verification fee")


def check_register_model(p: RegisterModel) -> None:
    """Raise `InvalidModel` unless the registration's name and info are within the limits."""
    problems = p.info.problems()
    if not p.name or not p.name.isprintable():
        problems.insert(0, "the name must be 1 or more printable characters")
    if problems:
        raise InvalidModel("; ".join(problems))


def check_register_provider(p: RegisterProvider) -> None:
    """Raise `NotPermitted` unless `p` declares devices and a benchmark."""
    if not p.devices or len(p.devices) > MAX_DEVICES:
        raise NotPermitted(f"declare 1..{MAX_DEVICES} devices")
    if p.benchmark < 1:
        raise NotPermitted("the benchmark score must be positive")


def check_market_payload(params: Params, payload: MarketPayload, models: ModelLookup) -> None:
    """Every check of `payload` that needs no state but the registered models (`models`);
    raises a typed `InvalidTransaction`."""
    match payload:
        case SubmitTask():
            task_terms(params, payload, models)
        case OpenPool():
            check_open_pool(params, payload, models)
        case RegisterProvider():
            check_register_provider(payload)
        case RegisterModel():
            check_register_model(payload)
        case TopUpPool() if payload.amount == 0:
            raise AmountOutOfRange("a top-up must add something")
        case _:
            pass


def market_escrow(params: Params, payload: MarketPayload, models: ModelLookup) -> int:
    """What `payload` takes from its sender's balance besides the fee (0 for most kinds).

    Call on a payload that passed `check_market_payload`."""
    match payload:
        case SubmitTask():
            return task_terms(params, payload, models).escrow
        case OpenPool():
            return payload.budget
        case TopUpPool():
            return payload.amount
        case RegisterProvider():
            return payload.stake
        case RegisterModel():
            return params.model_registration_fee
        case _:
            return 0
