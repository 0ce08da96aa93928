"""Receipts: what became of a transaction (`finalized`, `pending`, `rejected`, `unknown`), and
waiting until it is final.

`Receipts` reads finalised locations from the chain's index and pending ones from the mempool, and
keeps what neither holds: the transactions refused on submission or dropped because a block would
refuse them (`reject`), and when each transaction submitted here arrived (`submitted`), for the
finality latency the node reports per block (`finality_latency`). `finalized` wakes `wait` after
each committed block (the node notifies it). No service loop.
"""

from __future__ import annotations

from collections import OrderedDict

from ogpu_node.chain import Chain
from ogpu_node.ledger import Transaction
from ogpu_node.ledger.errors import InvalidTransaction
from ogpu_node.node.broadcast import Notifier
from ogpu_node.node.mempool import Mempool
from ogpu_node.node_api import FINAL_STATES, TxReceipt, TxState
from ogpu_node.types import Hash32

MAX_REJECTED_RECEIPTS = 10_000
"""Rejections remembered, the oldest forgotten first (then their receipts read `unknown`)."""


class Receipts:
    """Receipts of transactions, finalised, pending or rejected, and waiting for them."""

    def __init__(self, chain: Chain, mempool: Mempool, max_submitted: int) -> None:
        self.chain = chain
        self.mempool = mempool
        self.max_submitted = max_submitted
        """Submission times kept (one per transaction the mempool can hold)."""
        self.finalized = Notifier()
        """Notified after each committed block."""
        self._rejected: OrderedDict[Hash32, TxReceipt] = OrderedDict()
        self._submitted_at: OrderedDict[Hash32, float] = OrderedDict()

    def reject(self, tx_hash: Hash32, error: InvalidTransaction) -> None:
        """Remember that `tx_hash` was refused, with the error's code and message."""
        self._rejected[tx_hash] = TxReceipt(tx_hash, TxState.REJECTED, error_code=error.code,
                                            reason=str(error))
        while len(self._rejected) > MAX_REJECTED_RECEIPTS:
            self._rejected.popitem(last=False)

    def submitted(self, tx_hash: Hash32, now: float) -> None:
        """Remember when a transaction submitted to this node arrived (trio time)."""
        self._submitted_at[tx_hash] = now
        while len(self._submitted_at) > self.max_submitted:
            self._submitted_at.popitem(last=False)

    def finality_latency(self, tx_hashes: list[Hash32], now: float) -> float | None:
        """Seconds from submission to `now` of the last of `tx_hashes` submitted here (None when
        none was); forgets their submission times."""
        latency = None
        for h in tx_hashes:
            submitted = self._submitted_at.pop(h, None)
            if submitted is not None:
                latency = now - submitted
        return latency

    def receipt(self, tx_hash: bytes) -> TxReceipt:
        """Where `tx_hash` stands: finalised (with its place), pending, rejected or unknown."""
        h = Hash32(bytes(tx_hash))
        location = self.chain.store.tx_location(h)
        if location is not None:
            return TxReceipt(h, TxState.FINALIZED, height=location[0], index=location[1])
        if h in self.mempool:
            return TxReceipt(h, TxState.PENDING)
        return self._rejected.get(h) or TxReceipt(h, TxState.UNKNOWN)

    def transaction(self, tx_hash: bytes) -> tuple[Transaction, TxReceipt] | None:
        """A pending or finalised transaction with its receipt."""
        receipt = self.receipt(tx_hash)
        if receipt.state is TxState.PENDING:
            tx = self.mempool.get(tx_hash)
            return (tx, receipt) if tx else None
        if receipt.state is TxState.FINALIZED and receipt.height is not None:
            block = self.chain.block_at(receipt.height)
            if block is not None and receipt.index is not None:
                return block.txs[receipt.index], receipt
        return None

    async def wait(self, tx_hash: bytes) -> TxReceipt:
        """The receipt of `tx_hash` once it is final (finalised or rejected)."""
        while True:
            event = self.finalized.event
            receipt = self.receipt(tx_hash)
            if receipt.state in FINAL_STATES:
                return receipt
            await event.wait()
