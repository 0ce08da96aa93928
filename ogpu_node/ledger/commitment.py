"""An incremental, order-independent commitment to a set of records: LtHash16.

The state holds many accounts; a block changes few. A Merkle tree over sorted accounts would cost
O(accounts) per block. LtHash (Bellare-Micciancio's lattice hash, in the form Facebook's
"Securing Update Propagation with Homomorphic Hashing" recommends and Solana uses for its accounts
hash) maps each record to 1024 lanes of 16 bits with an extendable-output hash and adds lanes
modulo 2**16. Adding a record adds its lanes, removing it subtracts them, so a block costs
O(records it changed), and any two nodes holding the same set get the same value whatever the order
of updates. It commits to the set; it gives no inclusion proofs (a non-goal for now).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

LANES = 1024
LANE_BYTES = 2 * LANES
_ZERO = bytes(LANE_BYTES)


def _lanes(records: Iterable[bytes]) -> np.ndarray:
    """Sum (mod 2**16) of the lane vectors of `records`."""
    expanded = b"".join(hashlib.shake_256(r).digest(LANE_BYTES) for r in records)
    if not expanded:
        return np.zeros(LANES, dtype=np.uint16)
    vectors = np.frombuffer(expanded, dtype="<u2").reshape(-1, LANES)
    total: np.ndarray = vectors.sum(axis=0, dtype=np.uint16)
    return total


def lthash_update(current: bytes, added: Iterable[bytes], removed: Iterable[bytes]) -> bytes:
    """The commitment after adding `added` records to and removing `removed` ones from `current`."""
    acc = np.frombuffer(current, dtype="<u2").copy()
    acc += _lanes(added)
    acc -= _lanes(removed)
    return acc.astype("<u2").tobytes()


EMPTY_LTHASH = _ZERO
