"""Artifacts: a small, strict, versioned binary format for a list of named float32 arrays, and
the hash chain that commits a run's checkpoints.

Layout (all integers little-endian)::

    magic    4 bytes  b"OGPA"
    version  u8       1
    dtype    u8       1 = float32 little-endian (the only one)
    count    u16      number of arrays, 0..MAX_ARRAYS
    count x  name_len u8 (1..MAX_NAME), name (ASCII letters, digits, "_.-/"), ndim u8 (0..MAX_NDIM),
             ndim x u32 dims
    padding  zero bytes up to a multiple of 8 (so every array's data is aligned)
    data     each array's elements in order, C order, 4 bytes each

Decoding checks everything (magic, version, dtype, names unique and well-formed, the exact total
length, the size limit) before touching the data, and raises only `ArtifactError`. Encoding the
same arrays always gives the same bytes, so a file id names one result.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from gpu.errors import ArtifactError
from ogpu_node.hashing import digest
from ogpu_node.types import Hash32


class Sealer(Protocol):
    """Encrypts and opens the files of one result (`ogpu_node.result_crypto.ResultKey`): file
    `number` is checkpoint `number` of a training run, or the output (0) of a workload without
    checkpoints. Sealing the same bytes gives the same ciphertext."""

    def seal(self, number: int, data: bytes) -> bytes: ...

    def open(self, number: int, data: bytes) -> bytes: ...


MAGIC = b"OGPA"
VERSION = 1
DTYPE_F32 = 1
MAX_ARRAYS = 64
MAX_NAME = 64
MAX_NDIM = 4
MAX_ARTIFACT_BYTES = 4 * 1024**3
"""The largest file the blob store holds (4,096 chunks of 1 MiB)."""

_NAME = re.compile(rb"[A-Za-z0-9_.\-/]{1,64}")
_F32 = np.dtype("<f4")
_HEAD = struct.Struct("<4sBBH")
_ALIGN = 8
CHAIN_TAG = b"ckpt-chain"

NamedArray = tuple[str, npt.NDArray[np.float32]]


def encode_arrays(arrays: Sequence[tuple[str, npt.ArrayLike]]) -> bytes:
    """The artifact of `arrays`, in order. Arrays must already be float32 (no silent casts)."""
    if len(arrays) > MAX_ARRAYS:
        raise ArtifactError(f"{len(arrays)} arrays; at most {MAX_ARRAYS}")
    header = [_HEAD.pack(MAGIC, VERSION, DTYPE_F32, len(arrays))]
    blobs: list[memoryview] = []
    seen: set[str] = set()
    for name, value in arrays:
        array = np.asarray(value)
        if array.dtype.kind != "f" or array.dtype.itemsize != 4:
            raise ArtifactError(f"array {name!r} is {array.dtype}, not float32")
        raw = name.encode("ascii", errors="replace")
        if not _NAME.fullmatch(raw) or name in seen:
            raise ArtifactError(f"bad or repeated array name {name!r}")
        if array.ndim > MAX_NDIM or any(d >= 2**32 for d in array.shape):
            raise ArtifactError(f"array {name!r} has shape {array.shape}")
        seen.add(name)
        header.append(struct.pack(f"<B{len(raw)}sB{array.ndim}I", len(raw), raw, array.ndim,
                                  *array.shape))
        # the little-endian bytes as a view, so that the join below is their only copy
        blobs.append(np.ascontiguousarray(array, dtype=_F32).reshape(-1).view(np.uint8).data)
    head = b"".join(header)
    head += bytes(-len(head) % _ALIGN)
    total = len(head) + sum(b.nbytes for b in blobs)
    if total > MAX_ARTIFACT_BYTES:
        raise ArtifactError(f"artifact of {total} bytes exceeds {MAX_ARTIFACT_BYTES}")
    return b"".join([head, *blobs])


def decode_arrays(data: bytes, max_bytes: int = MAX_ARTIFACT_BYTES) -> list[NamedArray]:
    """The named arrays of an artifact, as read-only float32 views of `data` (copy to modify).

    Raises `ArtifactError` for anything but a canonical artifact of at most `max_bytes`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ArtifactError(f"artifact must be bytes, not {type(data).__name__}")
    view = memoryview(data).cast("B")
    if len(view) > max_bytes:
        raise ArtifactError(f"artifact of {len(view)} bytes exceeds {max_bytes}")
    if len(view) < _HEAD.size:
        raise ArtifactError("artifact shorter than its header")
    magic, version, dtype, count = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise ArtifactError("not an artifact (bad magic)")
    if version != VERSION:
        raise ArtifactError(f"unsupported artifact version {version}")
    if dtype != DTYPE_F32:
        raise ArtifactError(f"unsupported dtype code {dtype}")
    if count > MAX_ARRAYS:
        raise ArtifactError(f"{count} arrays; at most {MAX_ARRAYS}")
    entries, pos = _read_entries(view, count)
    pad = -pos % _ALIGN
    if bytes(view[pos:pos + pad]) != bytes(pad):
        raise ArtifactError("header padding is missing or not zero")
    pos += pad
    need = pos + 4 * sum(math.prod(shape) for _, shape in entries)
    if need != len(view):
        raise ArtifactError(f"artifact is {len(view)} bytes; its header says {need}")
    out: list[NamedArray] = []
    for name, shape in entries:
        size = math.prod(shape)
        array: npt.NDArray[np.float32] = np.frombuffer(view, dtype=_F32, count=size, offset=pos)
        out.append((name, array.reshape(shape)))
        pos += 4 * size
    return out


