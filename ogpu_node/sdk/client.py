"""`Client`: the async client of a node's JSON-RPC, over httpx and (for subscriptions) a
WebSocket on anyio, so it runs under asyncio and trio alike.

One method per RPC method (the snake_case of its name: `chain_getBlock` is `chain_get_block`),
subscriptions as async iterators, and the helpers a program needs most: sign and send a
transaction, submit a task, watch it, fetch its result, register a provider.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, Self, cast

import anyio
import httpx
from anyio.abc import SocketStream

from ogpu_node.blobs import MAX_CHUNK_BYTES
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Transaction as SignedTransaction
from ogpu_node.ledger.market.payloads import RegisterProvider
from ogpu_node.ledger.market.records import Device
from ogpu_node.ledger.tx import Payload
from ogpu_node.rpc_error_codes import ErrorCode
from ogpu_node.sdk import protocol
from ogpu_node.sdk.answers import (
    Account,
    Block,
    ChainStatus,
    Health,
    JsonObject,
    Model,
    Peer,
    Pool,
    Provider,
    Task,
    TxReceipt,
    TxWithReceipt,
    Validators,
)
from ogpu_node.sdk.errors import RpcCallError, RpcTimeout
from ogpu_node.sdk.protocol import DEFAULT_RPC, DEFAULT_TIMEOUT_S, TRANSFER_TIMEOUT_S
from ogpu_node.sdk.tasks import (
    DEFAULT_SEND_TIMEOUT_S,
    TaskOutput,
    TaskTerms,
    address_text,
    b64,
    check_file,
    chosen_fee,
    chunks_of,
    hex_id,
    manifest_chunks,
    open_result,
    sent_chunk,
    sign,
    stored_chunk,
    submit_payload,
    task_closed,
    task_id_of,
    task_list_params,
    task_pending,
    tx_hex,
    with_limit,
)
from ogpu_node.workloads.kinds import WorkloadSpec


class Client:
    """An async client of the node at `url` (its HTTP JSON-RPC address).

    Use it as `async with Client(url) as client: ...`, or call `aclose()`. Calls raise
    `RpcCallError` (with the node's `code` and `data`) or `RpcTimeout`."""

    def __init__(self, url: str = DEFAULT_RPC, *, timeout: float = DEFAULT_TIMEOUT_S,
                 max_reply_bytes: int = protocol.MAX_REPLY_BYTES) -> None:
        self.url = url
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self._http = httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   timeout_s: float | None = None) -> Any:
        """The result of `method` with named `params` (any method, typed or not)."""
        body = protocol.request(method, params)
        reader = protocol.ReplyReader(method, self.max_reply_bytes, timeout_s or self.timeout)
        try:
            async with self._http.stream("POST", self.url, json=body,
                                         timeout=timeout_s or self.timeout) as response:
                async for chunk in response.aiter_bytes():
                    reader.add(chunk)
        except httpx.TimeoutException as exc:
            raise RpcTimeout(f"{method}: no answer from {self.url} in time") from exc
        except httpx.HTTPError as exc:
            raise RpcCallError(f"cannot reach the node at {self.url}: {exc}") from exc
        return protocol.result_of(method, reader.json(self.url, response.status_code))

    # --- chain ------------------------------------------------------------------------------

    async def chain_status(self) -> ChainStatus:
        """Head, chain id, sync state of this node."""
        return cast(ChainStatus, await self.call("chain_status"))

    async def chain_get_block(self, block: int | str | bytes = "latest", *,
                              full_txs: bool = False) -> Block:
        """A finalised block by height, `"latest"`, or hash (bytes or hex)."""
        ref = block.hex() if isinstance(block, bytes) else block
        return cast(Block, await self.call("chain_getBlock", {"block": ref, "fullTxs": full_txs}))

    async def chain_get_block_range(self, start: int, end: int, *,
                                    full_txs: bool = False) -> list[Block]:
        """Finalised blocks `start`..`end` (inclusive), cut at the head."""
        return cast(list[Block], await self.call(
            "chain_getBlockRange", {"from": start, "to": end, "fullTxs": full_txs}))

    # --- transactions -----------------------------------------------------------------------

    async def tx_send(self, tx: SignedTransaction | bytes) -> TxReceipt:
        """Submit a signed transaction (or its encoding); its receipt, pending."""
        return cast(TxReceipt, await self.call("tx_send", {"tx": tx_hex(tx)}))

    async def tx_send_and_wait(self, tx: SignedTransaction | bytes, *,
                               wait_s: float = DEFAULT_SEND_TIMEOUT_S) -> TxReceipt:
        """Send `tx` and wait until it is final; `RpcTimeout` if it is not in `wait_s` s."""
        return cast(TxReceipt, await self.call(
            "tx_sendAndWait", {"tx": tx_hex(tx), "timeout": wait_s},
            timeout_s=wait_s + DEFAULT_TIMEOUT_S))

    async def tx_get(self, tx_hash: bytes | str) -> TxWithReceipt:
        """A transaction and its receipt."""
        return cast(TxWithReceipt, await self.call("tx_get", {"hash": hex_id(tx_hash)}))

    async def tx_status(self, tx_hash: bytes | str) -> TxReceipt:
        """A transaction's receipt (state unknown if unseen)."""
        return cast(TxReceipt, await self.call("tx_status", {"hash": hex_id(tx_hash)}))

    # --- accounts, validators, peers, node --------------------------------------------------

    async def account_get(self, address: bytes | str) -> Account:
        """Balance, nonce, stake and unbonding of an address."""
        return cast(Account, await self.call("account_get",
                                             {"address": address_text(address)}))

    async def chain_genesis(self) -> JsonObject:
        """What a new node needs to join: the genesis document, its hash and where to dial."""
        return cast(JsonObject, await self.call("chain_genesis"))

    async def validators_list(self) -> Validators:
        """The active validator set."""
        return cast(Validators, await self.call("validators_list"))

    async def peers_list(self) -> list[Peer]:
        """Connected peers."""
        return cast(list[Peer], await self.call("peers_list"))

    async def node_health(self) -> Health:
        """Whether the node is synced and finalising."""
        return cast(Health, await self.call("node_health"))

    async def rpc_methods(self) -> list[str]:
        """The names of all methods."""
        return cast(list[str], await self.call("rpc_methods"))

    # --- market -----------------------------------------------------------------------------

    async def task_get(self, task_id: bytes | str) -> Task:
        """A task: spec, phase, bids, award, result, verdicts, money trail and progress."""
        return cast(Task, await self.call("task_get", {"taskId": hex_id(task_id)}))

    async def task_list(self, *, status: str | None = None, client: bytes | str | None = None,
                        provider: bytes | str | None = None, open: bool = False,
                        limit: int | None = None) -> JsonObject:
        """Tasks, newest first, filtered by status, client, provider."""
        return cast(JsonObject, await self.call("task_list", task_list_params(
            status, client, provider, open, limit)))

    async def task_why(self, task_id: bytes | str) -> JsonObject:
        """Why a task has (or had) no usable bid."""
        return cast(JsonObject, await self.call("task_why", {"taskId": hex_id(task_id)}))

    async def provider_get(self, address: bytes | str) -> Provider:
        """A provider: declaration, stake, record, reputation, flags and earnings."""
        return cast(Provider, await self.call("provider_get",
                                              {"address": address_text(address)}))

    async def provider_list(self) -> JsonObject:
        """Every registered provider, by address."""
        return cast(JsonObject, await self.call("provider_list"))

    async def pool_get(self, pool_id: bytes | str) -> Pool:
        """An inference pool: terms, members, recent requests, totals."""
        return cast(Pool, await self.call("pool_get", {"poolId": hex_id(pool_id)}))

    async def pool_list(self, *, open: bool = False, limit: int | None = None) -> JsonObject:
        """Inference pools, newest first."""
        return cast(JsonObject, await self.call("pool_list", with_limit({"open": open}, limit)))

    async def model_get(self, model_id: bytes | str, *, batch: int = 1) -> Model:
        """A registered model: owner, name, file, inputs and outputs, costs per row and per
        batch."""
        return cast(Model, await self.call("model_get",
                                           {"modelId": hex_id(model_id), "batch": batch}))

    async def model_list(self, *, owner: bytes | str | None = None,
                         limit: int | None = None) -> JsonObject:
        """Registered models, newest first, filtered by owner."""
        owner_text = None if owner is None else address_text(owner)
        return cast(JsonObject, await self.call("model_list",
                                                with_limit({"owner": owner_text}, limit)))

    async def provider_earnings(self, address: bytes | str, *, period: str = "day",
                                limit: int | None = None) -> JsonObject:
        """What `address` was paid, earned as a verifier and was slashed, by `period` ("hour",
        "day" or "epoch" of block time), newest first."""
        return cast(JsonObject, await self.call("provider_earnings", with_limit(
            {"address": address_text(address), "period": period}, limit)))

    async def agent_status(self) -> JsonObject:
        """This node's market agents: whether they run, device, benchmarks, bids, outcomes and
        the reasons for skipped tasks."""
        return cast(JsonObject, await self.call("agent_status"))

    # --- governance -------------------------------------------------------------------------

    async def gov_params(self) -> JsonObject:
        """The governable parameters: value, bounds, unit, changes voted and waiting."""
        return cast(JsonObject, await self.call("gov_params"))

    async def gov_list(self, *, status: str | None = None,
                       limit: int | None = None) -> JsonObject:
        """Governance proposals, newest first, filtered by status."""
        return cast(JsonObject, await self.call("gov_list", with_limit(
            {} if status is None else {"status": status}, limit)))

    async def gov_get(self, proposal_id: int) -> JsonObject:
        """One proposal: its changes, tally (running while voting), votes and schedule."""
        return cast(JsonObject, await self.call("gov_get", {"proposalId": proposal_id}))

    # --- files ------------------------------------------------------------------------------

    async def blob_put(self, data: bytes) -> JsonObject:
        """Store a small file in the node's blob store (`upload_file` takes any size)."""
        return cast(JsonObject, await self.call("blob_put", {"data": b64(data)},
                                                timeout_s=TRANSFER_TIMEOUT_S))

    async def blob_put_chunk(self, data: bytes) -> JsonObject:
        """Store one chunk (at most 1 MiB) of a file uploaded in parts."""
        return cast(JsonObject, await self.call("blob_putChunk", {"data": b64(data)},
                                                timeout_s=TRANSFER_TIMEOUT_S))

    async def blob_put_manifest(self, size: int, chunks: Sequence[bytes | str]) -> JsonObject:
        """Store the manifest of a file whose chunks were stored with `blob_put_chunk`."""
        return cast(JsonObject, await self.call(
            "blob_putManifest", {"size": size, "chunks": [hex_id(c) for c in chunks]},
            timeout_s=TRANSFER_TIMEOUT_S))

    async def blob_manifest(self, file_id: bytes | str) -> JsonObject:
        """A file's size and chunk ids (fetched from peers if missing)."""
        return cast(JsonObject, await self.call("blob_manifest", {"fileId": hex_id(file_id)},
                                                timeout_s=TRANSFER_TIMEOUT_S))

    async def blob_chunk(self, chunk_id: bytes | str) -> JsonObject:
        """One chunk, its bytes in base64 under `data` (fetched from peers if missing)."""
        return cast(JsonObject, await self.call("blob_chunk", {"chunkId": hex_id(chunk_id)},
                                                timeout_s=TRANSFER_TIMEOUT_S))

    async def upload_file(self, data: bytes) -> bytes:
        """Store `data` on the node chunk by chunk; its file id, checked against the node's
        answers."""
        ids = []
        for chunk in chunks_of(data, MAX_CHUNK_BYTES):
            ids.append(stored_chunk(chunk, (await self.blob_put_chunk(chunk))["chunkId"]))
        return check_file(data, (await self.blob_put_manifest(len(data), ids))["fileId"])

    async def download_file(self, file_id: bytes | str) -> bytes:
        """A file by id; every chunk and the whole file are checked against their ids."""
        manifest = await self.blob_manifest(file_id)
        parts = []
        for chunk_hex in manifest_chunks(manifest, hex_id(file_id)):
            answer = await self.blob_chunk(chunk_hex)
            parts.append(sent_chunk(base64.b64decode(answer["data"]), chunk_hex))
        data = b"".join(parts)
        check_file(data, hex_id(file_id), sent=True)
        return data

    # --- subscriptions ----------------------------------------------------------------------

    def subscribe(self, params: dict[str, Any], *, idle_timeout: float | None = None,
                  until: Callable[[Any], bool] | None = None) -> Subscription:
        """A `sub_subscribe` subscription with `params` (the raw form of the three below)."""
        return Subscription(self.url, params, timeout=self.timeout, idle_timeout=idle_timeout,
                            until=until)

    def subscribe_blocks(self, *, idle_timeout: float | None = None) -> Subscription:
        """Every finalised block (`Block`, hashes of its transactions), from now on."""
        return self.subscribe({"kind": "blocks"}, idle_timeout=idle_timeout)

    def subscribe_tx(self, tx_hash: bytes | str, *,
                     idle_timeout: float | None = None) -> Subscription:
        """The transaction's `TxReceipt` once it is final (finalized, rejected or dropped):
        one item, then the iteration ends."""
        return self.subscribe({"kind": "txStatus", "hash": hex_id(tx_hash)},
                              idle_timeout=idle_timeout, until=lambda _: True)

    def subscribe_task(self, task_id: bytes | str | None = None, *,
                       idle_timeout: float | None = None) -> Subscription:
        """A task's `Task` view now and at each change, ending once it is closed; with no
        `task_id`, every change of every task (never ends)."""
        if task_id is None:
            return self.subscribe({"kind": "task"}, idle_timeout=idle_timeout)
        return self.subscribe({"kind": "task", "taskId": hex_id(task_id)},
                              idle_timeout=idle_timeout, until=task_closed)

    # --- helpers ----------------------------------------------------------------------------

    async def send_transaction(self, key: PrivateKey, payload: Payload, *,
                               fee: int | None = None, wait: bool = True,
                               wait_s: float = DEFAULT_SEND_TIMEOUT_S) -> TxReceipt:
        """Sign `payload` with `key` at the account's next nonce and send it; if `wait`, wait
        until it is final (or rejected). The node's receipt. With no `fee`, the chain's least
        fee now (`chosen_fee`)."""
        status = await self.chain_status()
        nonce = (await self.account_get(key.address))["nonce"]
        tx = sign(key, status["chainId"], nonce, chosen_fee(fee, status), payload)
        if not wait:
            return await self.tx_send(tx)
        return await self.tx_send_and_wait(tx, wait_s=wait_s)

    async def submit_task(self, key: PrivateKey, spec: WorkloadSpec, terms: TaskTerms, *,
                          inputs: bytes | None = None, fee: int | None = None,
                          wait_s: float = DEFAULT_SEND_TIMEOUT_S) -> str:
        """Upload `inputs` (if given; the spec then names them), submit the task and wait for
        the submission to be final; the task id (hex). `RpcCallError` if it was rejected."""
        if inputs is not None:
            spec = dataclasses.replace(spec, inputs=await self.upload_file(inputs))
        receipt = await self.send_transaction(key, submit_payload(spec, terms), fee=fee,
                                              wait_s=wait_s)
        return task_id_of(receipt)

    async def task_or_pending(self, task_id: bytes | str) -> Task | None:
        """The task's view; None while its submission is not final yet; `RpcCallError` for a
        task id that is no submission the node knows."""
        try:
            return await self.task_get(task_id)
        except RpcCallError as exc:
            if exc.code != ErrorCode.NOT_FOUND:
                raise
        task_pending(hex_id(task_id), await self.tx_status(task_id))
        return None

    async def watch_task(self, task_id: bytes | str, *,
                         idle_timeout: float | None = None) -> AsyncIterator[Task]:
        """The task's view now and at each change, until it is closed (the last item)."""
        view = await self.task_or_pending(task_id)
        if view is not None and task_closed(view):
            yield view
            return
        async with self.subscribe_task(task_id, idle_timeout=idle_timeout) as changes:
            async for update in changes:
                yield cast(Task, update)

    async def fetch_result(self, task_id: bytes | str, key: PrivateKey) -> TaskOutput:
        """The task's view and its output, downloaded (checked against its file id) and
        opened with its client's `key` (results are sealed until they are paid)."""
        view = await self.task_get(task_id)
        result = view.get("result")
        if result is None:
            raise RpcCallError(f"task {view['id']} has no result (it is {view['status']})")
        return open_result(key, view, await self.download_file(result["outputId"]))

    async def register_provider(self, key: PrivateKey, devices: Sequence[Device],
                                benchmark: int, *, price_floor: int = 0, stake: int = 0,
                                fee: int | None = None,
                                wait_s: float = DEFAULT_SEND_TIMEOUT_S) -> TxReceipt:
        """Register (or update) the provider of `key`: its devices, benchmark, price floor
        per work unit, and `stake` added to its bond. The receipt."""
        payload = RegisterProvider(tuple(devices), benchmark, price_floor, stake)
        return await self.send_transaction(key, payload, fee=fee, wait_s=wait_s)


