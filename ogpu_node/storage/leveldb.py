"""`LevelDBKV`: the node's durable key-value store, LevelDB through plyvel.

Every option is passed explicitly. Batches use `write_batch(transaction=True, sync=True)`: the batch
is discarded if staging raises, and the write returns only after the log is fsync'd, so a crash at
any point leaves the whole batch or none of it. plyvel errors are wrapped into storage errors.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from typing import Any

from ogpu_node.storage.errors import (
    CorruptStore,
    StorageError,
    StoreClosed,
    StoreIOError,
    StoreLocked,
    StoreOpenError,
)
from ogpu_node.storage.kv import (
    DEFAULT_LIMITS,
    KVLimits,
    KVStore,
    WriteHook,
    check_batch,
    check_key,
    prefix_upper_bound,
)
from ogpu_node.storage.leveldb_binding import plyvel

WRITE_BUFFER_BYTES = 16 * 1024 * 1024
MAX_OPEN_FILES = 512
BLOCK_CACHE_BYTES = 32 * 1024 * 1024
BLOCK_BYTES = 4096
BLOOM_FILTER_BITS = 10


def _message(error: BaseException) -> str:
    # plyvel carries LevelDB's status text as bytes.
    arg = error.args[0] if error.args else error
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def _wrap(error: plyvel.Error, context: str) -> StorageError:
    if isinstance(error, plyvel.CorruptionError):
        return CorruptStore(f"{context}: {_message(error)}")
    return StoreIOError(f"{context}: {_message(error)}")


def _open_db(path: str) -> Any:
    try:
        return plyvel.DB(
            path,
            create_if_missing=True,
            error_if_exists=False,
            paranoid_checks=True,
            write_buffer_size=WRITE_BUFFER_BYTES,
            max_open_files=MAX_OPEN_FILES,
            lru_cache_size=BLOCK_CACHE_BYTES,
            block_size=BLOCK_BYTES,
            bloom_filter_bits=BLOOM_FILTER_BITS,
            compression="snappy",
        )
    except plyvel.CorruptionError as error:
        raise CorruptStore(f"cannot open LevelDB at {path}: {_message(error)}") from error
    except plyvel.Error as error:
        message = _message(error)
        if "IO error: lock " in message:  # LevelDB's status for a held LOCK file
            raise StoreLocked(
                f"LevelDB at {path} is in use by another handle or process: {message}"
            ) from error
        raise StoreOpenError(f"cannot open LevelDB at {path}: {message}") from error


class LevelDBKV(KVStore):
    """A `KVStore` on a LevelDB directory (created if missing; its parent must exist)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        limits: KVLimits = DEFAULT_LIMITS,
        write_hook: WriteHook | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._limits = limits
        self._write_hook = write_hook
        self._db = _open_db(self.path)
        self._closed = False

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under `key`, or None."""
        self._check_open()
        check_key(key, self._limits)
        try:
            value: bytes | None = self._db.get(key, None, verify_checksums=True, fill_cache=True)
        except plyvel.Error as error:
            raise _wrap(error, f"get from {self.path}") from error
        return value

    def iterate(self, prefix: bytes = b"", *, reverse: bool = False
                ) -> Iterator[tuple[bytes, bytes]]:
        """Yield the items under `prefix` in key order (descending with `reverse`), from a
        snapshot taken now."""
        self._check_open()
        check_key(prefix, self._limits)
        # Created here, not inside the generator, so that the snapshot is taken at call time.
        if reverse:
            # From the prefix's upper bound down, stopping at the first key outside it: plyvel's
            # own `prefix` (or `start`) in reverse misses a key equal to a start ending in 0xff
            # (plyvel 1.5.1: nothing under b"a\xff" though b"a\xff" is there).
            raw = self._db.iterator(stop=prefix_upper_bound(prefix), reverse=True,
                                    include_key=True, include_value=True,
                                    verify_checksums=True, fill_cache=False)
            return itertools.takewhile(lambda item: item[0].startswith(prefix),
                                       self._iterate_raw(raw))
        raw = self._db.iterator(
            prefix=prefix,
            include_key=True,
            include_value=True,
            verify_checksums=True,
            fill_cache=False,
        )
        return self._iterate_raw(raw)

    def write_batch(
        self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = ()
    ) -> None:
        """Apply the puts, then the deletes, in one synced LevelDB transaction."""
        self._check_open()
        put_list, delete_list = check_batch(puts, deletes, self._limits)
        try:
            with self._db.write_batch(transaction=True, sync=True) as batch:
                for index, (key, value) in enumerate(put_list):
                    self._stage(batch, index, key, value)
                for index, key in enumerate(delete_list, start=len(put_list)):
                    self._stage(batch, index, key, None)
        except plyvel.Error as error:
            raise _wrap(error, f"write batch to {self.path}") from error
        if self._write_hook is not None:
            self._write_hook(len(put_list) + len(delete_list))

    def close(self) -> None:
        """Close the database (and any open iterator); idempotent."""
        if not self._closed:
            self._closed = True
            self._db.close()

    def _stage(self, batch: Any, index: int, key: bytes, value: bytes | None) -> None:
        # The single point where an operation enters a batch, so that fault injection sees all.
        if self._write_hook is not None:
            self._write_hook(index)
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)

    def _iterate_raw(self, raw: Any) -> Iterator[tuple[bytes, bytes]]:
        try:
            while True:
                try:
                    item: tuple[bytes, bytes] = next(raw)
                except StopIteration:
                    return
                except RuntimeError as error:  # plyvel: "Database or iterator is closed"
                    raise StoreClosed(f"LevelDB at {self.path} was closed") from error
                except plyvel.Error as error:
                    raise _wrap(error, f"iterate {self.path}") from error
                yield item
        finally:
            if not self._closed:
                raw.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"LevelDB at {self.path} is closed")
