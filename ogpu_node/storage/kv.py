"""The key-value interface under the chain store, its limits and its batch semantics.

A `KVStore` maps byte keys to byte values. Two backends implement it: `MemoryKV` (simulator and unit
tests) and `LevelDBKV` (the node); both pass the same conformance suite.

Batch semantics, identical in both backends: `write_batch(puts, deletes)` first validates the whole
batch (types and limits) and raises before anything is written; then it stages the puts in order
(a repeated key: the last put wins) followed by the deletes (a key both put and deleted ends up
deleted), and applies everything atomically: a crash or an exception leaves all or nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from ogpu_node.storage.errors import LimitExceeded

MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 16 * 1024 * 1024
MAX_BATCH_OPS = 1_000_000
MAX_BATCH_BYTES = 256 * 1024 * 1024

WriteHook = Callable[[int], None]
"""Test/fault-injection hook: called with the index of every put/delete just before it is staged
(puts are numbered first, then deletes), and once more with the number of operations after the
batch has been written. It may raise (the batch is then discarded, unless it was already written)
or end the process (crash tests). Production code passes no hook."""


@dataclass(frozen=True, slots=True)
class KVLimits:
    """Named size limits of a key-value store; exceeding one raises `LimitExceeded`."""

    max_key_bytes: int = MAX_KEY_BYTES
    max_value_bytes: int = MAX_VALUE_BYTES
    max_batch_ops: int = MAX_BATCH_OPS
    max_batch_bytes: int = MAX_BATCH_BYTES

    def __post_init__(self) -> None:
        for name in ("max_key_bytes", "max_value_bytes", "max_batch_ops", "max_batch_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"KVLimits.{name} must be >= 1")


DEFAULT_LIMITS = KVLimits()


class KVStore(ABC):
    """An ordered byte key-value store with atomic, durable batches.

    Closing is idempotent; any other call after `close()` raises `StoreClosed`. Used as a context
    manager, the store is closed on exit. A store is meant for one thread at a time.
    """

    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under `key`, or None."""

    @abstractmethod
    def iterate(self, prefix: bytes = b"", *, reverse: bool = False
                ) -> Iterator[tuple[bytes, bytes]]:
        """Yield `(key, value)` for every key starting with `prefix`, in ascending key order
        (descending with `reverse`: the newest of time-ordered keys first, without reading the
        rest).

        The iterator reads a snapshot taken when `iterate` is called: batches written while it
        is consumed are not seen. Closing the store invalidates it (`StoreClosed` on next step).
        """

    @abstractmethod
    def write_batch(
        self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = ()
    ) -> None:
        """Apply the puts, then the deletes, atomically and durably (see the module docstring)."""

    @abstractmethod
    def close(self) -> None:
        """Release the store; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_key(key: bytes, limits: KVLimits) -> None:
    """Raise `TypeError` unless `key` is bytes, `LimitExceeded` if it is too long."""
    if type(key) is not bytes:
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    if len(key) > limits.max_key_bytes:
        raise LimitExceeded(f"key of {len(key)} bytes exceeds {limits.max_key_bytes}")


def check_batch(
    puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes], limits: KVLimits
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """Materialise and validate a whole batch before any of it is written."""
    put_list = list(puts)
    delete_list = list(deletes)
    if len(put_list) + len(delete_list) > limits.max_batch_ops:
        raise LimitExceeded(
            f"batch of {len(put_list) + len(delete_list)} operations exceeds {limits.max_batch_ops}"
        )
    total = 0
    for key, value in put_list:
        check_key(key, limits)
        if type(value) is not bytes:
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        if len(value) > limits.max_value_bytes:
            raise LimitExceeded(f"value of {len(value)} bytes exceeds {limits.max_value_bytes}")
        total += len(key) + len(value)
    for key in delete_list:
        check_key(key, limits)
        total += len(key)
    if total > limits.max_batch_bytes:
        raise LimitExceeded(f"batch of {total} bytes exceeds {limits.max_batch_bytes}")
    return put_list, delete_list


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """Return the smallest key greater than every key starting with `prefix` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])
