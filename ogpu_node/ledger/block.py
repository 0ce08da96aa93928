"""Blocks: a header signed by its proposer (`header.py`), and the transactions it orders."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Self

from ogpu_node.encoding import encode, read_array, read_bytes, read_list
from ogpu_node.hashing import merkle_root
from ogpu_node.ledger.header import SIGN_KIND_BLOCK, BlockHeader, read_header, sign_header
from ogpu_node.ledger.tx import Transaction
from ogpu_node.types import SIGNATURE_LEN, Hash32

# The header's names stay importable from here, where callers have always found them.
__all__ = ["MAX_BLOCK_TXS", "SIGN_KIND_BLOCK", "Block", "BlockHeader", "compute_tx_root",
           "sign_header"]

MAX_BLOCK_TXS = 20_000
"""Hard decoding cap; the chain's own `Params.max_block_txs` is lower."""


@dataclass(frozen=True)
class Block:
    """A signed header and its transactions."""

    header: BlockHeader
    signature: bytes
    txs: tuple[Transaction, ...]

    MAX_BYTES: ClassVar[int] = 16 * 1024 * 1024

    def to_fields(self) -> list[Any]:
        return [self.header.to_fields(), self.signature, [tx.to_fields() for tx in self.txs]]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        header, signature, txs = read_array(value, 3, "block")
        return cls(
            header=read_header(header, "block.header"),
            signature=read_bytes(signature, "block.signature", size=SIGNATURE_LEN),
            txs=tuple(
                Transaction.from_fields(t) for t in read_list(txs, MAX_BLOCK_TXS, "block.txs")
            ),
        )

    @property
    def hash(self) -> Hash32:
        return self.header.hash

    @cached_property
    def encoded(self) -> bytes:
        return encode(self)

    @property
    def height(self) -> int:
        return self.header.height


def compute_tx_root(txs: tuple[Transaction, ...] | list[Transaction]) -> Hash32:
    """Merkle root of the transaction ids, in block order."""
    return merkle_root([tx.hash for tx in txs])
