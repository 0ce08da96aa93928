"""Block headers: what a block commits to, and its proposer's signature over it.

Apart from `block.py` because equivocation evidence, a transaction payload, carries headers:
`tx.py` imports this module, and `block.py` imports `tx.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Self

from ogpu_node.encoding import encode, pack, read_array, read_bytes, read_str, read_uint
from ogpu_node.errors import DecodeError
from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger.params import MAX_CHAIN_ID_LEN
from ogpu_node.types import ADDRESS_LEN, HASH_LEN, Address, Hash32

SIGN_KIND_BLOCK = "block"


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


def read_header(value: Any, what: str) -> BlockHeader:
    """A header decoded from fields nested in a larger value (a block, equivocation evidence).

    The header alone must respect its own limit, or its hash could not be computed.
    """
    if len(pack(value)) > BlockHeader.MAX_BYTES:
        raise DecodeError(f"{what}: over {BlockHeader.MAX_BYTES} bytes")
    return BlockHeader.from_fields(value)


def sign_header(key: PrivateKey, header: BlockHeader) -> bytes:
    """The proposer's signature over a header."""
    return key.sign(header.chain_id, SIGN_KIND_BLOCK, header.encoded)

