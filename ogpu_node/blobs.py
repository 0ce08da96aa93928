"""Content-addressed blobs: chunks named by their hash, on disk, and their transfer between nodes.

A chunk is at most `MAX_CHUNK_BYTES`. The id of a chunk is `digest("blob", data)`, so whoever
fetches a chunk checks it against the id it asked for: a peer cannot serve wrong bytes undetected.
A *file* (task inputs, outputs, checkpoints) is split into chunks listed by a `Manifest`, which is
itself stored as a chunk; the file's id is the manifest chunk's id, so it is a pure function of the
file's bytes (`file_id`) and fetching a file checks every byte of it.

Files live under `<root>/<first two hex digits>/<hex id>`, written to a temporary name and
renamed, so a crash never leaves a partial chunk under its id.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from ogpu_node.encoding import decode, encode, read_array, read_bytes, read_list, read_uint
from ogpu_node.errors import DecodeError, OgpuError
from ogpu_node.hashing import digest
from ogpu_node.types import HASH_LEN, Hash32

PROTO_BLOB = "/ogpu/blob/1"
MAX_CHUNK_BYTES = 1024 * 1024
DEFAULT_MAX_STORE_BYTES = 10 * 1024 * 1024 * 1024
DEFAULT_GRACE_S = 3_600.0
"""How long a chunk stored or read stays safe from eviction (an upload waits for its task)."""
DEFAULT_RETENTION_S = 86_400.0
"""How long after a task or pool closes its files are kept (`blob_retention`)."""
EVICTION_LOW_WATER = 0.9
"""An eviction pass frees down to this share of the store's bytes when it can."""
MAX_FILE_CHUNKS = 4096
"""Largest file: 4 GiB in 1 MiB chunks; its manifest stays well under one chunk."""


class BlobError(OgpuError):
    """A chunk that is too large, does not match its id, or cannot be stored."""


class FileTooLarge(BlobError):
    """A file whose manifest says it is larger than the fetcher accepts (not worth retrying)."""


class StoreFull(BlobError):
    """The store cannot take more bytes: what it holds is referenced, in its grace period or
    held, or nothing may be evicted (no referenced-ids provider)."""


def blob_id(data: bytes) -> Hash32:
    return digest(b"blob", data)


@dataclass(frozen=True, slots=True)
class Manifest:
    """The chunks of a file, in order, and its size in bytes."""

    size: int
    chunks: tuple[Hash32, ...]

    MAX_BYTES: ClassVar[int] = 16 + MAX_FILE_CHUNKS * (HASH_LEN + 2)

    def to_fields(self) -> list[Any]:
        return [self.size, list(self.chunks)]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        size, chunks = read_array(value, 2, "manifest")
        return cls(read_uint(size, "manifest.size", max_value=MAX_FILE_CHUNKS * MAX_CHUNK_BYTES),
                   tuple(Hash32(read_bytes(c, "manifest.chunk", size=HASH_LEN))
                         for c in read_list(chunks, MAX_FILE_CHUNKS, "manifest.chunks")))


def split_file(data: bytes) -> tuple[bytes, list[bytes]]:
    """The encoded manifest of `data` and its chunks (an empty file has no chunks)."""
    if len(data) > MAX_FILE_CHUNKS * MAX_CHUNK_BYTES:
        raise BlobError(f"file of {len(data)} bytes exceeds {MAX_FILE_CHUNKS} chunks")
    chunks = [data[i:i + MAX_CHUNK_BYTES] for i in range(0, len(data), MAX_CHUNK_BYTES)]
    manifest = Manifest(len(data), tuple(blob_id(c) for c in chunks))
    return encode(manifest), chunks


def file_id(data: bytes) -> Hash32:
    """The id a file has once stored: the id of its manifest chunk."""
    return blob_id(split_file(data)[0])


def decode_manifest(data: bytes) -> Manifest:
    """A manifest chunk's contents, or `BlobError` when the chunk is not a manifest."""
    try:
        manifest = decode(Manifest, data)
    except DecodeError as exc:
        raise BlobError(f"not a file manifest: {exc}") from exc
    if manifest.size > len(manifest.chunks) * MAX_CHUNK_BYTES or (
            manifest.chunks and manifest.size <= (len(manifest.chunks) - 1) * MAX_CHUNK_BYTES):
        raise BlobError("manifest size does not match its chunk count")
    return manifest


@dataclass(slots=True)
class _Chunk:
    size: int
    used: float
    """When the chunk was last stored or read (wall-clock seconds; its file's mtime on disk)."""


