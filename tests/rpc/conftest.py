"""Fixtures of the RPC tests: a `LocalNode` on the real ledger and the real server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Transaction, Transfer, sign_transaction
from ogpu_node.rpc.config import RpcConfig
from ogpu_node.rpc.metrics import NodeMetrics
from ogpu_node.rpc.server import RpcAddress, serve_rpc
from ogpu_node.types import Address, Amount, ogpu
from tests.rpc.local_node import LocalNode

TEST_CONFIG = RpcConfig(listen="127.0.0.1:0")


@dataclass
class Rpc:
    """An HTTP JSON-RPC client of one served node."""

    node: LocalNode
    address: RpcAddress
    metrics: NodeMetrics
    http: httpx.AsyncClient

    async def post(self, payload: Any) -> httpx.Response:
        return await self.http.post(self.address.http_url, json=payload)

    async def call(self, method: str, params: Any = None, call_id: Any = 1) -> dict[str, Any]:
        call: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": call_id}
        if params is not None:
            call["params"] = params
        response = await self.post(call)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        assert answer["id"] == call_id
        return answer

    async def result(self, method: str, params: Any = None) -> Any:
        answer = await self.call(method, params)
        assert "error" not in answer, answer
        return answer["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        answer = await self.call(method, params)
        assert "result" not in answer, answer
        error: dict[str, Any] = answer["error"]
        return error


@asynccontextmanager
async def serving(node: LocalNode, config: RpcConfig = TEST_CONFIG) -> AsyncIterator[Rpc]:
    """The server for `node` under `config`, and a client of it; stopped on exit."""
    metrics = NodeMetrics()
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve_rpc, node, config, metrics)
        async with httpx.AsyncClient(timeout=30) as http:
            yield Rpc(node, address, metrics, http)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_ws(address: RpcAddress, origin: str | None = None
                  ) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket to the server whose TCP stream we own: trio-websocket's own client does not
    close its socket after a close started by the server (its reader stops at EOF). `origin`:
    the Origin header a browser page would send."""
    stream = await trio.open_tcp_stream(address.host, address.port)
    headers = [] if origin is None else [(b"origin", origin.encode())]
    async with stream, trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, f"{address.host}:{address.port}", "/ws",
                                      extra_headers=headers)
        try:
            yield ws
        finally:
            await ws.aclose()
            nursery.cancel_scope.cancel()


@pytest.fixture
def node(tmp_path: Path) -> LocalNode:
    return LocalNode(blob_root=tmp_path / "blobs")


@pytest.fixture
async def rpc(node: LocalNode) -> AsyncIterator[Rpc]:
    async with serving(node) as client:
        yield client


def transfer(node: LocalNode, sender: PrivateKey, to: Address, amount: int = ogpu(1),
             nonce: int | None = None, fee: int = 1_000) -> Transaction:
    """A signed transfer from `sender`, by default with its next nonce after the mempool."""
    nonce = node.next_nonce(sender.address) if nonce is None else nonce
    return sign_transaction(sender, chain_id=node.state.chain_id, nonce=nonce, fee=fee,
                            payload=Transfer(to, Amount(amount)))