class Subscription:
    """One subscription over its own WebSocket to the node's `/ws`.

    `async with subscription as items: async for item in items: ...`; iterating yields each
    notification's result until `until(item)` holds (after that item), the node ends the
    subscription (`RpcCallError`), or `idle_timeout` seconds pass without news
    (`RpcTimeout`). Leaving the `async with` closes the connection."""

    def __init__(self, url: str, params: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT_S,
                 idle_timeout: float | None = None,
                 until: Callable[[Any], bool] | None = None) -> None:
        self.url = url
        self.params = params
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.until = until
        self.subscription: str | None = None
        self._stream: SocketStream | None = None
        self._frames = protocol.WsFrames()
        self._done = False

    async def __aenter__(self) -> Self:
        host, port, netloc = protocol.ws_endpoint(self.url)
        try:
            with anyio.fail_after(self.timeout):
                self._stream = await anyio.connect_tcp(host, port)
                await self._stream.send(self._frames.handshake(netloc))
                while not self._frames.accepted:
                    await self._receive()
                call_id, message = protocol.subscribe_call(self.params)
                await self._stream.send(self._frames.send_text(message))
                while self.subscription is None:
                    self.subscription = protocol.subscription_id(call_id, await self._message())
        except TimeoutError:
            await self.aclose()
            raise RpcTimeout(f"sub_subscribe: no answer from {self.url} in time") from None
        except (OSError, ConnectionError, anyio.BrokenResourceError) as exc:
            await self.aclose()
            raise RpcCallError(f"cannot reach the node at {self.url}: {exc}") from exc
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        if self._stream is None or self.subscription is None:
            raise RpcCallError("the subscription is not open: use `async with`")
        if self._done:
            raise StopAsyncIteration
        try:
            # one deadline for the next notification: other messages (or frames dripping in)
            # are no news, and must not keep the wait alive
            with anyio.fail_after(self.idle_timeout):
                found, result = False, None
                while not found:
                    found, result = protocol.notification(self.subscription,
                                                          await self._message())
        except TimeoutError:
            raise RpcTimeout(f"no news from the node for {self.idle_timeout:g} s") from None
        except (ConnectionError, anyio.BrokenResourceError) as exc:
            raise RpcCallError(f"the node closed the connection: {exc}") from exc
        self._done = self.until is not None and self.until(result)
        return result

    async def aclose(self) -> None:
        """Close the connection (a normal WebSocket close, then the socket)."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        # A node already gone needs no goodbye.
        with anyio.move_on_after(1.0, shield=True), contextlib.suppress(
                OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(self._frames.close())
        await stream.aclose()

    async def _receive(self) -> None:
        if self._stream is None:
            raise ConnectionError("closed")
        try:
            data = await self._stream.receive(protocol.RECEIVE_BYTES)
        except anyio.EndOfStream:
            data = b""
        reply = self._frames.receive(data)
        if reply:
            await self._stream.send(reply)

    async def _message(self) -> str:
        while not self._frames.messages:
            await self._receive()
        return self._frames.messages.popleft()
