"""The user-facing server: JSON-RPC over HTTP (`POST /`) and WebSocket (`/ws`), `GET /health`,
`GET /metrics`, and the dashboards under `/dashboard/` (`dashboard_files.py`); an ASGI app served
by hypercorn on trio.

Limits: a request body over `max_body_bytes` gets 413 as soon as its declared length or the bytes
read so far exceed the limit (the rest is never read); more than `max_connections` HTTP requests
in progress plus open WebSockets get 503; WebSocket messages over `ws_max_message_bytes` close the
connection (1009); each WebSocket answers at most `ws_max_pending` requests at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from ogpu_node.node_api import NodeApi
from ogpu_node.rpc.config import RpcConfig, split_listen
from ogpu_node.rpc.dashboard_files import PREFIX, SECURITY_HEADERS, DashboardFiles
from ogpu_node.rpc.errors import ErrorCode, RpcError
from ogpu_node.rpc.jsonrpc import Dispatcher, Reply, error_answer
from ogpu_node.rpc.metrics import NodeMetrics
from ogpu_node.rpc.subscriptions import WsSession
from ogpu_node.rpc.views import dumps, health_view

if TYPE_CHECKING:
    # trio-stubs (from trio-typing, a libp2p dependency) shadow trio's own types.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
WS_TOO_SLOW = 1008


@dataclass(frozen=True)
class RpcAddress:
    """Where the server listens (the real port when the config asked for port 0)."""

    host: str
    port: int

    @property
    def http_url(self) -> str:
        return f"http://{self.netloc}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.netloc}/ws"

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class RpcApp:
    """The ASGI application. One instance serves every connection of one node."""

    def __init__(self, api: NodeApi, config: RpcConfig, metrics: NodeMetrics) -> None:
        self.api = api
        self.config = config
        self.metrics = metrics
        self.dispatcher = Dispatcher(api, config, metrics)
        self.dashboard = DashboardFiles()
        self.connections = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    def _open(self) -> bool:
        if self.connections >= self.config.max_connections:
            self.metrics.count_rejection("too_many_connections")
            return False
        self.connections += 1
        self.metrics.connection_opened()
        return True

    def _close(self) -> None:
        self.connections -= 1
        self.metrics.connection_closed()

    # --- HTTP -----------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/health" and method == "GET":
            health = self.api.health()
            await _respond(send, 200 if health.healthy else 503, dumps(health_view(health)))
        elif path == "/metrics" and method == "GET":
            await _respond(send, 200, self.metrics.exposition(),
                           self.metrics.content_type.encode())
        elif path == PREFIX or path.startswith(PREFIX + "/"):
            await self._dashboard(scope, send)
        elif path == "/":
            if method != "POST":
                await _respond(send, 405, dumps({"error": "use POST for JSON-RPC"}),
                               extra=[(b"allow", b"POST")])
            elif not _json_body(scope):
                await _respond(send, 415, dumps({"error": "send JSON-RPC as content-type "
                                                          "application/json"}))
            elif not self._open():
                await _rpc_error(send, 503, _too_many_connections(self.config))
            else:
                try:
                    await self._http_rpc(scope, receive, send)
                finally:
                    self._close()
        else:
            await _respond(send, 404, dumps({"error": f"no such path: {path[:100]}",
                                             "paths": ["/", "/ws", "/health", "/metrics",
                                                       "/dashboard/"]}))

    async def _dashboard(self, scope: Scope, send: Send) -> None:
        etags = [v.decode("latin-1") for k, v in scope["headers"] if k == b"if-none-match"]
        answer = self.dashboard.answer(scope["path"], scope["method"], etags[0] if etags else None)
        await _respond(send, answer.status, answer.body, answer.content_type.encode(),
                       extra=[*answer.headers, *SECURITY_HEADERS])

    async def _http_rpc(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.config.max_body_bytes
        body = await _read_body(scope, receive, limit)
        if body is None:
            self.metrics.count_rejection("body_too_large")
            error = RpcError(ErrorCode.REQUEST_TOO_LARGE,
                             f"request body exceeds the limit of {limit} bytes", {"limit": limit})
            await _rpc_error(send, 413, error, close=True)
            return
        reply = await self.dispatcher.handle(body, _client(scope))
        if reply.text is None:
            await _respond(send, 204, b"")
        else:
            await _respond(send, 200, reply.text)

    # --- WebSocket ------------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if scope["path"] != "/ws" or not _same_origin(scope):
            await send({"type": "websocket.close", "code": 1008})  # a 403 to the handshake
            return
        if not self._open():
            await _ws_refuse(scope, send, _too_many_connections(self.config))
            return
        try:
            await send({"type": "websocket.accept"})
            await self._ws_session(scope, receive, send)
        finally:
            self._close()

    async def _ws_session(self, scope: Scope, receive: Receive, send: Send) -> None:
        outbox, outgoing = trio.open_memory_channel[str](self.config.ws_send_queue)
        client = _client(scope)
        close_code: int | None = None
        async with trio.open_nursery() as nursery:
            session = WsSession(self.api, self.config, self.metrics, nursery, outbox)
            pending = 0

            async def answer(data: bytes | str) -> None:
                nonlocal pending
                try:
                    reply = await self.dispatcher.handle(data, client, session)
                    await _queue(outbox, reply)
                finally:
                    pending -= 1

            async def read() -> None:
                nonlocal pending
                while True:
                    event = await receive()
                    if event["type"] != "websocket.receive":
                        break  # websocket.disconnect
                    data = event.get("text") or event.get("bytes") or b""
                    if pending >= self.config.ws_max_pending:
                        self.metrics.count_rejection("too_many_pending")
                        error = RpcError(ErrorCode.TOO_MANY_PENDING,
                                         f"at most {self.config.ws_max_pending} requests of one "
                                         "connection are answered at once",
                                         {"limit": self.config.ws_max_pending})
                        await _queue(outbox, Reply(dumps(error_answer(None, error))))
                        continue
                    pending += 1
                    nursery.start_soon(answer, data)
                nursery.cancel_scope.cancel()

            async def write() -> None:
                async for text in outgoing:
                    await send({"type": "websocket.send", "text": text})

            async def watch_overflow() -> None:
                nonlocal close_code
                await session.overflowed.wait()
                close_code = WS_TOO_SLOW
                nursery.cancel_scope.cancel()

            nursery.start_soon(read)
            nursery.start_soon(write)
            nursery.start_soon(watch_overflow)
        outbox.close()
        outgoing.close()
        if close_code is not None:
            await send({"type": "websocket.close", "code": close_code,
                        "reason": "client too slow: outgoing queue full"})


async def _queue(outbox: trio.MemorySendChannel[str], reply: Reply) -> None:
    """Queue a reply's text, then arm what waited for it (subscriptions)."""
    if reply.text is not None:
        await outbox.send(reply.text)
    for start in reply.after_send:
        start()