def _read_entries(view: memoryview, count: int) -> tuple[list[tuple[str, tuple[int, ...]]], int]:
    pos = _HEAD.size
    entries: list[tuple[str, tuple[int, ...]]] = []
    names: set[str] = set()
    for _ in range(count):
        name_len = _byte(view, pos)
        raw = bytes(view[pos + 1:pos + 1 + name_len])
        if len(raw) != name_len or not _NAME.fullmatch(raw):
            raise ArtifactError("bad array name")
        name = raw.decode("ascii")
        if name in names:
            raise ArtifactError(f"repeated array name {name!r}")
        names.add(name)
        pos += 1 + name_len
        ndim = _byte(view, pos)
        if ndim > MAX_NDIM:
            raise ArtifactError(f"array {name!r} has {ndim} dimensions; at most {MAX_NDIM}")
        if pos + 1 + 4 * ndim > len(view):
            raise ArtifactError("artifact header is truncated")
        shape: tuple[int, ...] = struct.unpack_from(f"<{ndim}I", view, pos + 1)
        pos += 1 + 4 * ndim
        if 4 * math.prod(shape) > len(view):
            raise ArtifactError(f"array {name!r} of shape {shape} is larger than the artifact")
        entries.append((name, shape))
    return entries, pos


def _byte(view: memoryview, pos: int) -> int:
    if pos >= len(view):
        raise ArtifactError("artifact header is truncated")
    value: int = view[pos]
    return value


def expect_shapes(arrays: Sequence[tuple[str, Any]], shapes: Sequence[tuple[str, tuple[int, ...]]],
                  what: str) -> None:
    """Raise `ArtifactError` unless `arrays` are exactly the named shapes `shapes`, in order."""
    got = [(name, tuple(np.shape(a))) for name, a in arrays]
    if got != [(name, tuple(shape)) for name, shape in shapes]:
        raise ArtifactError(f"{what}: arrays {got} where {list(shapes)} were expected")


def checkpoint_chain(hashes: Sequence[bytes]) -> Hash32:
    """The root committing checkpoint ids in order: c0 = H(""), c_i = H(c_{i-1} || h_i).

    H is `digest(b"ckpt-chain", .)`; the root of no checkpoints is c0.
    """
    link = digest(CHAIN_TAG, b"")
    for h in hashes:
        link = digest(CHAIN_TAG, link + bytes(h))
    return link
