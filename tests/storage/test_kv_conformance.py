"""Conformance suite of the key-value interface: every test runs on MemoryKV and on LevelDBKV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ogpu_node.storage import (
    KVLimits,
    KVStore,
    LevelDBKV,
    LimitExceeded,
    StoreClosed,
    StoreLocked,
    StoreOpenError,
)

KEYS = [b"", b"\x00", b"a", b"a\x00", b"a\xff", b"ab", b"b", b"\xff", b"\xff\xff", b"\xff\xff\x00"]
SMALL = KVLimits(max_key_bytes=4, max_value_bytes=8, max_batch_ops=3, max_batch_bytes=20)


def contents(kv: KVStore) -> dict[bytes, bytes]:
    return dict(kv.iterate())


def test_get_missing_returns_none(kv: KVStore) -> None:
    assert kv.get(b"missing") is None


def test_put_get_and_overwrite(kv: KVStore) -> None:
    kv.write_batch([(b"k", b"one")])
    assert kv.get(b"k") == b"one"
    kv.write_batch([(b"k", b"two")])
    assert kv.get(b"k") == b"two"


def test_empty_key_and_empty_value_round_trip(kv: KVStore) -> None:
    kv.write_batch([(b"", b""), (b"k", b"")])
    assert kv.get(b"") == b""
    assert kv.get(b"k") == b""


def test_iterate_is_in_ascending_key_order(kv: KVStore) -> None:
    kv.write_batch([(key, b"v" + key) for key in reversed(KEYS)])
    assert list(kv.iterate()) == [(key, b"v" + key) for key in sorted(KEYS)]


@pytest.mark.parametrize("prefix", [b"", b"a", b"a\xff", b"\xff", b"\xff\xff", b"c", b"ab\x00"])
def test_iterate_prefix_yields_exactly_matching_keys(kv: KVStore, prefix: bytes) -> None:
    kv.write_batch([(key, key) for key in KEYS])
    expected = [(key, key) for key in sorted(KEYS) if key.startswith(prefix)]
    assert list(kv.iterate(prefix)) == expected


@pytest.mark.parametrize("prefix", [b"", b"a", b"a\xff", b"\xff", b"\xff\xff", b"c", b"ab\x00"])
def test_iterate_in_reverse_yields_the_same_keys_descending(kv: KVStore, prefix: bytes) -> None:
    kv.write_batch([(key, key) for key in KEYS])
    expected = [(key, key) for key in sorted(KEYS, reverse=True) if key.startswith(prefix)]
    assert list(kv.iterate(prefix, reverse=True)) == expected


def test_iterate_reads_a_snapshot_taken_at_call(kv: KVStore) -> None:
    kv.write_batch([(b"a", b"1"), (b"b", b"2")])
    items = kv.iterate()
    kv.write_batch([(b"c", b"3")], [b"a"])
    assert list(items) == [(b"a", b"1"), (b"b", b"2")]


def test_batch_applies_puts_then_deletes(kv: KVStore) -> None:
    kv.write_batch([(b"old", b"x"), (b"gone", b"y")])
    kv.write_batch(
        [(b"k", b"first"), (b"k", b"last"), (b"both", b"put"), (b"new", b"n")],
        [b"both", b"gone", b"never-existed"],
    )
    assert contents(kv) == {b"k": b"last", b"new": b"n", b"old": b"x"}


def test_batch_accepts_generators(kv: KVStore) -> None:
    kv.write_batch(((bytes([i]), b"v") for i in range(3)), (k for k in [b"\x01"]))
    assert contents(kv) == {b"\x00": b"v", b"\x02": b"v"}


def test_empty_batch_is_a_no_op(kv: KVStore) -> None:
    kv.write_batch([], [])
    assert contents(kv) == {}


@pytest.mark.parametrize(
    ("puts", "deletes"),
    [
        ([(b"ok", b"v"), (b"12345", b"v")], []),  # key too long
        ([(b"ok", b"v"), (b"k", b"123456789")], []),  # value too long
        ([(b"ok", b"v")], [b"12345"]),  # deleted key too long
        ([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], [b"d"]),  # too many operations
        ([(b"aaaa", b"12345678"), (b"bbbb", b"12345678")], []),  # too many bytes
    ],
)
def test_limits_raise_and_write_nothing(
    make_kv: Callable[..., KVStore], puts: list[tuple[bytes, bytes]], deletes: list[bytes]
) -> None:
    kv = make_kv(limits=SMALL)
    kv.write_batch([(b"keep", b"v")])
    with pytest.raises(LimitExceeded):
        kv.write_batch(puts, deletes)
    assert contents(kv) == {b"keep": b"v"}


def test_limits_are_inclusive(make_kv: Callable[..., KVStore]) -> None:
    kv = make_kv(limits=SMALL)
    kv.write_batch([(b"kkkk", b"vvvvvvvv")])
    assert kv.get(b"kkkk") == b"vvvvvvvv"


def test_oversize_key_in_read_raises(make_kv: Callable[..., KVStore]) -> None:
    kv = make_kv(limits=SMALL)
    with pytest.raises(LimitExceeded):
        kv.get(b"12345")
    with pytest.raises(LimitExceeded):
        kv.iterate(b"12345")


def test_default_limits_reject_oversize_key(kv: KVStore) -> None:
    with pytest.raises(LimitExceeded):
        kv.write_batch([(b"k" * 257, b"v")])
    kv.write_batch([(b"k" * 256, b"v")])


@pytest.mark.parametrize(
    ("puts", "deletes"),
    [([(b"ok", b"v"), ("str", b"v")], []), ([(b"ok", bytearray(b"v"))], []), ([], ["str"])],
)
def test_non_bytes_raise_type_error_and_write_nothing(
    kv: KVStore, puts: list[tuple[object, object]], deletes: list[object]
) -> None:
    with pytest.raises(TypeError):
        kv.write_batch(puts, deletes)  # type: ignore[arg-type]
    assert contents(kv) == {}


def test_write_hook_sees_every_operation_then_the_count(make_kv: Callable[..., KVStore]) -> None:
    calls: list[int] = []
    kv = make_kv(write_hook=calls.append)
    kv.write_batch([(b"a", b"1"), (b"b", b"2")], [b"c"])
    assert calls == [0, 1, 2, 3]


@pytest.mark.parametrize("fail_at", [0, 1, 2])
def test_failure_while_staging_writes_nothing(
    make_kv: Callable[..., KVStore], fail_at: int
) -> None:
    def hook(index: int) -> None:
        if index == fail_at:
            raise RuntimeError("injected")

    kv = make_kv(write_hook=hook)
    with pytest.raises(RuntimeError, match="injected"):
        kv.write_batch([(b"a", b"1"), (b"b", b"2")], [b"c"])
    assert contents(kv) == {}


def test_failure_after_the_write_keeps_the_batch(make_kv: Callable[..., KVStore]) -> None:
    def hook(index: int) -> None:
        if index == 2:
            raise RuntimeError("after write")

    kv = make_kv(write_hook=hook)
    with pytest.raises(RuntimeError, match="after write"):
        kv.write_batch([(b"a", b"1"), (b"b", b"2")])
    assert contents(kv) == {b"a": b"1", b"b": b"2"}


def test_closed_store_raises_store_closed(kv: KVStore) -> None:
    kv.write_batch([(b"a", b"1")])
    kv.close()
    kv.close()  # idempotent
    with pytest.raises(StoreClosed):
        kv.get(b"a")
    with pytest.raises(StoreClosed):
        kv.iterate()
    with pytest.raises(StoreClosed):
        kv.write_batch([(b"b", b"2")])


def test_close_invalidates_open_iterators(kv: KVStore) -> None:
    kv.write_batch([(b"a", b"1"), (b"b", b"2")])
    items = kv.iterate()
    assert next(items) == (b"a", b"1")
    kv.close()
    with pytest.raises(StoreClosed):
        next(items)


def test_abandoned_iterator_does_not_block_writes(kv: KVStore) -> None:
    kv.write_batch([(b"a", b"1"), (b"b", b"2")])
    items = kv.iterate()
    next(items)
    del items
    kv.write_batch([(b"c", b"3")])
    assert len(contents(kv)) == 3


def test_context_manager_closes(kv: KVStore) -> None:
    with kv as store:
        store.write_batch([(b"a", b"1")])
    with pytest.raises(StoreClosed):
        kv.get(b"a")


# LevelDB only: what the memory store cannot have (durability, a directory, a lock).


def test_leveldb_keeps_data_across_reopen(tmp_path: Path) -> None:
    with LevelDBKV(tmp_path / "db") as kv:
        kv.write_batch([(key, key) for key in KEYS], [b"a"])
    with LevelDBKV(tmp_path / "db") as kv:
        assert contents(kv) == {key: key for key in KEYS if key != b"a"}


def test_leveldb_second_open_is_store_locked(tmp_path: Path) -> None:
    with LevelDBKV(tmp_path / "db"), pytest.raises(StoreLocked, match="in use"):
        LevelDBKV(tmp_path / "db")


@pytest.mark.parametrize("relative", ["missing-parent/db", "a-file"])
def test_leveldb_open_failure_is_store_open_error(tmp_path: Path, relative: str) -> None:
    (tmp_path / "a-file").write_bytes(b"not a database")
    with pytest.raises(StoreOpenError, match="cannot open LevelDB"):
        LevelDBKV(tmp_path / relative)
