"""A small synchronous JSON-RPC client for the CLIs and scripts: calls over HTTP (httpx), and
subscriptions over the node's WebSocket (wsproto on a blocking socket)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from itertools import count
from typing import Any
from urllib.parse import urlsplit

import httpx
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from ogpu_node.address import address_to_text
from ogpu_node.blobs import MAX_CHUNK_BYTES, blob_id, file_id
from ogpu_node.errors import OgpuError
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import sign_transaction
from ogpu_node.ledger.tx import Payload

DEFAULT_RPC = "http://127.0.0.1:8545"
_ids = count(1)


class RpcCallError(OgpuError):
    """The node answered with a JSON-RPC error, or could not be reached."""

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


def rpc_call(url: str, method: str, params: dict[str, Any] | None = None,
             timeout: float = 10.0) -> Any:
    """Call `method` on the node at `url` and return its result, or raise `RpcCallError`."""
    body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params or {}}
    try:
        response = httpx.post(url, json=body, timeout=timeout)
        reply = response.json()
    except httpx.HTTPError as exc:
        raise RpcCallError(f"cannot reach the node at {url}: {exc}") from exc
    except ValueError as exc:
        raise RpcCallError(f"{url} did not answer JSON (HTTP {response.status_code})") from exc
    error = reply.get("error") if isinstance(reply, dict) else None
    if error:
        data = error.get("data")
        detail = f" ({data['code']})" if isinstance(data, dict) and "code" in data else ""
        raise RpcCallError(f"{method}: {error.get('message')}{detail}", error.get("code"), data)
    return reply["result"]


def send_transaction(url: str, key: PrivateKey, payload: Payload, *, fee: int = 1_000,
                     wait: bool = True, timeout: float = 30.0) -> dict[str, Any]:
    """Sign `payload` with `key` at the account's next nonce, send it through the node at `url`
    and, if `wait`, wait for it to be final (or rejected); returns the node's receipt."""
    chain_id = rpc_call(url, "chain_status")["chainId"]
    nonce = rpc_call(url, "account_get", {"address": address_to_text(key.address)})["nonce"]
    tx = sign_transaction(key, chain_id=chain_id, nonce=int(nonce), fee=fee, payload=payload)
    if not wait:
        receipt: dict[str, Any] = rpc_call(url, "tx_send", {"tx": tx.encoded.hex()})
        return receipt
    receipt = rpc_call(url, "tx_sendAndWait", {"tx": tx.encoded.hex(), "timeout": timeout},
                       timeout=timeout + 5)
    return receipt


