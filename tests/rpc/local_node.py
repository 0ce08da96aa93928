"""A small `NodeApi` for the RPC tests, on the real ledger and chain store (memory backend).

It keeps a mempool list, checks submissions against the state after the pending transactions,
and `produce_block` builds, applies and commits a block from the mempool exactly as a node does
with a finalised block, then wakes waiters and block and task subscribers. Progress reports go
through the node's own `TaskFeed` (signed, checked); blobs live in a real `BlobStore`, and
`peer_chunks` stands for what connected peers hold. No mocks of storage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from ogpu_node.blobs import BlobError, BlobStore, check_chunk
from ogpu_node.chain import Chain
from ogpu_node.earnings_index import Earning, newest_earnings
from ogpu_node.genesis import Genesis, build_genesis, dev_account_key, load_template
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Block, InvalidTransaction, State, Transaction, apply_tx, build_block
from ogpu_node.node.health import AgentStates
from ogpu_node.node.messages import TaskProgress
from ogpu_node.node.task_feed import TaskFeed, sign_progress
from ogpu_node.node_api import (
    FINAL_STATES,
    Health,
    HealthReason,
    NodeStatus,
    PeerInfo,
    TxReceipt,
    TxState,
)
from ogpu_node.storage import ChainStore, MemoryKV
from ogpu_node.types import Address, Hash32

VALIDATOR = PrivateKey.from_seed(b"\x07" * 32)
CHAIN_ID = "ogpu-rpc-test"
DEV_ACCOUNTS = 4
BLOCK_BUFFER = 16
LOCAL_P2P_ADDRESS = "/ip4/127.0.0.1/tcp/26656/p2p/12D3KooWlocal"


def make_genesis(**params: int) -> Genesis:
    """The test chain's genesis, with `params` set over the template's."""
    template = load_template()
    # the single validator is the whole verification committee
    template["params"] = {**template["params"], "committee_min_size": 1, **params}
    return build_genesis(template, [("v0", VALIDATOR.public_key.raw)],
                         genesis_time_ms=1_000, chain_id=CHAIN_ID, dev_accounts=DEV_ACCOUNTS)


class LocalNode:
    """One validator's chain in memory, driven by the test."""

    def __init__(self, blob_root: Path | None = None, genesis: Genesis | None = None) -> None:
        self.genesis = genesis or make_genesis()
        self.chain = Chain.open(ChainStore(MemoryKV()), self.genesis)
        self.mempool: list[Transaction] = []
        self.rejected: dict[bytes, TxReceipt] = {}
        self.healthy = True
        self.unhealthy_reasons: tuple[HealthReason, ...] = ()
        self.agents = AgentStates()
        self.peer_list = [PeerInfo("12D3KooWpeer", ("/ip4/127.0.0.1/tcp/26657",), None)]
        self.broken = False
        """When True, `peers()` raises an unexpected error (to test -32603)."""
        self._changed = trio.Event()
        self._subscribers: list[trio.MemorySendChannel[Block]] = []
        self.waiting = 0
        """Calls to `wait_for_tx` in progress."""
        self.tasks = TaskFeed()
        self.task_subscribers = 0
        self.blobs = BlobStore(blob_root) if blob_root is not None else None
        self.peer_chunks: dict[bytes, bytes] = {}
        """Chunks "connected peers" hold, by id (`get_chunk` fetches, checks and stores them)."""

    def users(self) -> list[PrivateKey]:
        return [dev_account_key(i) for i in range(DEV_ACCOUNTS)]

    @property
    def state(self) -> State:
        return self.chain.state

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def next_nonce(self, address: Address) -> int:
        """The nonce of `address`'s next transaction, after those waiting in the mempool."""
        return self.chain.state.account(address).nonce + sum(
            1 for tx in self.mempool if tx.sender == address)

    async def wait_changed(self) -> None:
        """Until the next change: a submission, a block, a waiter starting."""
        await self._changed.wait()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self.wait_changed()

    # --- NodeApi --------------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        s = self.chain.state
        return NodeStatus(chain_id=s.chain_id, node_id="12D3KooWlocal", moniker="local",
                          height=s.height, head_hash=s.block_hash, state_root=s.root,
                          head_time_ms=s.timestamp, syncing=False, peers=len(self.peer_list),
                          validator=None, mempool_size=len(self.mempool))

    def health(self) -> Health:
        return Health(self.healthy, self.unhealthy_reasons,
                      {"height": self.chain.state.height, "raw": b"\x01"})

    def agent_status(self) -> dict[str, Any]:
        return self.agents.report()

    def earnings(self, address: bytes) -> Iterator[Earning]:
        return newest_earnings(self.chain.store, address)

    def finalized_state(self) -> State:
        return self.chain.state

    def block_by_height(self, height: int) -> Block | None:
        return self.chain.block_at(height)

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        return self.chain.block_by_hash(block_hash)

    def transaction(self, tx_hash: bytes) -> tuple[Transaction, TxReceipt] | None:
        location = self.chain.store.tx_location(tx_hash)
        if location is not None:
            block = self.chain.block_at(location[0])
            if block is not None:
                return block.txs[location[1]], self.tx_receipt(tx_hash)
        for tx in self.mempool:
            if tx.hash == tx_hash:
                return tx, self.tx_receipt(tx_hash)
        return None

    def tx_receipt(self, tx_hash: bytes) -> TxReceipt:
        location = self.chain.store.tx_location(tx_hash)
        if location is not None:
            return TxReceipt(Hash32(tx_hash), TxState.FINALIZED, location[0], location[1])
        if any(tx.hash == tx_hash for tx in self.mempool):
            return TxReceipt(Hash32(tx_hash), TxState.PENDING)
        return self.rejected.get(tx_hash, TxReceipt(Hash32(tx_hash), TxState.UNKNOWN))

    def peers(self) -> list[PeerInfo]:
        if self.broken:
            raise RuntimeError("secret internal detail")
        return list(self.peer_list)

    def genesis_document(self) -> bytes:
        return self.chain.genesis_document()

    def p2p_addresses(self) -> tuple[str, ...]:
        return (LOCAL_P2P_ADDRESS,)

    async def submit_tx(self, tx: Transaction) -> TxReceipt:
        pending = self.chain.state
        for queued in self.mempool:
            pending = apply_tx(pending, queued, VALIDATOR.address)
        apply_tx(pending, tx, VALIDATOR.address)  # raises InvalidTransaction
        self.mempool.append(tx)
        self._notify()
        return TxReceipt(tx.hash, TxState.PENDING)

    async def wait_for_tx(self, tx_hash: bytes) -> TxReceipt:
        self.waiting += 1
        self._notify()
        try:
            while True:
                receipt = self.tx_receipt(tx_hash)
                if receipt.state in FINAL_STATES:
                    return receipt
                await self.wait_changed()
        finally:
            self.waiting -= 1

    @asynccontextmanager
    async def subscribe_blocks(self) -> AsyncIterator[trio.MemoryReceiveChannel[Block]]:
        send, receive = trio.open_memory_channel[Block](BLOCK_BUFFER)
        self._subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

    def task_progress(self, task_id: bytes, attempt: int) -> int | None:
        return self.tasks.progress_bps(task_id, attempt)

    @asynccontextmanager
    async def subscribe_tasks(self) -> AsyncIterator[trio.MemoryReceiveChannel[Hash32]]:
        async with self.tasks.subscribe() as channel:
            self.task_subscribers += 1
            self._notify()
            try:
                yield channel
            finally:
                self.task_subscribers -= 1

    def put_file(self, data: bytes) -> Hash32:
        if self.blobs is None:
            raise BlobError("this node keeps no blobs")
        return self.blobs.put_file(data)

    def put_chunk(self, data: bytes) -> Hash32:
        if self.blobs is None:
            raise BlobError("this node keeps no blobs")
        return self.blobs.put(data)

    def put_manifest(self, size: int, chunk_ids: Sequence[bytes]) -> Hash32:
        if self.blobs is None:
            raise BlobError("this node keeps no blobs")
        return self.blobs.put_manifest(size, chunk_ids)

    async def get_chunk(self, chunk_id: bytes) -> bytes:
        if self.blobs is None:
            raise BlobError("this node keeps no blobs")
        local = self.blobs.get(chunk_id)
        if local is not None:
            return local
        remote = self.peer_chunks.get(chunk_id)
        if remote is None:
            raise BlobError(f"no connected peer has chunk {chunk_id.hex()[:16]}")
        self.blobs.put(check_chunk(chunk_id, remote))
        return remote

    # --- driving it -----------------------------------------------------------------------------

    def report_progress(self, provider: PrivateKey, task_id: bytes, done_bps: int) -> bool:
        """`provider` reports progress on its current attempt, as gossip would bring it."""
        task = self.chain.state.tasks[Hash32(task_id)]
        report = sign_progress(provider, self.chain.state.chain_id, TaskProgress(
            task_id, task.attempt.number, provider.address, done_bps, self.chain.state.timestamp))
        return self.tasks.accept_progress(report, self.chain.state)

    def produce_block(self, after_ms: int = 1_000) -> Block:
        """Build, apply and commit a block of the whole mempool `after_ms` after the head;
        publish it."""
        state = self.chain.state
        block, _ = build_block(state, self.mempool, VALIDATOR, state.timestamp + after_ms)
        self.chain.apply_and_commit(block)
        self.mempool = []
        if self.chain.state.changed_tasks:
            self.tasks.notify(list(self.chain.state.changed_tasks))
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(block)
            except trio.WouldBlock:  # a lagging subscriber is cut off
                self._subscribers.remove(channel)
                channel.close()
        self._notify()
        return block

    def reject(self, tx: Transaction, error: InvalidTransaction) -> None:
        """Drop a pending transaction as invalid (as a node does when it no longer applies)."""
        self.mempool = [t for t in self.mempool if t.hash != tx.hash]
        self.rejected[tx.hash] = TxReceipt(tx.hash, TxState.REJECTED, error_code=error.code,
                                           reason=str(error))
        self._notify()
