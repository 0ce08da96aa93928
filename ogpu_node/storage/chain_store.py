"""`ChainStore`: the node's chain database at the byte level, on any `KVStore`.

It knows heights, hashes and opaque bytes, not the ledger's types: the caller encodes blocks and
state values. A finalised block and everything it changes is committed in ONE atomic batch, so after
a crash the store holds the previous head or the new one, never a mix.

Key layout (one-byte prefixes; heights are unsigned 64-bit big-endian, so keys sort by height):

    b"m" b"schema"          -> msgpack [SCHEMA_VERSION]          written with genesis
    b"m" b"head"            -> msgpack [height, block_hash, meta]
    b"b" + block_hash       -> block bytes (height 0: the genesis document)
    b"h" + u64be(height)    -> block_hash
    b"t" + tx_hash          -> msgpack [height, index of the tx in its block]
    b"s" + state_key        -> state value   (so a state key is at most MAX_KEY_BYTES - 1 long)
    b"v" + u64be(height) + u64be(slot) -> bytes of the block this node's validator signed for
                            that proposer slot; written (synced) before the block is sent, so
                            that the node never signs another block there, across restarts;
                            deleted when a block at that height is committed
    b"a" + kind + 0x00 + key -> an agent's secret (a sealed bid's price and salt, a sealed
                            verdict and its salt, a result's ephemeral key), written before the
                            commitment it opens is sent, deleted when no longer needed

Records that the store creates itself are msgpack arrays, decoded strictly: any record that does
not decode to exactly the expected fields, or does not re-encode to the same bytes, raises
`CorruptStore`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import msgpack

from ogpu_node.storage.errors import (
    CorruptStore,
    InvalidCommit,
    LimitExceeded,
    NonContiguousCommit,
    SchemaMismatch,
)
from ogpu_node.storage.kv import KVStore

SCHEMA_VERSION = 1
MAX_HEIGHT = 2**64 - 1
MAX_HASH_BYTES = 64
MAX_META_BYTES = 64 * 1024

_META = b"m"
_BLOCK = b"b"
_HEIGHT = b"h"
_TX = b"t"
_STATE = b"s"
_SIGNED = b"v"
_SECRET = b"a"
SCHEMA_KEY = _META + b"schema"
HEAD_KEY = _META + b"head"


@dataclass(frozen=True, slots=True)
class Head:
    """The last committed block: its height, hash and the caller's metadata (e.g. a state root)."""

    height: int
    block_hash: bytes
    meta: bytes


