"""The mempool: transactions waiting for a block, checked on entry, bounded, ordered by nonce.

Admission runs every check that needs no state (size, chain, kind, amounts, fee, signature, and
the payload's own rules: a task's spec and terms, a pool's) and the nonce and funds checks against
the finalised state. Funds are counted per sender over everything it has pending, as geth's pool
does: a sender's balance must cover the fees and escrows of all its waiting transactions (what
it may receive meanwhile is not counted), so an account cannot make the network carry
transactions that no block could take. Per sender, transactions
wait in nonce order; a block takes each sender's run of consecutive nonces starting at the
account's next nonce. Limits: total count, total bytes, and transactions per sender; when full,
a new transaction is admitted only if its fee beats the lowest fee waiting, which is evicted.

A transaction refused when a block is built does not use its nonce, so the sender's later ones
cannot follow it: the node rechecks each sender's first pending transaction (`heads`) after
every block and drops a refused one with everything after it (`drop_from`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field

from ogpu_node.ledger import State, Transaction
from ogpu_node.ledger.errors import (
    BadNonce,
    InsufficientFunds,
    InvalidTransaction,
    failures_contained,
)
from ogpu_node.ledger.tx import balance_needed, check_transaction
from ogpu_node.node.settings_checks import refuse_below
from ogpu_node.types import Address, Hash32


class MempoolFull(InvalidTransaction):
    code = "mempool_full"


class AlreadyKnown(InvalidTransaction):
    code = "already_known"


class EarlierNonceRejected(InvalidTransaction):
    """Dropped because the sender's transaction before it was refused: send it again."""

    code = "earlier_nonce_rejected"


@dataclass(frozen=True)
class MempoolLimits:
    max_txs: int = 50_000
    """Transactions kept waiting; beyond, the cheapest are evicted."""
    max_bytes: int = 64 * 1024 * 1024
    """Bytes of transactions kept waiting; beyond, the cheapest are evicted."""
    max_per_sender: int = 1_000
    """How far ahead of its account's nonce a sender's transaction may be."""

    def __post_init__(self) -> None:
        refuse_below(self, ["max_txs", "max_bytes", "max_per_sender"])


