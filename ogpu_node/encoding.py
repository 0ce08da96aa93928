"""The one canonical encoding for everything hashed, signed, stored or sent.

Every object is a msgpack *array* of its fields in a fixed order; fields are unsigned integers,
byte strings, text, or nested arrays. Maps, floats, extension types, booleans and nil never appear.
Decoding is strict: a size limit on the input, limits on every string and array, a depth limit,
no trailing bytes, and the re-encoding of what was decoded must give back the same bytes, so there
is exactly one valid encoding of each value (no over-long integers or alternative headers).

Objects plug in through `Codable`: `to_fields()` gives the array, `from_fields()` reads it back
with the `read_*` helpers below, which raise `DecodeError` naming the offending field.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, Self, TypeVar

import msgpack

from ogpu_node.errors import DecodeError, EncodeError
from ogpu_node.types import U64_MAX

MAX_DEPTH = 8
"""Deepest nesting of arrays any protocol object uses (a block: block > txs > tx > fields)."""

DEFAULT_MAX_BYTES = 1 << 20
"""Default cap on an encoded object; callers pass tighter limits for their kind of object."""


class Codable(Protocol):
    """An object with a canonical array encoding."""

    MAX_BYTES: ClassVar[int]

    def to_fields(self) -> list[Any]: ...

    @classmethod
    def from_fields(cls, fields: Any) -> Self: ...


C = TypeVar("C", bound=Codable)


def pack(fields: list[Any]) -> bytes:
    """Canonical bytes of an array of fields."""
    try:
        return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode: {exc}") from exc


def unpack(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Decode canonical bytes into nested lists of int/bytes/str, or raise `DecodeError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise DecodeError(f"encoding is {len(data)} bytes, limit is {max_bytes}")
    if not data:
        raise DecodeError("empty input")
    limit = len(data)
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=limit,
            max_str_len=limit,
            max_array_len=limit,
            max_map_len=0,
            max_ext_len=0,
            timestamp=0,
        )
    except msgpack.ExtraData as exc:
        raise DecodeError("trailing bytes after the encoded object") from exc
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise DecodeError(f"malformed encoding: {exc}") from exc
    _check_shape(value)
    if pack(value) != bytes(data):
        raise DecodeError("non-canonical encoding (re-encoding differs)")
    return value


def _check_shape(value: Any) -> None:
    """Reject types outside the canonical set, and nesting deeper than MAX_DEPTH."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is list:
            if depth >= MAX_DEPTH:
                raise DecodeError(f"nesting deeper than {MAX_DEPTH}")
            stack.extend((child, depth + 1) for child in item)
        elif kind is int:
            if item < 0:
                raise DecodeError("negative integers are not part of the encoding")
        elif kind is not bytes and kind is not str:
            raise DecodeError(f"{kind.__name__} is not part of the encoding")


def encode(obj: Codable) -> bytes:
    """Canonical bytes of a codable object, checked against its size limit."""
    data = pack(obj.to_fields())
    if len(data) > obj.MAX_BYTES:
        name = type(obj).__name__
        raise EncodeError(f"{name} encodes to {len(data)} bytes, limit {obj.MAX_BYTES}")
    return data


def decode(cls: type[C], data: bytes) -> C:
    """Strictly decode `data` as a `cls`, or raise `DecodeError`."""
    return cls.from_fields(unpack(data, max_bytes=cls.MAX_BYTES))


# --- field readers: each raises DecodeError naming the field ----------------------------------


def read_array(value: Any, length: int, what: str) -> list[Any]:
    """An array of exactly `length` fields."""
    if type(value) is not list:
        raise DecodeError(f"{what}: expected an array, got {type(value).__name__}")
    if len(value) != length:
        raise DecodeError(f"{what}: expected {length} fields, got {len(value)}")
    return value


def read_list(value: Any, max_len: int, what: str) -> list[Any]:
    """A variable-length array of at most `max_len` items."""
    if type(value) is not list:
        raise DecodeError(f"{what}: expected an array, got {type(value).__name__}")
    if len(value) > max_len:
        raise DecodeError(f"{what}: {len(value)} items, limit {max_len}")
    return value


def read_uint(value: Any, what: str, *, max_value: int = U64_MAX, min_value: int = 0) -> int:
    """An integer in [min_value, max_value]."""
    if type(value) is not int:
        raise DecodeError(f"{what}: expected an integer, got {type(value).__name__}")
    if not min_value <= value <= max_value:
        raise DecodeError(f"{what}: {value} outside [{min_value}, {max_value}]")
    return value


def read_bytes(value: Any, what: str, *, size: int | None = None, max_len: int = 1 << 20) -> bytes:
    """A byte string of exactly `size` bytes, or of at most `max_len`."""
    if type(value) is not bytes:
        raise DecodeError(f"{what}: expected bytes, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise DecodeError(f"{what}: expected {size} bytes, got {len(value)}")
    if len(value) > max_len:
        raise DecodeError(f"{what}: {len(value)} bytes, limit {max_len}")
    return value


def read_str(value: Any, what: str, *, max_len: int) -> str:
    """A UTF-8 text of at most `max_len` characters."""
    if type(value) is not str:
        raise DecodeError(f"{what}: expected text, got {type(value).__name__}")
    if len(value) > max_len:
        raise DecodeError(f"{what}: {len(value)} characters, limit {max_len}")
    return value
