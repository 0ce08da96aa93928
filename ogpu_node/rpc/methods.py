"""The JSON-RPC methods: each a short async function over the `NodeApi`, with declared params.

Names are `namespace_method` (geth style). Reads answer from the last finalised state. Every
method raises `RpcError` for a documented failure; anything else is an internal error.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ogpu_node.genesis import parse_genesis
from ogpu_node.ledger import Block, InvalidTransaction, Transaction
from ogpu_node.ledger.params import MAX_TX_BYTES
from ogpu_node.ledger.tx import decode_transaction
from ogpu_node.node_api import FINAL_STATES, NodeApi
from ogpu_node.rpc import params as p
from ogpu_node.rpc import views
from ogpu_node.rpc.config import RpcConfig
from ogpu_node.rpc.errors import ErrorCode, RpcError, invalid_params, not_found
from ogpu_node.rpc.gov_methods import gov_methods
from ogpu_node.rpc.limits import UploadQuota
from ogpu_node.rpc.market_methods import market_methods

if TYPE_CHECKING:
    from ogpu_node.rpc.subscriptions import WsSession

Json = Any
Handler = Callable[["CallContext", dict[str, Any]], Awaitable[Json]]


@dataclass
class CallContext:
    """What a method may use besides its params."""

    api: NodeApi
    config: RpcConfig
    uploads: UploadQuota
    """The server's upload quota, by client."""
    client: str
    """The caller's IP address as the server sees it (the key of its limits)."""
    session: WsSession | None = None
    """The WebSocket connection, or None over HTTP (no subscriptions there)."""
    after_response: list[Callable[[], None]] = field(default_factory=list)
    """Run once the answer to this call has been queued (subscriptions start notifying then)."""


@dataclass(frozen=True)
class Method:
    name: str
    params: tuple[p.Param, ...]
    handler: Handler
    summary: str


# --- chain --------------------------------------------------------------------------------------


async def chain_status(ctx: CallContext, _: dict[str, Any]) -> Json:
    min_fee = ctx.api.finalized_state().params.min_fee  # governance may move it
    return {**views.status_view(ctx.api.status()), **views.amount_fields("minFee", min_fee)}


def _find_block(api: NodeApi, ref: int | str | bytes) -> Block:
    if isinstance(ref, bytes):
        block = api.block_by_hash(ref)
        key = ref.hex()
    else:
        height = api.status().height if ref == "latest" else int(ref)
        block = api.block_by_height(height)
        key = f"height {height}" + (" (the genesis state has no block)" if height == 0 else "")
    if block is None:
        raise not_found("block", key)
    return block


async def chain_get_block(ctx: CallContext, args: dict[str, Any]) -> Json:
    block = _find_block(ctx.api, args["block"])
    return views.block_view(block, full_txs=args["fullTxs"])


async def chain_get_block_range(ctx: CallContext, args: dict[str, Any]) -> Json:
    start, end = args["from"], args["to"]
    if end < start:
        raise invalid_params("to", f"{end} is below from ({start})")
    limit = ctx.config.max_block_range
    if end - start + 1 > limit:
        raise invalid_params("to", f"at most {limit} blocks per call, asked for "
                                   f"{end - start + 1}")
    blocks = []
    for height in range(max(start, 1), end + 1):
        block = ctx.api.block_by_height(height)
        if block is None:
            break  # past the head: the range is cut there
        blocks.append(views.block_view(block, full_txs=args["fullTxs"]))
    return blocks


# --- transactions -------------------------------------------------------------------------------


def _decode_tx(data: bytes) -> Transaction:
    try:
        return decode_transaction(data)
    except InvalidTransaction as exc:
        raise tx_rejected(exc) from None


def tx_rejected(exc: InvalidTransaction) -> RpcError:
    return RpcError(ErrorCode.TX_REJECTED, f"transaction rejected: {exc.code}: {exc}",
                    {"code": exc.code, "reason": str(exc)})


async def _submit(ctx: CallContext, data: bytes) -> tuple[Transaction, Json]:
    tx = _decode_tx(data)
    try:
        receipt = await ctx.api.submit_tx(tx)
    except InvalidTransaction as exc:
        raise tx_rejected(exc) from None
    return tx, views.receipt_view(receipt)


async def tx_send(ctx: CallContext, args: dict[str, Any]) -> Json:
    _, receipt = await _submit(ctx, args["tx"])
    return receipt


async def tx_send_and_wait(ctx: CallContext, args: dict[str, Any]) -> Json:
    tx, _ = await _submit(ctx, args["tx"])
    timeout = args["timeout"] if args["timeout"] is not None \
        else ctx.config.send_and_wait_default_s
    with trio.move_on_after(timeout):
        return views.receipt_view(await ctx.api.wait_for_tx(tx.hash))
    receipt = ctx.api.tx_receipt(tx.hash)
    if receipt.state in FINAL_STATES:  # became final just as the wait ran out
        return views.receipt_view(receipt)
    raise RpcError(
        ErrorCode.TIMEOUT,
        f"transaction {tx.hash.hex()} was accepted but is not final after {timeout:g} s; "
        "it may still be finalised: watch it with tx_status",
        {"hash": tx.hash.hex(), "receipt": views.receipt_view(receipt)},
    )


async def tx_get(ctx: CallContext, args: dict[str, Any]) -> Json:
    found = ctx.api.transaction(args["hash"])
    if found is None:
        raise not_found("transaction", args["hash"].hex())
    tx, receipt = found
    return {"tx": views.tx_view(tx), "receipt": views.receipt_view(receipt)}


