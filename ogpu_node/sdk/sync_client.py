"""`SyncClient`: the blocking twin of `Client`, for scripts and the command line. The same
methods with the same names and answers, over httpx's blocking client and a WebSocket on a
plain socket; the wire rules (`protocol`) and the task rules (`tasks`) are shared.

The module functions (`rpc_call`, `send_transaction`, `upload_file`, `download_file`) are the
one-call forms the CLIs, the devnet and the tests use with a node URL.
"""

from __future__ import annotations

import base64
import dataclasses
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self, cast

import httpx

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


class SyncClient:
    """A blocking client of the node at `url`, with the methods of `Client`.

    Use it as `with SyncClient(url) as client: ...`, or call `close()`."""

    def __init__(self, url: str = DEFAULT_RPC, *, timeout: float = DEFAULT_TIMEOUT_S,
                 max_reply_bytes: int = protocol.MAX_REPLY_BYTES) -> None:
        self.url = url
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self._http = httpx.Client(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             timeout_s: float | None = None) -> Any:
        """The result of `method` with named `params` (any method, typed or not)."""
        body = protocol.request(method, params)
        reader = protocol.ReplyReader(method, self.max_reply_bytes, timeout_s or self.timeout)
        try:
            with self._http.stream("POST", self.url, json=body,
                                   timeout=timeout_s or self.timeout) as response:
                for chunk in response.iter_bytes():
                    reader.add(chunk)
        except httpx.TimeoutException as exc:
            raise RpcTimeout(f"{method}: no answer from {self.url} in time") from exc
        except httpx.HTTPError as exc:
            raise RpcCallError(f"cannot reach the node at {self.url}: {exc}") from exc
        return protocol.result_of(method, reader.json(self.url, response.status_code))

    # --- chain ------------------------------------------------------------------------------

    def chain_status(self) -> ChainStatus:
        """Head, chain id, sync state of this node."""
        return cast(ChainStatus, self.call("chain_status"))

    def chain_get_block(self, block: int | str | bytes = "latest", *,
                        full_txs: bool = False) -> Block:
        """A finalised block by height, `"latest"`, or hash (bytes or hex)."""
        ref = block.hex() if isinstance(block, bytes) else block
        return cast(Block, self.call("chain_getBlock", {"block": ref, "fullTxs": full_txs}))

    def chain_get_block_range(self, start: int, end: int, *,
                              full_txs: bool = False) -> list[Block]:
        """Finalised blocks `start`..`end` (inclusive), cut at the head."""
        return cast(list[Block], self.call(
            "chain_getBlockRange", {"from": start, "to": end, "fullTxs": full_txs}))

    # --- transactions -----------------------------------------------------------------------

    def tx_send(self, tx: SignedTransaction | bytes) -> TxReceipt:
        """Submit a signed transaction (or its encoding); its receipt, pending."""
        return cast(TxReceipt, self.call("tx_send", {"tx": tx_hex(tx)}))

    def tx_send_and_wait(self, tx: SignedTransaction | bytes, *,
                         wait_s: float = DEFAULT_SEND_TIMEOUT_S) -> TxReceipt:
        """Send `tx` and wait until it is final; `RpcTimeout` if it is not in `wait_s` s."""
        return cast(TxReceipt, self.call(
            "tx_sendAndWait", {"tx": tx_hex(tx), "timeout": wait_s},
            timeout_s=wait_s + DEFAULT_TIMEOUT_S))

    def tx_get(self, tx_hash: bytes | str) -> TxWithReceipt:
        """A transaction and its receipt."""
        return cast(TxWithReceipt, self.call("tx_get", {"hash": hex_id(tx_hash)}))

    def tx_status(self, tx_hash: bytes | str) -> TxReceipt:
        """A transaction's receipt (state unknown if unseen)."""
        return cast(TxReceipt, self.call("tx_status", {"hash": hex_id(tx_hash)}))

    # --- accounts, validators, peers, node --------------------------------------------------

    def account_get(self, address: bytes | str) -> Account:
        """Balance, nonce, stake and unbonding of an address."""
        return cast(Account, self.call("account_get",
                                       {"address": address_text(address)}))

    def chain_genesis(self) -> JsonObject:
        """What a new node needs to join: the genesis document, its hash and where to dial."""
        return cast(JsonObject, self.call("chain_genesis"))

    def validators_list(self) -> Validators:
        """The active validator set."""
        return cast(Validators, self.call("validators_list"))

    def peers_list(self) -> list[Peer]:
        """Connected peers."""
        return cast(list[Peer], self.call("peers_list"))

    def node_health(self) -> Health:
        """Whether the node is synced and finalising."""
        return cast(Health, self.call("node_health"))

    def rpc_methods(self) -> list[str]:
        """The names of all methods."""
        return cast(list[str], self.call("rpc_methods"))

    # --- market -----------------------------------------------------------------------------

    def task_get(self, task_id: bytes | str) -> Task:
        """A task: spec, phase, bids, award, result, verdicts, money trail and progress."""
        return cast(Task, self.call("task_get", {"taskId": hex_id(task_id)}))

    def task_list(self, *, status: str | None = None, client: bytes | str | None = None,
                  provider: bytes | str | None = None, open: bool = False,
                  limit: int | None = None) -> JsonObject:
        """Tasks, newest first, filtered by status, client, provider."""
        return cast(JsonObject, self.call("task_list", task_list_params(
            status, client, provider, open, limit)))

    def task_why(self, task_id: bytes | str) -> JsonObject:
        """Why a task has (or had) no usable bid."""
        return cast(JsonObject, self.call("task_why", {"taskId": hex_id(task_id)}))

    def provider_get(self, address: bytes | str) -> Provider:
        """A provider: declaration, stake, record, reputation, flags and earnings."""
        return cast(Provider, self.call("provider_get",
                                        {"address": address_text(address)}))

    def provider_list(self) -> JsonObject:
        """Every registered provider, by address."""
        return cast(JsonObject, self.call("provider_list"))

    def pool_get(self, pool_id: bytes | str) -> Pool:
        """An inference pool: terms, members, recent requests, totals."""
        return cast(Pool, self.call("pool_get", {"poolId": hex_id(pool_id)}))

    def pool_list(self, *, open: bool = False, limit: int | None = None) -> JsonObject:
        """Inference pools, newest first."""
        return cast(JsonObject, self.call("pool_list", with_limit({"open": open}, limit)))

    def model_get(self, model_id: bytes | str, *, batch: int = 1) -> Model:
        """A registered model: owner, name, file, inputs and outputs, costs per row and per
        batch."""
        return cast(Model, self.call("model_get",
                                     {"modelId": hex_id(model_id), "batch": batch}))

    def model_list(self, *, owner: bytes | str | None = None,
                   limit: int | None = None) -> JsonObject:
        """Registered models, newest first, filtered by owner."""
        owner_text = None if owner is None else address_text(owner)
        return cast(JsonObject, self.call("model_list",
                                          with_limit({"owner": owner_text}, limit)))

    def provider_earnings(self, address: bytes | str, *, period: str = "day",
                                limit: int | None = None) -> JsonObject:
        """What `address` was paid, earned as a verifier and was slashed, by `period` ("hour",
        "day" or "epoch" of block time), newest first."""
        return cast(JsonObject, self.call("provider_earnings", with_limit(
            {"address": address_text(address), "period": period}, limit)))

    def agent_status(self) -> JsonObject:
        """This node's market agents: whether they run, device, benchmarks, bids, outcomes and
        the reasons for skipped tasks."""
        return cast(JsonObject, self.call("agent_status"))

    # --- governance -------------------------------------------------------------------------

    def gov_params(self) -> JsonObject:
        """The governable parameters: value, bounds, unit, changes voted and waiting."""
        return cast(JsonObject, self.call("gov_params"))

    def gov_list(self, *, status: str | None = None,
                       limit: int | None = None) -> JsonObject:
        """Governance proposals, newest first, filtered by status."""
        return cast(JsonObject, self.call("gov_list", with_limit(
            {} if status is None else {"status": status}, limit)))

    def gov_get(self, proposal_id: int) -> JsonObject:
        """One proposal: its changes, tally (running while voting), votes and schedule."""
        return cast(JsonObject, self.call("gov_get", {"proposalId": proposal_id}))

    # --- files ------------------------------------------------------------------------------

    def blob_put(self, data: bytes) -> JsonObject:
        """Store a small file in the node's blob store (`upload_file` takes any size)."""
        return cast(JsonObject, self.call("blob_put", {"data": b64(data)},
                                          timeout_s=TRANSFER_TIMEOUT_S))

    def blob_put_chunk(self, data: bytes) -> JsonObject:
        """Store one chunk (at most 1 MiB) of a file uploaded in parts."""
        return cast(JsonObject, self.call("blob_putChunk", {"data": b64(data)},
                                          timeout_s=TRANSFER_TIMEOUT_S))

    def blob_put_manifest(self, size: int, chunks: Sequence[bytes | str]) -> JsonObject:
        """Store the manifest of a file whose chunks were stored with `blob_put_chunk`."""
        return cast(JsonObject, self.call(
            "blob_putManifest", {"size": size, "chunks": [hex_id(c) for c in chunks]},
            timeout_s=TRANSFER_TIMEOUT_S))

    def blob_manifest(self, file_id: bytes | str) -> JsonObject:
        """A file's size and chunk ids (fetched from peers if missing)."""
        return cast(JsonObject, self.call("blob_manifest", {"fileId": hex_id(file_id)},
                                          timeout_s=TRANSFER_TIMEOUT_S))

    def blob_chunk(self, chunk_id: bytes | str) -> JsonObject:
        """One chunk, its bytes in base64 under `data` (fetched from peers if missing)."""
        return cast(JsonObject, self.call("blob_chunk", {"chunkId": hex_id(chunk_id)},
                                          timeout_s=TRANSFER_TIMEOUT_S))

    def upload_file(self, data: bytes) -> bytes:
        """Store `data` on the node chunk by chunk; its file id, checked against the node's
        answers."""
        ids = []
        for chunk in chunks_of(data, MAX_CHUNK_BYTES):
            ids.append(stored_chunk(chunk, (self.blob_put_chunk(chunk))["chunkId"]))
        return check_file(data, (self.blob_put_manifest(len(data), ids))["fileId"])

    def download_file(self, file_id: bytes | str) -> bytes:
        """A file by id; every chunk and the whole file are checked against their ids."""
        manifest = self.blob_manifest(file_id)
        parts = []
        for chunk_hex in manifest_chunks(manifest, hex_id(file_id)):
            answer = self.blob_chunk(chunk_hex)
            parts.append(sent_chunk(base64.b64decode(answer["data"]), chunk_hex))
        data = b"".join(parts)
        check_file(data, hex_id(file_id), sent=True)
        return data

    # --- subscriptions ----------------------------------------------------------------------

    def subscribe(self, params: dict[str, Any], *, idle_timeout: float | None = None,
                  until: Callable[[Any], bool] | None = None) -> SyncSubscription:
        """A `sub_subscribe` subscription with `params` (the raw form of the three below)."""
        return SyncSubscription(self.url, params, timeout=self.timeout, idle_timeout=idle_timeout,
                            until=until)

    def subscribe_blocks(self, *, idle_timeout: float | None = None) -> SyncSubscription:
        """Every finalised block (`Block`, hashes of its transactions), from now on."""
        return self.subscribe({"kind": "blocks"}, idle_timeout=idle_timeout)

    def subscribe_tx(self, tx_hash: bytes | str, *,
                     idle_timeout: float | None = None) -> SyncSubscription:
        """The transaction's `TxReceipt` once it is final (finalized, rejected or dropped):
        one item, then the iteration ends."""
        return self.subscribe({"kind": "txStatus", "hash": hex_id(tx_hash)},
                              idle_timeout=idle_timeout, until=lambda _: True)

    def subscribe_task(self, task_id: bytes | str | None = None, *,
                       idle_timeout: float | None = None) -> SyncSubscription:
        """A task's `Task` view now and at each change, ending once it is closed; with no
        `task_id`, every change of every task (never ends)."""
        if task_id is None:
            return self.subscribe({"kind": "task"}, idle_timeout=idle_timeout)
        return self.subscribe({"kind": "task", "taskId": hex_id(task_id)},
                              idle_timeout=idle_timeout, until=task_closed)

    # --- helpers ----------------------------------------------------------------------------

    def send_transaction(self, key: PrivateKey, payload: Payload, *,
                         fee: int | None = None, wait: bool = True,
                         wait_s: float = DEFAULT_SEND_TIMEOUT_S) -> TxReceipt:
        """Sign `payload` with `key` at the account's next nonce and send it; if `wait`, wait
        until it is final (or rejected). The node's receipt. With no `fee`, the chain's least
        fee now (`chosen_fee`)."""
        status = self.chain_status()
        nonce = (self.account_get(key.address))["nonce"]
        tx = sign(key, status["chainId"], nonce, chosen_fee(fee, status), payload)
        if not wait:
            return self.tx_send(tx)
        return self.tx_send_and_wait(tx, wait_s=wait_s)

    def submit_task(self, key: PrivateKey, spec: WorkloadSpec, terms: TaskTerms, *,
                    inputs: bytes | None = None, fee: int | None = None,
                    wait_s: float = DEFAULT_SEND_TIMEOUT_S) -> str:
        """Upload `inputs` (if given; the spec then names them), submit the task and wait for
        the submission to be final; the task id (hex). `RpcCallError` if it was rejected."""
        if inputs is not None:
            spec = dataclasses.replace(spec, inputs=self.upload_file(inputs))
        receipt = self.send_transaction(key, submit_payload(spec, terms), fee=fee,
                                        wait_s=wait_s)
        return task_id_of(receipt)

    def task_or_pending(self, task_id: bytes | str) -> Task | None:
        """The task's view; None while its submission is not final yet; `RpcCallError` for a
        task id that is no submission the node knows."""
        try:
            return self.task_get(task_id)
        except RpcCallError as exc:
            if exc.code != ErrorCode.NOT_FOUND:
                raise
        task_pending(hex_id(task_id), self.tx_status(task_id))
        return None

    def watch_task(self, task_id: bytes | str, *,
                   idle_timeout: float | None = None) -> Iterator[Task]:
        """The task's view now and at each change, until it is closed (the last item)."""
        view = self.task_or_pending(task_id)
        if view is not None and task_closed(view):
            yield view
            return
        with self.subscribe_task(task_id, idle_timeout=idle_timeout) as changes:
            for update in changes:
                yield cast(Task, update)

    def fetch_result(self, task_id: bytes | str, key: PrivateKey) -> TaskOutput:
        """The task's view and its output, downloaded (checked against its file id) and
        opened with its client's `key` (results are sealed until they are paid)."""
        view = self.task_get(task_id)
        result = view.get("result")
        if result is None:
            raise RpcCallError(f"task {view['id']} has no result (it is {view['status']})")
        return open_result(key, view, self.download_file(result["outputId"]))

    def register_provider(self, key: PrivateKey, devices: Sequence[Device],
                          benchmark: int, *, price_floor: int = 0, stake: int = 0,
                          fee: int | None = None,
                          wait_s: float = DEFAULT_SEND_TIMEOUT_S) -> TxReceipt:
        """Register (or update) the provider of `key`: its devices, benchmark, price floor
        per work unit, and `stake` added to its bond. The receipt."""
        payload = RegisterProvider(tuple(devices), benchmark, price_floor, stake)
        return self.send_transaction(key, payload, fee=fee, wait_s=wait_s)


