"""`MemoryKV`: the in-memory key-value store for the simulator and unit tests.

It follows the same contract as `LevelDBKV` (same conformance suite, same limits, same write hook),
minus durability: the data lives as long as the object.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator

from ogpu_node.storage.errors import StoreClosed
from ogpu_node.storage.kv import (
    DEFAULT_LIMITS,
    KVLimits,
    KVStore,
    WriteHook,
    check_batch,
    check_key,
    prefix_upper_bound,
)


class MemoryKV(KVStore):
    """A dict plus a sorted key list; batches are staged in full, then applied."""

    def __init__(
        self, *, limits: KVLimits = DEFAULT_LIMITS, write_hook: WriteHook | None = None
    ) -> None:
        self._limits = limits
        self._write_hook = write_hook
        self._data: dict[bytes, bytes] = {}
        self._sorted_keys: list[bytes] = []
        self._closed = False

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under `key`, or None."""
        self._check_open()
        check_key(key, self._limits)
        return self._data.get(key)

    def iterate(self, prefix: bytes = b"", *, reverse: bool = False
                ) -> Iterator[tuple[bytes, bytes]]:
        """Yield the items under `prefix` in key order (descending with `reverse`), from a
        snapshot taken now."""
        self._check_open()
        check_key(prefix, self._limits)
        start = bisect_left(self._sorted_keys, prefix)
        upper = prefix_upper_bound(prefix)
        end = len(self._sorted_keys) if upper is None else bisect_left(self._sorted_keys, upper)
        keys = self._sorted_keys[start:end]
        snapshot = [(key, self._data[key]) for key in (reversed(keys) if reverse else keys)]
        return self._iterate_snapshot(snapshot)

    def write_batch(
        self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = ()
    ) -> None:
        """Apply the puts, then the deletes, atomically (all or nothing)."""
        self._check_open()
        put_list, delete_list = check_batch(puts, deletes, self._limits)
        staged: dict[bytes, bytes | None] = {}
        for index, (key, value) in enumerate(put_list):
            self._stage(staged, index, key, value)
        for index, key in enumerate(delete_list, start=len(put_list)):
            self._stage(staged, index, key, None)
        self._apply(staged)
        if self._write_hook is not None:
            self._write_hook(len(put_list) + len(delete_list))

    def close(self) -> None:
        """Drop the data; idempotent."""
        self._closed = True
        self._data = {}
        self._sorted_keys = []

    def _stage(
        self, staged: dict[bytes, bytes | None], index: int, key: bytes, value: bytes | None
    ) -> None:
        # The single point where an operation enters a batch, so that fault injection sees all.
        if self._write_hook is not None:
            self._write_hook(index)
        staged[key] = value

    def _apply(self, staged: dict[bytes, bytes | None]) -> None:
        # Only dict and list operations on bytes here: nothing can fail halfway.
        for key, value in staged.items():
            if value is None:
                if self._data.pop(key, None) is not None:
                    del self._sorted_keys[bisect_left(self._sorted_keys, key)]
            else:
                if key not in self._data:
                    insort(self._sorted_keys, key)
                self._data[key] = value

    def _iterate_snapshot(
        self, snapshot: list[tuple[bytes, bytes]]
    ) -> Iterator[tuple[bytes, bytes]]:
        for item in snapshot:
            self._check_open()
            yield item
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("memory store is closed")