def ws_url(url: str) -> tuple[str, int, str]:
    """(host, port, netloc) of the WebSocket endpoint of the node whose HTTP URL is `url`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "ws") or not parts.hostname:
        raise RpcCallError(f"subscriptions need an http:// node URL, got {url!r}")
    return parts.hostname, parts.port or 80, parts.netloc


class Subscription:
    """One subscription over a WebSocket to `/ws` (blocking; for the CLIs).

    `open()` connects and subscribes; iterating yields each notification's `result` until the
    server ends the subscription (`sub_closed`, or a one-shot subscription that ended), or
    `idle_timeout` seconds pass without a message (`RpcCallError`)."""

    MAX_MESSAGE = 16 * 1024 * 1024

    def __init__(self, url: str, params: dict[str, Any], *, timeout: float = 10.0,
                 idle_timeout: float | None = None) -> None:
        self.url = url
        self.params = params
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.subscription: str | None = None
        self._sock: socket.socket | None = None
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._pending: list[str] = []
        self._text = ""

    def __enter__(self) -> Subscription:
        host, port, netloc = ws_url(self.url)
        try:
            self._sock = socket.create_connection((host, port), timeout=self.timeout)
            self._write(Request(host=netloc, target="/ws"))
            self._read_until_accepted()
            call_id = next(_ids)
            self._write(TextMessage(json.dumps({"jsonrpc": "2.0", "id": call_id,
                                            "method": "sub_subscribe", "params": self.params})))
            while True:
                reply = json.loads(self._next_message())
                if isinstance(reply, dict) and reply.get("id") == call_id:
                    break
        except OSError as exc:
            self.close()
            raise RpcCallError(f"cannot reach the node at {self.url}: {exc}") from exc
        except BaseException:
            self.close()
            raise
        error = reply.get("error")
        if error:
            self.close()
            raise RpcCallError(f"sub_subscribe: {error.get('message')}", error.get("code"),
                               error.get("data"))
        self.subscription = reply["result"]
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        if self._sock is None:
            raise RpcCallError("the subscription is not open")
        self._sock.settimeout(self.idle_timeout)
        while True:
            try:
                message = json.loads(self._next_message())
            except TimeoutError:
                raise RpcCallError(f"no news from the node for {self.idle_timeout:g} s") from None
            except ConnectionError as exc:
                raise RpcCallError(f"the node closed the connection: {exc}") from exc
            params = message.get("params") if isinstance(message, dict) else None
            if not isinstance(params, dict) or params.get("subscription") != self.subscription:
                continue
            if message.get("method") == "sub_closed":
                raise RpcCallError(f"the node ended the subscription: {params.get('reason')}")
            yield params.get("result")

    def close(self) -> None:
        if self._sock is None:
            return
        try:
            self._sock.settimeout(1.0)
            self._write(CloseConnection(code=1000))
        except (OSError, LocalProtocolError):
            pass
        self._sock.close()
        self._sock = None

    def _write(self, event: Event) -> None:
        if self._sock is None:
            raise ConnectionError("closed")
        self._sock.sendall(self._ws.send(event))

    def _receive(self) -> None:
        if self._sock is None:
            raise ConnectionError("closed")
        data = self._sock.recv(65536)
        self._ws.receive_data(data or None)
        for event in self._ws.events():
            if isinstance(event, TextMessage):
                self._text += event.data
                if len(self._text) > self.MAX_MESSAGE:
                    raise RpcCallError("the node sent a message over 16 MiB")
                if event.message_finished:
                    self._pending.append(self._text)
                    self._text = ""
            elif isinstance(event, Ping):
                self._write(event.response())
            elif isinstance(event, CloseConnection):
                raise ConnectionError(f"closed by the node ({event.code})")
            elif isinstance(event, RejectConnection):
                raise RpcCallError(f"the node refused the WebSocket (HTTP {event.status_code})")
        if not data:
            raise ConnectionError("connection closed")

    def _read_until_accepted(self) -> None:
        while True:
            if self._sock is None:
                raise ConnectionError("closed")
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed during the handshake")
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise RpcCallError(f"the node refused the WebSocket "
                                       f"(HTTP {event.status_code})")

    def _next_message(self) -> str:
        while not self._pending:
            self._receive()
        return self._pending.pop(0)


# --- files: the blob store through RPC ----------------------------------------------------------


def download_file(rpc: str, file_hex: str) -> bytes:
    """A file by id through `blob_manifest` and `blob_chunk`; every chunk and the whole file
    are checked against their ids."""
    manifest = rpc_call(rpc, "blob_manifest", {"fileId": file_hex}, timeout=60)
    parts = []
    for chunk_hex in manifest["chunks"]:
        answer = rpc_call(rpc, "blob_chunk", {"chunkId": chunk_hex}, timeout=60)
        chunk = base64.b64decode(answer["data"])
        if blob_id(chunk).hex() != chunk_hex:
            raise RpcCallError(f"the node sent bytes that are not chunk {chunk_hex}")
        parts.append(chunk)
    data = b"".join(parts)
    if len(data) != manifest["size"] or file_id(data).hex() != file_hex:
        raise RpcCallError(f"the downloaded file does not match its id {file_hex}")
    return data


def upload_file(rpc: str, data: bytes) -> bytes:
    """Store `data` on the node chunk by chunk (`blob_putChunk`, then `blob_putManifest`);
    returns its file id, checked against the node's answers."""
    chunks = [data[i:i + MAX_CHUNK_BYTES] for i in range(0, len(data), MAX_CHUNK_BYTES)]
    ids = []
    for chunk in chunks:
        answer = rpc_call(rpc, "blob_putChunk", {"data": base64.b64encode(chunk).decode()},
                          timeout=60)
        if answer["chunkId"] != blob_id(chunk).hex():
            raise RpcCallError("the node stored a chunk under another id")
        ids.append(answer["chunkId"])
    answer = rpc_call(rpc, "blob_putManifest", {"size": len(data), "chunks": ids}, timeout=60)
    fid = file_id(data)
    if answer["fileId"] != fid.hex():
        raise RpcCallError("the node stored the file under another id")
    return bytes(fid)
