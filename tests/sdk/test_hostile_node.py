"""The SDK against a hostile node: an answer that never ends, or that comes a byte at a time,
ends the call with a typed error instead of filling the memory or hanging (review of issue 17:
the clients read the whole body with `response.json()`, bounded by nothing)."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from ogpu_node.blobs import blob_id, file_id
from ogpu_node.sdk import Client, RpcCallError, RpcTimeout, SyncClient

Send = Callable[[socket.socket], None]


def endless(conn: socket.socket) -> None:
    """A chunked answer of spaces that goes on until the client hangs up."""
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    while True:
        conn.sendall(chunk)


def dripping(conn: socket.socket) -> None:
    """A well-formed answer, one byte every 20 ms (each read is quick: no read timeout)."""
    conn.recv(65536)
    body = b'{"jsonrpc": "2.0", "id": 1, "result": "' + b"x" * 10_000 + b'"}'
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body))
    for byte in body:
        conn.sendall(bytes([byte]))
        time.sleep(0.02)  # the hostile node's pace, not synchronisation


@pytest.fixture
def hostile() -> Iterator[Callable[[Send], str]]:
    """A one-connection-at-a-time server answering every connection with `send`."""
    server = socket.create_server(("127.0.0.1", 0))
    threads = []

    def start(send: Send) -> str:
        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn, contextlib.suppress(OSError):  # the client hung up, as it should
                    send(conn)
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return f"http://127.0.0.1:{server.getsockname()[1]}"

    yield start
    server.close()


def test_an_endless_answer_is_refused_past_the_limit(hostile: Callable[[Send], str]) -> None:
    with (SyncClient(hostile(endless), max_reply_bytes=1 << 20) as client,
          pytest.raises(RpcCallError, match="over 1048576 bytes")):
        client.chain_status()


# httpx nests async generators (aiter_bytes > aiter_raw > the transport's) and closes only the
# outer one when a reader stops early; under trio the inner ones are finalised by the garbage
# collector, with a ResourceWarning. The connection itself is closed by the `async with`.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_endless_answer_is_refused_by_the_async_client(
        hostile: Callable[[Send], str]) -> None:
    url = hostile(endless)

    async def call() -> None:
        async with Client(url, max_reply_bytes=1 << 20) as client:
            await client.chain_status()

    with pytest.raises(RpcCallError, match="over 1048576 bytes"):
        trio.run(call)


def test_an_answer_dripping_in_times_out_on_the_whole_call(
        hostile: Callable[[Send], str]) -> None:
    started = time.monotonic()
    with SyncClient(hostile(dripping), timeout=0.5) as client, pytest.raises(RpcTimeout):
        client.chain_status()
    assert time.monotonic() - started < 5  # 10 kB at 50 B/s would take 200 s


def chatty(conn: socket.socket) -> None:
    """A WebSocket that grants the subscription, then sends only other subscriptions' news."""
    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(conn.recv(65536))
    assert any(isinstance(e, Request) for e in ws.events())
    conn.sendall(ws.send(AcceptConnection()))
    while True:
        ws.receive_data(conn.recv(65536))
        calls = [json.loads(e.data) for e in ws.events() if isinstance(e, TextMessage)]
        if calls:
            break
    conn.sendall(ws.send(TextMessage(json.dumps(
        {"jsonrpc": "2.0", "id": calls[0]["id"], "result": "mine"}))))
    other = json.dumps({"jsonrpc": "2.0", "method": "sub_notify",
                        "params": {"subscription": "not-yours", "result": {}}})
    while True:
        conn.sendall(ws.send(TextMessage(other)))
        time.sleep(0.02)  # the hostile node's pace, not synchronisation


def test_other_messages_do_not_keep_a_sync_subscription_waiting(
        hostile: Callable[[Send], str]) -> None:
    started = time.monotonic()
    with (SyncClient(hostile(chatty)) as client,
          client.subscribe_blocks(idle_timeout=0.5) as blocks, pytest.raises(RpcTimeout)):
        next(iter(blocks))
    assert time.monotonic() - started < 5


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_other_messages_do_not_keep_an_async_subscription_waiting(
        hostile: Callable[[Send], str]) -> None:
    url = hostile(chatty)

    async def wait() -> None:
        async with Client(url) as client, client.subscribe_blocks(idle_timeout=0.5) as blocks:
            await blocks.__anext__()

    started = time.monotonic()
    with pytest.raises(RpcTimeout):
        trio.run(wait)
    assert time.monotonic() - started < 5


def json_rpc(answer: Callable[[dict[str, Any]], Any]) -> Send:
    """An HTTP JSON-RPC node that answers each call's params with `answer` (keep-alive)."""
    def send(conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        while True:
            head = [reader.readline()]
            while head[-1] not in (b"\r\n", b""):
                head.append(reader.readline())
            if head[-1] == b"":
                return
            length = next(int(h.split(b":")[1]) for h in head
                          if h.lower().startswith(b"content-length"))
            call = json.loads(reader.read(length))
            body = json.dumps({"jsonrpc": "2.0", "id": call["id"],
                               "result": answer(call)}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return send


def test_a_manifest_that_is_not_the_files_is_refused_before_any_chunk(
        hostile: Callable[[Send], str]) -> None:
    # every chunk the node sends matches its own id, but the manifest lists 4,096 of them for a
    # file whose id is another: the client would fetch 4 GiB before the whole-file check
    chunk = b"\x00" * 1024
    asked: list[str] = []

    def answer(call: dict[str, Any]) -> Any:
        asked.append(call["method"])
        if call["method"] == "blob_manifest":
            return {"fileId": call["params"]["fileId"], "size": 4_096 * 1024 * 1024,
                    "chunks": [blob_id(chunk).hex()] * 4_096}
        return {"chunkId": call["params"]["chunkId"], "size": len(chunk),
                "data": base64.b64encode(chunk).decode()}

    with SyncClient(hostile(json_rpc(answer))) as client, pytest.raises(
            RpcCallError, match="not file"):
        client.download_file(file_id(b"the file the user wants"))
    assert asked == ["blob_manifest"]
