"""JSON-RPC over WebSocket and the `blocks` and `txStatus` subscriptions."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection

from ogpu_node.rpc.config import RpcConfig
from ogpu_node.rpc.errors import ErrorCode
from ogpu_node.rpc.metrics import NodeMetrics
from ogpu_node.rpc.subscriptions import WsSession
from tests.rpc.conftest import TEST_CONFIG, Rpc, open_ws, serving, transfer
from tests.rpc.local_node import LocalNode


class WsClient:
    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.next_id = 0

    async def send(self, payload: Any) -> None:
        await self.ws.send_message(json.dumps(payload))

    async def receive(self) -> Any:
        return json.loads(await self.ws.get_message())

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        self.next_id += 1
        await self.send({"jsonrpc": "2.0", "method": method, "params": params or [],
                         "id": self.next_id})
        answer: dict[str, Any] = await self.receive()
        assert answer["id"] == self.next_id, answer
        return answer

    async def result(self, method: str, params: Any = None) -> Any:
        answer = await self.call(method, params)
        assert "result" in answer, answer
        return answer["result"]


async def test_calls_and_batches_over_websocket(rpc: Rpc) -> None:
    async with open_ws(rpc.address) as ws:
        client = WsClient(ws)
        assert (await client.result("chain_status"))["height"] == 0
        await client.send([{"jsonrpc": "2.0", "method": "chain_status", "id": "a"},
                           {"jsonrpc": "2.0", "method": "peers_list", "id": "b"},
                           {"jsonrpc": "2.0", "method": "chain_status"}])
        answers = await client.receive()
        assert sorted(a["id"] for a in answers) == ["a", "b"]
        await ws.send_message("{oops")
        assert (await client.receive())["error"]["code"] == -32700
        # A notification gets no answer: the next message answers the next call.
        await client.send({"jsonrpc": "2.0", "method": "chain_status"})
        assert (await client.result("peers_list"))[0]["peerId"]


async def test_blocks_subscription_delivers_finalised_blocks(rpc: Rpc) -> None:
    async with open_ws(rpc.address) as ws:
        client = WsClient(ws)
        sub_id = await client.result("sub_subscribe", ["blocks"])
        assert isinstance(sub_id, str) and sub_id.startswith("0x")
        alice, bob = rpc.node.users()[:2]
        tx = transfer(rpc.node, alice, bob.address)
        await rpc.node.submit_tx(tx)
        first = rpc.node.produce_block()
        second = rpc.node.produce_block()
        for block in (first, second):
            note = await client.receive()
            assert note["method"] == "sub_notification"
            assert "id" not in note
            assert note["params"]["subscription"] == sub_id
            assert note["params"]["result"]["hash"] == block.hash.hex()
            assert note["params"]["result"]["height"] == block.height
        assert note["params"]["result"]["txs"] == []
        assert rpc.metrics.registry.get_sample_value("ogpu_rpc_subscriptions") == 1

        assert await client.result("sub_unsubscribe", [sub_id]) is True
        assert await client.result("sub_unsubscribe", [sub_id]) is False
        rpc.node.produce_block()
        # No notification follows: the next message is the answer to the next call.
        assert (await client.result("chain_status"))["height"] == 3


async def test_tx_status_subscription_notifies_the_final_status_once(rpc: Rpc) -> None:
    node = rpc.node
    async with open_ws(rpc.address) as ws:
        client = WsClient(ws)
        alice, bob = node.users()[:2]
        tx = transfer(node, alice, bob.address)
        await client.result("tx_send", [tx.encoded.hex()])
        sub_id = await client.result("sub_subscribe", {"kind": "txStatus",
                                                       "hash": tx.hash.hex()})
        await node.wait_until(lambda: node.waiting > 0)
        node.produce_block()
        note = await client.receive()
        assert note["method"] == "sub_notification"
        assert note["params"] == {"subscription": sub_id, "result": {
            "hash": tx.hash.hex(), "state": "finalized", "height": 1, "index": 0,
            "errorCode": None, "reason": None}}
        assert await client.result("sub_unsubscribe", [sub_id]) is False  # one-shot: ended

        # Already final when subscribing: the notification follows the answer at once.
        again = await client.result("sub_subscribe", ["txStatus", tx.hash.hex()])
        note = await client.receive()
        assert note["params"]["subscription"] == again
        assert note["params"]["result"]["state"] == "finalized"


async def test_subscription_errors(node: LocalNode) -> None:
    config = RpcConfig(listen="127.0.0.1:0", ws_max_subscriptions=2)
    async with serving(node, config) as rpc, open_ws(rpc.address) as ws:
        client = WsClient(ws)
        await client.result("sub_subscribe", ["blocks"])
        await client.result("sub_subscribe", ["blocks"])
        error = (await client.call("sub_subscribe", ["blocks"]))["error"]
        assert error["code"] == -32005
        error = (await client.call("sub_subscribe", ["txStatus"]))["error"]
        assert (error["code"], error["data"]) == (-32602, {"param": "hash"})
        error = (await client.call("sub_subscribe", ["blocks", "ab" * 32]))["error"]
        assert (error["code"], error["data"]) == (-32602, {"param": "hash"})


async def test_oversize_message_closes_the_connection(node: LocalNode) -> None:
    config = RpcConfig(listen="127.0.0.1:0", ws_max_message_bytes=1024)
    async with serving(node, config) as rpc:
        async with open_ws(rpc.address) as ws:
            await ws.send_message(json.dumps({"jsonrpc": "2.0", "method": "tx_send",
                                              "params": ["00" * 1000], "id": 1}))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason is not None
            assert closed.value.reason.code == 1009
        assert (await rpc.result("chain_status"))["height"] == 0
        # The slot is given back once hypercorn reports the disconnect (asynchronously).
        with trio.fail_after(5):
            # No event to wait on: the disconnect happens inside hypercorn.
            while rpc.metrics.registry.get_sample_value("ogpu_rpc_connections") != 0:  # noqa: ASYNC110
                await trio.sleep(0.005)


UPGRADE = {"connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
           "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}
"""A WebSocket handshake sent with httpx: trio-websocket leaks its socket on a refused one."""


async def test_websocket_refused_over_the_connection_limit(node: LocalNode) -> None:
    config = RpcConfig(listen="127.0.0.1:0", max_connections=1)
    async with serving(node, config) as rpc, open_ws(rpc.address):
        response = await rpc.http.get(rpc.address.http_url + "ws", headers=UPGRADE)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == ErrorCode.TOO_MANY_CONNECTIONS


async def test_websocket_handshake_is_accepted_and_unknown_paths_refused(rpc: Rpc) -> None:
    async with open_ws(rpc.address) as ws:
        assert (await WsClient(ws).result("chain_status"))["height"] == 0
    response = await rpc.http.get(rpc.address.http_url + "other", headers=UPGRADE)
    assert response.status_code == 403


async def test_client_that_does_not_read_is_marked_too_slow(node: LocalNode) -> None:
    outbox, inbox = trio.open_memory_channel[str](1)
    async with trio.open_nursery() as nursery, inbox:
        session = WsSession(node, TEST_CONFIG, NodeMetrics(), nursery, outbox)
        _, arm = await session.subscribe_blocks()
        arm()
        node.produce_block()
        node.produce_block()  # the second notification finds the queue full
        await session.overflowed.wait()
        assert json.loads(inbox.receive_nowait())["params"]["result"]["height"] == 1
        nursery.cancel_scope.cancel()
    outbox.close()


async def test_a_page_of_another_site_cannot_open_the_websocket(rpc: Rpc) -> None:
    # browsers let any page open a WebSocket to 127.0.0.1 and read it: only the node's own
    # pages (the dashboards) and programs, which send no Origin, are let in
    own = f"http://{rpc.address.host}:{rpc.address.port}"
    async with open_ws(rpc.address, origin=own) as ws:
        assert (await WsClient(ws).result("chain_status"))["height"] == 0
    for other in ("http://evil.example", f"http://{rpc.address.host}:1", "null"):
        with pytest.raises(BaseExceptionGroup) as refused:  # from open_ws's nursery
            async with open_ws(rpc.address, origin=other):
                pass
        assert refused.group_contains(ConnectionRejected, match="403", depth=None)
