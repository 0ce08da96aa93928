"""Each method's happy path, over real HTTP against the real ledger."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from ogpu_node.address import address_to_text
from ogpu_node.genesis import load_genesis
from ogpu_node.ledger import Stake, Unstake, sign_transaction
from ogpu_node.rpc.methods import METHODS
from ogpu_node.types import Amount, format_amount, ogpu
from tests.rpc.conftest import Rpc, transfer
from tests.rpc.local_node import CHAIN_ID, LOCAL_P2P_ADDRESS, VALIDATOR


async def test_chain_status(rpc: Rpc) -> None:
    status = await rpc.result("chain_status")
    assert status["chainId"] == CHAIN_ID
    assert status["height"] == 0
    assert status["headHash"] == rpc.node.genesis.hash.hex()
    assert status["stateRoot"] == rpc.node.state.root.hex()
    assert status["syncing"] is False
    assert status["mempoolSize"] == 0


async def test_chain_genesis_gives_what_a_joining_node_needs(rpc: Rpc, tmp_path: Path) -> None:
    rpc.node.produce_block()  # the document is the genesis, not the head
    answer = await rpc.result("chain_genesis")
    assert answer["chainId"] == CHAIN_ID
    assert answer["genesisHash"] == rpc.node.genesis.hash.hex()
    assert answer["bootstrapPeers"] == [LOCAL_P2P_ADDRESS]
    (tmp_path / "genesis.json").write_text(json.dumps(answer["genesis"]))
    assert load_genesis(tmp_path / "genesis.json").hash == rpc.node.genesis.hash


async def test_get_block_by_height_hash_and_latest(rpc: Rpc) -> None:
    alice, bob = rpc.node.users()[:2]
    tx = transfer(rpc.node, alice, bob.address)
    await rpc.node.submit_tx(tx)
    block = rpc.node.produce_block()

    by_height = await rpc.result("chain_getBlock", [1])
    assert by_height["hash"] == block.hash.hex()
    assert by_height["height"] == 1
    assert by_height["proposer"] == address_to_text(VALIDATOR.address)
    assert by_height["txs"] == [tx.hash.hex()]
    assert by_height["txCount"] == 1

    by_hash = await rpc.result("chain_getBlock", {"block": "0x" + block.hash.hex(),
                                                  "fullTxs": True})
    assert by_hash["hash"] == block.hash.hex()
    full = by_hash["txs"][0]
    assert full["hash"] == tx.hash.hex()
    assert full["kind"] == "transfer"
    assert full["payload"] == {"to": address_to_text(bob.address), "amount": str(ogpu(1)),
                               "amountOgpu": "1"}
    assert full["sender"] == address_to_text(alice.address)

    latest = await rpc.result("chain_getBlock", ["latest"])
    assert latest["hash"] == block.hash.hex()


async def test_get_block_range(rpc: Rpc) -> None:
    for _ in range(3):
        rpc.node.produce_block()
    blocks = await rpc.result("chain_getBlockRange", [0, 10])
    assert [b["height"] for b in blocks] == [1, 2, 3]
    assert await rpc.result("chain_getBlockRange", {"from": 2, "to": 2}) == [blocks[1]]


async def test_send_then_get_and_status(rpc: Rpc) -> None:
    alice, bob = rpc.node.users()[:2]
    tx = transfer(rpc.node, alice, bob.address, ogpu(2))
    receipt = await rpc.result("tx_send", [tx.encoded.hex()])
    assert receipt == {"hash": tx.hash.hex(), "state": "pending", "height": None,
                       "index": None, "errorCode": None, "reason": None}
    assert rpc.node.mempool == [tx]
    assert (await rpc.result("tx_status", [tx.hash.hex()]))["state"] == "pending"

    rpc.node.produce_block()
    status = await rpc.result("tx_status", {"hash": tx.hash.hex()})
    assert (status["state"], status["height"], status["index"]) == ("finalized", 1, 0)
    found = await rpc.result("tx_get", [tx.hash.hex()])
    assert found["tx"]["hash"] == tx.hash.hex()
    assert found["tx"]["nonce"] == 0
    assert found["tx"]["fee"] == "1000"
    assert found["tx"]["feeOgpu"] == "0.000001"
    assert found["receipt"]["state"] == "finalized"


async def test_status_of_an_unknown_transaction_is_unknown(rpc: Rpc) -> None:
    status = await rpc.result("tx_status", ["00" * 32])
    assert status["state"] == "unknown"


async def test_send_and_wait_returns_once_a_block_finalises_it(rpc: Rpc) -> None:
    alice, bob = rpc.node.users()[:2]
    tx = transfer(rpc.node, alice, bob.address)
    answers: list[dict[str, object]] = []

    async def send_and_wait() -> None:
        answers.append(await rpc.result("tx_sendAndWait", {"tx": tx.encoded.hex(),
                                                           "timeout": 30}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_and_wait)
        await rpc.node.wait_until(lambda: rpc.node.waiting > 0)  # submitted and waiting
        assert not answers
        rpc.node.produce_block()
    assert answers == [{"hash": tx.hash.hex(), "state": "finalized", "height": 1, "index": 0,
                        "errorCode": None, "reason": None}]


async def test_account_get(rpc: Rpc) -> None:
    alice, bob = rpc.node.users()[:2]
    before = rpc.node.state.account(alice.address).balance
    txs = [transfer(rpc.node, alice, bob.address, ogpu(1), nonce=0),
           sign_transaction(alice, chain_id=CHAIN_ID, nonce=1, fee=1_000,
                            payload=Stake(Amount(ogpu(5)))),
           sign_transaction(alice, chain_id=CHAIN_ID, nonce=2, fee=1_000,
                            payload=Unstake(Amount(ogpu(2))))]
    for tx in txs:
        await rpc.node.submit_tx(tx)
    rpc.node.produce_block()

    account = await rpc.result("account_get", [address_to_text(alice.address)])
    balance = before - ogpu(1) - ogpu(5) - 3 * 1_000
    assert account["address"] == address_to_text(alice.address)
    assert account["height"] == 1
    assert account["nonce"] == 3
    assert (account["balance"], account["balanceOgpu"]) == (str(balance), format_amount(balance))
    assert (account["stake"], account["stakeOgpu"]) == (str(ogpu(3)), "3")
    release = 1 + rpc.node.state.params.unbonding_period
    assert account["unbonding"] == [{"releaseHeight": release, "amount": str(ogpu(2)),
                                     "amountOgpu": "2"}]
    assert account["unbondingTotal"] == str(ogpu(2))
    assert account["publicKey"] == alice.public_key.raw.hex()
    assert account["validator"] is False


async def test_account_get_of_an_empty_address(rpc: Rpc) -> None:
    account = await rpc.result("account_get", [address_to_text(b"\x05" * 20)])
    assert (account["balance"], account["nonce"], account["publicKey"]) == ("0", 0, None)


async def test_validators_list(rpc: Rpc) -> None:
    result = await rpc.result("validators_list")
    stake = rpc.node.state.params.min_validator_stake
    assert result["count"] == 1
    assert result["totalStake"] == str(stake)
    assert result["validators"] == [{
        "address": address_to_text(VALIDATOR.address),
        "publicKey": VALIDATOR.public_key.raw.hex(),
        "stake": str(stake), "stakeOgpu": format_amount(stake),
    }]
    params = rpc.node.state.params
    assert (result["epochLength"], result["unbondingPeriod"], result["minValidatorStake"]) == (
        params.epoch_length, params.unbonding_period, str(params.min_validator_stake))
    # height 0 is itself a boundary; the next one after it is a whole epoch later
    assert result["height"] == 0 and result["nextEpochHeight"] == params.epoch_length


async def test_peers_list(rpc: Rpc) -> None:
    assert await rpc.result("peers_list") == [
        {"peerId": "12D3KooWpeer", "addresses": ["/ip4/127.0.0.1/tcp/26657"], "validator": None}
    ]


async def test_node_health_method(rpc: Rpc) -> None:
    health = await rpc.result("node_health")
    assert health == {"healthy": True, "reasons": [], "details": {"height": 0, "raw": "01"}}


async def test_rpc_methods_lists_every_method(rpc: Rpc) -> None:
    assert await rpc.result("rpc_methods") == sorted(METHODS)