def _json_body(scope: Scope) -> bool:
    """Whether a POST says its body is JSON. A page of any site may send a browser's "simple"
    POST (text/plain, a form) to 127.0.0.1 without asking the server first; one that says
    application/json needs a CORS preflight, which this server never grants: so no other
    site can make a user's browser call this node (upload blobs, send transactions)."""
    value: bytes = dict(scope["headers"]).get(b"content-type", b"")
    return value.split(b";")[0].strip().lower() == b"application/json"


def _same_origin(scope: Scope) -> bool:
    """Whether a WebSocket handshake comes from no page, or from a page this server served.

    Browsers let any site open a WebSocket to any address, 127.0.0.1 included, and read the
    answers (no CORS for WebSockets): without this, every page a user of the dashboards
    visits could read this node's RPC, node-local views (`agent_status`) and subscriptions.
    Browsers always send `Origin`; the SDK, the CLI and other programs send none."""
    headers = dict(scope["headers"])
    origin = headers.get(b"origin")
    if origin is None:
        return True
    host = headers.get(b"host", b"").decode("latin-1").lower()
    return origin.decode("latin-1").lower() in (f"http://{host}", f"https://{host}")


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _too_many_connections(config: RpcConfig) -> RpcError:
    return RpcError(ErrorCode.TOO_MANY_CONNECTIONS,
                    f"too many connections (limit {config.max_connections}), retry later",
                    {"limit": config.max_connections})


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed `limit` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    return None
            except ValueError:
                pass  # hypercorn's HTTP parser refuses a malformed length before we see it
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # http.disconnect
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            break
    return bytes(body)


async def _respond(send: Send, status: int, body: str | bytes, content_type: bytes = JSON,
                   extra: list[tuple[bytes, bytes]] | None = None, close: bool = False) -> None:
    data = body.encode() if isinstance(body, str) else body
    headers = [(b"content-type", content_type), (b"content-length", str(len(data)).encode()),
               *(extra or [])]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _rpc_error(send: Send, status: int, error: RpcError, close: bool = False) -> None:
    await _respond(send, status, dumps(error_answer(None, error)), close=close)


async def _ws_refuse(scope: Scope, send: Send, error: RpcError) -> None:
    """Refuse a WebSocket handshake with an HTTP 503 and a JSON-RPC error, where supported."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = dumps(error_answer(None, error)).encode()
        await send({"type": "websocket.http.response.start", "status": 503,
                    "headers": [(b"content-type", JSON),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1013})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# --- serving ------------------------------------------------------------------------------------


class _HypercornConfig(HypercornConfig):
    """Remembers the sockets it creates, so that they are closed however serving ends."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[Any] = []

    def create_sockets(self) -> Any:
        sockets = super().create_sockets()
        self.created += [*sockets.secure_sockets, *sockets.insecure_sockets,
                         *sockets.quic_sockets]
        return sockets


def hypercorn_config(config: RpcConfig) -> _HypercornConfig:
    """hypercorn settings from ours, every one we rely on set explicitly."""
    hc = _HypercornConfig()
    hc.bind = [RpcAddress(*split_listen(config.listen)).netloc]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("ogpu_node.rpc.hypercorn")
    hc.keep_alive_timeout = config.keep_alive_s
    hc.websocket_max_message_size = config.ws_max_message_bytes
    hc.h11_max_incomplete_size = 16 * 1024
    hc.include_server_header = False
    hc.graceful_timeout = 1.0
    return hc


async def serve_rpc(
    api: NodeApi,
    config: RpcConfig,
    metrics: NodeMetrics,
    *,
    task_status: TaskStatus[RpcAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve JSON-RPC, health and metrics for `api` until cancelled.

    Start it with `await nursery.start(serve_rpc, api, config, metrics)`: that returns the
    `RpcAddress` it listens on once the socket is bound. Cancelling the nursery closes the
    listening socket and every connection (WebSockets are dropped, not closed gracefully).
    Unexpected errors inside a method are logged and answered with -32603; they never stop the
    server.
    """
    app = RpcApp(api, config, metrics)
    hc = hypercorn_config(config)
    try:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(serve, app, hc)
            address = RpcAddress(*split_listen(binds[0].split("://", 1)[-1]))
            log.info("RPC listening on %s (WebSocket %s)", address.http_url, address.ws_url)
            task_status.started(address)
    finally:
        for sock in hc.created:
            sock.close()
