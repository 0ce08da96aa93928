"""The persisted chain: genesis, commit, restart from disk, refusal of foreign or tampered data."""

from __future__ import annotations

from pathlib import Path

import pytest

from ogpu_node.chain import Chain, ChainMismatch, load_state
from ogpu_node.encoding import encode
from ogpu_node.genesis import Genesis, build_genesis, dev_account_key, load_template
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Stake, Transfer, Unstake, build_block, sign_transaction
from ogpu_node.ledger.market.payloads import RegisterModel, RegisterProvider, SubmitTask
from ogpu_node.ledger.market.records import Device, TaskStatus
from ogpu_node.ledger.tx import Payload
from ogpu_node.storage import ChainStore, CorruptStore, LevelDBKV
from ogpu_node.types import Amount, Hash32, ogpu
from ogpu_node.workloads.spec import MatmulSpec
from tests.ledger.market_helpers import DIGITS_MODEL

VALIDATOR = PrivateKey.from_seed(b"\x07" * 32)


def make_genesis(chain_id: str = "ogpu-test") -> Genesis:
    return build_genesis(load_template(), [("v0", VALIDATOR.public_key.raw)],
                         genesis_time_ms=1_000, chain_id=chain_id, dev_accounts=4)


def open_chain(path: Path, genesis: Genesis) -> Chain:
    return Chain.open(ChainStore(LevelDBKV(str(path))), genesis)


def grow(chain: Chain, blocks: int) -> None:
    """Blocks of transfers, stakes and unstakes (so unbonding records are written and deleted)."""
    users = [dev_account_key(i) for i in range(4)]
    for b in range(blocks):
        state = chain.state
        payloads: list[tuple[PrivateKey, Payload]] = [
            (users[0], Transfer(users[1].address, Amount(ogpu(1)))),
            (users[2], Stake(Amount(ogpu(5)))),
            (users[2], Unstake(Amount(ogpu(1)))),
        ]
        nonces: dict[bytes, int] = {}
        txs = []
        for key, payload in payloads:
            nonce = nonces.get(key.address, state.account(key.address).nonce)
            txs.append(sign_transaction(key, chain_id=state.chain_id, nonce=nonce, fee=1_000,
                                        payload=payload))
            nonces[key.address] = nonce + 1
        block, _ = build_block(state, txs, VALIDATOR, state.timestamp + 1_000 + b)
        chain.apply_and_commit(block)


def test_restart_resumes_with_the_same_state(tmp_path: Path) -> None:
    genesis = make_genesis()
    chain = open_chain(tmp_path / "db", genesis)
    # Past the unbonding period (100 in the template), so matured entries are deleted on disk too.
    grow(chain, 130)
    before = chain.state
    chain.store.close()

    reopened = open_chain(tmp_path / "db", genesis)
    after = reopened.state
    assert after.root == before.root
    assert after.height == 130 and after.block_hash == before.block_hash
    assert dict(after.accounts) == dict(before.accounts)
    assert dict(after.unbonding) == dict(before.unbonding)
    assert min(k[0] for k in after.unbonding) > 130  # released entries are gone from disk
    block = reopened.block_at(57)
    assert block is not None and block.height == 57
    assert reopened.store.tx_location(block.txs[1].hash) == (57, 1)
    grow(reopened, 2)  # and it keeps going from there
    assert reopened.state.height == 132
    reopened.store.close()


def test_a_store_of_another_chain_is_refused(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db", make_genesis("chain-a"))
    chain.store.close()
    with pytest.raises(ChainMismatch):
        open_chain(tmp_path / "db", make_genesis("chain-b"))


def test_tampered_state_records_are_detected(tmp_path: Path) -> None:
    genesis = make_genesis()
    chain = open_chain(tmp_path / "db", genesis)
    grow(chain, 3)
    address = dev_account_key(1).address
    raw = chain.store.state_get(b"a" + address)
    assert raw is not None
    # Overwrite one account record behind the chain's back, as a corrupted disk would.
    chain.store._kv.write_batch([(b"s" + b"a" + address, raw[:-1] + bytes([raw[-1] ^ 1]))])
    with pytest.raises(CorruptStore):
        load_state(chain.store)
    chain.store.close()


def test_market_records_survive_a_restart(tmp_path: Path) -> None:
    genesis = make_genesis()
    chain = open_chain(tmp_path / "db", genesis)
    provider, client = dev_account_key(0), dev_account_key(1)
    spec = encode(MatmulSpec(n=512, seed=1))
    txs = [
        sign_transaction(provider, chain_id=genesis.chain_id, nonce=0, fee=1_000,
                         payload=RegisterProvider((Device("gpu", 8_000),), 500, 1, ogpu(200))),
        sign_transaction(client, chain_id=genesis.chain_id, nonce=0, fee=1_000,
                         payload=SubmitTask(1, spec, 1_000, 0, 60_000, 600_000)),
        sign_transaction(client, chain_id=genesis.chain_id, nonce=1, fee=1_000,
                         payload=RegisterModel("digits", Hash32(bytes(32)), DIGITS_MODEL)),
    ]
    block, _ = build_block(chain.state, txs, VALIDATOR, chain.state.timestamp + 1_000)
    chain.apply_and_commit(block)
    before = chain.state
    assert before.tasks[txs[1].hash].status == TaskStatus.BIDDING
    chain.store.close()

    reopened = open_chain(tmp_path / "db", genesis)
    assert reopened.state.root == before.root
    assert dict(reopened.state.providers) == dict(before.providers)
    assert dict(reopened.state.tasks) == dict(before.tasks)
    assert dict(reopened.state.models) == dict(before.models)
    assert reopened.state.models[txs[2].hash].info == DIGITS_MODEL
    assert reopened.state.open_tasks == {txs[1].hash}
    # the bidding window passes in the next block: the task closes and the close is persisted
    block, _ = build_block(reopened.state, [], VALIDATOR, reopened.state.timestamp + 10_000)
    reopened.apply_and_commit(block)
    closed = reopened.state
    reopened.store.close()
    again = open_chain(tmp_path / "db", genesis)
    assert again.state.tasks[txs[1].hash].status == TaskStatus.CLOSED
    assert again.state.open_tasks == frozenset() and again.state.root == closed.root
    again.store.close()
