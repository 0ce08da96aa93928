"""Content-addressed chunks: the store on disk, and fetching them from peers with the id checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ogpu_node.blobs import (
    MAX_CHUNK_BYTES,
    PROTO_BLOB,
    BlobError,
    BlobRequest,
    BlobResponse,
    BlobStore,
    FileTooLarge,
    StoreFull,
    blob_id,
    decode_manifest,
    file_id,
)
from ogpu_node.chain import Chain
from ogpu_node.encoding import decode, encode
from ogpu_node.node.node import Node
from ogpu_node.storage import ChainStore, MemoryKV
from ogpu_node.types import Hash32
from p2p.memory import MemoryHub
from p2p.network import Network
from tests.node.test_memory_network import GENESIS


def fetching_node(network: Network, blobs: Path) -> Node:
    """A follower node on `network` that fetches blobs into a store at `blobs`."""
    return Node(chain=Chain.open(ChainStore(MemoryKV()), GENESIS), network=network,
                genesis_hash=GENESIS.hash, validator_key=None, blobs=BlobStore(blobs))


def test_store_round_trip_limits_and_restart(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=3 * 1024)
    chunk_id = store.put(b"hello")
    assert chunk_id == blob_id(b"hello") and store.get(chunk_id) == b"hello"
    assert store.put(b"hello") == chunk_id  # idempotent, not counted twice
    assert store.get(blob_id(b"other")) is None
    with pytest.raises(BlobError):
        store.put(b"x" * (MAX_CHUNK_BYTES + 1))
    with pytest.raises(BlobError, match="full"):
        store.put(b"y" * 4096)
    assert BlobStore(tmp_path / "blobs").get(chunk_id) == b"hello"
    assert not list((tmp_path / "blobs").glob("*/*.tmp"))


async def test_a_node_fetches_a_chunk_from_peers_and_refuses_forged_bytes(
        tmp_path: Path) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        nets = [hub.node(name) for name in ("a", "liar", "b")]
        for net in nets:
            await nursery.start(net.serve)
        owner, liar, fetcher = nets
        await fetcher.connect(liar.listen_addrs[0])
        await fetcher.connect(owner.listen_addrs[0])
        owner_store = BlobStore(tmp_path / "a")
        chunk_id = owner_store.put(b"model weights" * 1000)

        async def serve(store: BlobStore, peer: str, data: bytes) -> bytes:
            request = decode(BlobRequest, data)
            return encode(BlobResponse(store.get(request.chunk_id) or b""))

        async def lie(peer: str, data: bytes) -> bytes:
            return encode(BlobResponse(b"not the chunk you asked for"))

        owner.set_handler(PROTO_BLOB, lambda peer, data: serve(owner_store, peer, data))
        liar.set_handler(PROTO_BLOB, lie)
        node = fetching_node(fetcher, tmp_path / "b")
        with trio.fail_after(10):
            assert await node.files.fetch_blob(chunk_id) == b"model weights" * 1000
        assert chunk_id in node.blobs  # type: ignore[operator]
        with pytest.raises(BlobError, match="no connected peer"):
            await node.files.fetch_blob(blob_id(b"nobody has this"))
        # files: retried while nobody serves them; one larger than asked for is refused at once
        big = owner_store.put_file(b"z" * (MAX_CHUNK_BYTES + 10))
        with trio.fail_after(10), pytest.raises(FileTooLarge):
            await node.files.fetch_file(big, MAX_CHUNK_BYTES, attempts=1000, retry_s=1.0)
        assert await node.files.fetch_file(big, attempts=2) == b"z" * (MAX_CHUNK_BYTES + 10)
        start = trio.current_time()
        with pytest.raises(BlobError, match="no connected peer"):
            await node.files.fetch_file(blob_id(b"nobody has this"), attempts=3, retry_s=0.05)
        assert trio.current_time() - start >= 0.1  # two pauses between three tries
        nursery.cancel_scope.cancel()


async def test_files_fetched_together_overlap_and_the_first_failure_is_raised(
        tmp_path: Path) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        owner, fetcher = hub.node("a"), hub.node("b")
        for net in (owner, fetcher):
            await nursery.start(net.serve)
        await fetcher.connect(owner.listen_addrs[0])
        store = BlobStore(tmp_path / "a")
        one, two = store.put_file(b"1" * 100), store.put_file(b"2" * 200)
        in_flight = 0
        both_asked = trio.Event()

        async def serve(peer: str, data: bytes) -> bytes:
            # answers only once two requests wait at the same time: fetching one file after the
            # other would never get its first answer
            nonlocal in_flight
            in_flight += 1
            if in_flight >= 2:
                both_asked.set()
            await both_asked.wait()
            return encode(BlobResponse(store.get(decode(BlobRequest, data).chunk_id) or b""))

        owner.set_handler(PROTO_BLOB, serve)
        node = fetching_node(fetcher, tmp_path / "b")
        with trio.fail_after(10):
            assert await node.files.fetch_files([two, one]) == [b"2" * 200, b"1" * 100]
            with pytest.raises(BlobError, match="no connected peer"):
                await node.files.fetch_files([file_id(b"3" * 300), blob_id(b"nobody has this")])
        nursery.cancel_scope.cancel()


async def test_a_files_chunks_are_asked_of_the_manifests_holder_several_at_a_time(
        tmp_path: Path) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        empty, owner, fetcher = hub.node("empty"), hub.node("owner"), hub.node("fetcher")
        for net in (empty, owner, fetcher):
            await nursery.start(net.serve)
        await fetcher.connect(empty.listen_addrs[0])
        await fetcher.connect(owner.listen_addrs[0])
        assert next(p.peer_id for p in fetcher.peers()) == empty.peer_id  # asked first by default
        store = BlobStore(tmp_path / "owner")
        data = bytes(range(256)) * (3 * MAX_CHUNK_BYTES // 256 + 1)
        fid = store.put_file(data)
        asked_of_empty: list[bytes] = []
        waiting = 0
        two_waiting = trio.Event()

        async def nothing(peer: str, raw: bytes) -> bytes:
            asked_of_empty.append(decode(BlobRequest, raw).chunk_id)
            return encode(BlobResponse(b""))

        async def serve(peer: str, raw: bytes) -> bytes:
            # the manifest at once; chunks only once two requests for them wait together
            nonlocal waiting
            chunk_id = decode(BlobRequest, raw).chunk_id
            if chunk_id != fid:
                waiting += 1
                if waiting >= 2:
                    two_waiting.set()
                await two_waiting.wait()
            return encode(BlobResponse(store.get(chunk_id) or b""))

        empty.set_handler(PROTO_BLOB, nothing)
        owner.set_handler(PROTO_BLOB, serve)
        node = fetching_node(fetcher, tmp_path / "fetcher")
        with trio.fail_after(10):
            assert await node.files.fetch_file(fid) == data
        assert asked_of_empty == [fid]  # only the manifest: its chunks went to its holder
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "size", [0, 1, MAX_CHUNK_BYTES, MAX_CHUNK_BYTES + 1, 3 * MAX_CHUNK_BYTES + 5])
def test_a_file_round_trips_under_its_content_id(tmp_path: Path, size: int) -> None:
    store = BlobStore(tmp_path)
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    fid = store.put_file(data)
    assert fid == file_id(data)
    assert store.get_file(fid) == data
    assert file_id(data + b"x") != fid


def test_a_file_with_a_missing_chunk_is_not_served(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"a" * (MAX_CHUNK_BYTES + 10)
    fid = store.put_file(data)
    manifest = decode_manifest(store.get(fid) or b"")
    store._path(manifest.chunks[1]).unlink()
    assert store.get_file(fid) is None


def test_a_chunk_that_is_not_a_manifest_is_a_typed_error(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    chunk = store.put(b"just bytes")
    with pytest.raises(BlobError):
        store.get_file(chunk)


# --- eviction -----------------------------------------------------------------------------------


class Clock:
    """Wall-clock seconds the test sets (the store writes them as files' mtimes)."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def kb(i: int) -> bytes:
    """A 1000-byte chunk, different for each `i`."""
    return bytes([i]) * 1_000


def evicting_store(root: Path, clock: Clock, referenced: list[bytes],
                   asked: list[int] | None = None) -> BlobStore:
    """A 5,000-byte store with a 10 s grace whose referenced files are `referenced`."""
    def provider() -> list[bytes]:
        if asked is not None:
            asked.append(1)
        return referenced
    return BlobStore(root, 5_000, grace_s=10, referenced=provider, clock=clock)


def fill(store: BlobStore, clock: Clock, count: int = 5) -> list[Hash32]:
    """Chunks kb(0..count-1), stored one second apart from the clock's time on."""
    ids = []
    for i in range(count):
        ids.append(store.put(kb(i)))
        clock.now += 1
    return ids


def test_the_least_recently_used_unneeded_chunks_go_first(tmp_path: Path) -> None:
    clock, asked = Clock(), list[int]()
    store = evicting_store(tmp_path, clock, [], asked)
    c0, c1, c2, c3, c4 = fill(store, clock)
    assert store.used_bytes == 5_000 and asked == []  # nobody asked while there was room
    clock.now = 1_020
    assert store.get(c0) == kb(0)  # read: c0 is the most recently used now
    clock.now = 1_031
    c5 = store.put(kb(5))
    # Room for 1,000 bytes down to 90% of the cap: 2,000 bytes go, the oldest uses first.
    assert asked == [1]
    assert [c in store for c in (c0, c1, c2, c3, c4, c5)] == [True, False, False, True, True,
                                                              True]
    assert store.used_bytes == 4_000
    assert not store._path(c1).exists() and store.get(c1) is None


def test_referenced_files_chunks_in_grace_and_held_files_are_never_evicted(
        tmp_path: Path) -> None:
    clock = Clock()
    referenced: list[bytes] = []
    store = evicting_store(tmp_path, clock, referenced)
    needed = store.put_file(kb(0))  # a file: its manifest and one chunk
    bare = store.put(kb(1))
    held = store.put_file(kb(2), keep_s=100)
    referenced += [needed, bare, blob_id(b"not stored here")]
    clock.now += 50  # all out of their grace; `held` is held for 50 s more
    recent = store.put(kb(3))
    assert store.used_bytes > 4_000
    with pytest.raises(StoreFull, match="full"):
        store.put(kb(4))  # 1,000 more do not fit, and nothing may go
    assert store.get_file(needed) == kb(0) and bare in store and store.get_file(held) == kb(2)
    assert recent in store
    clock.now += 51  # the hold ended; `recent` is out of its grace but used later
    assert store.put(kb(4)) in store
    assert store.get_file(held) is None and recent in store
    assert store.get_file(needed) == kb(0) and bare in store


def test_a_store_that_cannot_make_enough_room_evicts_nothing(tmp_path: Path) -> None:
    clock = Clock()
    store = evicting_store(tmp_path, clock, [])
    old = store.put(b"o" * 1_000)
    clock.now += 20
    fill(store, clock, 4)  # in their grace
    with pytest.raises(StoreFull):
        store.put(b"z" * 2_000)  # only 1,000 bytes could go: not enough
    assert old in store and store.used_bytes == 5_000


def test_without_a_referenced_provider_a_full_store_refuses(tmp_path: Path) -> None:
    clock = Clock()
    store = BlobStore(tmp_path, 5_000, grace_s=10, clock=clock)
    fill(store, clock)
    clock.now += 1_000
    with pytest.raises(StoreFull):
        store.put(kb(9))
    assert store.used_bytes == 5_000
    with pytest.raises(BlobError, match="grace_s > 0"):
        BlobStore(tmp_path, 5_000, grace_s=0)


def test_storing_a_chunk_again_starts_its_grace_again(tmp_path: Path) -> None:
    clock = Clock()
    store = evicting_store(tmp_path, clock, [])
    c0, c1, *_ = fill(store, clock)
    clock.now += 20
    assert store.put(kb(0)) == c0  # an upload repeated before its task was submitted
    store.put(kb(5))
    assert c0 in store and c1 not in store


def test_usage_and_last_uses_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    store = evicting_store(tmp_path, clock, [])
    c0, c1, c2, _, _ = fill(store, clock)
    clock.now = 1_050
    store.get(c0)
    leftover = store._path(c1).with_suffix(".tmp")
    leftover.write_bytes(b"half a chunk a crash left")
    clock.now = 1_100
    again = evicting_store(tmp_path, clock, [])
    assert again.used_bytes == store.used_bytes == 5_000
    assert not leftover.exists()  # removed, and never counted
    again.put(kb(5))
    # The order of last uses came back from disk: c0, read at 1,050, outlives c1 and c2.
    assert c0 in again and c1 not in again and c2 not in again
    assert BlobStore(tmp_path).used_bytes == 4_000


def test_a_file_is_made_room_for_once_and_its_chunks_already_here_stay(tmp_path: Path) -> None:
    clock, asked = Clock(), list[int]()
    store = evicting_store(tmp_path, clock, [], asked)
    _, c1, *_ = fill(store, clock)
    clock.now += 20
    fid = store.put_file(kb(0))  # its one chunk is here already, and the oldest
    assert asked == [1]  # one pass for the manifest, and c0 was not what it evicted
    assert store.get_file(fid) == kb(0) and c1 not in store
