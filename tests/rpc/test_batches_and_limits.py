"""Batches, notifications, body and connection limits, and HTTP routing."""

from __future__ import annotations

import json
import time
from typing import Any

import trio

from ogpu_node.rpc.config import RpcConfig
from ogpu_node.rpc.errors import ErrorCode
from tests.rpc.conftest import TEST_CONFIG, Rpc, open_ws, serving, transfer
from tests.rpc.local_node import LocalNode


def call(method: str, call_id: Any = None, params: Any = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if call_id is not None:
        entry["id"] = call_id
    if params is not None:
        entry["params"] = params
    return entry


async def test_mixed_batch_answers_each_call_with_an_id(rpc: Rpc) -> None:
    batch = [
        call("chain_status", 1),
        call("no_such_method", 2),
        {"jsonrpc": "2.0", "id": 3},                 # invalid request
        call("account_get", 4, ["nope"]),            # invalid params
        call("chain_status"),                        # notification: no answer
        5,                                           # not an object: answered with id null
        call("peers_list", "six"),
    ]
    response = await rpc.post(batch)
    assert response.status_code == 200
    answers = {json.dumps(a["id"]): a for a in response.json()}
    assert len(answers) == 6
    assert answers["1"]["result"]["chainId"]
    assert answers["2"]["error"]["code"] == -32601
    assert answers["3"]["error"]["code"] == -32600
    assert answers["4"]["error"]["code"] == -32602
    assert answers["null"]["error"]["code"] == -32600
    assert answers['"six"']["result"][0]["peerId"]


async def test_notifications_run_but_get_no_answer(rpc: Rpc) -> None:
    alice, bob = rpc.node.users()[:2]
    tx = transfer(rpc.node, alice, bob.address)
    response = await rpc.post(call("tx_send", params=[tx.encoded.hex()]))
    assert (response.status_code, response.content) == (204, b"")
    assert rpc.node.mempool == [tx]

    response = await rpc.post([call("chain_status"), call("no_such_method")])
    assert (response.status_code, response.content) == (204, b"")


async def test_empty_batch_is_an_invalid_request(rpc: Rpc) -> None:
    response = await rpc.post([])
    assert response.json() == {"jsonrpc": "2.0", "id": None, "error": {
        "code": -32600, "message": "invalid request: empty batch"}}


async def test_batch_at_the_limit_is_answered_in_full(rpc: Rpc) -> None:
    response = await rpc.post([call("chain_status", i) for i in range(100)])
    assert sorted(a["id"] for a in response.json()) == list(range(100))


async def test_huge_batch_gets_one_error_fast(rpc: Rpc) -> None:
    started = time.perf_counter()
    response = await rpc.post([call("chain_status", i) for i in range(10_000)])
    elapsed = time.perf_counter() - started
    answer = response.json()
    assert isinstance(answer, dict)
    assert answer["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert answer["error"]["data"] == {"limit": 100}
    assert "10000 calls exceeds the limit of 100" in answer["error"]["message"]
    assert elapsed < 2.0
    assert (await rpc.result("chain_status"))["height"] == 0


async def _raw_exchange(rpc: Rpc, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a raw HTTP request, stop sending if the server answers, and read its answer."""
    stream = await trio.open_tcp_stream(rpc.address.host, rpc.address.port)
    received = b""
    async with stream:
        await stream.send_all(head)

        async def send_body() -> None:
            try:
                for chunk in body_chunks:
                    await stream.send_all(chunk)
            except trio.BrokenResourceError:
                pass  # the server answered and closed: it does not read the rest

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_body)
            while b"\r\n\r\n" not in received or not _complete(received):
                data = await stream.receive_some()
                if not data:
                    break
                received += data
            nursery.cancel_scope.cancel()
    return received


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


async def test_hundred_megabyte_body_is_refused_without_reading_it(rpc: Rpc) -> None:
    size = 100 * 1000 * 1000
    head = (b"POST / HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % size)
    # Only 64 KiB of the declared 100 MB are ever sent: the answer cannot wait for the rest.
    response = await _raw_exchange(rpc, head, [b"[" + b" " * 65_535])
    status_line, _, _ = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413")
    answer = json.loads(response.partition(b"\r\n\r\n")[2])
    assert answer["error"]["code"] == -32006
    assert answer["error"]["data"] == {"limit": TEST_CONFIG.max_body_bytes}
    assert (await rpc.result("chain_status"))["height"] == 0


async def test_chunked_body_is_cut_off_at_the_limit(node: LocalNode) -> None:
    config = RpcConfig(listen="127.0.0.1:0", max_body_bytes=1024 * 1024)
    async with serving(node, config) as rpc:
        head = (b"POST / HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
                b"transfer-encoding: chunked\r\n\r\n")
        chunk = b" " * 256 * 1024
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        response = await _raw_exchange(rpc, head, [framed] * 5)  # 1.25 MiB, no terminator
        assert response.startswith(b"HTTP/1.1 413")
        assert (await rpc.result("chain_status"))["height"] == 0


async def test_connection_limit(node: LocalNode) -> None:
    config = RpcConfig(listen="127.0.0.1:0", max_connections=1)
    async with serving(node, config) as rpc, open_ws(rpc.address) as ws:
        await ws.send_message(json.dumps(call("chain_status", 1)))
        assert json.loads(await ws.get_message())["id"] == 1  # the WebSocket holds the slot
        response = await rpc.post(call("chain_status", 2))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == -32004
        rejected = rpc.metrics.registry.get_sample_value(
            "ogpu_rpc_rejections_total", {"reason": "too_many_connections"})
        assert rejected == 1


async def test_routes(rpc: Rpc) -> None:
    response = await rpc.http.get(rpc.address.http_url)
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    response = await rpc.http.get(rpc.address.http_url + "nowhere")
    assert response.status_code == 404
    assert "/metrics" in response.json()["paths"]
    assert (await rpc.result("chain_status"))["height"] == 0
