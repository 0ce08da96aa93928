"""Content-addressed blobs: chunks named by their hash, on disk, and their transfer between nodes.

A blob is at most `MAX_CHUNK_BYTES`; larger data is a list of chunk hashes (the market's task
inputs and outputs, issue 5). The id of a chunk is `digest("blob", data)`, so whoever fetches a
chunk checks it against the id it asked for: a peer cannot serve wrong bytes undetected.

Files live under `<root>/<first two hex digits>/<hex id>`, written to a temporary name and
renamed, so a crash never leaves a partial chunk under its id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Self

from ogpu_node.encoding import read_array, read_bytes
from ogpu_node.errors import OgpuError
from ogpu_node.hashing import digest
from ogpu_node.types import HASH_LEN, Hash32

PROTO_BLOB = "/ogpu/blob/1"
MAX_CHUNK_BYTES = 1024 * 1024
DEFAULT_MAX_STORE_BYTES = 10 * 1024 * 1024 * 1024


class BlobError(OgpuError):
    """A chunk that is too large, does not match its id, or cannot be stored."""


def blob_id(data: bytes) -> Hash32:
    return digest(b"blob", data)


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