class BlobStore:
    """Chunks on disk by id, with a cap on total bytes and eviction of what nobody needs.

    When a put would pass `max_bytes`, the store evicts, least recently used first, chunks that
    are (1) out of their grace period: not stored or read in the last `grace_s` seconds (an
    upload waiting for its task, a chunk being served), (2) not held (`put_file(keep_s=)`), and
    (3) not part of a file `referenced()` names (a manifest id: the manifest and its chunks; any
    other chunk id: that chunk). `referenced` is asked only when room is needed; the node
    passes the files its finalised state still needs (`blob_retention.ReferencedFiles`).
    Without it nothing is evicted: a full store refuses (`StoreFull`).
    An eviction pass frees down to `EVICTION_LOW_WATER` of `max_bytes` when it can, so the
    puts after it do not each pay for a pass.

    Puts may come from worker threads (a provider's checkpoints) as well as the trio thread; a
    lock keeps the index and the byte count consistent. Usage and last-use times are recounted
    from the files on open (a last use is the file's mtime), so restarts keep both.
    """

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_STORE_BYTES, *,
                 grace_s: float = DEFAULT_GRACE_S,
                 referenced: Callable[[], Iterable[bytes]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if max_bytes < 1 or not grace_s > 0:
            raise BlobError(f"a blob store needs max_bytes >= 1 and grace_s > 0, got "
                            f"{max_bytes} and {grace_s}")
        self.root = root
        self.max_bytes = max_bytes
        self.grace_s = grace_s
        self._referenced = referenced
        self._clock = clock
        self._lock = threading.Lock()
        self._holds: dict[Hash32, float] = {}
        """File id -> until when it may not be evicted (`put_file(keep_s=)`); in memory only."""
        root.mkdir(parents=True, exist_ok=True)
        self._chunks = self._scan()
        self._used = sum(c.size for c in self._chunks.values())

    def _scan(self) -> dict[Hash32, _Chunk]:
        """The chunks on disk; temporary files a crash left behind are removed."""
        chunks: dict[Hash32, _Chunk] = {}
        for path in self.root.glob("*/*"):
            if path.suffix == ".tmp":
                path.unlink(missing_ok=True)
                continue
            try:
                chunk_id = bytes.fromhex(path.name)
            except ValueError:
                continue
            if len(chunk_id) == HASH_LEN and path.is_file():
                stat = path.stat()
                chunks[Hash32(chunk_id)] = _Chunk(stat.st_size, stat.st_mtime)
        return chunks

    @property
    def used_bytes(self) -> int:
        """Bytes of the chunks stored here."""
        return self._used

    @property
    def chunk_count(self) -> int:
        """Chunks stored here."""
        return len(self._chunks)

    def _path(self, chunk_id: bytes) -> Path:
        text = chunk_id.hex()
        return self.root / text[:2] / text

    def _touch(self, chunk_id: Hash32, entry: _Chunk) -> None:
        """Mark a chunk used now (lock held): it starts a new grace period, on disk too."""
        entry.used = self._clock()
        with contextlib.suppress(FileNotFoundError):  # removed behind the store's back
            os.utime(self._path(chunk_id), (entry.used, entry.used))

    def put(self, data: bytes) -> Hash32:
        """Store a chunk; returns its id. Storing the same chunk twice only marks it used.
        Raises `StoreFull` when no room can be made."""
        if len(data) > MAX_CHUNK_BYTES:
            raise BlobError(f"chunk of {len(data)} bytes exceeds {MAX_CHUNK_BYTES}")
        chunk_id = blob_id(data)
        self._store(chunk_id, data)
        return chunk_id

    def _store(self, chunk_id: Hash32, data: bytes) -> None:
        with self._lock:
            entry = self._chunks.get(chunk_id)
            if entry is not None:
                self._touch(chunk_id, entry)
                return
            self._make_room(len(data))
            path = self._path(chunk_id)
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
            self._chunks[chunk_id] = entry = _Chunk(len(data), 0.0)
            self._touch(chunk_id, entry)
            self._used += len(data)

    def get(self, chunk_id: bytes) -> bytes | None:
        """A chunk's bytes (marking it used), or None when it is not here."""
        if len(chunk_id) != HASH_LEN:
            raise BlobError("a chunk id is 32 bytes")
        try:
            data = self._path(chunk_id).read_bytes()
        except FileNotFoundError:
            return None
        with self._lock:
            entry = self._chunks.get(Hash32(chunk_id))
            if entry is not None:
                self._touch(Hash32(chunk_id), entry)
        return data

    def put_file(self, data: bytes, keep_s: float = 0.0) -> Hash32:
        """Store a file as its chunks and manifest; returns the file id (`file_id(data)`).
        `keep_s` > 0 keeps the file from eviction that long even if nothing references it (a
        provider's checkpoints, made long before its result names them on chain)."""
        manifest, chunks = split_file(data)
        ids = decode_manifest(manifest).chunks
        with self._lock:  # one pass for the whole file, not one per chunk
            new = len(manifest)
            for chunk_id, chunk in zip(ids, chunks, strict=True):
                entry = self._chunks.get(chunk_id)
                if entry is None:
                    new += len(chunk)
                else:
                    self._touch(chunk_id, entry)  # in use: not evicted to make room for it
            self._make_room(new)
        for chunk_id, chunk in zip(ids, chunks, strict=True):
            self._store(chunk_id, chunk)
        fid = blob_id(manifest)
        self._store(fid, manifest)
        if keep_s > 0:
            with self._lock:
                self._holds[fid] = max(self._holds.get(fid, 0.0), self._clock() + keep_s)
        return fid

    def put_manifest(self, size: int, chunk_ids: Sequence[bytes]) -> Hash32:
        """Store the manifest of a file whose chunks are already here (uploaded one by one);
        returns the file id. Raises `BlobError` when a chunk is missing or the sizes disagree."""
        if len(chunk_ids) > MAX_FILE_CHUNKS:
            raise BlobError(f"a file has at most {MAX_FILE_CHUNKS} chunks")
        total = 0
        with self._lock:
            for index, chunk_id in enumerate(chunk_ids):
                if len(chunk_id) != HASH_LEN:
                    raise BlobError("a chunk id is 32 bytes")
                entry = self._chunks.get(Hash32(chunk_id))
                if entry is None:
                    raise BlobError(f"chunk {index} ({chunk_id.hex()[:16]}) is not stored here: "
                                    "upload it first")
                if entry.size != MAX_CHUNK_BYTES and index != len(chunk_ids) - 1:
                    raise BlobError(f"chunk {index} is {entry.size} bytes: every chunk but the "
                                    f"last must be {MAX_CHUNK_BYTES}")
                total += entry.size
                self._touch(Hash32(chunk_id), entry)  # in use: not evicted by this very put
        if total != size:
            raise BlobError(f"the chunks hold {total} bytes, not {size}")
        manifest = encode(Manifest(size, tuple(Hash32(bytes(c)) for c in chunk_ids)))
        decode_manifest(manifest)
        return self.put(manifest)

    def get_file(self, file_id: bytes) -> bytes | None:
        """The file `file_id` names, or None when its manifest or a chunk is missing here."""
        manifest_bytes = self.get(file_id)
        if manifest_bytes is None:
            return None
        parts = []
        for chunk_id in decode_manifest(manifest_bytes).chunks:
            chunk = self.get(chunk_id)
            if chunk is None:
                return None
            parts.append(chunk)
        return b"".join(parts)

    def __contains__(self, chunk_id: object) -> bool:
        return isinstance(chunk_id, bytes) and chunk_id in self._chunks

    # --- eviction (every method below runs with the lock held) ----------------------------------

    def _make_room(self, needed: int) -> None:
        """Evict until `needed` more bytes fit (down to the low-water mark when possible), or
        raise `StoreFull` having evicted nothing."""
        if self._used + needed <= self.max_bytes:
            return
        full = StoreFull(f"blob store full ({self._used} of {self.max_bytes} bytes used, "
                         f"{needed} more asked for, nothing more may be evicted)")
        if self._referenced is None:
            raise full
        now = self._clock()
        idle = sorted((entry.used, chunk_id) for chunk_id, entry in self._chunks.items()
                      if now - entry.used >= self.grace_s)
        if not idle:
            raise full
        keep = self._protected(self._referenced(), now)
        victims = [chunk_id for _, chunk_id in idle if chunk_id not in keep]
        freeable = sum(self._chunks[c].size for c in victims)
        if self._used - freeable + needed > self.max_bytes:
            raise full
        goal = int(self.max_bytes * EVICTION_LOW_WATER) - needed
        for chunk_id in victims:
            if self._used <= goal:
                break
            self._evict(chunk_id)

    def _protected(self, referenced: Iterable[bytes], now: float) -> set[bytes]:
        """Chunks of the `referenced` and the held files that are stored here."""
        self._holds = {f: until for f, until in self._holds.items() if until > now}
        keep: set[bytes] = set()
        seen: set[bytes] = set()
        for fid in [*referenced, *self._holds]:
            if fid not in self._chunks or fid in seen:
                continue
            seen.add(fid)
            keep.add(fid)
            try:
                manifest = decode_manifest(self._path(fid).read_bytes())
            except (BlobError, FileNotFoundError):
                continue  # a referenced chunk that is no manifest is kept as itself
            keep.update(manifest.chunks)
        return keep

    def _evict(self, chunk_id: Hash32) -> None:
        entry = self._chunks.pop(chunk_id)
        self._path(chunk_id).unlink(missing_ok=True)
        self._used -= entry.size


class BlobRequest:
    MAX_BYTES: ClassVar[int] = 48

    def __init__(self, chunk_id: bytes) -> None:
        self.chunk_id = chunk_id

    def to_fields(self) -> list[Any]:
        return [self.chunk_id]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (chunk_id,) = read_array(value, 1, "blob_request")
        return cls(read_bytes(chunk_id, "blob_request.id", size=HASH_LEN))


class BlobResponse:
    MAX_BYTES: ClassVar[int] = MAX_CHUNK_BYTES + 16

    def __init__(self, data: bytes) -> None:
        self.data = data  # empty when the peer does not have the chunk

    def to_fields(self) -> list[Any]:
        return [self.data]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (data,) = read_array(value, 1, "blob_response")
        return cls(read_bytes(data, "blob_response.data", max_len=MAX_CHUNK_BYTES))


def check_chunk(chunk_id: bytes, data: bytes) -> bytes:
    """`data` if it is the chunk `chunk_id` names, else `BlobError`."""
    if blob_id(data) != chunk_id:
        raise BlobError(f"peer sent bytes that are not chunk {chunk_id.hex()[:16]}")
    return data
