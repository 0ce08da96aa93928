"""ChainStore over both key-value backends, restart from LevelDB, and strict record decoding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogpu_node.storage import (
    ChainStore,
    CorruptStore,
    Head,
    InvalidCommit,
    KVStore,
    LevelDBKV,
    LimitExceeded,
    MemoryKV,
    NonContiguousCommit,
    SchemaMismatch,
    StoreClosed,
)
from ogpu_node.storage.chain_store import HEAD_KEY, SCHEMA_KEY, SCHEMA_VERSION

Commit = dict[str, Any]
MakeCommit = Callable[..., Commit]
ModelState = Callable[[Sequence[Commit]], dict[bytes, bytes]]


def assert_holds_chain(store: ChainStore, commits: Sequence[Commit], model: ModelState) -> None:
    """Everything `commits` wrote can be read back, and nothing else is in the state."""
    last = commits[-1]
    assert store.head() == Head(last["height"], last["block_hash"], last["meta"])
    for commit in commits:
        height, block_hash = commit["height"], commit["block_hash"]
        assert store.block_hash_at(height) == block_hash
        assert store.block_by_hash(block_hash) == commit["block_bytes"]
        assert store.block_by_height(height) == commit["block_bytes"]
        for index, tx_hash in enumerate(commit["tx_hashes"]):
            assert store.tx_location(tx_hash) == (height, index)
    assert store.block_hash_at(last["height"] + 1) is None
    expected = model(commits)
    assert dict(store.state_items()) == expected
    assert list(store.state_items()) == sorted(expected.items())
    for key, value in expected.items():
        assert store.state_get(key) == value


def commit_chain(store: ChainStore, make_commit: MakeCommit, count: int) -> list[Commit]:
    commits = [make_commit(height) for height in range(count)]
    for commit in commits:
        store.commit_block(**commit)
    return commits


def test_empty_store_has_nothing(kv: KVStore) -> None:
    store = ChainStore(kv)
    assert store.head() is None
    assert store.block_hash_at(0) is None
    assert store.block_by_height(0) is None
    assert store.block_by_hash(b"\x01" * 32) is None
    assert store.tx_location(b"\x01" * 32) is None
    assert store.state_get(b"k") is None
    assert list(store.state_items()) == []


def test_genesis_commit(kv: KVStore, make_commit: MakeCommit, model: ModelState) -> None:
    store = ChainStore(kv)
    commits = commit_chain(store, make_commit, 1)
    assert_holds_chain(store, commits, model)
    assert msgpack.unpackb(kv.get(SCHEMA_KEY)) == [SCHEMA_VERSION]


def test_chain_of_blocks(kv: KVStore, make_commit: MakeCommit, model: ModelState) -> None:
    store = ChainStore(kv)
    commits = commit_chain(store, make_commit, 6)
    assert_holds_chain(store, commits, model)
    assert store.state_get(b"acct/0000") is None  # deleted by block 1


def test_state_items_by_prefix(kv: KVStore, make_commit: MakeCommit) -> None:
    store = ChainStore(kv)
    commit = make_commit(0)
    commit["state_changes"] = {b"acct/1": b"a", b"acct/2": b"b", b"pool/1": b"p"}
    store.commit_block(**commit)
    assert list(store.state_items(b"acct/")) == [(b"acct/1", b"a"), (b"acct/2", b"b")]
    assert list(store.state_items(b"pool/")) == [(b"pool/1", b"p")]
    assert list(store.state_items(b"zzz")) == []


@pytest.mark.parametrize("height", [1, 2, -1])
def test_first_commit_must_be_genesis(kv: KVStore, make_commit: MakeCommit, height: int) -> None:
    store = ChainStore(kv)
    with pytest.raises(InvalidCommit):
        store.commit_block(**{**make_commit(1), "height": height})
    assert store.head() is None
    assert list(kv.iterate()) == []


@pytest.mark.parametrize("height", [0, 1, 2, 4])
def test_non_contiguous_commit_is_rejected(
    kv: KVStore, make_commit: MakeCommit, model: ModelState, height: int
) -> None:
    store = ChainStore(kv)
    commits = commit_chain(store, make_commit, 3)
    with pytest.raises(NonContiguousCommit, match="expected 3"):
        store.commit_block(**{**make_commit(3), "height": height})
    assert_holds_chain(store, commits, model)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"block_hash": b""}, InvalidCommit),
        ({"block_hash": b"h" * 65}, LimitExceeded),
        ({"tx_hashes": [b"t1", b"t2", b"t1"]}, InvalidCommit),
        ({"tx_hashes": [b""]}, InvalidCommit),
        ({"tx_hashes": [b"t" * 65]}, LimitExceeded),
        ({"meta": b"m" * (64 * 1024 + 1)}, LimitExceeded),
        ({"state_changes": {b"ok": b"v", b"k" * 256: b"v"}}, LimitExceeded),
        ({"block_bytes": "text"}, TypeError),
        ({"height": True}, TypeError),
        ({"state_changes": {b"ok": 5}}, TypeError),
    ],
)
def test_invalid_commit_raises_and_writes_nothing(
    make_kv: Callable[..., KVStore], make_commit: MakeCommit, change: Commit, error: type
) -> None:
    kv = make_kv()
    store = ChainStore(kv)
    store.commit_block(**make_commit(0))
    before = list(kv.iterate())
    with pytest.raises(error):
        store.commit_block(**{**make_commit(1), **change})
    assert list(kv.iterate()) == before


def test_genesis_with_transactions_is_rejected(kv: KVStore, make_commit: MakeCommit) -> None:
    store = ChainStore(kv)
    with pytest.raises(InvalidCommit, match="no transactions"):
        store.commit_block(**{**make_commit(1), "height": 0})
    assert list(kv.iterate()) == []


def test_block_hash_already_stored_is_rejected(kv: KVStore, make_commit: MakeCommit) -> None:
    store = ChainStore(kv)
    commit_chain(store, make_commit, 2)
    with pytest.raises(InvalidCommit, match="already stored"):
        store.commit_block(**{**make_commit(2), "block_hash": make_commit(1)["block_hash"]})


def test_lookups_outside_the_domain(kv: KVStore, make_commit: MakeCommit) -> None:
    store = ChainStore(kv)
    commit_chain(store, make_commit, 1)
    assert store.block_hash_at(-1) is None
    assert store.block_hash_at(2**64) is None
    assert store.block_by_height(-1) is None
    with pytest.raises(LimitExceeded):
        store.tx_location(b"t" * 65)
    with pytest.raises(LimitExceeded):
        store.block_by_hash(b"h" * 65)


def test_closed_chain_store_raises_store_closed(kv: KVStore, make_commit: MakeCommit) -> None:
    with ChainStore(kv) as store:
        commit_chain(store, make_commit, 1)
    with pytest.raises(StoreClosed):
        store.head()
    with pytest.raises(StoreClosed):
        store.commit_block(**make_commit(1))


def test_schema_mismatch_on_open(kv: KVStore, make_commit: MakeCommit) -> None:
    commit_chain(ChainStore(kv), make_commit, 1)
    kv.write_batch([(SCHEMA_KEY, msgpack.packb([SCHEMA_VERSION + 1]))])
    with pytest.raises(SchemaMismatch):
        ChainStore(kv)


def test_data_without_schema_is_corrupt(kv: KVStore) -> None:
    kv.write_batch([(b"x", b"foreign data")])
    with pytest.raises(CorruptStore, match="no schema"):
        ChainStore(kv)


def test_schema_without_head_is_corrupt(kv: KVStore, make_commit: MakeCommit) -> None:
    commit_chain(ChainStore(kv), make_commit, 1)
    kv.write_batch([], [HEAD_KEY])
    with pytest.raises(CorruptStore, match="no head"):
        ChainStore(kv)


def test_dangling_height_index_is_corrupt(kv: KVStore, make_commit: MakeCommit) -> None:
    store = ChainStore(kv)
    commits = commit_chain(store, make_commit, 2)
    kv.write_batch([], [b"b" + commits[1]["block_hash"]])
    with pytest.raises(CorruptStore, match="missing block"):
        store.block_by_height(1)


def test_restart_from_leveldb_keeps_everything(
    tmp_path: Path, make_commit: MakeCommit, model: ModelState
) -> None:
    with ChainStore(LevelDBKV(tmp_path / "db")) as store:
        commits = commit_chain(store, make_commit, 40)
    with ChainStore(LevelDBKV(tmp_path / "db")) as store:
        assert_holds_chain(store, commits, model)
        store.commit_block(**make_commit(40))
        commits.append(make_commit(40))
    with ChainStore(LevelDBKV(tmp_path / "db")) as store:
        assert_holds_chain(store, commits, model)


def test_a_signed_proposal_is_kept_until_its_height_is_final(
    tmp_path: Path, make_commit: MakeCommit
) -> None:
    """The double-sign guard's record: durable across a restart, never overwritten by another
    block for the same slot, and gone once a block at its height is committed."""
    with ChainStore(LevelDBKV(tmp_path / "db")) as store:
        commit_chain(store, make_commit, 3)
        store.record_signed_proposal(3, 0, b"block A")
        store.record_signed_proposal(3, 0, b"block A")  # the same block again: fine
        store.record_signed_proposal(3, 1, b"block B")  # a later slot may hold another
        store.record_signed_proposal(4, 2, b"block C")
        with pytest.raises(InvalidCommit, match="another block is signed"):
            store.record_signed_proposal(3, 0, b"block A'")
    with ChainStore(LevelDBKV(tmp_path / "db")) as store:
        assert store.signed_proposal(3, 0) == b"block A"
        assert store.signed_proposal(3, 1) == b"block B"
        assert store.signed_proposal(3, 2) is None
        store.commit_block(**make_commit(3))
        assert store.signed_proposal(3, 0) is None and store.signed_proposal(3, 1) is None
        assert store.signed_proposal(4, 2) == b"block C"


# Decoders of the store's own records: whatever bytes are found, only CorruptStore escapes.

SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary() | st.text()
VALID_HEAD = msgpack.packb([3, b"h" * 32, b"meta"], use_bin_type=True)
RECORD_BYTES = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda i, b: VALID_HEAD[:i] + b, st.integers(0, len(VALID_HEAD)), st.binary()),
    st.recursive(
        SCALARS | st.floats(),
        lambda inner: st.lists(inner, max_size=4),
        max_leaves=8,
    ).map(lambda obj: msgpack.packb(obj, use_bin_type=True)),
)


def store_with(key: bytes, raw: bytes) -> MemoryKV:
    kv = MemoryKV()
    ChainStore(kv).commit_block(
        height=0, block_hash=b"g", block_bytes=b"", tx_hashes=[], state_changes={}, meta=b""
    )
    kv.write_batch([(key, raw)])
    return kv


@settings(max_examples=200, deadline=None)
@given(RECORD_BYTES)
def test_head_record_decoding_raises_only_corrupt_store(raw: bytes) -> None:
    kv = store_with(HEAD_KEY, raw)
    try:
        head = ChainStore(kv).head()
    except CorruptStore:
        return
    assert head is not None
    assert msgpack.packb([head.height, head.block_hash, head.meta], use_bin_type=True) == raw


@settings(max_examples=200, deadline=None)
@given(RECORD_BYTES)
def test_tx_location_decoding_raises_only_corrupt_store(raw: bytes) -> None:
    store = ChainStore(store_with(b"t" + b"x" * 32, raw))
    try:
        location = store.tx_location(b"x" * 32)
    except CorruptStore:
        return
    assert location is not None
    assert msgpack.packb(list(location), use_bin_type=True) == raw


@pytest.mark.parametrize(
    "raw",
    [
        msgpack.packb([3, b"h", b"m", b"extra"], use_bin_type=True),
        msgpack.packb([-1, b"h", b"m"], use_bin_type=True),
        msgpack.packb([True, b"h", b"m"], use_bin_type=True),
        msgpack.packb([3, "h", b"m"], use_bin_type=True),
        msgpack.packb([3, b"", b"m"], use_bin_type=True),
        msgpack.packb([3, b"h", b"m"], use_bin_type=True) + b"\x00",  # trailing byte
        b"\x93\xd0\x03\xc4\x01h\xc4\x01m",  # non-canonical: int8 where a fixint fits
    ],
)
def test_malformed_head_records_are_corrupt(raw: bytes) -> None:
    with pytest.raises(CorruptStore):
        ChainStore(store_with(HEAD_KEY, raw))
