"""The GPU market's JSON-RPC methods: tasks, pools, providers, registered models and blobs
(`task_*`, `pool_*`, `provider_*`, `model_*`, `blob_*`).

Tasks, pools, providers and models are read from the last finalised state; a task's progress
comes from the node's progress gossip. Blobs are read from the node's store, or fetched from its
peers (every chunk is checked against its id on the way); uploads are files of at most
`max_upload_bytes`, served while `uploads` is on and counted against the client's `UploadQuota`
before they are stored (refused ones count too: the bytes were sent and checked).
"""

from __future__ import annotations

import base64
import math
from typing import TYPE_CHECKING, Any

import trio

from ogpu_node.address import address_to_text
from ogpu_node.blobs import (
    MAX_CHUNK_BYTES,
    MAX_FILE_CHUNKS,
    BlobError,
    Manifest,
    decode_manifest,
)
from ogpu_node.encoding import encode
from ogpu_node.ledger import State
from ogpu_node.ledger.market.records import Task, TaskStatus
from ogpu_node.rpc import market_views as mv
from ogpu_node.rpc import params as p
from ogpu_node.rpc.config import RpcConfig
from ogpu_node.rpc.errors import ErrorCode, RpcError, not_found
from ogpu_node.types import Hash32
from ogpu_node.workloads.spec import MAX_BATCH

if TYPE_CHECKING:
    from ogpu_node.rpc.methods import CallContext, Handler

Json = Any
MAX_PROVIDERS_LISTED = 1_000
MAX_EARNING_BUCKETS = 1_000
"""Most buckets one `provider_earnings` call returns."""
STATUS_NAMES = tuple(s.name.lower() for s in TaskStatus)


def find_task(state: State, task_id: bytes) -> Task:
    task = state.tasks.get(Hash32(task_id))
    if task is None:
        raise not_found("task", task_id.hex())
    return task


def current_task_view(ctx: CallContext, state: State, task_id: Hash32, task: Task) -> Json:
    return mv.task_view(state, task_id, task, ctx.api.task_progress(task_id, task.attempt.number))


# --- tasks --------------------------------------------------------------------------------------