class ChainStore:
    """Blocks, block/tx indices, state and head, committed block by block in atomic batches.

    Opening checks the schema version (`SchemaMismatch`) and that the head record decodes
    (`CorruptStore`). `close()` closes the underlying `KVStore`.
    """

    def __init__(self, kv: KVStore) -> None:
        self._kv = kv
        self._check_schema()

    def commit_block(
        self,
        *,
        height: int,
        block_hash: bytes,
        block_bytes: bytes,
        tx_hashes: Sequence[bytes],
        state_changes: Mapping[bytes, bytes | None],
        meta: bytes,
    ) -> None:
        """Write a block, its indices, its state changes (None deletes) and the new head atomically.

        `height` must be head.height + 1, or 0 on an empty store (genesis: `block_bytes` is the
        genesis document and `tx_hashes` is empty); otherwise `NonContiguousCommit`.
        """
        head = self.head()
        expected = 0 if head is None else head.height + 1
        if _checked_height(height) != expected:
            raise NonContiguousCommit(f"cannot commit height {height}: expected {expected}")
        if height == 0 and tx_hashes:
            raise InvalidCommit("genesis (height 0) carries no transactions")
        _check_commit_hash(block_hash, "block hash")
        _check_bytes(block_bytes, "block bytes")
        _check_bytes(meta, "meta")
        if len(meta) > MAX_META_BYTES:
            raise LimitExceeded(f"meta of {len(meta)} bytes exceeds {MAX_META_BYTES}")
        if self._kv.get(_BLOCK + block_hash) is not None:
            raise InvalidCommit(f"block {block_hash.hex()} is already stored")
        puts: list[tuple[bytes, bytes]] = []
        if height == 0:
            puts.append((SCHEMA_KEY, _pack([SCHEMA_VERSION])))
        puts.append((_BLOCK + block_hash, block_bytes))
        puts.append((_HEIGHT + _height_bytes(height), block_hash))
        puts.extend(_tx_index_puts(height, tx_hashes))
        state_puts, state_deletes = _state_ops(state_changes)
        puts.extend(state_puts)
        puts.append((HEAD_KEY, _pack([height, block_hash, meta])))
        self._kv.write_batch(puts, [*state_deletes, *self._signed_up_to(height)])

    def signed_proposal(self, height: int, slot: int) -> bytes | None:
        """The block this node's validator signed for (`height`, `slot`), if it signed one."""
        return self._kv.get(_signed_key(height, slot))

    def record_signed_proposal(self, height: int, slot: int, block_bytes: bytes) -> None:
        """Durably record the block signed for (`height`, `slot`), before it is sent anywhere.

        Raises `InvalidCommit` if another block is recorded there: the caller must send the
        recorded one instead (signing two blocks for one slot is equivocation, and slashed)."""
        _check_bytes(block_bytes, "block bytes")
        key = _signed_key(height, slot)
        recorded = self._kv.get(key)
        if recorded is not None and recorded != block_bytes:
            raise InvalidCommit(f"another block is signed for height {height}, slot {slot}")
        self._kv.write_batch([(key, block_bytes)])

    def agent_secret(self, kind: bytes, key: bytes) -> bytes | None:
        """An agent's secret recorded under (`kind`, `key`), if any."""
        return self._kv.get(_secret_key(kind, key))

    def record_agent_secret(self, kind: bytes, key: bytes, value: bytes) -> None:
        """Durably record an agent's secret (before the commitment it opens leaves the node).
        Refused before the genesis is committed: a store holding data but no schema does not
        open again."""
        _check_bytes(value, "agent secret")
        if self.head() is None:
            raise InvalidCommit("no agent secret before the genesis is committed")
        self._kv.write_batch([(_secret_key(kind, key), value)])

    def forget_agent_secret(self, kind: bytes, key: bytes) -> None:
        self._kv.write_batch([], [_secret_key(kind, key)])

    def agent_secret_keys(self, kind: bytes) -> list[bytes]:
        """The keys of every secret recorded under `kind`."""
        prefix = _secret_key(kind, b"")
        return [k[len(prefix):] for k, _ in self._kv.iterate(prefix)]

    def _signed_up_to(self, height: int) -> list[bytes]:
        """Keys of signing records at `height` or below (no longer needed once it is final)."""
        keys = []
        for key, _ in self._kv.iterate(_SIGNED):
            if int.from_bytes(key[1:9], "big") > height:
                break
            keys.append(key)
        return keys

    def head(self) -> Head | None:
        """Return the last committed block's head record, or None on an empty store."""
        raw = self._kv.get(HEAD_KEY)
        if raw is None:
            return None
        height, block_hash, meta = _unpack(raw, "head record", 3)
        return Head(
            height=_decoded_int(height, MAX_HEIGHT, "head height"),
            block_hash=_decoded_hash(block_hash, "head block hash"),
            meta=_decoded_bytes(meta, MAX_META_BYTES, "head meta"),
        )

    def block_hash_at(self, height: int) -> bytes | None:
        """Return the hash of the block at `height`, or None if there is none."""
        if type(height) is not int:
            raise TypeError(f"height must be int, not {type(height).__name__}")
        if not 0 <= height <= MAX_HEIGHT:
            return None
        raw = self._kv.get(_HEIGHT + _height_bytes(height))
        return None if raw is None else _decoded_hash(raw, f"hash of height {height}")

    def block_by_hash(self, block_hash: bytes) -> bytes | None:
        """Return the bytes of the block with hash `block_hash`, or None."""
        _check_lookup_hash(block_hash)
        return self._kv.get(_BLOCK + block_hash)

    def block_by_height(self, height: int) -> bytes | None:
        """Return the bytes of the block at `height`, or None."""
        block_hash = self.block_hash_at(height)
        if block_hash is None:
            return None
        body = self._kv.get(_BLOCK + block_hash)
        if body is None:
            raise CorruptStore(f"height {height} points to missing block {block_hash.hex()}")
        return body

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """Return `(height, index in block)` of a committed transaction, or None."""
        _check_lookup_hash(tx_hash)
        raw = self._kv.get(_TX + tx_hash)
        if raw is None:
            return None
        height, index = _unpack(raw, "tx location", 2)
        return (
            _decoded_int(height, MAX_HEIGHT, "tx height"),
            _decoded_int(index, MAX_HEIGHT, "tx index"),
        )

    def state_get(self, key: bytes) -> bytes | None:
        """Return the state value under `key`, or None."""
        return self._kv.get(_STATE + key)

    def state_items(self, prefix: bytes = b"", *, reverse: bool = False
                    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield `(state_key, value)` for state keys starting with `prefix`, in key order
        (descending with `reverse`)."""
        items = self._kv.iterate(_STATE + prefix, reverse=reverse)
        return ((key[1:], value) for key, value in items)

    def close(self) -> None:
        """Close the underlying key-value store."""
        self._kv.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_schema(self) -> None:
        raw = self._kv.get(SCHEMA_KEY)
        if raw is None:
            if not _is_empty(self._kv):
                raise CorruptStore("store holds data but no schema record")
            return
        (field,) = _unpack(raw, "schema record", 1)
        version = _decoded_int(field, MAX_HEIGHT, "schema version")
        if version != SCHEMA_VERSION:
            raise SchemaMismatch(f"store schema {version!r}, this code reads {SCHEMA_VERSION}")
        if self.head() is None:
            raise CorruptStore("store has a schema record but no head")


def _is_empty(kv: KVStore) -> bool:
    for _ in kv.iterate():
        return False
    return True


def _tx_index_puts(height: int, tx_hashes: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    puts = []
    seen: set[bytes] = set()
    for index, tx_hash in enumerate(tx_hashes):
        _check_commit_hash(tx_hash, "tx hash")
        if tx_hash in seen:
            raise InvalidCommit(f"tx {tx_hash.hex()} appears twice in block {height}")
        seen.add(tx_hash)
        puts.append((_TX + tx_hash, _pack([height, index])))
    return puts


def _state_ops(
    changes: Mapping[bytes, bytes | None],
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    puts: list[tuple[bytes, bytes]] = []
    deletes: list[bytes] = []
    # Sorted so that the batch, and therefore a crash test's write numbering, is deterministic.
    for key in sorted(changes):
        _check_bytes(key, "state key")
        value = changes[key]
        if value is None:
            deletes.append(_STATE + key)
        else:
            _check_bytes(value, "state value")
            puts.append((_STATE + key, value))
    return puts, deletes


def _signed_key(height: int, slot: int) -> bytes:
    return _SIGNED + _height_bytes(_checked_height(height)) + _height_bytes(_checked_height(slot))


def _height_bytes(height: int) -> bytes:
    return height.to_bytes(8, "big")


def _checked_height(height: int) -> int:
    if type(height) is not int:
        raise TypeError(f"height must be int, not {type(height).__name__}")
    if not 0 <= height <= MAX_HEIGHT:
        raise InvalidCommit(f"height {height} outside 0..{MAX_HEIGHT}")
    return height


def _check_bytes(value: bytes, what: str) -> None:
    if type(value) is not bytes:
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


def _check_commit_hash(value: bytes, what: str) -> None:
    _check_bytes(value, what)
    if not value:
        raise InvalidCommit(f"{what} is empty")
    if len(value) > MAX_HASH_BYTES:
        raise LimitExceeded(f"{what} of {len(value)} bytes exceeds {MAX_HASH_BYTES}")


def _check_lookup_hash(value: bytes) -> None:
    _check_bytes(value, "hash")
    if len(value) > MAX_HASH_BYTES:
        raise LimitExceeded(f"hash of {len(value)} bytes exceeds {MAX_HASH_BYTES}")


def _pack(fields: list[object]) -> bytes:
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def _unpack(raw: bytes, what: str, length: int) -> list[object]:
    try:
        fields = msgpack.unpackb(raw, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise CorruptStore(f"{what} does not decode: {error}") from error
    if type(fields) is not list or len(fields) != length:
        raise CorruptStore(f"{what} is not an array of {length} fields")
    try:
        canonical = _pack(fields) == raw
    except (ValueError, TypeError, OverflowError) as error:
        raise CorruptStore(f"{what} does not re-encode: {error}") from error
    if not canonical:
        raise CorruptStore(f"{what} is not canonically encoded")
    return fields


def _decoded_int(value: object, maximum: int, what: str) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise CorruptStore(f"{what} is not an integer in 0..{maximum}")
    return value


def _decoded_bytes(value: object, max_len: int, what: str) -> bytes:
    if type(value) is not bytes or len(value) > max_len:
        raise CorruptStore(f"{what} is not bytes of at most {max_len}")
    return value


def _decoded_hash(value: object, what: str) -> bytes:
    block_hash = _decoded_bytes(value, MAX_HASH_BYTES, what)
    if not block_hash:
        raise CorruptStore(f"{what} is empty")
    return block_hash


def _secret_key(kind: bytes, key: bytes) -> bytes:
    if not kind or b"\x00" in kind:
        raise ValueError("a secret's kind is a non-empty name without NUL")
    return _SECRET + kind + b"\x00" + key
