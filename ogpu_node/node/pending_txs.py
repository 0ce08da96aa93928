"""Pending transactions on their way into blocks: admission, gossip, and the recheck after blocks.

`PendingTxs` puts transactions into the mempool (`mempool.py`) from clients (`submit`: refused
ones are receipted as rejected) and from peers (`on_tx_gossip`, batches on `ogpu/txs/1`), and
gossips submitted ones in batches of up to `MAX_TX_BATCH`, gathered for `tx_gossip_interval_s`
(its service, `serve`). After each committed block (`committed`) it drops the included and the
stale ones and rechecks each sender's first pending transaction on the new state, as CometBFT's
mempool recheck does: one a block would refuse is dropped with every later one of its sender
(`drop_refused`; a refused transaction does not use its nonce) and receipted, so that senders
send them again. A range sync rechecks once, at its end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ogpu_node.address import address_to_text
from ogpu_node.chain import Chain
from ogpu_node.encoding import decode, encode
from ogpu_node.ledger import State, Transaction
from ogpu_node.ledger.builder import select_transactions
from ogpu_node.ledger.errors import (
    BadSignature,
    InvalidTransaction,
    MalformedTransaction,
    WrongChain,
)
from ogpu_node.ledger.tx import decode_transaction
from ogpu_node.node import messages as m
from ogpu_node.node.broadcast import Notifier
from ogpu_node.node.containment import report
from ogpu_node.node.mempool import EarlierNonceRejected, Mempool
from ogpu_node.node.proposing import next_timestamp
from ogpu_node.node.receipts import Receipts
from ogpu_node.node_api import TxReceipt, TxState
from ogpu_node.types import Address, Hash32
from p2p.errors import P2PError
from p2p.network import Network
from p2p.peer_guard import Offence

log = logging.getLogger("ogpu.node")


class PendingTxs:
    """Admission, gossip and recheck of the mempool's transactions (see the module docstring)."""

    def __init__(self, chain: Chain, network: Network, mempool: Mempool, receipts: Receipts, *,
                 proposer: Address, wall_ms: Callable[[], int], gossip_interval_s: float,
                 changed: Notifier, is_syncing: Callable[[], bool]) -> None:
        self.chain = chain
        self.network = network
        self.mempool = mempool
        self.receipts = receipts
        self.proposer = proposer
        """Whom the recheck builds a block as (ours, or zeros on a follower)."""
        self.wall_ms = wall_ms
        self.gossip_interval_s = gossip_interval_s
        self.changed = changed
        """Notified when transactions arrive (a proposer may be waiting for them)."""
        self.is_syncing = is_syncing
        self._outgoing: list[bytes] = []
        self._to_gossip = trio.Event()

    def submit(self, tx: Transaction) -> TxReceipt:
        """Admit a client's transaction and queue it for gossip. Raises `InvalidTransaction`
        (and receipts it as rejected) when the mempool refuses it."""
        try:
            self.mempool.add(tx, self.chain.state)
        except InvalidTransaction as exc:
            self.receipts.reject(tx.hash, exc)
            raise
        self.receipts.submitted(tx.hash, trio.current_time())
        self._outgoing.append(tx.encoded)
        self._to_gossip.set()
        self.changed.notify()
        return TxReceipt(tx.hash, TxState.PENDING)

    def on_tx_gossip(self, peer: str, data: bytes) -> None:
        """A batch from `ogpu/txs/1`: admit each transaction the mempool takes, skip the rest;
        the peer is reported when the batch holds a transaction invalid on its own."""
        batch = decode(m.TxBatch, data)
        state = self.chain.state
        forged = False
        for raw in batch.txs:
            try:
                self.mempool.add(decode_transaction(raw), state)
            except (MalformedTransaction, BadSignature, WrongChain):
                forged = True  # invalid whatever the state: the sender made it so
            except InvalidTransaction:
                continue  # stale, a nonce race, a full pool: an honest peer can send these
        if forged:
            report(self.network, peer, Offence.INVALID_TX_BATCH)
        self.changed.notify()

    async def serve(self) -> None:
        """Gossip submitted transactions in batches until cancelled."""
        while True:
            await self._to_gossip.wait()
            self._to_gossip = trio.Event()
            # Let a burst of submissions gather into few messages.
            await trio.sleep(self.gossip_interval_s)
            while self._outgoing:
                batch = self._outgoing[:m.MAX_TX_BATCH]
                del self._outgoing[:m.MAX_TX_BATCH]
                try:
                    await self.network.publish(m.TOPIC_TXS, encode(m.TxBatch(tuple(batch))))
                except P2PError as exc:
                    log.warning("could not gossip %d transactions: %s", len(batch), exc)

    def committed(self, tx_hashes: list[Hash32], state: State) -> None:
        """A block with `tx_hashes` was committed, leading to `state`: drop those, the stale
        ones, and (unless a range sync runs) those the next block would refuse."""
        self.mempool.remove(tx_hashes)
        self.mempool.prune(state)
        if not self.is_syncing():  # a range sync rechecks once, at its end
            self.recheck(state)

    def recheck(self, state: State) -> None:
        """Drop the pending transactions that the next block would refuse, as CometBFT's
        mempool recheck does, for the first one of each sender: a market transaction that came
        too late (a verdict after its task closed, a bid after its window) or a transfer the
        balance no longer covers is refused by every proposer, and since a refused transaction
        does not use its nonce, everything the sender sent after it would wait for ever (a
        provider's bids stuck behind its own late verdict). Those are dropped with it and
        receipted as rejected, so that their senders send them again."""
        heads = self.mempool.heads(state)
        if not heads:
            return
        timestamp = next_timestamp(state, self.wall_ms())
        _, rejected = select_transactions(state, heads, self.proposer, timestamp)
        for tx, error in rejected:
            self.drop_refused(tx, error)

    def drop_refused(self, tx: Transaction, error: InvalidTransaction) -> None:
        """Drop a transaction a block would refuse, and the sender's later ones, which cannot
        follow it (a refused transaction does not use its nonce)."""
        if tx.hash not in self.mempool:  # dropped already, after an earlier one of its sender
            return
        self.receipts.reject(tx.hash, error)
        followers = [later for later in self.mempool.drop_from(tx.sender, tx.nonce)
                     if later.hash != tx.hash]
        for later in followers:
            self.receipts.reject(later.hash, EarlierNonceRejected(
                f"the sender's transaction with nonce {tx.nonce} was refused "
                f"({error.code}): send this one again"))
        if followers:
            log.info("dropped transaction %s of %s (%s) and the %d sent after it",
                     tx.hash.hex()[:12], address_to_text(tx.sender), error.code, len(followers))