class SyncSubscription:
    """One subscription over its own WebSocket to the node's `/ws`, blocking.

    `with subscription as items: for item in items: ...`, with the same rules as the async
    `Subscription`: it ends after an item for which `until(item)` holds; `RpcCallError` when
    the node ends it, `RpcTimeout` after `idle_timeout` seconds without news."""

    def __init__(self, url: str, params: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT_S,
                 idle_timeout: float | None = None,
                 until: Callable[[Any], bool] | None = None) -> None:
        self.url = url
        self.params = params
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.until = until
        self.subscription: str | None = None
        self._sock: socket.socket | None = None
        self._frames = protocol.WsFrames()
        self._deadline: float | None = None
        """When the wait in progress ends (monotonic): the socket's timeout bounds one read
        only, and a node dripping bytes or sending other messages would never reach it."""

    def __enter__(self) -> Self:
        host, port, netloc = protocol.ws_endpoint(self.url)
        self._deadline = time.monotonic() + self.timeout
        try:
            self._sock = socket.create_connection((host, port), timeout=self.timeout)
            self._sock.sendall(self._frames.handshake(netloc))
            while not self._frames.accepted:
                self._receive()
            call_id, message = protocol.subscribe_call(self.params)
            self._sock.sendall(self._frames.send_text(message))
            while self.subscription is None:
                self.subscription = protocol.subscription_id(call_id, self._message())
        except TimeoutError:
            self.close()
            raise RpcTimeout(f"sub_subscribe: no answer from {self.url} in time") from None
        except OSError as exc:
            self.close()
            raise RpcCallError(f"cannot reach the node at {self.url}: {exc}") from exc
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        if self._sock is None or self.subscription is None:
            raise RpcCallError("the subscription is not open: use `with`")
        while True:
            self._deadline = (None if self.idle_timeout is None
                              else time.monotonic() + self.idle_timeout)
            found, result = False, None
            while not found:
                try:
                    message = self._message()
                except TimeoutError:
                    raise RpcTimeout(f"no news from the node for {self.idle_timeout:g} s"
                                     ) from None
                except OSError as exc:  # ConnectionError included
                    raise RpcCallError(f"the node closed the connection: {exc}") from exc
                found, result = protocol.notification(self.subscription, message)
            yield result
            if self.until is not None and self.until(result):
                return

    def close(self) -> None:
        """Close the connection (a normal WebSocket close, then the socket)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.settimeout(1.0)
            sock.sendall(self._frames.close())
        except OSError:
            pass  # the node is gone already: nothing to say goodbye to
        sock.close()

    def _receive(self) -> None:
        if self._sock is None:
            raise ConnectionError("closed")
        if self._deadline is None:
            self._sock.settimeout(None)
        else:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the wait ran out")
            self._sock.settimeout(left)
        reply = self._frames.receive(self._sock.recv(protocol.RECEIVE_BYTES))
        if reply:
            self._sock.sendall(reply)

    def _message(self) -> str:
        while not self._frames.messages:
            self._receive()
        return self._frames.messages.popleft()


# --- one-call forms, by node URL -----------------------------------------------------------------


def rpc_call(url: str, method: str, params: dict[str, Any] | None = None,
             timeout: float = DEFAULT_TIMEOUT_S) -> Any:
    """Call `method` on the node at `url` and return its result, or raise `RpcCallError`."""
    with SyncClient(url, timeout=timeout) as client:
        return client.call(method, params)


def send_transaction(url: str, key: PrivateKey, payload: Payload, *, fee: int | None = None,
                     wait: bool = True, timeout: float = DEFAULT_SEND_TIMEOUT_S) -> TxReceipt:
    """`SyncClient.send_transaction` through the node at `url`."""
    with SyncClient(url) as client:
        return client.send_transaction(key, payload, fee=fee, wait=wait, wait_s=timeout)


def upload_file(url: str, data: bytes) -> bytes:
    """`SyncClient.upload_file` through the node at `url`: the file id."""
    with SyncClient(url) as client:
        return client.upload_file(data)


def download_file(url: str, file_id: bytes | str) -> bytes:
    """`SyncClient.download_file` through the node at `url`."""
    with SyncClient(url) as client:
        return client.download_file(file_id)
