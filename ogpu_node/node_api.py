"""What the node offers to its front ends (JSON-RPC, health, metrics, CLI): the `NodeApi` protocol.

The RPC layer depends only on this protocol; the node (`ogpu_node/node/`) implements it. Reads are
synchronous and answer from the last finalised state; submissions and waits are async.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from ogpu_node.earnings_index import Earning
from ogpu_node.ledger import Block, State, Transaction
from ogpu_node.types import Hash32


class TxState(enum.Enum):
    UNKNOWN = "unknown"        # never seen (or evicted before inclusion)
    PENDING = "pending"        # in the mempool
    FINALIZED = "finalized"    # in a finalised block
    REJECTED = "rejected"      # refused by the mempool or dropped as invalid; see `error_code`


FINAL_STATES = (TxState.FINALIZED, TxState.REJECTED)
"""States a transaction never leaves."""


@dataclass(frozen=True)
class TxReceipt:
    hash: Hash32
    state: TxState
    height: int | None = None
    index: int | None = None
    error_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class PeerInfo:
    peer_id: str
    addresses: tuple[str, ...]
    validator: str | None = None   # text address, when the peer announced its validator key


@dataclass(frozen=True)
class NodeStatus:
    chain_id: str
    node_id: str
    moniker: str
    height: int
    head_hash: Hash32
    state_root: Hash32
    head_time_ms: int
    syncing: bool
    peers: int
    validator: str | None           # this node's validator address, if it validates
    mempool_size: int


HEALTH_CODES = ("syncing", "no_peers", "not_finalising", "stake_unseen", "blob_store_full",
                "agent_not_running")
"""Codes of the reasons a node is unhealthy (see `Node.health`)."""


@dataclass(frozen=True)
class HealthReason:
    """Why a node is unhealthy: a stable `code` (one of `HEALTH_CODES`) and a sentence."""

    code: str
    message: str


@dataclass(frozen=True)
class Health:
    """`healthy` only when synced, finalising and seeing enough stake, with a blob store that
    has room and its market agents running; else `reasons` say why."""

    healthy: bool
    reasons: tuple[HealthReason, ...] = ()
    details: dict[str, object] = field(default_factory=dict)


class NodeApi(Protocol):
    """The node as its front ends see it."""

    def status(self) -> NodeStatus: ...

    def health(self) -> Health: ...

    def agent_status(self) -> dict[str, Any]:
        """The market agents run beside this node: `{running, provider}` (docs/rpc.md)."""
        ...

    def finalized_state(self) -> State: ...

    def earnings(self, address: bytes) -> Iterator[Earning]:
        """The earnings index's lines of `address`, newest first, read as consumed
        (`earnings_index.newest_earnings`)."""
        ...

    def block_by_height(self, height: int) -> Block | None: ...

    def block_by_hash(self, block_hash: bytes) -> Block | None: ...

    def transaction(self, tx_hash: bytes) -> tuple[Transaction, TxReceipt] | None: ...

    def tx_receipt(self, tx_hash: bytes) -> TxReceipt: ...

    def peers(self) -> list[PeerInfo]: ...

    def genesis_document(self) -> bytes:
        """The genesis file of this chain (JSON), for a node that joins it."""
        ...

    def p2p_addresses(self) -> tuple[str, ...]:
        """Multiaddrs (ending in `/p2p/<peer id>`) a joining node may bootstrap from: where this
        node listens, then the peers it bootstraps from itself (the p2p layer has no peer
        discovery: a node knows the peers it dials and those that dial it)."""
        ...

    async def submit_tx(self, tx: Transaction) -> TxReceipt:
        """Admit `tx` to the mempool and gossip it; raises `InvalidTransaction` when refused."""
        ...

    async def wait_for_tx(self, tx_hash: bytes) -> TxReceipt:
        """Wait until `tx_hash` is finalised or rejected; callers bound the wait with
        `trio.move_on_after` and fall back to `tx_receipt`."""
        ...

    def subscribe_blocks(self) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[Block]]:
        """A channel of finalised blocks from now on, closed when the context exits. A consumer
        that falls behind by more than the channel's buffer is disconnected (channel closed)."""
        ...

    # --- the GPU market's off-chain side: progress gossip and blobs ------------------------------

    def task_progress(self, task_id: bytes, attempt: int) -> int | None:
        """The latest progress (basis points of the work) the provider of `attempt` of the task
        reported, or None when it reported none."""
        ...

    def subscribe_tasks(self) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[Hash32]]:
        """Ids of tasks as they change (on chain, or a new progress report), from now on. Like
        `subscribe_blocks`, a consumer that falls behind is disconnected (channel closed)."""
        ...

    def put_file(self, data: bytes) -> Hash32:
        """Store a file in the node's blob store; its file id. Raises `BlobError` (no store, or
        the store is full)."""
        ...

    def put_chunk(self, data: bytes) -> Hash32:
        """Store one chunk (at most `blobs.MAX_CHUNK_BYTES`); its id. Raises `BlobError`."""
        ...

    def put_manifest(self, size: int, chunk_ids: Sequence[bytes]) -> Hash32:
        """Store the manifest of a file whose chunks were stored with `put_chunk`; the file id.
        Raises `BlobError` when a chunk is missing or the sizes disagree."""
        ...

    async def get_chunk(self, chunk_id: bytes) -> bytes:
        """A chunk from the blob store, else from the first connected peer that has it (checked
        against its id and stored). Raises `BlobError` when nobody has it."""
        ...