async def task_get(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    task_id = Hash32(args["taskId"])
    return current_task_view(ctx, state, task_id, find_task(state, task_id))


async def task_list(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    ids = state.open_tasks if args["open"] else state.tasks.keys()
    matched = []
    for task_id in ids:
        task = state.tasks[task_id]
        if ((args["status"] is None or task.status.name.lower() == args["status"])
                and (args["client"] is None or task.client == args["client"])
                and (args["provider"] is None or task.attempt.provider == args["provider"])):
            matched.append((task.created_ms, task_id, task))
    # A scan and sort of the matching tasks: fine while they number in the thousands; an index
    # by client and provider belongs in the ledger state once they do not.
    matched.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return {"height": state.height, "total": len(matched),
            "tasks": [mv.task_summary(t, task) for _, t, task in matched[:args["limit"]]]}


async def task_why(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    task_id = Hash32(args["taskId"])
    return mv.why_view(state, task_id, find_task(state, task_id))


# --- providers ----------------------------------------------------------------------------------


async def provider_get(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    provider = state.providers.get(args["address"])
    if provider is None:
        raise not_found("provider", address_to_text(args["address"]))
    return mv.provider_view(state, args["address"], provider)


async def provider_list(ctx: CallContext, _: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    providers = sorted(state.providers.items())
    return {"height": state.height, "count": len(providers),
            "truncated": len(providers) > MAX_PROVIDERS_LISTED,
            "providers": [mv.provider_summary(state, a, prov)
                          for a, prov in providers[:MAX_PROVIDERS_LISTED]]}


# --- pools ------------------------------------------------------------------------------------


async def pool_get(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    pool = state.pools.get(Hash32(args["poolId"]))
    if pool is None:
        raise not_found("pool", args["poolId"].hex())
    return mv.pool_view(state, Hash32(args["poolId"]), pool)


async def pool_list(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    pools = sorted(((i, pool) for i, pool in state.pools.items()
                    if not (args["open"] and pool.closed)),
                   key=lambda item: (-item[1].created_ms, item[0]))
    return {"height": state.height, "count": len(pools),
            "pools": [mv.pool_summary(state, i, pool) for i, pool in pools[:args["limit"]]]}


# --- registered models ----------------------------------------------------------------------------


async def model_get(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    model_id = Hash32(args["modelId"])
    model = state.models.get(model_id)
    if model is None:
        raise not_found("model", model_id.hex())
    return mv.model_view(state, model_id, model, args["batch"])


async def model_list(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    owner = args["owner"]
    # A scan and sort, as `task_list`: models are few (each burns a registration fee).
    models = sorted(((i, m) for i, m in state.models.items()
                     if owner is None or m.owner == owner),
                    key=lambda item: (-item[1].registered_ms, item[0]))
    return {"height": state.height, "total": len(models),
            "models": [mv.model_summary(i, m) for i, m in models[:args["limit"]]]}


# --- blobs --------------------------------------------------------------------------------------


def _refused(exc: BlobError) -> RpcError:
    return RpcError(ErrorCode.BLOB_REFUSED, f"blob refused: {exc}", {"reason": str(exc)})


async def _chunk(ctx: CallContext, chunk_id: bytes) -> bytes:
    try:
        return await ctx.api.get_chunk(chunk_id)
    except BlobError as exc:
        raise RpcError(ErrorCode.BLOB_UNAVAILABLE, f"chunk {chunk_id.hex()} unavailable: {exc}",
                       {"id": chunk_id.hex(), "reason": str(exc)}) from None


def _admit_upload(ctx: CallContext, nbytes: int) -> None:
    """Let an upload of `nbytes` through the `uploads` switch and the client's quota, counting
    it; else the typed error saying why (and when to retry)."""
    if not ctx.config.uploads:
        raise RpcError(ErrorCode.UPLOADS_DISABLED, "uploads are turned off on this node",
                       {"setting": "rpc_uploads"})
    # never `inf`: RpcConfig keeps the quota at least one call of each upload method
    wait = ctx.uploads.charge(ctx.client, nbytes, trio.current_time())
    if wait > 0:
        retry_ms = math.ceil(wait * 1000)
        raise RpcError(ErrorCode.UPLOAD_QUOTA_EXCEEDED,
                       f"upload quota: at most {ctx.config.upload_quota_bytes} bytes per "
                       f"{ctx.config.upload_window_s:g} s per client, retry in {retry_ms} ms",
                       {"retryAfterMs": retry_ms, "quotaBytes": ctx.config.upload_quota_bytes,
                        "windowS": ctx.config.upload_window_s})


async def blob_put(ctx: CallContext, args: dict[str, Any]) -> Json:
    data: bytes = args["data"]
    _admit_upload(ctx, len(data))
    try:
        file_id = ctx.api.put_file(data)
    except BlobError as exc:
        raise _refused(exc) from None
    return {"fileId": file_id.hex(), "size": len(data),
            "chunks": -(-len(data) // MAX_CHUNK_BYTES)}


async def blob_put_chunk(ctx: CallContext, args: dict[str, Any]) -> Json:
    data: bytes = args["data"]
    _admit_upload(ctx, len(data))
    try:
        chunk_id = ctx.api.put_chunk(data)
    except BlobError as exc:
        raise _refused(exc) from None
    return {"chunkId": chunk_id.hex(), "size": len(data)}


async def blob_put_manifest(ctx: CallContext, args: dict[str, Any]) -> Json:
    _admit_upload(ctx, len(encode(Manifest(args["size"], tuple(args["chunks"])))))
    try:
        file_id = ctx.api.put_manifest(args["size"], args["chunks"])
    except BlobError as exc:
        raise _refused(exc) from None
    return {"fileId": file_id.hex(), "size": args["size"], "chunks": len(args["chunks"])}


async def blob_manifest(ctx: CallContext, args: dict[str, Any]) -> Json:
    try:
        manifest = decode_manifest(await _chunk(ctx, args["fileId"]))
    except BlobError as exc:
        raise _refused(exc) from None
    return {"fileId": args["fileId"].hex(), "size": manifest.size,
            "chunks": [c.hex() for c in manifest.chunks]}


async def blob_chunk(ctx: CallContext, args: dict[str, Any]) -> Json:
    data = await _chunk(ctx, args["chunkId"])
    return {"chunkId": args["chunkId"].hex(), "size": len(data),
            "data": base64.b64encode(data).decode()}


async def provider_earnings(ctx: CallContext, args: dict[str, Any]) -> Json:
    state = ctx.api.finalized_state()
    buckets, truncated = mv.earnings_by_period(
        ctx.api.earnings(args["address"]), args["period"], state.params.epoch_length,
        args["limit"])
    return {"address": address_to_text(args["address"]), "period": args["period"],
            "height": state.height, "truncated": truncated, "buckets": buckets}


def market_methods(config: RpcConfig) -> list[tuple[str, Handler, str, tuple[p.Param, ...]]]:
    """(name, handler, summary, params) of every market method."""
    task_id = p.Param("taskId", p.hash32)
    return [
        ("task_get", task_get, "A task: spec, phase, bids, award, result, verdicts, money "
                               "trail and progress.", (task_id,)),
        ("task_list", task_list, "Tasks, newest first, filtered by status, client, provider.",
         (p.Param("status", p.one_of(*STATUS_NAMES), required=False),
          p.Param("client", p.address, required=False),
          p.Param("provider", p.address, required=False),
          p.Param("open", p.boolean, required=False, default=False),
          p.Param("limit", p.count(config.max_task_list), required=False,
                  default=min(50, config.max_task_list)))),
        ("task_why", task_why, "Why a task has (or had) no usable bid.", (task_id,)),
        ("provider_get", provider_get, "A provider: declaration, stake, record, reputation, "
                                       "flags and earnings.", (p.Param("address", p.address),)),
        ("provider_list", provider_list, "Every registered provider, by address.", ()),
        ("pool_get", pool_get, "An inference pool: terms, members, recent requests, totals.",
         (p.Param("poolId", p.hash32),)),
        ("pool_list", pool_list, "Inference pools, newest first.",
         (p.Param("open", p.boolean, required=False, default=False),
          p.Param("limit", p.count(config.max_task_list), required=False,
                  default=min(50, config.max_task_list)))),
        ("model_get", model_get, "A registered model: owner, name, file, inputs and outputs, "
                                 "costs per row and per batch.",
         (p.Param("modelId", p.hash32),
          p.Param("batch", p.count(MAX_BATCH), required=False, default=1))),
        ("model_list", model_list, "Registered models, newest first, filtered by owner.",
         (p.Param("owner", p.address, required=False),
          p.Param("limit", p.count(config.max_task_list), required=False,
                  default=min(50, config.max_task_list)))),
        ("blob_put", blob_put, "Store a file (base64) in the node's blob store.",
         (p.Param("data", p.base64_bytes(config.max_upload_bytes)),)),
        ("blob_putChunk", blob_put_chunk, "Store one chunk (base64, at most 1 MiB) of a file "
                                          "uploaded in parts.",
         (p.Param("data", p.base64_bytes(MAX_CHUNK_BYTES)),)),
        ("blob_putManifest", blob_put_manifest, "Store the manifest of a file whose chunks were "
                                                "stored with blob_putChunk; its file id.",
         (p.Param("size", p.count(MAX_FILE_CHUNKS * MAX_CHUNK_BYTES)),
          p.Param("chunks", p.list_of(p.hash32, MAX_FILE_CHUNKS)))),
        ("blob_manifest", blob_manifest, "A file's size and chunk ids (fetched from peers "
                                         "if missing).", (p.Param("fileId", p.hash32),)),
        ("blob_chunk", blob_chunk, "One chunk, base64 (fetched from peers if missing).",
         (p.Param("chunkId", p.hash32),)),
        ("provider_earnings", provider_earnings, "What an address was paid, earned as a "
                                                 "verifier and was slashed, by hour, day or "
                                                 "epoch of block time, newest first.",
         (p.Param("address", p.address),
          p.Param("period", p.one_of(*mv.EARNING_PERIODS), required=False, default="day"),
          p.Param("limit", p.count(MAX_EARNING_BUCKETS), required=False, default=30))),
    ]
