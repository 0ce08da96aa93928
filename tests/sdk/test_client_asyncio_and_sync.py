"""The async `Client` under asyncio, and the blocking `SyncClient`, against the real RPC server
running in a thread of its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ogpu_node.ledger import Transfer
from ogpu_node.sdk import Client, RpcCallError, RpcTimeout, SyncClient
from ogpu_node.sdk.sync_client import download_file, rpc_call, upload_file
from ogpu_node.types import Amount, ogpu
from tests.rpc.conftest import transfer
from tests.sdk.conftest import ThreadedNode


def test_client_under_asyncio_calls_and_subscribes(threaded_node: ThreadedNode) -> None:
    node = threaded_node.node
    alice, bob = node.users()[:2]

    async def main() -> list[Any]:
        async with Client(threaded_node.url) as client:
            assert (await client.chain_status())["height"] == 0
            tx = transfer(node, alice, bob.address)
            assert (await client.tx_send(tx))["state"] == "pending"
            async with client.subscribe_blocks() as blocks:
                await asyncio.to_thread(threaded_node.run, node.produce_block)
                block = await blocks.__anext__()
            async with client.subscribe_tx(tx.hash) as receipts:
                states = [r["state"] async for r in receipts]
            with pytest.raises(RpcTimeout):
                async with client.subscribe_blocks(idle_timeout=0.05) as idle:
                    await idle.__anext__()
            return [block["height"], block["txs"], states]

    assert asyncio.run(main()) == [1, [transfer(node, alice, bob.address, nonce=0).hash.hex()],
                                   ["finalized"]]


def test_sync_client_sends_reads_and_subscribes(threaded_node: ThreadedNode) -> None:
    node = threaded_node.node
    alice, bob = node.users()[:2]
    with SyncClient(threaded_node.url) as client:
        receipt = client.send_transaction(alice, Transfer(bob.address, Amount(ogpu(1))),
                                          wait=False)
        assert receipt["state"] == "pending"
        with client.subscribe_blocks() as blocks:
            made = threaded_node.run(node.produce_block)
            assert next(iter(blocks))["hash"] == made.hash.hex()
        with client.subscribe_tx(receipt["hash"]) as receipts:
            assert [r["state"] for r in receipts] == ["finalized"]
        assert client.account_get(alice.address)["nonce"] == 1
        assert client.chain_get_block("latest")["height"] == 1
        with pytest.raises(RpcCallError) as caught:
            client.task_get("00" * 32)
        assert caught.value.code == -32001

    data = b"sdk" * 500_000  # two chunks
    file_id = upload_file(threaded_node.url, data)
    assert download_file(threaded_node.url, file_id) == data
    assert rpc_call(threaded_node.url, "chain_status")["height"] == 1
