"""The async `Client` under trio against the real RPC server: every method family, the
helpers, subscriptions and errors."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from ogpu_node.address import address_to_text
from ogpu_node.errors import AddressError
from ogpu_node.ledger import Transfer
from ogpu_node.ledger.market.payloads import OpenPool
from ogpu_node.result_crypto import ResultKeyError
from ogpu_node.rpc.methods import METHODS
from ogpu_node.sdk import (
    MAX_AUTO_FEE,
    Account,
    Block,
    ChainStatus,
    Client,
    ErrorCode,
    FeeRefused,
    Health,
    Model,
    Pool,
    Provider,
    RpcCallError,
    RpcTimeout,
    Task,
    TaskTerms,
    TxReceipt,
    TxWithReceipt,
    Validators,
)
from ogpu_node.types import Amount, Hash32, ogpu
from tests.rpc.conftest import Rpc, serving, transfer
from tests.rpc.local_node import LocalNode, make_genesis
from tests.rpc.market import GPU, MATMUL, OUTPUT, Market
from tests.rpc.test_models import register_mlp
from tests.sdk.conftest import assert_shape, producing

MISSING = "ab" * 32


@pytest.mark.parametrize("min_fee", [7_000, MAX_AUTO_FEE + 1])
async def test_with_no_fee_the_helpers_pay_the_chains_least_fee(tmp_path: Any,
                                                               min_fee: int) -> None:
    # a vote may raise min_fee: a fixed default would make every send fail after it
    node = LocalNode(tmp_path / "blobs", genesis=make_genesis(min_fee=min_fee))
    alice, bob = node.users()[:2]
    async with serving(node) as rpc, Client(rpc.address.http_url) as client:
        assert int((await client.chain_status())["minFee"]) == min_fee
        before = int((await client.account_get(alice.address))["balance"])
        if min_fee > MAX_AUTO_FEE:  # a node asking more than the SDK pays unasked
            with pytest.raises(FeeRefused, match="pass fee="):
                await client.send_transaction(alice, Transfer(bob.address, Amount(1)))
            assert node.mempool == []
            return
        async with producing(node):
            receipt = await client.send_transaction(alice, Transfer(bob.address, Amount(1)))
        assert receipt["state"] == "finalized"
        assert int((await client.account_get(alice.address))["balance"]) == before - 1 - min_fee


async def test_chain_accounts_and_a_transfer(rpc: Rpc) -> None:
    alice, bob = rpc.node.users()[:2]
    async with Client(rpc.address.http_url) as client:
        status = await client.chain_status()
        assert_shape(status, ChainStatus)
        assert (status["height"], status["chainId"]) == (0, rpc.node.state.chain_id)
        before = await client.account_get(bob.address)
        assert_shape(before, Account)

        async with producing(rpc.node):
            receipt = await client.send_transaction(alice, Transfer(bob.address,
                                                                    Amount(ogpu(2))))
        assert_shape(receipt, TxReceipt)
        assert (receipt["state"], receipt["height"]) == ("finalized", 1)
        after = await client.account_get(address_to_text(bob.address))
        assert int(after["balance"]) == int(before["balance"]) + ogpu(2)
        assert (await client.account_get(alice.address))["nonce"] == 1

        found = await client.tx_get(receipt["hash"])
        assert_shape(found, TxWithReceipt)
        assert found["tx"]["payload"] == {"to": address_to_text(bob.address),
                                          "amount": str(ogpu(2)), "amountOgpu": "2"}
        assert await client.tx_status(bytes.fromhex(receipt["hash"])) == found["receipt"]

        block = await client.chain_get_block(1, full_txs=True)
        assert_shape(block, Block)
        assert block["txs"][0]["hash"] == receipt["hash"]
        by_hash = await client.chain_get_block(bytes.fromhex(block["hash"]))
        assert by_hash["txs"] == [receipt["hash"]]
        assert await client.chain_get_block("latest") == by_hash
        assert [b["height"] for b in await client.chain_get_block_range(0, 5)] == [1]

        assert_shape(await client.validators_list(), Validators)
        assert (await client.peers_list())[0]["peerId"] == "12D3KooWpeer"
        health = await client.node_health()
        assert_shape(health, Health)
        assert health["healthy"] is True
        assert tuple(await client.rpc_methods()) == METHODS


async def test_submit_watch_and_fetch_a_task(rpc: Rpc) -> None:
    """The helpers through a task's whole life: registered providers, a submission, the
    phases as the task moves, and the opened result."""
    market = Market(rpc.node)
    await market.fund_validator()
    async with Client(rpc.address.http_url) as client:
        async with producing(rpc.node):
            for key, benchmark in ((market.provider_a, 1_000), (market.provider_b, 500)):
                receipt = await client.register_provider(key, GPU, benchmark, price_floor=1,
                                                         stake=ogpu(500))
                assert receipt["state"] == "finalized"
            task_id = await client.submit_task(market.client, MATMUL,
                                               TaskTerms(ogpu(1), exec_ms=20_000,
                                                         ttl_ms=200_000))
        provider = await client.provider_get(market.provider_a.address)
        assert_shape(provider, Provider)
        assert provider["devices"] == [{"model": "test-gpu", "memoryMb": 16_000}]
        assert (await client.provider_list())["count"] == 2

        phases: list[str] = []
        watching = trio.Event()

        async def watch() -> None:
            async for view in client.watch_task(task_id, idle_timeout=30):
                phases.append(view["status"])
                watching.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await watching.wait()
            task_hash = Hash32(bytes.fromhex(task_id))
            await market.award(task_hash, {1: ogpu(1) // 4, 2: ogpu(1) // 2})
            await market.commit_result(task_hash)
            await market.vote(task_hash, True)
        # The first view is the task as it was; changes the server saw together may show as
        # one, but the task always ends closed, and only then.
        assert phases[0] == "bidding" and phases[-1] == "closed"
        assert phases.count("closed") == 1

        view = await client.task_get(task_id)
        assert_shape(view, Task)
        assert view["closeReason"] == "completed"
        output = await client.fetch_result(task_id, market.client)
        assert output.data == OUTPUT and output.task["id"] == task_id
        with pytest.raises(ResultKeyError, match="only the task's client"):
            await client.fetch_result(task_id, market.provider_a)
        # A task already closed is watched as its one last view.
        assert [v["status"] async for v in client.watch_task(task_id)] == ["closed"]

        listed = await client.task_list(provider=market.provider_a.address, limit=5)
        assert [t["id"] for t in listed["tasks"]] == [task_id]
        assert (await client.task_why(task_id))["closeReason"] == "completed"


async def test_a_task_that_is_no_submission_is_refused(rpc: Rpc) -> None:
    async with Client(rpc.address.http_url) as client:
        with pytest.raises(RpcCallError, match=r"no task (ab)+ \(its submission is unknown\)"):
            await client.task_or_pending(MISSING)
        spec_problem = MATMUL.__class__(n=0, seed=1)
        with pytest.raises(RpcCallError, match="MatmulSpec: "):
            await client.submit_task(rpc.node.users()[0], spec_problem, TaskTerms(ogpu(1)))
        assert rpc.node.mempool == []


async def test_files_upload_and_download_in_chunks(rpc: Rpc) -> None:
    data = bytes(range(256)) * (10 * 1024)  # 2.5 MiB: three chunks
    async with Client(rpc.address.http_url) as client:
        file_id = await client.upload_file(data)
        manifest = await client.blob_manifest(file_id)
        assert (manifest["size"], len(manifest["chunks"])) == (len(data), 3)
        assert await client.download_file(file_id.hex()) == data
        small = await client.blob_put(b"hello")
        assert (await client.blob_chunk(small["fileId"]))["size"] > 0


async def test_pools_and_models(rpc: Rpc) -> None:
    market = Market(rpc.node)
    model_id = await register_mlp(market)
    pool = await market.send(market.client, OpenPool("", 64, ogpu(1), ogpu(10), 2, 0, ogpu(5),
                                                     5_000, 600_000, model_id))
    async with Client(rpc.address.http_url) as client:
        model = await client.model_get(model_id, batch=2)
        assert_shape(model, Model)
        assert (model["name"], model["info"]["batch"]) == ("digits-mlp", 2)
        listed = await client.model_list(owner=market.client.address, limit=1)
        assert [m["id"] for m in listed["models"]] == [model_id.hex()]
        view = await client.pool_get(pool.hash)
        assert_shape(view, Pool)
        assert (view["modelId"], view["modelName"]) == (model_id.hex(), "digits-mlp")
        assert [p["id"] for p in (await client.pool_list(open=True))["pools"]] == [view["id"]]
        for read in (client.pool_get, client.model_get):
            with pytest.raises(RpcCallError) as caught:
                await read(MISSING)
            assert caught.value.code == ErrorCode.NOT_FOUND
            assert caught.value.data["key"] == MISSING


async def test_errors_are_typed(rpc: Rpc) -> None:
    alice, bob = rpc.node.users()[:2]
    async with Client(rpc.address.http_url) as client:
        stale = transfer(rpc.node, alice, bob.address, nonce=5)
        with pytest.raises(RpcCallError) as caught:
            await client.tx_send(stale)
        assert caught.value.code == ErrorCode.TX_REJECTED
        assert caught.value.data["code"] == "bad_nonce"
        assert "(bad_nonce)" in str(caught.value)
        with pytest.raises(RpcCallError) as caught:
            await client.call("no_such_method")
        assert caught.value.code == ErrorCode.METHOD_NOT_FOUND
        with pytest.raises(AddressError):  # checked before anything is sent
            await client.account_get("ogpu1nope")
        with pytest.raises(RpcTimeout, match=r"no news from the node for 0\.05 s"):
            async with client.subscribe_blocks(idle_timeout=0.05) as blocks:
                await blocks.__anext__()
    async with Client("http://127.0.0.1:1/") as unreachable:
        with pytest.raises(RpcCallError, match="cannot reach the node") as caught:
            await unreachable.chain_status()
        assert caught.value.code is None
        with pytest.raises(RpcCallError, match="cannot reach the node"):
            async with unreachable.subscribe_blocks():
                pass


async def test_send_and_wait_times_out_as_rpc_timeout(node: LocalNode,
                                                      mock_clock: MockClock) -> None:
    alice, bob = node.users()[:2]
    errors: list[RpcTimeout] = []
    async with serving(node) as rpc, Client(rpc.address.http_url) as client:

        async def send() -> None:
            with pytest.raises(RpcTimeout) as caught:
                await client.tx_send_and_wait(transfer(node, alice, bob.address), wait_s=2.5)
            errors.append(caught.value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            await node.wait_until(lambda: node.waiting > 0)
            mock_clock.jump(2.6)
    [error] = errors
    assert error.code == ErrorCode.TIMEOUT
    assert error.data["receipt"]["state"] == "pending"


async def test_subscriptions_deliver_blocks_transactions_and_tasks(rpc: Rpc) -> None:
    node = rpc.node
    alice, bob = node.users()[:2]
    market = Market(node)
    async with Client(rpc.address.http_url) as client:
        async with client.subscribe_blocks() as blocks:
            made = [node.produce_block(), node.produce_block()]
            seen = [await blocks.__anext__() for _ in made]
        assert [b["hash"] for b in seen] == [b.hash.hex() for b in made]

        tx = transfer(node, alice, bob.address)
        await client.tx_send(tx)
        async with client.subscribe_tx(tx.hash) as receipts:
            node.produce_block()
            assert [r["state"] async for r in receipts] == ["finalized"]

        task_id = await market.submit()
        updates: list[Any] = []
        async with client.subscribe_task(task_id) as views:
            async for view in views:
                updates.append(view["status"])
                if view["status"] == "bidding":
                    await market.cancel(task_id)
        assert updates == ["bidding", "closed"]
        assert market.task(task_id).close_reason is not None
