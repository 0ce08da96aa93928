"""Nodes over the in-memory network (same interface as libp2p): finality, liveness with silent
validators, and bad input from peers. Time is trio's MockClock, and block timestamps follow it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from trio.testing import MockClock

from consensus.proposer import proposer_for, slot_at
from consensus.validators import ValidatorSet
from ogpu_node.chain import Chain
from ogpu_node.encoding import decode, encode
from ogpu_node.genesis import Genesis, build_genesis, dev_account_key, load_template
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Block, Transfer, build_block, sign_transaction
from ogpu_node.ledger.tx import Payload, Transaction, Unstake
from ogpu_node.node import messages as m
from ogpu_node.node.node import Node
from ogpu_node.node_api import TxState
from ogpu_node.storage import ChainStore, MemoryKV
from ogpu_node.types import Amount
from p2p.errors import RemoteHandlerError
from p2p.memory import MemoryHub
from p2p.network import Network

VALIDATORS = [PrivateKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]
GENESIS: Genesis = build_genesis(load_template(), [(f"v{i}", k.public_key.raw)
                                                   for i, k in enumerate(VALIDATORS)],
                                 genesis_time_ms=1_000, dev_accounts=4)
EPOCH_MS = 1_700_000_000_000


def wall_ms() -> int:
    return EPOCH_MS + int(trio.current_time() * 1000)


@asynccontextmanager
async def network(running: list[int], hub: MemoryHub | None = None
                  ) -> AsyncIterator[list[Node]]:
    """Four validators connected to each other; only those in `running` run a node."""
    hub = hub or MemoryHub()
    async with trio.open_nursery() as nursery:
        nets = [hub.node(f"n{i}") for i in range(4)]
        for i in running:
            await nursery.start(nets[i].serve)
        for a in running:
            for b in running:
                if a < b:
                    await nets[a].connect(nets[b].listen_addrs[0])
        nodes = []
        for i in running:
            chain = Chain.open(ChainStore(MemoryKV()), GENESIS)
            node = Node(chain=chain, network=nets[i], genesis_hash=GENESIS.hash,
                        validator_key=VALIDATORS[i], moniker=f"n{i}", wall_ms=wall_ms)
            await nursery.start(node.serve)
            nodes.append(node)
        yield nodes
        nursery.cancel_scope.cancel()


def transfer(nonce: int) -> Transaction:
    return sign_transaction(dev_account_key(0), chain_id=GENESIS.chain_id, nonce=nonce,
                            fee=1_000, payload=Transfer(dev_account_key(1).address, Amount(5)))


async def wait_height(nodes: list[Node], height: int) -> None:
    for node in nodes:
        while node.chain.state.height < height:
            await node.receipts.finalized.wait()


async def finalise_transfers(node: Node, count: int) -> None:
    """Send `count` transfers through `node`, each once the one before is final."""
    with trio.fail_after(60):
        for nonce in range(count):
            await node.submit_tx(transfer(nonce))
            await node.wait_for_tx(transfer(nonce).hash)


async def join_late(hub: MemoryHub, nodes: list[Node], nursery: trio.Nursery) -> Node:
    """A follower on a fresh store, connected to every node, started in `nursery`."""
    net = hub.node("late")
    await nursery.start(net.serve)
    for other in nodes:
        await net.connect(other.network.listen_addrs[0])
    late = Node(chain=Chain.open(ChainStore(MemoryKV()), GENESIS), network=net,
                genesis_hash=GENESIS.hash, validator_key=None, wall_ms=wall_ms)
    await nursery.start(late.serve)
    return late


async def test_a_node_that_joins_late_catches_up_by_range_sync(autojump_clock: MockClock) -> None:
    # Consensus takes a block only on the last finalised one (or on one still processing): the
    # blocks finalised before a node joined reach it only by range sync, toward what the
    # validators vouch for.
    hub = MemoryHub()
    async with network([0, 1, 2, 3], hub) as nodes, trio.open_nursery() as nursery:
        await finalise_transfers(nodes[0], 3)
        target = max(n.chain.state.height for n in nodes)
        assert target >= 3
        late = await join_late(hub, nodes, nursery)
        with trio.fail_after(60):
            await wait_height([late], target)
        assert all(late.chain.store.block_hash_at(h) == nodes[0].chain.store.block_hash_at(h)
                   for h in range(1, target + 1))
        assert late.tx_receipt(transfer(2).hash).state is TxState.FINALIZED
        nursery.cancel_scope.cancel()


def private_fork(key: PrivateKey, length: int) -> list[Block]:
    """`length` blocks on genesis, each validly signed by `key` in a slot `key` holds (a
    Byzantine validator picks the timestamps)."""
    state, blocks = GENESIS.state(), []
    vset = ValidatorSet((bytes(v.address), v.stake) for v in state.validators)
    for _ in range(length):
        timestamp = state.timestamp + 1
        while proposer_for(state.chain_id.encode(), state.height + 1,
                           slot_at(state.timestamp, timestamp, state.params.slot_ms),
                           vset) != bytes(key.address):
            timestamp += state.params.slot_ms
        block, state = build_block(state, [], key, timestamp)
        blocks.append(block)
    return blocks


@pytest.mark.parametrize("lie", ["a height it does not have", "a private fork"])
async def test_a_byzantine_validator_cannot_steer_or_stall_a_syncing_node(
        lie: str, autojump_clock: MockClock) -> None:
    """Validator n3 finalises with the others but lies to syncing nodes: it claims (with its own
    valid claim) a height of 10^9 and serves its own fork, every block validly signed in its
    own slots. A follower joining late syncs only what validators holding 3/4 of the stake
    vouch for: it commits the honest chain, none of the fork, and is not stalled."""
    hub = MemoryHub()
    async with network([0, 1, 2, 3], hub) as nodes, trio.open_nursery() as nursery:
        await finalise_transfers(nodes[0], 3)
        liar = nodes[3]
        fork = private_fork(VALIDATORS[3], 20)
        claim = liar.status_exchange.claim

        async def lying_status(peer: str, data: bytes) -> bytes:
            height = 10**9 if lie == "a height it does not have" else len(fork)
            return encode(m.Status(GENESIS.chain_id, GENESIS.hash, height, fork[-1].hash, claim))

        async def fork_range(peer: str, data: bytes) -> bytes:
            request = decode(m.RangeRequest, data)
            start = request.start_height - 1
            return encode(m.RangeResponse(tuple(
                b.encoded for b in fork[start:start + request.count])))

        async def fork_hash(peer: str, data: bytes) -> bytes:
            height = decode(m.HashRequest, data).height
            return encode(m.HashResponse(fork[height - 1].hash if height <= len(fork) else b""))

        liar.network.set_handler(m.PROTO_STATUS, lying_status)
        liar.network.set_handler(m.PROTO_RANGE, fork_range)
        liar.network.set_handler(m.PROTO_HASH, fork_hash)
        target = min(n.chain.state.height for n in nodes[:3])
        late = await join_late(hub, nodes, nursery)
        with trio.fail_after(60):
            await wait_height([late], target)
        honest = nodes[0].chain.store
        assert all(late.chain.store.block_hash_at(h) == honest.block_hash_at(h)
                   for h in range(1, late.chain.state.height + 1))
        assert not {b.hash for b in fork} & {late.chain.store.block_hash_at(h)
                                              for h in range(1, late.chain.state.height + 1)}
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("running", [[0, 1, 2, 3], [0, 1, 2], [1, 2, 3]])
async def test_transfers_finalise_with_every_or_all_but_one_validator(
        running: list[int], autojump_clock: MockClock) -> None:
    async with network(running) as nodes:
        with trio.fail_after(120):
            for nonce in range(3):
                tx = transfer(nonce)
                await nodes[nonce % len(nodes)].submit_tx(tx)
                for node in nodes:
                    receipt = await node.wait_for_tx(tx.hash)
                    assert receipt.state is TxState.FINALIZED
            assert receipt.height is not None
            await wait_height(nodes, receipt.height)
        hashes = {n.chain.store.block_hash_at(receipt.height) for n in nodes}
        roots = {n.chain.state.root for n in nodes if n.chain.state.height == receipt.height}
        assert len(hashes) == 1 and len(roots) <= 1
        assert nodes[0].chain.state.account(dev_account_key(1).address).balance == \
            GENESIS.state().account(dev_account_key(1).address).balance + 15


async def test_a_refused_transaction_does_not_leave_its_senders_later_ones_stuck(
        autojump_clock: MockClock) -> None:
    key, fee = dev_account_key(2), 1_000
    balance = GENESIS.state().account(key.address).balance

    def send(nonce: int, amount: int, payload: Payload | None = None) -> Transaction:
        return sign_transaction(key, chain_id=GENESIS.chain_id, nonce=nonce, fee=fee,
                                payload=payload or Transfer(dev_account_key(3).address,
                                                            Amount(amount)))

    # admission counts the sender's balance, not its stake, so the unstake is admitted; no
    # block can take it, and a refused transaction does not use its nonce: the third cannot
    # follow it
    first, second, third = (send(0, balance - 3 * fee - 10),
                            send(1, 0, Unstake(Amount(10**9))), send(2, 1))
    async with network([0, 1, 2, 3]) as nodes:
        with trio.fail_after(60):
            for tx in (first, second, third):
                await nodes[0].submit_tx(tx)
            receipts = [await nodes[0].wait_for_tx(tx.hash) for tx in (first, second, third)]
            assert [r.state for r in receipts] == [TxState.FINALIZED, TxState.REJECTED,
                                                   TxState.REJECTED]
            assert receipts[1].error_code == "insufficient_funds"
            assert receipts[2].error_code == "earlier_nonce_rejected"
            assert nodes[0].next_nonce(key.address) == 1
            again = send(1, 1)
            await nodes[0].submit_tx(again)
            assert (await nodes[0].wait_for_tx(again.hash)).state is TxState.FINALIZED
        for node in nodes:  # nobody keeps the refused ones waiting
            assert all(node.tx_receipt(tx.hash).state is not TxState.PENDING
                       for tx in (second, third))


async def test_with_half_the_stake_silent_nothing_finalises_and_nothing_conflicts(
        autojump_clock: MockClock) -> None:
    async with network([0, 1]) as nodes:
        await nodes[0].submit_tx(transfer(0))
        await trio.sleep(60)  # virtual: a minute of slots, proposals and failed polls
        assert [n.chain.state.height for n in nodes] == [0, 0]
        assert all(n.chain.store.block_hash_at(1) is None for n in nodes)


async def test_bad_blocks_and_transactions_from_a_peer_are_refused_and_the_node_goes_on(
        autojump_clock: MockClock) -> None:
    async with network([0, 1, 2, 3]) as nodes:
        attacker = nodes[3].network
        state = nodes[0].chain.state
        wrong_proposer = PrivateKey.from_seed(b"\x99" * 32)  # not a validator
        bad_block, _ = build_block(state, [], wrong_proposer, wall_ms())
        # The attacker announces a block by a non-validator, serves it when asked, and sends
        # garbage announcements.
        attacker.set_handler(m.PROTO_BLOCK, _serve(encode(m.BlockResponse(encode(bad_block)))))
        with pytest.raises(RemoteHandlerError, match="DecodeError"):
            await attacker.request(nodes[0].network.peer_id, m.PROTO_RANGE, b"\xc1")
        for payload in (b"\xff" * 100, encode(m.BlockAnnouncement(bad_block.hash, 1)), b""):
            await attacker.publish(m.TOPIC_BLOCKS, payload)
        await attacker.publish(m.TOPIC_TXS, b"\x00garbage")
        await attacker.publish(m.TOPIC_TXS, encode(m.TxBatch((b"junk", transfer(0).encoded))))
        # The valid transfer inside the junk batch still made it, and the chain keeps going;
        # so much junk got the attacker banned.
        with trio.fail_after(60):
            receipt = await nodes[0].wait_for_tx(transfer(0).hash)
            assert receipt.state is TxState.FINALIZED
            # each node finalises on its own: wait for the other two to get there too
            await wait_height(nodes[:3], nodes[0].chain.state.height)
        assert attacker.peer_id in {b.peer_id for b in nodes[0].network.banned()}


async def test_a_peer_that_keeps_serving_invalid_blocks_is_banned(autojump_clock: MockClock
                                                                    ) -> None:
    """Blocks by a key that holds no slot are invalid on their own: each one validator n3
    announces and serves counts against it, two ban it (disconnected, refused), and the three
    others go on finalising."""
    async with network([0, 1, 2, 3]) as nodes:
        attacker = nodes[3].network
        with trio.fail_after(60):  # announcements count once n0 knows n3 runs a validator
            while nodes[0].peer_table.validator_of(attacker.peer_id) is None:
                await nodes[0].receipts.finalized.wait()
        state = nodes[0].chain.state
        forger = PrivateKey.from_seed(b"\x99" * 32)  # not a validator
        bad = [build_block(state, [], forger, wall_ms() + i)[0] for i in range(2)]
        served = {bytes(block.hash): encode(m.BlockResponse(block.encoded)) for block in bad}

        async def serve_bad(peer: str, data: bytes) -> bytes:
            return served[decode(m.BlockRequest, data).block_id]

        attacker.set_handler(m.PROTO_BLOCK, serve_bad)
        for block in bad:
            await attacker.publish(m.TOPIC_BLOCKS,
                                   encode(m.BlockAnnouncement(block.hash, block.height)))
        with trio.fail_after(60):
            await nodes[0].network.wait_disconnected(attacker.peer_id)
            assert attacker.peer_id in {b.peer_id for b in nodes[0].network.banned()}
            await nodes[0].submit_tx(transfer(0))
            receipt = await nodes[0].wait_for_tx(transfer(0).hash)
        assert receipt.state is TxState.FINALIZED


async def test_peers_without_stake_cannot_take_the_block_fetch_slots(autojump_clock: MockClock
                                                                     ) -> None:
    """Eight peers with no stake announce random blocks at the next height without end and never
    answer a fetch (found in review: each announcement held one of the 32 fetch slots for a
    request timeout, and the chain stopped). Only validators' announcements and queries start
    fetches now: none is open to them, and blocks go on being finalised."""
    hub = MemoryHub()
    async with network([0, 1, 2, 3], hub) as nodes, trio.open_nursery() as nursery:
        start = max(n.chain.state.height for n in nodes)

        async def never(peer: str, data: bytes) -> bytes:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        async def flood(index: int) -> None:
            net = hub.node(f"flooder{index}")
            await nursery.start(net.serve)
            for node in nodes:
                await net.connect(node.network.listen_addrs[0])
            net.set_handler(m.PROTO_BLOCK, never)
            for n in range(10_000):
                block_id = (index.to_bytes(2, "big") + n.to_bytes(8, "big")).ljust(32, b"\x07")
                height = nodes[0].chain.state.height + 1
                await net.publish(m.TOPIC_BLOCKS, encode(m.BlockAnnouncement(block_id, height)))
                await trio.sleep(0.01)

        for index in range(8):
            nursery.start_soon(flood, index)
        with trio.fail_after(60):
            await nodes[0].submit_tx(transfer(0))
            assert (await nodes[0].wait_for_tx(transfer(0).hash)).state is TxState.FINALIZED
            await wait_height(nodes, start + 5)
        flooders = {f"flooder{i}" for i in range(8)}
        for node in nodes:
            assert not flooders & set(node.consensus._fetches)
        nursery.cancel_scope.cancel()


async def test_a_flooding_peer_does_not_stop_finality(autojump_clock: MockClock) -> None:
    async with network([0, 1, 2, 3]) as nodes:
        attacker, target = nodes[3].network, nodes[0]

        async def flood_gossip() -> None:
            for i in range(3_000):
                await attacker.publish(m.TOPIC_TXS, b"\x91\xc4\x04junk" + i.to_bytes(4, "big"))
                await attacker.publish(m.TOPIC_BLOCKS, b"\x93" + i.to_bytes(4, "big"))

        async def flood_requests() -> None:
            async with trio.open_nursery() as inner:
                for i in range(500):
                    inner.start_soon(_garbage_request, attacker, target.network.peer_id, i)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood_gossip)
            nursery.start_soon(flood_requests)
            with trio.fail_after(120):
                for nonce in range(3):
                    tx = transfer(nonce)
                    await target.submit_tx(tx)
                    receipt = await target.wait_for_tx(tx.hash)
                    assert receipt.state is TxState.FINALIZED
        assert target.network.stats().handler_errors >= 500
        assert target.chain.state.height >= 3


def _serve(answer: bytes) -> Callable[[str, bytes], Awaitable[bytes]]:
    async def handler(peer: str, data: bytes) -> bytes:
        return answer
    return handler


async def _garbage_request(net: Network, peer: str, i: int) -> None:
    protocol = (m.PROTO_QUERY, m.PROTO_RANGE, m.PROTO_BLOCK, m.PROTO_STATUS)[i % 4]
    # The node's handler refuses the bytes with a DecodeError; the asker sees it typed.
    with pytest.raises(RemoteHandlerError, match="DecodeError"):
        await net.request(peer, protocol, b"\xc1" * (i % 7 + 1))


def test_a_late_or_unknown_acceptance_does_not_stop_the_node() -> None:
    # Range sync can commit a block the engine still processes; the engine's late acceptance of
    # it must not crash the node, and an unknown one restarts the engine from the chain.
    chain = Chain.open(ChainStore(MemoryKV()), GENESIS)
    node = Node(chain=chain, network=MemoryHub().node("n0"), genesis_hash=GENESIS.hash,
                validator_key=VALIDATORS[0], wall_ms=lambda: EPOCH_MS)
    block, state = build_block(chain.state, [], VALIDATORS[0], EPOCH_MS)
    chain.commit(block, state)  # as sync does
    engine = node.consensus.engine
    node.consensus._accept(block.hash)
    assert node.consensus.engine is engine and chain.state.height == 1
    node.consensus._accept(b"\x42" * 32)
    assert node.consensus.engine is not engine and node.consensus.processing == {}
    assert node.consensus.engine.last_accepted_id == chain.state.block_hash
