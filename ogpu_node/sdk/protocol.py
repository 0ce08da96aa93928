"""JSON-RPC 2.0 and the WebSocket framing of subscriptions, without I/O: the async `Client` and
the blocking `SyncClient` both speak through these functions and differ only in how they move
bytes."""

from __future__ import annotations

import json
import time
from collections import deque
from itertools import count
from typing import Any
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from ogpu_node.sdk.errors import RpcCallError, RpcTimeout, error_from_answer

DEFAULT_RPC = "http://127.0.0.1:8545"
"""Where a node listens for JSON-RPC by default."""
DEFAULT_TIMEOUT_S = 10.0
"""Seconds an ordinary call may take."""
TRANSFER_TIMEOUT_S = 60.0
"""Seconds a call that moves a file chunk (up to 1 MiB) may take."""
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""The largest WebSocket message a client accepts (the node's largest view is far below)."""
MAX_REPLY_BYTES = 256 * 1024 * 1024
"""The largest HTTP answer a client reads by default: bounds what a hostile node can make it
hold (the node's largest, a range of full 4 MiB blocks, can pass `MAX_MESSAGE_BYTES`)."""
WS_PATH = "/ws"
RECEIVE_BYTES = 65536

_ids = count(1)


def request(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """A JSON-RPC call of `method` with named `params`, under a fresh id."""
    return {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params or {}}


class ReplyReader:
    """An HTTP answer's body read chunk by chunk, then parsed as JSON: refused (`RpcCallError`)
    once it passes `limit` bytes, and (`RpcTimeout`) once the call has taken `timeout_s` (the
    HTTP timeout bounds each read only: a node sending a byte at a time would never hit it)."""

    def __init__(self, method: str, limit: int, timeout_s: float) -> None:
        self.method, self.limit = method, limit
        self.deadline = time.monotonic() + timeout_s
        self._body = bytearray()

    def add(self, chunk: bytes) -> None:
        self._body += chunk
        if len(self._body) > self.limit:
            raise RpcCallError(f"{self.method}: the node's answer is over {self.limit} bytes")
        if time.monotonic() > self.deadline:
            raise RpcTimeout(f"{self.method}: the node's answer is still coming, too slowly")

    def json(self, url: str, status: int) -> Any:
        try:
            return json.loads(self._body)
        except (ValueError, RecursionError) as exc:
            raise RpcCallError(f"{url} did not answer JSON (HTTP {status})") from exc


def result_of(method: str, reply: Any) -> Any:
    """The result of the answer `reply` to a call of `method`, or its typed error."""
    if not isinstance(reply, dict):
        raise RpcCallError(f"{method}: the node answered {type(reply).__name__}, not an object")
    error = reply.get("error")
    if error:
        raise error_from_answer(method, error if isinstance(error, dict) else {"message": error})
    if "result" not in reply:
        raise RpcCallError(f"{method}: the node's answer has no result")
    return reply["result"]


def ws_endpoint(url: str) -> tuple[str, int, str]:
    """(host, port, netloc) of the WebSocket endpoint of the node whose HTTP URL is `url`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "ws") or not parts.hostname:
        raise RpcCallError(f"subscriptions need an http:// node URL, got {url!r}")
    return parts.hostname, parts.port or 80, parts.netloc


class WsFrames:
    """One client WebSocket to the node, as bytes in and bytes out.

    Feed what the socket read to `receive`, which answers the bytes to write back (pongs);
    complete text messages queue in `messages`. A close by the node, or the end of the stream,
    raises `ConnectionError`; a refused handshake or an oversized message, `RpcCallError`."""

    def __init__(self) -> None:
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._text: list[str] = []
        self._text_size = 0
        self.accepted = False
        self.messages: deque[str] = deque()

    def handshake(self, netloc: str) -> bytes:
        return self._ws.send(Request(host=netloc, target=WS_PATH))

    def send_text(self, text: str) -> bytes:
        return self._ws.send(TextMessage(text))

    def close(self) -> bytes:
        """The bytes of a normal close; none when the connection is already closing."""
        try:
            return self._ws.send(CloseConnection(code=1000))
        except LocalProtocolError:
            return b""

    def receive(self, data: bytes) -> bytes:
        self._ws.receive_data(data or None)
        reply = b""
        for event in self._ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection):
                raise RpcCallError(f"the node refused the WebSocket (HTTP {event.status_code})")
            elif isinstance(event, TextMessage):
                self._add_text(event.data, event.message_finished)
            elif isinstance(event, Ping):
                reply += self._ws.send(event.response())
            elif isinstance(event, CloseConnection):
                raise ConnectionError(f"closed by the node ({event.code})")
        if not data:
            raise ConnectionError("the node closed the connection")
        return reply

    def _add_text(self, text: str, finished: bool) -> None:
        self._text_size += len(text)
        if self._text_size > MAX_MESSAGE_BYTES:
            raise RpcCallError(f"the node sent a message over {MAX_MESSAGE_BYTES >> 20} MiB")
        self._text.append(text)
        if finished:
            self.messages.append("".join(self._text))
            self._text, self._text_size = [], 0


def subscribe_call(params: dict[str, Any]) -> tuple[int, str]:
    """(call id, message) of the `sub_subscribe` call for `params`."""
    call = request("sub_subscribe", params)
    return call["id"], json.dumps(call)


def subscription_id(call_id: int, message: str) -> str | None:
    """The subscription id if `message` answers the `sub_subscribe` call `call_id`, None if it
    is another message; the typed error if the node refused."""
    reply = json.loads(message)
    if not isinstance(reply, dict) or reply.get("id") != call_id:
        return None
    sub_id = result_of("sub_subscribe", reply)
    if not isinstance(sub_id, str):
        raise RpcCallError("sub_subscribe: the node answered no subscription id")
    return sub_id


def notification(sub_id: str, message: str) -> tuple[bool, Any]:
    """(True, result) if `message` notifies subscription `sub_id`, (False, None) if it is
    another message; `RpcCallError` if the node ended the subscription."""
    note = json.loads(message)
    params = note.get("params") if isinstance(note, dict) else None
    if not isinstance(params, dict) or params.get("subscription") != sub_id:
        return False, None
    if note.get("method") == "sub_closed":
        raise RpcCallError(f"the node ended the subscription: {params.get('reason')}")
    return True, params.get("result")
