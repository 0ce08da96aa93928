"""Shared builders for ledger tests: deterministic keys, a small genesis, signed transactions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import (
    Block,
    Params,
    State,
    apply_block,
    build_block,
    make_genesis_state,
    sign_transaction,
)
from ogpu_node.ledger.block import BlockHeader, sign_header
from ogpu_node.ledger.equivocation import ReportEquivocation
from ogpu_node.ledger.params import BPS
from ogpu_node.ledger.tx import Payload, Transaction
from ogpu_node.types import Hash32, ogpu

CHAIN_ID = "ogpu-test"
PARAMS = Params(epoch_length=4, unbonding_period=3, min_fee=1_000, evidence_max_age=2)
FEE = 1_000


def make_key(i: int) -> PrivateKey:
    """The i-th deterministic test key."""
    return PrivateKey.from_seed(digest(b"test-key", i.to_bytes(4, "big")))


KEYS = [make_key(i) for i in range(6)]
VALIDATOR = KEYS[0]


def genesis(params: Params = PARAMS, balance: int = ogpu(1_000)) -> State:
    """Six funded accounts; KEYS[0] is the only validator."""
    return make_genesis_state(
        chain_id=CHAIN_ID, params=params, genesis_hash=digest(b"test-genesis", b""),
        timestamp=1_000, allocations=[(k.address, balance) for k in KEYS],
        validators=[(VALIDATOR.public_key.raw, params.min_validator_stake)],
    )


def signed(key: PrivateKey, nonce: int, payload: Payload, fee: int = FEE,
           chain_id: str = CHAIN_ID) -> Transaction:
    """A transaction of `payload` signed by `key`."""
    return sign_transaction(key, chain_id=chain_id, nonce=nonce, fee=fee, payload=payload)


# --- blocks and snapshots --------------------------------------------------------------------

BLOCK_INTERVAL_MS = 1_000


def next_block(state: State, txs: Sequence[Transaction] = (), key: PrivateKey = VALIDATOR,
               timestamp: int | None = None) -> tuple[Block, State]:
    """A block of `txs` on top of `state`, proposed by `key` one interval after its parent."""
    ts = state.timestamp + BLOCK_INTERVAL_MS if timestamp is None else timestamp
    return build_block(state, list(txs), key, ts)


def advance(state: State, blocks: int, key: PrivateKey = VALIDATOR) -> State:
    """`state` after `blocks` empty blocks, each validated by `apply_block`."""
    for _ in range(blocks):
        block, _ = next_block(state, key=key)
        state = apply_block(state, block)
    return state


def resign(block: Block, key: PrivateKey = VALIDATOR, **changes: Any) -> Block:
    """`block` with header fields replaced and the header signed again, so that only the
    changed field is wrong."""
    header = replace(block.header, **changes)
    return Block(header, sign_header(key, header), block.txs)


def snapshot(state: State) -> tuple[Any, ...]:
    """Everything observable of a state, copied, to check that a rejection changed nothing."""
    return (
        state.root, state.height, state.block_hash, state.timestamp, dict(state.accounts),
        dict(state.unbonding), state.validators, state.issued, state.burned, state.reward_pool,
        state.records_hash, dict(state.providers), dict(state.tasks), state.open_tasks,
        dict(state.pools), dict(state.tombstones),
    )


def total_fees_burned(fee: int, params: Params = PARAMS) -> int:
    """The part of `fee` that `params` burns."""
    return fee * params.fee_burn_bps // BPS


# --- equivocation ---------------------------------------------------------------------------


def parent_header(height: int, timestamp: int, chain_id: str = CHAIN_ID) -> BlockHeader:
    """A header at `height` to serve as the parent of double-signed headers: evidence needs
    only its hash and timestamp, so it need not be on chain (nor signed)."""
    tag = height.to_bytes(8, "big")
    return BlockHeader(chain_id, height, Hash32(digest(b"test-grandparent", tag)), timestamp,
                       VALIDATOR.address, Hash32(digest(b"test-txs", tag)),
                       Hash32(digest(b"test-state", tag)))


def child_header(parent: BlockHeader, proposer: PrivateKey, timestamp: int,
                 tag: bytes = b"a") -> BlockHeader:
    """A header on top of `parent`; headers with different `tag`s differ (in their roots)."""
    return BlockHeader(parent.chain_id, parent.height + 1, parent.hash, timestamp,
                       proposer.address, Hash32(digest(b"test-txs", tag)),
                       Hash32(digest(b"test-state", tag)))


def double_sign(offender: PrivateKey, parent: BlockHeader, *, first_ms: int = 1,
                second_ms: int = 2, tags: tuple[bytes, bytes] = (b"a", b"b"),
                signer: PrivateKey | None = None) -> ReportEquivocation:
    """Evidence that `offender` signed two headers on `parent`, made `first_ms` and `second_ms`
    after it (in one slot by default); `signer` signs the second header instead, to forge."""
    first = child_header(parent, offender, parent.timestamp + first_ms, tags[0])
    second = child_header(parent, offender, parent.timestamp + second_ms, tags[1])
    return ReportEquivocation(first, sign_header(offender, first), second,
                              sign_header(signer or offender, second), parent)
