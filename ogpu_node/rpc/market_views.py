"""How the GPU market's tasks and providers look in JSON (conventions as in `views.py`).

A task view is everything the chain records of a task plus the node's latest progress report for
its current attempt; a provider view adds what the chain derives from its record (reputation,
anomaly flags, delivered throughput) and what its tasks' money trails paid it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from ogpu_node.address import address_to_text
from ogpu_node.earnings_index import EARNING_KINDS, Earning
from ogpu_node.ledger import State
from ogpu_node.ledger.market.records import (
    Check,
    Model,
    Movement,
    Pool,
    Provider,
    Task,
    TaskStatus,
)
from ogpu_node.ledger.market.reputation import anomaly_flags, delivered_gflops, reputation_bps
from ogpu_node.ledger.market.rules import (
    NO_BID_REASONS,
    bid_eligibility,
    is_active,
    no_bid_reason,
)
from ogpu_node.rpc.views import JsonObject, amount_fields
from ogpu_node.types import Address, Hash32, format_amount
from ogpu_node.workloads.kinds import decode_spec
from ogpu_node.workloads.models import ElemType, ModelInferSpec, ModelInfo, TensorInfo
from ogpu_node.workloads.net import LAYER_ARGS, Layer, NetTrainSpec
from ogpu_node.workloads.spec import InvalidSpec, workload_kind_name

PERIOD_MS = {"hour": 3_600_000, "day": 86_400_000}
EARNING_PERIODS = (*PERIOD_MS, "epoch")


kind_name = workload_kind_name


def spec_fields(state: State, kind: int, spec: bytes) -> JsonObject | None:
    """The decoded workload spec as an object of its fields, or None if it does not decode
    (the chain checked it at submission, so only a future kind gets None). `inputs` (and a
    network's `init`) is the uploaded file's id in hex, or None when the inputs come from the
    seed. A registered model's inference names the model (`model`, its id, and `model_name`);
    a network's training lists its layers by name and adds a one-line `summary`."""
    try:
        decoded = decode_spec(kind, spec)
    except InvalidSpec:
        return None
    if isinstance(decoded, ModelInferSpec):
        model = state.models.get(decoded.model)
        return {"model": decoded.model.hex(), "model_name": model.name if model else None,
                "batch": decoded.batch, "inputs": decoded.inputs.hex() or None}
    if isinstance(decoded, NetTrainSpec):
        return net_fields(decoded)
    return {f.name: _json_field(getattr(decoded, f.name)) for f in dataclasses.fields(decoded)}


def layer_fields(layer: Layer) -> JsonObject:
    """`{"kind": "conv2d", "channels": 16, "kernel": 3, "stride": 1, "padding": 1}`."""
    return {"kind": layer.kind.name.lower(),
            **dict(zip(LAYER_ARGS[layer.kind], layer.args, strict=True))}


def layer_text(layer: Layer) -> str:
    """`conv2d(channels=16, kernel=3, stride=1, padding=1)`, `relu`."""
    args = ", ".join(f"{n}={v}" for n, v in zip(LAYER_ARGS[layer.kind], layer.args,
                                                 strict=True))
    return f"{layer.kind.name.lower()}({args})" if args else layer.kind.name.lower()


def net_fields(spec: NetTrainSpec) -> JsonObject:
    """A network training's spec: its fields with enums by name, and what follows from them
    (`summary`, `output_shape`, `param_count`; null when the network does not fit together,
    which the chain refuses, so never on a submitted task)."""
    opt, schedule = spec.optimizer, spec.schedule
    try:
        output_shape: list[int] | None = list(spec.output_shape)
        params: int | None = spec.param_count()
    except InvalidSpec:
        output_shape = params = None
    return {
        "seed": spec.seed, "input_shape": list(spec.input_shape),
        "layers": [layer_fields(layer) for layer in spec.layers],
        "summary": " -> ".join(layer_text(layer) for layer in spec.layers),
        "loss": spec.loss.name.lower(),
        "optimizer": {"kind": opt.kind.name.lower(), "lr_micros": opt.lr_micros,
                      "beta1_micros": opt.beta1_micros, "beta2_micros": opt.beta2_micros,
                      "weight_decay_micros": opt.weight_decay_micros},
        "schedule": {"kind": schedule.kind.name.lower(), "warmup_steps": schedule.warmup_steps,
                     "every": schedule.every, "gamma_micros": schedule.gamma_micros,
                     "floor_micros": schedule.floor_micros},
        "n_samples": spec.n_samples, "val_bps": spec.val_bps, "batch": spec.batch,
        "steps": spec.steps, "checkpoint_every": spec.checkpoint_every,
        "inputs": spec.inputs.hex() or None, "init": spec.init.hex() or None,
        "output_shape": output_shape, "param_count": params,
    }


def _json_field(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.hex() or None
    return value


def _address(value: Address | None) -> str | None:
    return address_to_text(value) if value is not None else None


def _time(ms: int) -> int | None:
    return ms or None


def _trail(lines: Iterable[Movement]) -> list[JsonObject]:
    return [{"event": m.event, "address": address_to_text(m.address),
             **amount_fields("amount", m.amount)} for m in lines]


def _verdicts(check: Check | None) -> list[JsonObject]:
    """The votes revealed so far in the check's current round."""
    votes = check.votes if check else ()
    return [{"verifier": address_to_text(v.member), "accept": v.accept, "reason": v.reason}
            for v in votes if v.revealed]


def _check(check: Check | None) -> JsonObject | None:
    """A committee's check: its phase (`drawing`, `sealing`, `revealing`), round, the height
    its committee is drawn at, when its window ends, and who sealed and revealed."""
    if check is None:
        return None
    return {
        "phase": check.phase.name.lower(), "round": check.round,
        "drawHeight": check.draw_height, "endsMs": check.ends_ms or None,
        "committee": [address_to_text(a) for a in check.committee],
        "sealed": [address_to_text(v.member) for v in check.votes],
        "revealed": [address_to_text(v.member) for v in check.votes if v.revealed],
    }


def task_view(state: State, task_id: Hash32, task: Task, progress_bps: int | None
              ) -> JsonObject:
    """Everything the chain records of `task` at `state`, with the current attempt's progress
    (shown only while the task runs)."""
    attempt = task.attempt
    result = attempt.result
    return {
        "id": task_id.hex(), "height": state.height, "client": address_to_text(task.client),
        "kind": kind_name(task.kind), "kindId": task.kind,
        "spec": spec_fields(state, task.kind, task.spec), "specHex": task.spec.hex(),
        "workUnits": task.work_units, **amount_fields("maxPrice", task.max_price),
        **amount_fields("budget", task.budget), **amount_fields("escrow", task.escrow),
        "minBenchmark": task.min_benchmark, "execMs": task.exec_ms,
        "status": task.status.name.lower(), "phaseEndMs": task.phase_end_ms,
        "attempt": task.attempt.number,
        "bids": [{"bidder": address_to_text(b.bidder), "revealed": b.revealed,
                  **amount_fields("deposit", b.deposit),
                  "price": str(b.price) if b.revealed else None,
                  "priceOgpu": format_amount(b.price) if b.revealed else None}
                 for b in task.attempt.bids],
        "excluded": [address_to_text(a) for a in task.excluded],
        "provider": _address(attempt.provider), **amount_fields("price", attempt.price),
        **amount_fields("payment", task.payment),
        **amount_fields("collateral", attempt.collateral),
        "awardedMs": _time(attempt.awarded_ms),
        "result": None if result is None else {
            "outputId": result.output_id.hex(), "checkpointRoot": result.checkpoint_root.hex(),
            "checkpointIds": [c.hex() for c in result.checkpoint_ids],
            "metrics": dict(result.metrics), "keyCommitment": result.key_commitment.hex()},
        "releasedKey": attempt.released_key.hex() or None,
        "resultMs": _time(attempt.result_ms),
        "committee": [address_to_text(a) for a in attempt.check.committee] if attempt.check else [],
        "verdicts": _verdicts(attempt.check), "check": _check(attempt.check),
        "closeReason": task.close_reason.name.lower() if task.close_reason else None,
        "why": task.why or None,
        "trail": _trail(task.trail),
        "progressBps": progress_bps if task.status == TaskStatus.RUNNING else None,
        "createdMs": task.created_ms, "expiresMs": task.expires_ms,
    }


def task_summary(task_id: Hash32, task: Task) -> JsonObject:
    """One line of `task_list`."""
    return {
        "id": task_id.hex(), "client": address_to_text(task.client),
        "kind": kind_name(task.kind), "status": task.status.name.lower(),
        "closeReason": task.close_reason.name.lower() if task.close_reason else None,
        "attempt": task.attempt.number, "provider": _address(task.attempt.provider),
        "workUnits": task.work_units, **amount_fields("maxPrice", task.max_price),
        "createdMs": task.created_ms,
    }


# --- why a task got no bids -----------------------------------------------------------------------


def eligible_providers(state: State, task: Task) -> list[Address]:
    """Providers that could bid on `task` now, their declared price floor included (see
    `rules.bid_eligibility`)."""
    return [a for a, p in state.providers.items()
            if bid_eligibility(state.params, a, p, task, advisory=True) is None]


def why_view(state: State, task_id: Hash32, task: Task) -> JsonObject:
    """Why `task` has (or had) no usable bid: the stored code once it closed NO_BIDS, else the
    code the current providers give. `code` is None for a task that closed for another reason."""
    closed = task.status == TaskStatus.CLOSED
    if not closed:
        code: str | None = no_bid_reason(state.providers.items(), task, state.params)
    elif task.close_reason is not None and task.close_reason.name == "NO_BIDS":
        code = task.why
    else:
        code = None
    reason = task.close_reason.name.lower() if task.close_reason else None
    if code is None:
        explanation = f"the task closed {reason}: it did not end for lack of bids"
    else:
        explanation = NO_BID_REASONS.get(code, code)
    return {
        "id": task_id.hex(), "height": state.height, "status": task.status.name.lower(),
        "closeReason": reason, "code": code, "explanation": explanation, "final": closed,
        "registered": sum(1 for p in state.providers.values() if is_active(p, state.params)),
        "eligible": len(eligible_providers(state, task)),
        "bids": len(task.attempt.bids),
    }


# --- providers ----------------------------------------------------------------------------------


def provider_earnings(tasks: Iterable[Task], address: Address) -> JsonObject:
    """What the money trails of `tasks` paid `address` for work and as a verifier, and what
    they slashed from it."""
    paid = fees = slashed = 0
    count = 0
    for task in tasks:
        touched = False
        for line in task.trail:
            if line.address != address:
                continue
            kind = EARNING_KINDS.get(line.event)
            if kind == "paid":
                paid += line.amount
                touched = True
            elif kind == "fee":
                fees += line.amount
            elif kind == "slashed":
                slashed += line.amount
        count += touched
    return {**amount_fields("earned", paid), **amount_fields("verifierFees", fees),
            **amount_fields("slashed", slashed), "paidTasks": count}


def earnings_by_period(lines: Iterable[Earning], period: str, epoch_length: int,
                       limit: int) -> tuple[list[JsonObject], bool]:
    """`lines` (newest first) summed into buckets of block time (`hour`, `day`) or of epochs,
    newest first, at most `limit` (and whether there were more). Reading stops at the first
    line of the bucket after the last one kept, so a call costs the lines of `limit` buckets,
    not the address's whole history."""
    sums: dict[int, dict[str, int]] = {}
    for line in lines:
        key = (line.height // epoch_length if period == "epoch"
               else line.time_ms // PERIOD_MS[period])
        if key not in sums and len(sums) == limit:
            return _bucket_views(sums, period, epoch_length), True
        bucket = sums.setdefault(key, {"paid": 0, "fee": 0, "slashed": 0, "lines": 0})
        bucket[line.kind] += line.amount
        bucket["lines"] += 1
    return _bucket_views(sums, period, epoch_length), False


def _bucket_views(sums: dict[int, dict[str, int]], period: str,
                  epoch_length: int) -> list[JsonObject]:
    out = []
    for key in sorted(sums, reverse=True):
        b = sums[key]
        span: JsonObject = ({"epoch": key, "startHeight": key * epoch_length,
                             "endHeight": (key + 1) * epoch_length - 1} if period == "epoch"
                            else {"startMs": key * PERIOD_MS[period],
                                  "endMs": (key + 1) * PERIOD_MS[period]})
        out.append({**span, **amount_fields("paid", b["paid"]),
                    **amount_fields("verifierFees", b["fee"]),
                    **amount_fields("slashed", b["slashed"]),
                    **amount_fields("net", b["paid"] + b["fee"] - b["slashed"]),
                    "lines": b["lines"]})
    return out


def provider_summary(state: State, address: Address, provider: Provider) -> JsonObject:
    """One line of `provider_list`."""
    return {
        "address": address_to_text(address), "active": is_active(provider, state.params),
        "benchmark": provider.benchmark, **amount_fields("priceFloor", provider.price_floor),
        **amount_fields("stake", provider.stake), **amount_fields("freeStake",
                                                                  provider.free_stake),
        "reputationBps": reputation_bps(provider), "flags": anomaly_flags(provider),
        "completed": provider.completed, "failed": provider.failed,
    }


def provider_view(state: State, address: Address, provider: Provider) -> JsonObject:
    """A provider's declaration, bond, record, derived reputation and earnings."""
    return {
        "address": address_to_text(address), "height": state.height,
        "active": is_active(provider, state.params),
        "devices": [{"model": d.model, "memoryMb": d.memory_mb} for d in provider.devices],
        "benchmark": provider.benchmark, **amount_fields("priceFloor", provider.price_floor),
        **amount_fields("stake", provider.stake), **amount_fields("locked", provider.locked),
        **amount_fields("freeStake", provider.free_stake),
        "counters": {"completed": provider.completed, "failed": provider.failed,
                     "failStreak": provider.fail_streak, "bids": provider.bids,
                     "unrevealed": provider.unrevealed, "workDone": provider.work_done,
                     "computeMs": provider.compute_ms},
        "reputationBps": reputation_bps(provider), "flags": anomaly_flags(provider),
        "deliveredGflops": delivered_gflops(provider),
        # A scan of every task's trail: fine while tasks number in the thousands; an index of
        # earnings by provider belongs in the ledger state once they do not.
        "earnings": provider_earnings(state.tasks.values(), address),
    }


def pool_model(state: State, pool: Pool) -> JsonObject:
    """What a pool serves: `model` (a built-in model's name, "" for a registered model's pool),
    `modelId` (the registered model's id, or null) and `modelName` (the name either way)."""
    if pool.model_id is None:
        return {"model": pool.model, "modelId": None, "modelName": pool.model}
    registered = state.models.get(pool.model_id)
    return {"model": pool.model, "modelId": pool.model_id.hex(),
            "modelName": registered.name if registered else None}


def pool_summary(state: State, pool_id: Hash32, pool: Pool) -> JsonObject:
    """One line of `pool_list`."""
    return {"id": pool_id.hex(), "owner": address_to_text(pool.owner),
            **pool_model(state, pool), "closed": pool.closed,
            "members": len(pool.subscribers), "served": pool.served,
            "escrow": str(pool.escrow)}


def pool_view(state: State, pool_id: Hash32, pool: Pool) -> JsonObject:
    """Everything the chain records of an inference pool: terms, members, recent requests."""
    return {
        "id": pool_id.hex(), "height": state.height, "owner": address_to_text(pool.owner),
        **pool_model(state, pool), "maxBatch": pool.max_batch, **amount_fields("price", pool.price),
        "maxRacers": pool.max_racers, "sampleBps": pool.sample_bps,
        **amount_fields("minStake", pool.min_stake), "requestMs": pool.request_ms,
        "createdMs": pool.created_ms, "expiresMs": pool.expires_ms, "closed": pool.closed,
        **amount_fields("escrow", pool.escrow),
        "subscribers": [{"address": address_to_text(a), **amount_fields("stake", s)}
                        for a, s in pool.subscribers],
        "requests": [{
            "id": r.request_id.hex(), "seed": r.seed, "batch": r.batch,
            "status": r.status.name.lower(), "createdMs": r.created_ms,
            "deadlineMs": r.deadline_ms, "racers": [address_to_text(a) for a in r.racers],
            "winner": _address(r.winner),
            "outputId": r.output_id.hex() if r.output_id else None,
            "key": r.key.hex() or None,
            "committee": [address_to_text(a) for a in r.check.committee] if r.check else [],
            "verdicts": _verdicts(r.check), "check": _check(r.check),
            **amount_fields("escrow", r.escrow)} for r in pool.requests],
        "served": pool.served, "rejected": pool.rejected, "expired": pool.expired,
        **amount_fields("paid", pool.paid),
        "trail": _trail(pool.trail),
    }


# --- registered models --------------------------------------------------------------------------

ELEM_NAMES = {ElemType.FLOAT: "float32", ElemType.INT64: "int64"}
"""Element types as NumPy names them (the CLI's `.npz` files carry these dtypes)."""


def tensor_fields(tensor: TensorInfo) -> JsonObject:
    """`{"name": "x", "elemType": "float32", "shape": [3, 32, 32]}` (the shape of one row)."""
    return {"name": tensor.name, "elemType": ELEM_NAMES[tensor.elem],
            "shape": list(tensor.shape)}


def model_info_fields(info: ModelInfo, batch: int) -> JsonObject:
    """A registered model's info, and what one row and a request of `batch` rows cost."""
    return {
        "inputs": [tensor_fields(t) for t in info.inputs],
        "outputs": [tensor_fields(t) for t in info.outputs],
        "opset": info.opset, "fileBytes": info.file_bytes, "flopsPerRow": info.flops_per_row,
        "weightBytes": info.weight_bytes, "activationBytesPerRow": info.activation_bytes_per_row,
        "inputBytesPerRow": info.input_bytes_per_row(),
        "outputBytesPerRow": info.output_bytes_per_row(),
        "workUnitsPerRow": info.work_units(1), "batch": batch,
        "workUnits": info.work_units(batch),
    }


def model_summary(model_id: Hash32, model: Model) -> JsonObject:
    """One line of `model_list`."""
    info = model.info
    return {"id": model_id.hex(), "owner": address_to_text(model.owner), "name": model.name,
            "fileId": model.file_id.hex(), "fileBytes": info.file_bytes,
            "flopsPerRow": info.flops_per_row, "workUnitsPerRow": info.work_units(1),
            "registeredMs": model.registered_ms}


def model_view(state: State, model_id: Hash32, model: Model, batch: int) -> JsonObject:
    """Everything the chain records of a registered model, with the work units of `batch`
    rows."""
    return {"id": model_id.hex(), "height": state.height,
            "owner": address_to_text(model.owner), "name": model.name,
            "fileId": model.file_id.hex(), "registeredMs": model.registered_ms,
            "info": model_info_fields(model.info, batch)}
