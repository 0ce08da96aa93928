"""Choosing the transactions of a new block: the valid ones, in order, within the block's limits."""

from __future__ import annotations

from collections.abc import Iterable

from ogpu_node.ledger.errors import InvalidTransaction, UnexpectedFailure
from ogpu_node.ledger.state import State
from ogpu_node.ledger.transition import process_block_start, process_tx
from ogpu_node.ledger.tx import Transaction
from ogpu_node.ledger.working import Working
from ogpu_node.types import Address


def select_transactions(
    state: State, candidates: Iterable[Transaction], proposer: Address, timestamp: int,
    max_bytes: int | None = None,
) -> tuple[list[Transaction], list[tuple[Transaction, InvalidTransaction]]]:
    """Apply `candidates` in order on top of `state` as the next block (made at `timestamp`)
    would, keeping those that apply, until the block's transaction count or byte limit (or
    `max_bytes`, if lower) is reached.

    Returns (selected, rejected with their errors). `process_tx` writes nothing when it raises a
    rule's rejection, so a rejected candidate leaves the working state as it was; after a
    contained bug (`UnexpectedFailure`) the selected ones are applied again on a fresh working
    state. `state` itself is never touched.
    """
    w = Working(state, timestamp)
    process_block_start(w, proposer)
    params = state.params
    selected: list[Transaction] = []
    rejected: list[tuple[Transaction, InvalidTransaction]] = []
    size = 0
    byte_limit = min(params.max_block_bytes, max_bytes or params.max_block_bytes)
    for tx in candidates:
        if len(selected) >= params.max_block_txs:
            break
        tx_size = len(tx.encoded)
        if size + tx_size > byte_limit:
            continue
        try:
            process_tx(w, tx, proposer)
        except UnexpectedFailure as exc:
            # a contained bug may have left writes behind: start over from the selected ones
            rejected.append((tx, exc))
            w = Working(state, timestamp)
            process_block_start(w, proposer)
            for kept in selected:
                process_tx(w, kept, proposer)
            continue
        except InvalidTransaction as exc:
            rejected.append((tx, exc))
            continue
        selected.append(tx)
        size += tx_size
    return selected, rejected
