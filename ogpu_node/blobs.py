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

import os
from collections.abc import Sequence
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
MAX_FILE_CHUNKS = 4096
"""Largest file: 4 GiB in 1 MiB chunks; its manifest stays well under one chunk."""


class BlobError(OgpuError):
    """A chunk that is too large, does not match its id, or cannot be stored."""


class FileTooLarge(BlobError):
    """A file whose manifest says it is larger than the fetcher accepts (not worth retrying)."""


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


class BlobStore:
    """Chunks on disk by id, with a cap on total bytes."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_STORE_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)
        self._used = sum(p.stat().st_size for p in root.glob("*/*") if p.is_file())

    def _path(self, chunk_id: bytes) -> Path:
        text = chunk_id.hex()
        return self.root / text[:2] / text

    def put(self, data: bytes) -> Hash32:
        """Store a chunk; returns its id. Storing the same chunk twice is a no-op."""
        if len(data) > MAX_CHUNK_BYTES:
            raise BlobError(f"chunk of {len(data)} bytes exceeds {MAX_CHUNK_BYTES}")
        chunk_id = blob_id(data)
        path = self._path(chunk_id)
        if path.exists():
            return chunk_id
        if self._used + len(data) > self.max_bytes:
            raise BlobError(f"blob store full ({self._used} of {self.max_bytes} bytes used)")
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        self._used += len(data)
        return chunk_id

    def get(self, chunk_id: bytes) -> bytes | None:
        if len(chunk_id) != HASH_LEN:
            raise BlobError("a chunk id is 32 bytes")
        try:
            return self._path(chunk_id).read_bytes()
        except FileNotFoundError:
            return None

    def put_file(self, data: bytes) -> Hash32:
        """Store a file as its chunks and manifest; returns the file id (`file_id(data)`)."""
        manifest, chunks = split_file(data)
        for chunk in chunks:
            self.put(chunk)
        return self.put(manifest)

    def put_manifest(self, size: int, chunk_ids: Sequence[bytes]) -> Hash32:
        """Store the manifest of a file whose chunks are already here (uploaded one by one);
        returns the file id. Raises `BlobError` when a chunk is missing or the sizes disagree."""
        if len(chunk_ids) > MAX_FILE_CHUNKS:
            raise BlobError(f"a file has at most {MAX_FILE_CHUNKS} chunks")
        total = 0
        for index, chunk_id in enumerate(chunk_ids):
            if len(chunk_id) != HASH_LEN:
                raise BlobError("a chunk id is 32 bytes")
            path = self._path(chunk_id)
            if not path.exists():
                raise BlobError(f"chunk {index} ({chunk_id.hex()[:16]}) is not stored here: "
                                "upload it first")
            length = path.stat().st_size
            if length != MAX_CHUNK_BYTES and index != len(chunk_ids) - 1:
                raise BlobError(f"chunk {index} is {length} bytes: every chunk but the last "
                                f"must be {MAX_CHUNK_BYTES}")
            total += length
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
        return isinstance(chunk_id, bytes) and self._path(chunk_id).exists()


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
