"""The one hash function of the protocol.

Every digest in the chain (transaction ids, block hashes, Merkle roots, addresses, state roots) is
made here, so the choice is named in one place: SHA-256, domain-separated by a short tag so that a
digest of one kind of object can never be taken for another kind's.
"""

from __future__ import annotations

import hashlib

from ogpu_node.types import Hash32

HASH_NAME = "sha256"


def digest(tag: bytes, data: bytes) -> Hash32:
    """SHA-256 of `len(tag) || tag || data`: a 32-byte digest bound to its domain tag."""
    h = hashlib.sha256(bytes((len(tag),)))
    h.update(tag)
    h.update(data)
    return Hash32(h.digest())


EMPTY_ROOT = digest(b"merkle/empty", b"")


def merkle_root(leaves: list[bytes]) -> Hash32:
    """Binary Merkle root of already-hashed leaves (an odd node is carried up unchanged).

    Leaves and inner nodes are hashed under different tags, so a leaf can never pose as a node.
    """
    if not leaves:
        return EMPTY_ROOT
    level = [digest(b"merkle/leaf", leaf) for leaf in leaves]
    while len(level) > 1:
        nxt = [digest(b"merkle/node", level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
