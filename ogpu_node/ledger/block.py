"""Blocks: a header signed by its proposer, and the transactions it orders."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Self

from ogpu_node.encoding import (
    encode,
    pack,
    read_array,
    read_bytes,
    read_list,
    read_str,
    read_uint,
)
from ogpu_node.errors import DecodeError
from ogpu_node.hashing import digest, merkle_root
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger.tx import MAX_CHAIN_ID_LEN, Transaction
from ogpu_node.types import ADDRESS_LEN, HASH_LEN, SIGNATURE_LEN, Address, Hash32

SIGN_KIND_BLOCK = "block"
MAX_BLOCK_TXS = 20_000
"""Hard decoding cap; the chain's own `Params.max_block_txs` is lower."""


@dataclass(frozen=True)
class BlockHeader:
    """What a block commits to; its hash is the block's id."""

    chain_id: str
    height: int
    parent_hash: Hash32
    timestamp: int
    proposer: Address
    tx_root: Hash32
    state_root: Hash32

    MAX_BYTES: ClassVar[int] = 256

    def to_fields(self) -> list[Any]:
        return [self.chain_id, self.height, self.parent_hash, self.timestamp, self.proposer,
                self.tx_root, self.state_root]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        chain_id, height, parent, ts, proposer, tx_root, state_root = read_array(value, 7, "header")
        return cls(
            chain_id=read_str(chain_id, "header.chain_id", max_len=MAX_CHAIN_ID_LEN),
            height=read_uint(height, "header.height"),
            parent_hash=Hash32(read_bytes(parent, "header.parent_hash", size=HASH_LEN)),
            timestamp=read_uint(ts, "header.timestamp"),
            proposer=Address(read_bytes(proposer, "header.proposer", size=ADDRESS_LEN)),
            tx_root=Hash32(read_bytes(tx_root, "header.tx_root", size=HASH_LEN)),
            state_root=Hash32(read_bytes(state_root, "header.state_root", size=HASH_LEN)),
        )

    @cached_property
    def encoded(self) -> bytes:
        return encode(self)

    @cached_property
    def hash(self) -> Hash32:
        return digest(b"block", self.encoded)


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
        # The header alone must respect its own limit, or `block.hash` could not be computed.
        if len(pack(header)) > BlockHeader.MAX_BYTES:
            raise DecodeError(f"block.header: over {BlockHeader.MAX_BYTES} bytes")
        return cls(
            header=BlockHeader.from_fields(header),
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


def sign_header(key: PrivateKey, header: BlockHeader) -> bytes:
    """The proposer's signature over a header."""
    return key.sign(header.chain_id, SIGN_KIND_BLOCK, header.encoded)

