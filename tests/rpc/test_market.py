"""The market's methods (`task_*`, `provider_*`, `blob_*`) and the `task` subscription, over real
HTTP and WebSocket, on market state built by signed transactions in real blocks."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from ogpu_node.address import address_to_text
from ogpu_node.blobs import MAX_CHUNK_BYTES, blob_id, file_id
from ogpu_node.ledger.market.payloads import JoinPool, OpenPool, SendRequest
from ogpu_node.result_crypto import ephemeral_public
from ogpu_node.rpc.config import RpcConfig
from ogpu_node.rpc.methods import METHODS
from ogpu_node.types import format_amount, ogpu
from tests.rpc.conftest import Rpc, open_ws, serving
from tests.rpc.local_node import VALIDATOR, LocalNode
from tests.rpc.market import EPHEMERAL, MATMUL, TRAIN, Market, submit_payload
from tests.rpc.test_websocket import WsClient

MISSING = "ab" * 32


@pytest.fixture
def market(rpc: Rpc) -> Market:
    return Market(rpc.node)


def text(key: Any) -> str:
    return address_to_text(key.address)


async def assert_param_error(rpc: Rpc, method: str, params: Any, param: str) -> None:
    error = await rpc.error(method, params)
    assert (error["code"], error["data"]) == (-32602, {"param": param}), error


async def test_the_market_methods_are_listed(rpc: Rpc) -> None:
    for name in ("task_get", "task_list", "task_why", "provider_get", "provider_list",
                 "blob_put", "blob_manifest", "blob_chunk"):
        assert name in METHODS
    assert "task_get" in await rpc.result("rpc_methods")


# --- task_get -----------------------------------------------------------------------------------


async def test_task_get_shows_a_completed_task_and_its_money_trail(rpc: Rpc,
                                                                   market: Market) -> None:
    task_id = await market.completed_task()
    task = market.task(task_id)
    view = await rpc.result("task_get", [task_id.hex()])
    assert view == await rpc.result("task_get", {"taskId": "0x" + task_id.hex()})
    assert view["id"] == task_id.hex() and view["height"] == rpc.node.state.height
    assert view["client"] == text(market.client)
    assert (view["kind"], view["kindId"], view["spec"]) == (
        "matmul", 1, {"n": 1024, "seed": 1, "inputs": None})
    assert view["workUnits"] == MATMUL.work_units() == 3
    assert (view["maxPrice"], view["maxPriceOgpu"]) == (str(ogpu(1)), "1")
    assert view["budget"] == str(3 * ogpu(1)) and view["escrow"] == "0"
    assert (view["status"], view["closeReason"], view["why"]) == ("closed", "completed", None)
    deposit = {"deposit": str(ogpu(1) // 10), "depositOgpu": "0.1"}  # returned by the reveal
    assert view["bids"] == [
        {"bidder": text(market.provider_a), "revealed": True, **deposit,
         "price": str(ogpu(1) // 4), "priceOgpu": "0.25"},
        {"bidder": text(market.provider_b), "revealed": True, **deposit,
         "price": str(ogpu(1) // 2), "priceOgpu": "0.5"}]
    assert view["provider"] == text(market.provider_a)
    assert view["price"] == str(task.attempt.price) and view["payment"] == str(task.payment)
    assert view["collateral"] == str(task.attempt.collateral)
    assert view["awardedMs"] == task.attempt.awarded_ms
    assert view["resultMs"] == task.attempt.result_ms
    assert task.attempt.result is not None
    assert view["result"] == {"outputId": task.attempt.result.output_id.hex(),
                              "checkpointRoot": task.attempt.result.checkpoint_root.hex(),
                              "checkpointIds": [], "metrics": {"loss_micros": 1234},
                              "keyCommitment": task.attempt.result.key_commitment.hex()}
    assert view["releasedKey"] == ephemeral_public(EPHEMERAL).hex()
    assert view["committee"] == [address_to_text(VALIDATOR.address)]
    assert view["verdicts"] == [{"verifier": address_to_text(VALIDATOR.address),
                                 "accept": True, "reason": "ok"}]
    events = [(line["event"], line["address"]) for line in view["trail"]]
    assert events == [("escrow", text(market.client)),
                      ("provider_collateral_locked", text(market.provider_a)),
                      ("payment", text(market.provider_a)),
                      ("verifier_fee", address_to_text(VALIDATOR.address)),
                      ("provider_collateral_returned", text(market.provider_a)),
                      ("refund", text(market.client))]
    assert [line["amount"] for line in view["trail"]] == [str(m.amount) for m in task.trail]
    assert view["trail"][2]["amountOgpu"] == format_amount(task.payment)
    assert view["progressBps"] is None
    assert (view["createdMs"], view["expiresMs"]) == (task.created_ms, task.expires_ms)


async def test_task_get_shows_progress_of_the_current_attempt_while_running(
        rpc: Rpc, market: Market) -> None:
    await market.register(market.provider_a)
    task_id = await market.submit(TRAIN)
    view = await rpc.result("task_get", [task_id.hex()])
    assert view["status"] == "bidding" and view["provider"] is None
    assert view["spec"]["hidden"] == [32] and view["kind"] == "train"
    assert view["awardedMs"] is None and view["result"] is None
    await market.award(task_id, {1: ogpu(1) // 10})
    assert (await rpc.result("task_get", [task_id.hex()]))["progressBps"] is None
    assert rpc.node.report_progress(market.provider_a, task_id, 4_200)
    view = await rpc.result("task_get", [task_id.hex()])
    assert (view["status"], view["progressBps"], view["attempt"]) == ("running", 4_200, 1)


async def test_task_get_errors(rpc: Rpc) -> None:
    error = await rpc.error("task_get", [MISSING])
    assert error["code"] == -32001
    assert error["data"] == {"what": "task", "key": MISSING}
    await assert_param_error(rpc, "task_get", ["zz" * 32], "taskId")
    await assert_param_error(rpc, "task_get", ["ab" * 31], "taskId")
    await assert_param_error(rpc, "task_get", [], "taskId")
    await assert_param_error(rpc, "task_get", {"task_id": MISSING}, "task_id")


# --- task_list ----------------------------------------------------------------------------------


async def test_task_list_is_newest_first_filtered_and_bounded(rpc: Rpc, market: Market) -> None:
    done = await market.completed_task()
    cancelled = await market.submit()
    await market.cancel(cancelled)
    open_one = await market.submit()
    listed = await rpc.result("task_list")
    assert [t["id"] for t in listed["tasks"]] == [open_one.hex(), cancelled.hex(), done.hex()]
    assert listed["total"] == 3 and listed["height"] == rpc.node.state.height
    first = listed["tasks"][0]
    assert first == {"id": open_one.hex(), "client": text(market.client), "kind": "matmul",
                     "status": "bidding", "closeReason": None, "attempt": 1, "provider": None,
                     "workUnits": 3, "maxPrice": str(ogpu(1)), "maxPriceOgpu": "1",
                     "createdMs": market.task(open_one).created_ms}

    async def ids(params: Any) -> list[str]:
        return [t["id"] for t in (await rpc.result("task_list", params))["tasks"]]

    assert await ids({"open": True}) == [open_one.hex()]
    assert await ids({"status": "closed"}) == [cancelled.hex(), done.hex()]
    assert await ids({"provider": text(market.provider_a)}) == [done.hex()]
    assert await ids({"client": text(market.provider_b)}) == []
    assert await ids({"client": text(market.client), "limit": 2}) == [open_one.hex(),
                                                                       cancelled.hex()]
    assert await ids(["closed", None, None, False, 1]) == [cancelled.hex()]


async def test_task_list_errors(rpc: Rpc) -> None:
    await assert_param_error(rpc, "task_list", {"status": "done"}, "status")
    await assert_param_error(rpc, "task_list", {"limit": 0}, "limit")
    await assert_param_error(rpc, "task_list", {"limit": 201}, "limit")
    await assert_param_error(rpc, "task_list", {"client": "ogpu1nope"}, "client")
    await assert_param_error(rpc, "task_list", {"open": "yes"}, "open")


# --- task_why -----------------------------------------------------------------------------------


async def test_task_why_explains_a_task_nobody_can_serve(rpc: Rpc, market: Market) -> None:
    task_id = await market.submit(min_benchmark=5_000)
    why = await rpc.result("task_why", [task_id.hex()])
    assert (why["code"], why["final"], why["registered"], why["eligible"]) == (
        "not_a_provider", False, 0, 0)
    await market.register(market.provider_a, benchmark=1_000)
    why = await rpc.result("task_why", {"taskId": task_id.hex()})
    assert why["code"] == "below_min_benchmark"
    assert why["explanation"] == "benchmark below the task's minimum"
    assert (why["registered"], why["eligible"], why["status"]) == (1, 0, "bidding")
    market.pass_phase(task_id)  # the bid window ends with no bid: closed NO_BIDS
    why = await rpc.result("task_why", [task_id.hex()])
    assert (why["status"], why["closeReason"], why["code"], why["final"]) == (
        "closed", "no_bids", "below_min_benchmark", True)
    assert (await rpc.result("task_get", [task_id.hex()]))["why"] == \
        "below_min_benchmark"


async def test_task_why_of_a_task_that_did_not_lack_bids(rpc: Rpc, market: Market) -> None:
    task_id = await market.completed_task()
    why = await rpc.result("task_why", [task_id.hex()])
    assert (why["code"], why["closeReason"], why["bids"]) == (None, "completed", 2)
    assert "did not end for lack of bids" in why["explanation"]
    error = await rpc.error("task_why", [MISSING])
    assert error["code"] == -32001
    await assert_param_error(rpc, "task_why", [42], "taskId")


# --- providers ----------------------------------------------------------------------------------


async def test_provider_get_shows_record_reputation_and_earnings(rpc: Rpc,
                                                                 market: Market) -> None:
    await market.completed_task()
    # A second task, cancelled after its award: the client's collateral goes to provider A.
    second = await market.submit()
    await market.award(second, {1: ogpu(1) // 4})
    await market.cancel(second)
    trail = market.task(second).trail
    compensation = next(m.amount for m in trail if m.event == "client_collateral_to_provider")
    payment = sum(m.amount for t in rpc.node.state.tasks.values() for m in t.trail
                  if m.event == "payment")

    view = await rpc.result("provider_get", [text(market.provider_a)])
    provider = rpc.node.state.providers[market.provider_a.address]
    assert view["address"] == text(market.provider_a) and view["active"] is True
    assert view["devices"] == [{"model": "test-gpu", "memoryMb": 16_000}]
    assert (view["benchmark"], view["priceFloor"]) == (1_000, "1")
    assert (view["stake"], view["locked"], view["freeStake"]) == (
        str(ogpu(500)), "0", str(ogpu(500)))
    assert view["counters"] == {"completed": 1, "failed": 0, "failStreak": 0, "bids": 2,
                                "unrevealed": 0, "workDone": 3,
                                "computeMs": provider.compute_ms}
    assert view["reputationBps"] == 10_000
    assert view["flags"] == ["slow"]  # 3 GFLOP in one second of block time, claimed 1000
    assert view["deliveredGflops"] == 3
    assert view["earnings"] == {
        "earned": str(payment + compensation),
        "earnedOgpu": format_amount(payment + compensation),
        "verifierFees": "0", "verifierFeesOgpu": "0", "slashed": "0", "slashedOgpu": "0",
        "paidTasks": 2}


async def test_provider_list_and_errors(rpc: Rpc, market: Market) -> None:
    assert (await rpc.result("provider_list")) == {"height": 0, "count": 0, "truncated": False,
                                                   "providers": []}
    await market.register(market.provider_a)
    await market.register(market.provider_b, benchmark=300, stake=ogpu(200))
    listed = await rpc.result("provider_list", [])
    assert listed["count"] == 2
    by_address = {p["address"]: p for p in listed["providers"]}
    assert by_address[text(market.provider_b)] == {
        "address": text(market.provider_b), "active": True, "benchmark": 300,
        "priceFloor": "1", "priceFloorOgpu": "0.000000001", "stake": str(ogpu(200)),
        "stakeOgpu": "200", "freeStake": str(ogpu(200)), "freeStakeOgpu": "200",
        "reputationBps": 10_000, "flags": [], "completed": 0, "failed": 0}
    error = await rpc.error("provider_get", [text(market.client)])
    assert error["code"] == -32001 and error["data"]["what"] == "provider"
    await assert_param_error(rpc, "provider_get", ["ogpu1xyz"], "address")
    await assert_param_error(rpc, "provider_get", [], "address")
    await assert_param_error(rpc, "provider_list", [1], "params")


# --- pools --------------------------------------------------------------------------------------


async def test_pool_get_and_list_show_terms_members_and_requests(rpc: Rpc,
                                                                 market: Market) -> None:
    await market.register(market.provider_a)
    pool_tx = await market.send(market.client, OpenPool("mlp-small", 64, ogpu(1), ogpu(10), 2,
                                                        0, ogpu(5), 5_000, 600_000))
    pool_id = pool_tx.hash.hex()
    await market.send(market.provider_a, JoinPool(pool_tx.hash, ogpu(5)))
    request = await market.send(market.client, SendRequest(pool_tx.hash, 7, 32))
    view = await rpc.result("pool_get", [pool_id])
    assert (view["id"], view["owner"], view["model"]) == (pool_id, text(market.client),
                                                          "mlp-small")
    assert view["subscribers"] == [{"address": text(market.provider_a),
                                    "stake": str(ogpu(5)), "stakeOgpu": "5"}]
    [req] = view["requests"]
    assert (req["id"], req["status"], req["racers"]) == (
        request.hash.hex(), "open", [text(market.provider_a)])
    assert view["escrow"] == str(ogpu(10) - ogpu(1) - ogpu(1) * 200 // 10_000)
    listed = await rpc.result("pool_list", {"open": True})
    assert listed["count"] == 1 and listed["pools"][0]["members"] == 1
    error = await rpc.error("pool_get", [MISSING])
    assert error["code"] == -32001 and error["data"]["what"] == "pool"
    await assert_param_error(rpc, "pool_get", ["xyz"], "poolId")


# --- blobs --------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_blob_put_manifest_and_chunks_round_trip(rpc: Rpc) -> None:
    data = bytes(range(256)) * (MAX_CHUNK_BYTES // 256 * 2 + 7)  # three chunks, the last short
    put = await rpc.result("blob_put", [b64(data)])
    assert put == {"fileId": file_id(data).hex(), "size": len(data), "chunks": 3}
    manifest = await rpc.result("blob_manifest", {"fileId": put["fileId"]})
    assert manifest["size"] == len(data) and len(manifest["chunks"]) == 3
    parts = []
    for chunk_id in manifest["chunks"]:
        chunk = await rpc.result("blob_chunk", [chunk_id])
        raw = base64.b64decode(chunk["data"])
        assert blob_id(raw).hex() == chunk_id == chunk["chunkId"]
        assert chunk["size"] == len(raw)
        parts.append(raw)
    assert b"".join(parts) == data
    empty = await rpc.result("blob_put", [""])
    assert (empty["size"], empty["chunks"]) == (0, 0)
    assert (await rpc.result("blob_manifest", [empty["fileId"]]))["chunks"] == []


async def test_a_file_larger_than_one_call_is_uploaded_chunk_by_chunk(rpc: Rpc) -> None:
    data = bytes(range(256)) * (MAX_CHUNK_BYTES // 256 * 2 + 7)  # three chunks, the last short
    chunks = [data[i:i + MAX_CHUNK_BYTES] for i in range(0, len(data), MAX_CHUNK_BYTES)]
    ids = []
    for chunk in chunks[:2]:
        put = await rpc.result("blob_putChunk", [b64(chunk)])
        assert put == {"chunkId": blob_id(chunk).hex(), "size": len(chunk)}
        ids.append(put["chunkId"])
    ids.append(blob_id(chunks[2]).hex())
    error = await rpc.error("blob_putManifest", {"size": len(data), "chunks": ids})
    assert error["code"] == -32010 and "chunk 2" in error["data"]["reason"]  # not uploaded yet
    await rpc.result("blob_putChunk", [b64(chunks[2])])
    error = await rpc.error("blob_putManifest", {"size": len(data) + 1, "chunks": ids})
    assert error["code"] == -32010 and "not" in error["data"]["reason"]
    error = await rpc.error("blob_putManifest", {"size": len(data), "chunks": ids[::-1]})
    assert error["code"] == -32010  # a short chunk in the middle cannot be a file
    put = await rpc.result("blob_putManifest", {"size": len(data), "chunks": ids})
    assert put == {"fileId": file_id(data).hex(), "size": len(data), "chunks": 3}
    manifest = await rpc.result("blob_manifest", [put["fileId"]])
    assert manifest["chunks"] == ids
    await assert_param_error(rpc, "blob_putChunk", [b64(b"x" * (MAX_CHUNK_BYTES + 1))], "data")
    await assert_param_error(rpc, "blob_putManifest", {"size": 1, "chunks": ["12"]},
                             "chunks[0]")
    await assert_param_error(rpc, "blob_putManifest", {"size": 1, "chunks": "ab"}, "chunks")
    await assert_param_error(rpc, "blob_putManifest", {"size": 0, "chunks": []}, "size")


async def test_blob_chunks_missing_here_are_fetched_from_peers(rpc: Rpc) -> None:
    chunk = b"held by a peer"
    rpc.node.peer_chunks[blob_id(chunk)] = chunk
    got = await rpc.result("blob_chunk", [blob_id(chunk).hex()])
    assert base64.b64decode(got["data"]) == chunk
    assert rpc.node.blobs is not None and blob_id(chunk) in rpc.node.blobs  # now kept here
    error = await rpc.error("blob_chunk", [MISSING])
    assert error["code"] == -32009 and error["data"]["id"] == MISSING
    error = await rpc.error("blob_manifest", [MISSING])
    assert error["code"] == -32009
    # A chunk that is no manifest cannot name a file.
    error = await rpc.error("blob_manifest", [blob_id(chunk).hex()])
    assert error["code"] == -32010 and "not a file manifest" in error["message"]


async def test_blob_param_errors_and_limits(tmp_path: Path) -> None:
    config = RpcConfig(listen="127.0.0.1:0", max_upload_bytes=10)
    async with serving(LocalNode(tmp_path / "blobs"), config) as rpc:
        await assert_param_error(rpc, "blob_put", [b64(b"x" * 11)], "data")
        await assert_param_error(rpc, "blob_put", [b64(b"x" * 30)], "data")  # refused unread
        await assert_param_error(rpc, "blob_put", ["not base64!"], "data")
        await assert_param_error(rpc, "blob_put", ["QQ"], "data")  # unpadded
        await assert_param_error(rpc, "blob_put", [123], "data")
        await assert_param_error(rpc, "blob_chunk", ["12"], "chunkId")
        await assert_param_error(rpc, "blob_manifest", [], "fileId")
        assert (await rpc.result("blob_put", [b64(b"x" * 10)]))["size"] == 10
    async with serving(LocalNode()) as rpc:  # a node that keeps no blobs
        error = await rpc.error("blob_put", [b64(b"x")])
        assert error["code"] == -32010 and "keeps no blobs" in error["data"]["reason"]
        assert (await rpc.error("blob_chunk", [MISSING]))["code"] == -32009


# --- the task subscription ----------------------------------------------------------------------


async def next_view(client: WsClient, sub_id: str) -> dict[str, Any]:
    note = await client.receive()
    assert note["method"] == "sub_notification", note
    assert note["params"]["subscription"] == sub_id
    view: dict[str, Any] = note["params"]["result"]
    return view


async def test_task_subscription_follows_one_task_to_its_close(rpc: Rpc,
                                                              market: Market) -> None:
    await market.fund_validator()
    await market.register(market.provider_a)
    task_id = await market.submit()
    async with open_ws(rpc.address) as ws:
        client = WsClient(ws)
        sub_id = await client.result("sub_subscribe", {"kind": "task",
                                                       "taskId": task_id.hex()})
        first = await next_view(client, sub_id)  # the current view comes first
        assert first == await rpc.result("task_get", [task_id.hex()])
        assert (first["status"], first["bids"]) == ("bidding", [])
        await market.bid(market.provider_a, task_id, ogpu(1) // 4)
        revealing = await next_view(client, sub_id)  # nobody else can bid: the window ended
        assert (revealing["status"], len(revealing["bids"])) == ("revealing", 1)
        await market.reveal(market.provider_a, task_id, ogpu(1) // 4)  # the only bid: awarded
        running = await next_view(client, sub_id)
        assert running["bids"][0]["revealed"] is True
        assert (running["status"], running["progressBps"]) == ("running", None)
        rpc.node.produce_block()  # a block that leaves the task as it is: nothing is sent
        rpc.node.report_progress(market.provider_a, task_id, 2_500)
        assert (await next_view(client, sub_id))["progressBps"] == 2_500
        await market.commit_result(task_id)
        verifying = await next_view(client, sub_id)
        assert (verifying["status"], verifying["check"]["phase"], verifying["committee"]) == (
            "verifying", "drawing", [])  # drawn from a block made after the result
        await market.vote(task_id, True)
        closed = await next_view(client, sub_id)
        while closed["status"] == "verifying":  # views of blocks made at once may coalesce
            closed = await next_view(client, sub_id)
        validator = address_to_text(VALIDATOR.address)
        assert closed["committee"] == closed["check"]["revealed"] == [validator]
        assert (closed["status"], closed["closeReason"]) == ("closed", "completed")
        # The subscription ended with the close.
        assert await client.result("sub_unsubscribe", [sub_id]) is False
        # A closed task: its view, then the end.
        again = await client.result("sub_subscribe", ["task", None, task_id.hex()])
        assert (await next_view(client, again))["closeReason"] == "completed"
        assert await client.result("sub_unsubscribe", [again]) is False


async def test_task_subscription_of_every_task_and_of_a_task_not_final_yet(
        rpc: Rpc, market: Market) -> None:
    async with open_ws(rpc.address) as ws:
        client = WsClient(ws)
        every = await client.result("sub_subscribe", ["task"])
        tx = await market.send(market.client, submit_payload(), block=False)
        one = await client.result("sub_subscribe", {"kind": "task", "taskId": tx.hash.hex()})
        await rpc.node.wait_until(lambda: rpc.node.task_subscribers == 2)
        rpc.node.produce_block()
        views = {}
        for _ in range(2):
            note = await client.receive()
            views[note["params"]["subscription"]] = note["params"]["result"]
        assert views[every]["id"] == views[one]["id"] == tx.hash.hex()
        assert views[every]["status"] == "bidding"
        assert await client.result("sub_unsubscribe", [one]) is True
        assert rpc.metrics.registry.get_sample_value("ogpu_rpc_subscriptions") == 1


async def test_task_subscription_errors(rpc: Rpc) -> None:
    error = await rpc.error("sub_subscribe", ["task"])
    assert error["code"] == -32007  # HTTP has no subscriptions
    async with open_ws(rpc.address) as ws:
        client = WsClient(ws)
        error = (await client.call("sub_subscribe", ["task", MISSING]))["error"]
        assert (error["code"], error["data"]) == (-32602, {"param": "hash"})
        error = (await client.call("sub_subscribe", {"kind": "blocks", "taskId": MISSING})
                 )["error"]
        assert (error["code"], error["data"]) == (-32602, {"param": "taskId"})
        error = (await client.call("sub_subscribe", {"kind": "task", "taskId": "ab"}))["error"]
        assert (error["code"], error["data"]) == (-32602, {"param": "taskId"})