@dataclass
class Mempool:
    """Pending transactions by sender and nonce. Not thread-safe: owned by the node's trio loop."""

    limits: MempoolLimits = field(default_factory=MempoolLimits)
    _by_hash: dict[Hash32, Transaction] = field(default_factory=dict)
    _by_sender: dict[Address, dict[int, Transaction]] = field(default_factory=dict)
    _needs: dict[Hash32, int] = field(default_factory=dict)
    """What each pending transaction needs from its sender's balance (`balance_needed`)."""
    _needs_by_sender: dict[Address, int] = field(default_factory=dict)
    _cheap: list[tuple[int, int, Hash32]] = field(default_factory=list)
    """(fee, -nonce, hash) of pending transactions, a min-heap; may hold dropped ones."""
    _bytes: int = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, tx_hash: bytes) -> Transaction | None:
        return self._by_hash.get(Hash32(tx_hash))

    def add(self, tx: Transaction, state: State) -> None:
        """Admit `tx` or raise a typed `InvalidTransaction` saying why not."""
        if tx.hash in self._by_hash:
            raise AlreadyKnown("transaction is already pending")
        with failures_contained():
            payload = check_transaction(tx, state.chain_id, state.params, state.model_info)
            needs = balance_needed(tx, payload, state.params, state.model_info)
        account = state.account(tx.sender)
        if tx.nonce < account.nonce:
            raise BadNonce(f"nonce {tx.nonce} already used (account is at {account.nonce})")
        if tx.nonce >= account.nonce + self.limits.max_per_sender:
            raise BadNonce(f"nonce {tx.nonce} is more than {self.limits.max_per_sender} ahead "
                           f"of the account's {account.nonce}")
        replaced = self._by_sender.get(tx.sender, {}).get(tx.nonce)
        waiting = self._needs_by_sender.get(tx.sender, 0) - (
            self._needs[replaced.hash] if replaced is not None else 0)
        if waiting + needs > account.balance:
            raise InsufficientFunds(
                f"balance {account.balance} is below the {needs} this needs"
                + (f" after the {waiting} the sender's pending transactions need"
                   if waiting else ""))
        if replaced is not None:
            if tx.fee <= replaced.fee:
                raise AlreadyKnown(f"a transaction with nonce {tx.nonce} is already pending; "
                                   "replace it only with a higher fee")
            replaced_needs = self._needs[replaced.hash]
            self._drop(replaced)
        try:
            self._make_room(tx)
        except MempoolFull:
            if replaced is not None:  # the replacement does not fit: keep what it replaced
                self._insert(replaced, replaced_needs)
            raise
        self._insert(tx, needs)

    def _insert(self, tx: Transaction, needs: int) -> None:
        self._by_sender.setdefault(tx.sender, {})[tx.nonce] = tx
        self._by_hash[tx.hash] = tx
        self._needs[tx.hash] = needs
        self._needs_by_sender[tx.sender] = self._needs_by_sender.get(tx.sender, 0) + needs
        self._bytes += len(tx.encoded)
        heapq.heappush(self._cheap, (tx.fee, -tx.nonce, tx.hash))

    def _make_room(self, tx: Transaction) -> None:
        size = len(tx.encoded)
        while (len(self._by_hash) >= self.limits.max_txs
               or self._bytes + size > self.limits.max_bytes):
            cheapest = self._cheapest()
            if cheapest is None or cheapest.fee >= tx.fee:
                raise MempoolFull("mempool is full; raise the fee to replace waiting ones")
            self._drop(cheapest)

    def _cheapest(self) -> Transaction | None:
        """What a full pool evicts first: the lowest fee, then the highest nonce. Kept in a heap
        with lazy deletion (entries of dropped transactions are skipped, and the heap is rebuilt
        when they outnumber the live ones): a scan of a full pool (50,000) for each admission
        let a funded sender churning its own transactions cost every node that scan each."""
        if len(self._cheap) > 2 * len(self._by_hash) + 64:
            self._cheap = [(t.fee, -t.nonce, h) for h, t in self._by_hash.items()]
            heapq.heapify(self._cheap)
        while self._cheap and self._cheap[0][2] not in self._by_hash:  # a hash fixes the fee
            heapq.heappop(self._cheap)
        return self._by_hash[self._cheap[0][2]] if self._cheap else None

    def _drop(self, tx: Transaction) -> None:
        del self._by_hash[tx.hash]
        self._bytes -= len(tx.encoded)
        self._needs_by_sender[tx.sender] -= self._needs.pop(tx.hash)
        queue = self._by_sender[tx.sender]
        del queue[tx.nonce]
        if not queue:
            del self._by_sender[tx.sender]
            del self._needs_by_sender[tx.sender]

    def next_nonce(self, sender: Address, state: State) -> int:
        """The nonce a new transaction of `sender` should take: after its run of pending ones."""
        nonce = state.account(sender).nonce
        queue = self._by_sender.get(sender, {})
        while nonce in queue:
            nonce += 1
        return nonce

    def candidates(self, state: State) -> Iterator[Transaction]:
        """Transactions that could go into the next block on top of `state`: per sender the run
        of consecutive nonces from the account's next nonce, senders in arrival order."""
        for sender, queue in list(self._by_sender.items()):
            nonce = state.account(sender).nonce
            while (tx := queue.get(nonce)) is not None:
                yield tx
                nonce += 1

    def heads(self, state: State) -> list[Transaction]:
        """Each sender's transaction at its account's next nonce (the next one a block takes)."""
        return [tx for sender, queue in self._by_sender.items()
                if (tx := queue.get(state.account(sender).nonce)) is not None]

    def drop_from(self, sender: Address, nonce: int) -> list[Transaction]:
        """Drop `sender`'s transactions with `nonce` or later; returns them in nonce order."""
        dropped = sorted((tx for n, tx in self._by_sender.get(sender, {}).items() if n >= nonce),
                         key=lambda tx: tx.nonce)
        for tx in dropped:
            self._drop(tx)
        return dropped

    def remove(self, tx_hashes: list[Hash32]) -> None:
        """Drop transactions (included in a finalised block, or found invalid)."""
        for h in tx_hashes:
            tx = self._by_hash.get(h)
            if tx is not None:
                self._drop(tx)

    def prune(self, state: State) -> list[Transaction]:
        """Drop transactions whose nonce the finalised state has passed; returns them."""
        stale = [tx for sender, queue in self._by_sender.items()
                 for nonce, tx in queue.items() if nonce < state.account(sender).nonce]
        for tx in stale:
            self._drop(tx)
        return stale
