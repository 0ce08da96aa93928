"""Every error code, bad params of every kind, and a server that keeps serving afterwards."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from ogpu_node.address import address_to_text
from ogpu_node.ledger.errors import BadNonce
from ogpu_node.rpc.config import RpcConfig
from ogpu_node.rpc.errors import ErrorCode
from tests.rpc.conftest import Rpc, serving, transfer
from tests.rpc.local_node import LocalNode

HASH = "ab" * 32


async def assert_still_serving(rpc: Rpc) -> None:
    assert (await rpc.result("chain_status"))["chainId"]


async def raw_post(rpc: Rpc, body: bytes) -> Any:
    response = await rpc.http.post(rpc.address.http_url, content=body,
                                   headers={"content-type": "application/json"})
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("body", [b"{", b"not json", b"\xff\xfe", b"[1, 2", b"NaN",
                                  b"[" * 100_000 + b"]" * 100_000, b"1" * 5000])
async def test_parse_error(rpc: Rpc, body: bytes) -> None:
    answer = await raw_post(rpc, body)
    assert answer["id"] is None
    assert answer["error"]["code"] == -32700
    await assert_still_serving(rpc)


@pytest.mark.parametrize(("call", "problem"), [
    ({"method": "chain_status", "id": 1}, '"jsonrpc" must be "2.0"'),
    ({"jsonrpc": "1.0", "method": "chain_status", "id": 1}, '"jsonrpc" must be "2.0"'),
    ({"jsonrpc": "2.0", "id": 1}, '"method" must be a string'),
    ({"jsonrpc": "2.0", "method": 7, "id": 1}, '"method" must be a string'),
    ({"jsonrpc": "2.0", "method": "chain_status", "id": 1, "parms": []}, "unknown member"),
    ({"jsonrpc": "2.0", "method": "chain_status", "params": "x", "id": 1},
     "params must be an array or an object"),
    (42, "a call must be a JSON object"),
    ("chain_status", "a call must be a JSON object"),
])
async def test_invalid_request(rpc: Rpc, call: Any, problem: str) -> None:
    answer = await raw_post(rpc, _json(call))
    assert answer["error"]["code"] == -32600
    assert problem in answer["error"]["message"]
    await assert_still_serving(rpc)


@pytest.mark.parametrize("bad_id", [True, {"a": 1}, [1]])
async def test_invalid_id_is_answered_with_null_id(rpc: Rpc, bad_id: Any) -> None:
    answer = await raw_post(rpc, _json({"jsonrpc": "2.0", "method": "chain_status",
                                        "id": bad_id}))
    assert (answer["id"], answer["error"]["code"]) == (None, -32600)


def test_error_codes_are_stable() -> None:
    assert {c.name: int(c) for c in ErrorCode} == {
        "PARSE_ERROR": -32700, "INVALID_REQUEST": -32600, "METHOD_NOT_FOUND": -32601,
        "INVALID_PARAMS": -32602, "INTERNAL_ERROR": -32603, "TX_REJECTED": -32000,
        "NOT_FOUND": -32001, "TIMEOUT": -32002, "RATE_LIMITED": -32003,
        "TOO_MANY_CONNECTIONS": -32004, "TOO_MANY_SUBSCRIPTIONS": -32005,
        "REQUEST_TOO_LARGE": -32006, "WEBSOCKET_REQUIRED": -32007, "TOO_MANY_PENDING": -32008,
        "BLOB_UNAVAILABLE": -32009, "BLOB_REFUSED": -32010, "UPLOADS_DISABLED": -32011,
        "UPLOAD_QUOTA_EXCEEDED": -32012,
    }


async def test_string_and_null_ids_are_echoed(rpc: Rpc) -> None:
    assert (await rpc.call("chain_status", call_id="abc"))["id"] == "abc"
    assert (await rpc.call("chain_status", call_id=None))["id"] is None


async def test_method_not_found(rpc: Rpc) -> None:
    error = await rpc.error("eth_blockNumber")
    assert error["code"] == -32601
    assert "eth_blockNumber" in error["message"]
    await assert_still_serving(rpc)


@pytest.mark.parametrize(("method", "params", "param", "problem"), [
    ("chain_getBlock", [], "block", "missing required parameter"),
    ("chain_getBlock", ["1"], "block", "odd number of digits"),
    ("chain_getBlock", [-1], "block", "outside"),
    ("chain_getBlock", [1.5], "block", "expected a height"),
    ("chain_getBlock", [True], "block", "expected a height"),
    ("chain_getBlock", ["zz" * 32], "block", "not hex"),
    ("chain_getBlock", ["ab" * 31], "block", "expected 32 bytes of hex, got 31"),
    ("chain_getBlock", [1, "yes"], "fullTxs", "expected true or false, got string"),
    ("chain_getBlock", [1, False, "extra"], "params", "at most 2 positional"),
    ("chain_getBlock", {"height": 1}, "height", "unknown parameter"),
    ("chain_getBlockRange", [5, 2], "to", "below from"),
    ("chain_getBlockRange", [0, 1000], "to", "at most 100 blocks"),
    ("tx_send", [], "tx", "missing required parameter"),
    ("tx_send", [12], "tx", "expected a hex string, got number"),
    ("tx_send", ["0xzz"], "tx", "not hex"),
    ("tx_send", ["ab" * 70_000], "tx", "longer than 65536 bytes"),
    ("tx_sendAndWait", ["00", 0], "timeout", "more than 0 and at most 120 seconds"),
    ("tx_sendAndWait", ["00", 121], "timeout", "at most 120 seconds"),
    ("tx_sendAndWait", ["00", "30"], "timeout", "expected seconds"),
    ("tx_get", [HASH[:-2]], "hash", "expected 32 bytes"),
    ("tx_status", [None], "hash", "expected a hex string, got null"),
    ("account_get", ["ogpu1qqqq"], "address", "too short"),
    ("account_get", [42], "address", "expected an ogpu1... address"),
    ("account_get", ["cosmos1qqqqqqqqqqqqqq"], "address", "prefix"),
    ("validators_list", [1], "params", "at most 0 positional"),
    ("sub_subscribe", ["newHeads"], "kind", "expected one of 'blocks', 'txStatus'"),
])
async def test_invalid_params_name_the_param(rpc: Rpc, method: str, params: Any, param: str,
                                             problem: str) -> None:
    error = await rpc.error(method, params)
    assert error["code"] == -32602
    assert error["message"].startswith(f"invalid params: {param}: ")
    assert problem in error["message"]
    assert error["data"] == {"param": param}
    await assert_still_serving(rpc)


async def test_bad_address_checksum(rpc: Rpc) -> None:
    good = address_to_text(rpc.node.users()[0].address)
    typo = good[:-1] + ("q" if good[-1] != "q" else "p")
    error = await rpc.error("account_get", [typo])
    assert error["code"] == -32602
    assert "checksum" in error["message"]


async def test_tx_rejected_carries_the_ledger_code(rpc: Rpc) -> None:
    alice, bob = rpc.node.users()[:2]
    tx = transfer(rpc.node, alice, bob.address, nonce=5)
    error = await rpc.error("tx_send", [tx.encoded.hex()])
    assert error["code"] == -32000
    assert error["data"]["code"] == BadNonce.code == "bad_nonce"
    assert "nonce 5" in error["data"]["reason"]

    error = await rpc.error("tx_send", ["c0ffee"])  # valid hex, not a transaction
    assert (error["code"], error["data"]["code"]) == (-32000, "malformed")

    low_fee = transfer(rpc.node, alice, bob.address, fee=1)
    error = await rpc.error("tx_sendAndWait", [low_fee.encoded.hex()])
    assert (error["code"], error["data"]["code"]) == (-32000, "fee_too_low")
    assert rpc.node.mempool == []


async def test_not_found(rpc: Rpc) -> None:
    for method, params in [("chain_getBlock", [7]), ("chain_getBlock", [HASH]),
                           ("chain_getBlock", [0]), ("tx_get", [HASH])]:
        error = await rpc.error(method, params)
        assert error["code"] == -32001, (method, params)


async def test_send_and_wait_times_out_with_a_clear_result(
    node: LocalNode, mock_clock: MockClock
) -> None:
    async with serving(node) as rpc:
        alice, bob = node.users()[:2]
        tx = transfer(node, alice, bob.address)
        errors: list[dict[str, Any]] = []

        async def send_and_wait() -> None:
            errors.append(await rpc.error("tx_sendAndWait", [tx.encoded.hex(), 2.5]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_and_wait)
            await node.wait_until(lambda: node.waiting > 0)
            mock_clock.jump(2.4)
            await wait_all_tasks_blocked()
            assert not errors
            mock_clock.jump(0.2)
        [error] = errors
        assert error["code"] == -32002
        assert "not final after 2.5 s" in error["message"]
        assert error["data"]["hash"] == tx.hash.hex()
        assert error["data"]["receipt"]["state"] == "pending"
        # The transaction stays submitted: a later block still finalises it.
        node.produce_block()
        assert (await rpc.result("tx_status", [tx.hash.hex()]))["state"] == "finalized"


async def test_send_and_wait_reports_a_rejection(rpc: Rpc) -> None:
    alice, bob = rpc.node.users()[:2]
    tx = transfer(rpc.node, alice, bob.address)
    answers: list[Any] = []

    async def send_and_wait() -> None:
        answers.append(await rpc.result("tx_sendAndWait", [tx.encoded.hex()]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_and_wait)
        await rpc.node.wait_until(lambda: rpc.node.waiting > 0)
        rpc.node.reject(tx, BadNonce("nonce 0, account expects 1"))
    assert answers[0]["state"] == "rejected"
    assert answers[0]["errorCode"] == "bad_nonce"


async def test_internal_error_is_logged_not_leaked(rpc: Rpc,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    rpc.node.broken = True
    with caplog.at_level(logging.ERROR, logger="ogpu_node.rpc"):
        response = await rpc.post({"jsonrpc": "2.0", "method": "peers_list", "id": 3})
    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "id": 3,
                               "error": {"code": -32603, "message": "internal error"}}
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert any("peers_list" in r.getMessage() and r.exc_info for r in caplog.records)
    rpc.node.broken = False
    await assert_still_serving(rpc)


async def test_subscriptions_need_a_websocket(rpc: Rpc) -> None:
    error = await rpc.error("sub_subscribe", ["blocks"])
    assert error["code"] == -32007


async def test_rate_limit_with_mock_clock(node: LocalNode,
                                          mock_clock: MockClock) -> None:
    config = RpcConfig(listen="127.0.0.1:0", rate_limit_per_s=2, rate_limit_burst=3)
    async with serving(node, config) as rpc:
        for _ in range(3):
            await rpc.result("chain_status")
        error = await rpc.error("chain_status")
        assert error["code"] == -32003
        assert error["data"] == {"retryAfterMs": 500}
        mock_clock.jump(0.5)  # one token back
        await rpc.result("chain_status")
        assert (await rpc.error("chain_status"))["code"] == -32003
        # A batch takes one token per call: only the first of three gets through.
        mock_clock.jump(0.5)
        calls = [{"jsonrpc": "2.0", "method": "chain_status", "id": i} for i in range(3)]
        answers = (await rpc.post(calls)).json()
        assert ["result" in a for a in sorted(answers, key=lambda a: a["id"])].count(True) == 1
        rejected = rpc.metrics.registry.get_sample_value("ogpu_rpc_rejections_total",
                                                         {"reason": "rate_limited"})
        assert rejected is not None and rejected >= 3


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
async def test_a_post_that_a_page_of_any_site_could_send_is_refused(
        rpc: Rpc, content_type: str | None) -> None:
    # the content types a browser sends cross-site without a preflight: a call made that way
    # (blob uploads, transactions) would come from a page the user merely visited
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "chain_status"}).encode()
    headers = {} if content_type is None else {"content-type": content_type}
    response = await rpc.http.post(rpc.address.http_url, content=body, headers=headers)
    assert response.status_code == 415
    ok = await rpc.http.post(rpc.address.http_url, content=body,
                             headers={"content-type": "application/json; charset=utf-8"})
    assert ok.json()["result"]["height"] == 0
