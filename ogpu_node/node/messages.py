"""What nodes say to each other: gossip payloads and request/response messages, all canonical.

Gossip topics:
    TOPIC_TXS     a `TxBatch` (transactions are batched: py-libp2p queues only 32 messages a peer)
    TOPIC_BLOCKS  a `BlockAnnouncement` (id and height of a proposal); the block itself is
                  fetched from the announcer with PROTO_BLOCK. py-libp2p can interleave two
                  writers' frames on one gossip stream when a message spans several yamux
                  frames, so gossip messages stay small and bulk data goes by request.
    TOPIC_PROGRESS a `TaskProgress`: how far the awarded provider is with a task, signed by it
                  (not consensus data: every node keeps the latest one per task for its clients)

Request/response protocols (one request, one response, both length-capped by the p2p layer):
    PROTO_STATUS     `StatusRequest` -> `Status`            chain id check, height, validator claim
    PROTO_QUERY      `Query` -> `Chits`                     a consensus poll
    PROTO_BLOCK      `BlockRequest` -> `BlockResponse`      one block by id (processing or final)
    PROTO_RANGE      `RangeRequest` -> `RangeResponse`      finalised blocks by height, for sync
    PROTO_HASH       `HashRequest` -> `HashResponse`        the finalised block hash at a height,
                                                            asked of validators before a sync
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ogpu_node.encoding import read_array, read_bytes, read_list, read_str, read_uint
from ogpu_node.errors import DecodeError
from ogpu_node.node.identity import ValidatorClaim
from ogpu_node.types import ADDRESS_LEN, HASH_LEN

TOPIC_TXS = "ogpu/txs/1"
TOPIC_BLOCKS = "ogpu/blocks/1"
TOPIC_PROGRESS = "ogpu/progress/1"
SIGN_KIND_PROGRESS = "progress"
PROTO_STATUS = "/ogpu/status/2"
PROTO_QUERY = "/ogpu/query/1"
PROTO_BLOCK = "/ogpu/block/1"
PROTO_RANGE = "/ogpu/range/1"
PROTO_HASH = "/ogpu/hash/1"

MAX_TX_BATCH = 100
"""Transactions per gossip message (about 26 KB), to keep gossip messages small (see above)."""
MAX_PROPOSAL_BYTES = 4 * 1024 * 1024
"""Largest block a node proposes (it travels by request, within PROTO_BLOCK's frame limit)."""
MAX_RANGE_BLOCKS = 256
"""Blocks per sync response (the response is also capped in bytes)."""
MAX_RANGE_BYTES = 8 * 1024 * 1024
FRAME_LIMITS = {PROTO_RANGE: MAX_RANGE_BYTES + 64 * 1024, PROTO_BLOCK: 17 * 1024 * 1024}
"""Request/response frame limits of the protocols whose answers exceed the p2p default."""


@dataclass(frozen=True)
class TxBatch:
    txs: tuple[bytes, ...]

    MAX_BYTES: ClassVar[int] = 4 * 1024 * 1024

    def to_fields(self) -> list[Any]:
        return [list(self.txs)]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (txs,) = read_array(value, 1, "tx_batch")
        return cls(tuple(read_bytes(t, "tx_batch.tx", max_len=64 * 1024)
                         for t in read_list(txs, MAX_TX_BATCH, "tx_batch.txs")))


@dataclass(frozen=True)
class BlockAnnouncement:
    """A new proposal: fetch it from the announcer if unknown."""

    block_id: bytes
    height: int

    MAX_BYTES: ClassVar[int] = 64

    def to_fields(self) -> list[Any]:
        return [self.block_id, self.height]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        block_id, height = read_array(value, 2, "announcement")
        return cls(read_bytes(block_id, "announcement.block_id", size=HASH_LEN),
                   read_uint(height, "announcement.height"))


@dataclass(frozen=True)
class TaskProgress:
    """The awarded provider's progress on one attempt of a task, in basis points of the work."""

    task_id: bytes
    attempt: int
    provider: bytes
    done_bps: int
    time_ms: int
    signature: bytes = b""

    MAX_BYTES: ClassVar[int] = 192

    def body_fields(self) -> list[Any]:
        return [self.task_id, self.attempt, self.provider, self.done_bps, self.time_ms]

    def to_fields(self) -> list[Any]:
        return [*self.body_fields(), self.signature]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        task_id, attempt, provider, done, time_ms, signature = read_array(value, 6, "progress")
        return cls(read_bytes(task_id, "progress.task_id", size=HASH_LEN),
                   read_uint(attempt, "progress.attempt"),
                   read_bytes(provider, "progress.provider", size=ADDRESS_LEN),
                   read_uint(done, "progress.done_bps", max_value=10_000),
                   read_uint(time_ms, "progress.time_ms"),
                   read_bytes(signature, "progress.signature", size=64))


@dataclass(frozen=True)
class HashRequest:
    """Which block did you finalise at `height`?"""

    height: int

    MAX_BYTES: ClassVar[int] = 16

    def to_fields(self) -> list[Any]:
        return [self.height]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (height,) = read_array(value, 1, "hash_request")
        return cls(read_uint(height, "hash_request.height"))


@dataclass(frozen=True)
class HashResponse:
    """The block hash finalised at the height asked, empty if the node has not got there."""

    block_hash: bytes

    MAX_BYTES: ClassVar[int] = 48

    def to_fields(self) -> list[Any]:
        return [self.block_hash]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (block_hash,) = read_array(value, 1, "hash_response")
        block_hash = read_bytes(block_hash, "hash_response.block_hash", max_len=HASH_LEN)
        if len(block_hash) not in (0, HASH_LEN):
            raise DecodeError(f"hash_response.block_hash: {len(block_hash)} bytes")
        return cls(block_hash)


@dataclass(frozen=True)
class StatusRequest:
    MAX_BYTES: ClassVar[int] = 8

    def to_fields(self) -> list[Any]:
        return []

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        read_array(value, 0, "status_request")
        return cls()


@dataclass(frozen=True)
class Status:
    """A node's view: which chain, how far it has finalised, and, when it validates, its
    validator's claim to run as this peer (`node.identity`: only a verified claim counts)."""

    chain_id: str
    genesis_hash: bytes
    height: int
    head_hash: bytes
    claim: ValidatorClaim | None

    MAX_BYTES: ClassVar[int] = 320

    def to_fields(self) -> list[Any]:
        return [self.chain_id, self.genesis_hash, self.height, self.head_hash,
                self.claim.to_fields() if self.claim else []]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        chain_id, genesis, height, head, claim = read_array(value, 5, "status")
        return cls(read_str(chain_id, "status.chain_id", max_len=64),
                   read_bytes(genesis, "status.genesis_hash", size=HASH_LEN),
                   read_uint(height, "status.height"),
                   read_bytes(head, "status.head_hash", size=HASH_LEN),
                   ValidatorClaim.from_fields(claim) if claim != [] else None)


@dataclass(frozen=True)
class Query:
    """A poll: "which block do you prefer?", naming the block the asker prefers."""

    poll_id: int
    block_id: bytes
    height: int

    MAX_BYTES: ClassVar[int] = 64

    def to_fields(self) -> list[Any]:
        return [self.poll_id, self.block_id, self.height]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        poll_id, block_id, height = read_array(value, 3, "query")
        return cls(read_uint(poll_id, "query.poll_id"),
                   read_bytes(block_id, "query.block_id", size=HASH_LEN),
                   read_uint(height, "query.height"))


@dataclass(frozen=True)
class Chits:
    preferred_id: bytes

    MAX_BYTES: ClassVar[int] = 48

    def to_fields(self) -> list[Any]:
        return [self.preferred_id]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (preferred,) = read_array(value, 1, "chits")
        return cls(read_bytes(preferred, "chits.preferred_id", size=HASH_LEN))


@dataclass(frozen=True)
class BlockRequest:
    block_id: bytes

    MAX_BYTES: ClassVar[int] = 48

    def to_fields(self) -> list[Any]:
        return [self.block_id]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (block_id,) = read_array(value, 1, "block_request")
        return cls(read_bytes(block_id, "block_request.block_id", size=HASH_LEN))


@dataclass(frozen=True)
class BlockResponse:
    block: bytes  # empty when unknown

    MAX_BYTES: ClassVar[int] = 16 * 1024 * 1024 + 16

    def to_fields(self) -> list[Any]:
        return [self.block]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (block,) = read_array(value, 1, "block_response")
        return cls(read_bytes(block, "block_response.block", max_len=16 * 1024 * 1024))


@dataclass(frozen=True)
class RangeRequest:
    start_height: int
    count: int

    MAX_BYTES: ClassVar[int] = 24

    def to_fields(self) -> list[Any]:
        return [self.start_height, self.count]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        start, count = read_array(value, 2, "range_request")
        return cls(read_uint(start, "range_request.start_height", min_value=1),
                   read_uint(count, "range_request.count", min_value=1,
                             max_value=MAX_RANGE_BLOCKS))


@dataclass(frozen=True)
class RangeResponse:
    blocks: tuple[bytes, ...]

    MAX_BYTES: ClassVar[int] = MAX_RANGE_BYTES + 1024

    def to_fields(self) -> list[Any]:
        return [list(self.blocks)]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (blocks,) = read_array(value, 1, "range_response")
        return cls(tuple(read_bytes(b, "range_response.block", max_len=MAX_RANGE_BYTES)
                         for b in read_list(blocks, MAX_RANGE_BLOCKS, "range_response.blocks")))