async def tx_status(ctx: CallContext, args: dict[str, Any]) -> Json:
    return views.receipt_view(ctx.api.tx_receipt(args["hash"]))


# --- accounts, validators, peers, node ----------------------------------------------------------


async def account_get(ctx: CallContext, args: dict[str, Any]) -> Json:
    return views.account_view(ctx.api.finalized_state(), args["address"])


async def validators_list(ctx: CallContext, _: dict[str, Any]) -> Json:
    return views.validators_view(ctx.api.finalized_state())


async def peers_list(ctx: CallContext, _: dict[str, Any]) -> Json:
    return [views.peer_view(peer) for peer in ctx.api.peers()]


async def node_health(ctx: CallContext, _: dict[str, Any]) -> Json:
    return views.health_view(ctx.api.health())


async def agent_status(ctx: CallContext, _: dict[str, Any]) -> Json:
    return ctx.api.agent_status()


async def chain_genesis(ctx: CallContext, _: dict[str, Any]) -> Json:
    """What a new node needs to join: the genesis document and where to dial this node."""
    document = json.loads(ctx.api.genesis_document())
    return {"chainId": document["chain_id"], "genesisHash": parse_genesis(document).hash.hex(),
            "genesis": document, "bootstrapPeers": list(ctx.api.p2p_addresses())}


async def rpc_methods(_: CallContext, __: dict[str, Any]) -> Json:
    return list(METHODS)


# --- subscriptions (WebSocket only) -------------------------------------------------------------


def _session(ctx: CallContext) -> WsSession:
    if ctx.session is None:
        raise RpcError(ErrorCode.WEBSOCKET_REQUIRED,
                       "subscriptions need a WebSocket connection (path /ws)")
    return ctx.session


async def sub_subscribe(ctx: CallContext, args: dict[str, Any]) -> Json:
    session = _session(ctx)
    kind = args["kind"]
    if kind != "txStatus" and args["hash"] is not None:
        raise invalid_params("hash", "only txStatus subscriptions take a hash")
    if kind != "task" and args["taskId"] is not None:
        raise invalid_params("taskId", "only task subscriptions take a task id")
    if kind == "txStatus":
        if args["hash"] is None:
            raise invalid_params("hash", "missing: txStatus needs the transaction hash")
        sub_id, start = await session.subscribe_tx(args["hash"])
    elif kind == "task":
        sub_id, start = await session.subscribe_task(args["taskId"])
    else:
        sub_id, start = await session.subscribe_blocks()
    ctx.after_response.append(start)
    return sub_id


async def sub_unsubscribe(ctx: CallContext, args: dict[str, Any]) -> Json:
    return _session(ctx).unsubscribe(args["subscription"])


def _method(name: str, handler: Handler, summary: str, *params: p.Param) -> Method:
    return Method(name, params, handler, summary)


def build_methods(config: RpcConfig) -> dict[str, Method]:
    """The method table for `config` (limits such as the longest wait come from it)."""
    full_txs = p.Param("fullTxs", p.boolean, required=False, default=False)
    tx_hex = p.Param("tx", lambda n, v: p.hex_bytes(n, v, max_len=MAX_TX_BYTES))
    tx_hash = p.Param("hash", p.hash32)
    methods = [
        _method("chain_status", chain_status, "Head, chain id, sync state of this node."),
        _method("chain_getBlock", chain_get_block, "A finalised block by height or hash.",
                p.Param("block", p.block_ref), full_txs),
        _method("chain_getBlockRange", chain_get_block_range,
                "Finalised blocks from..to (inclusive), cut at the head.",
                p.Param("from", p.height), p.Param("to", p.height), full_txs),
        _method("tx_send", tx_send, "Submit a signed transaction (hex).", tx_hex),
        _method("tx_sendAndWait", tx_send_and_wait,
                "Submit a transaction and wait until it is final.", tx_hex,
                p.Param("timeout", p.seconds(config.send_and_wait_max_s), required=False)),
        _method("tx_get", tx_get, "A transaction and its receipt.", tx_hash),
        _method("tx_status", tx_status, "A transaction's receipt (state unknown if unseen).",
                tx_hash),
        _method("account_get", account_get, "Balance, nonce, stake and unbonding of an address.",
                p.Param("address", p.address)),
        _method("validators_list", validators_list, "The active validator set."),
        _method("peers_list", peers_list, "Connected peers."),
        _method("node_health", node_health, "Whether the node is synced and finalising."),
        _method("rpc_methods", rpc_methods, "The names of all methods."),
        _method("chain_genesis", chain_genesis,
                "The genesis document and this node's p2p addresses (to join the network)."),
        _method("sub_subscribe", sub_subscribe,
                "Subscribe (WebSocket): blocks, txStatus, or task (one task or all).",
                p.Param("kind", p.one_of("blocks", "txStatus", "task")),
                p.Param("hash", p.hash32, required=False),
                p.Param("taskId", p.hash32, required=False)),
        _method("sub_unsubscribe", sub_unsubscribe, "End a subscription.",
                p.Param("subscription", p.text(64))),
    ]
    methods += [Method(name, params, handler, summary)
                for name, handler, summary, params in market_methods(config)]
    methods.append(_method("agent_status", agent_status, "This node's market agents: whether "
                           "they run, device, benchmarks, bids, outcomes, skips with reasons."))
    methods += [Method(name, params, handler, summary)
                for name, handler, summary, params in gov_methods(config)]
    return {m.name: m for m in methods}


METHODS = tuple(sorted(build_methods(RpcConfig())))
"""Every method name (the same for every config)."""
