"""Record codecs derived from declared fields.

A record declares each field with its type and, in `Annotated`, how it is encoded and its
bounds; `Record` derives `to_fields`/`from_fields` from those declarations, in declaration
order:

    @dataclass(frozen=True, slots=True)
    class Bid(Record):
        bidder: Annotated[Address, ADDRESS]
        price: Annotated[int, UINT] = 0

so a field is added, bounded and encoded in one place. Decoding checks every bound and raises
only `DecodeError`; encoding then decoding gives the record back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, ClassVar, Protocol, Self, get_type_hints

from ogpu_node.encoding import read_array, read_bytes, read_list, read_str, read_uint
from ogpu_node.types import ADDRESS_LEN, HASH_LEN, U64_MAX, Address, Hash32


class FieldCodec(Protocol):
    def encode(self, value: Any) -> Any: ...

    def decode(self, value: Any, what: str) -> Any: ...


@dataclass(frozen=True)
class Uint:
    """An unsigned integer within min_value..max_value."""

    max_value: int = U64_MAX
    min_value: int = 0

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, value: Any, what: str) -> Any:
        return read_uint(value, what, max_value=self.max_value, min_value=self.min_value)


@dataclass(frozen=True)
class Flag:
    """A bool, encoded 0 or 1."""

    def encode(self, value: Any) -> Any:
        return int(value)

    def decode(self, value: Any, what: str) -> Any:
        return bool(read_uint(value, what, max_value=1))


@dataclass(frozen=True)
class Enum:
    """An IntEnum member, encoded as its number."""

    type: type[IntEnum]

    def encode(self, value: Any) -> Any:
        return int(value)

    def decode(self, value: Any, what: str) -> Any:
        return self.type(read_uint(value, what, min_value=min(self.type),
                                   max_value=max(self.type)))


@dataclass(frozen=True)
class Raw:
    """Bytes of exactly `size`, or at most `max_len`; `make` wraps them (Hash32, Address)."""

    size: int | None = None
    max_len: int = 1 << 20
    make: Callable[[bytes], Any] = bytes

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, value: Any, what: str) -> Any:
        return self.make(read_bytes(value, what, size=self.size, max_len=self.max_len))


@dataclass(frozen=True)
class Text:
    max_len: int

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, value: Any, what: str) -> Any:
        return read_str(value, what, max_len=self.max_len)


@dataclass(frozen=True)
class Maybe:
    """None, encoded as `empty` (b"" for bytes, [] for a record), or a value of `inner`."""

    inner: FieldCodec
    empty: Any = b""

    def encode(self, value: Any) -> Any:
        return self.empty if value is None else self.inner.encode(value)

    def decode(self, value: Any, what: str) -> Any:
        if value == self.empty:
            return None
        return self.inner.decode(value, what)


@dataclass(frozen=True)
class Nested:
    """A record (anything with `to_fields`/`from_fields`)."""

    type: Any

    def encode(self, value: Any) -> Any:
        return value.to_fields()

    def decode(self, value: Any, what: str) -> Any:
        return self.type.from_fields(value)


@dataclass(frozen=True)
class Seq:
    """A tuple of at most `limit` items of `item`."""

    item: FieldCodec
    limit: int

    def encode(self, value: Any) -> Any:
        return [self.item.encode(v) for v in value]

    def decode(self, value: Any, what: str) -> Any:
        return tuple(self.item.decode(v, what) for v in read_list(value, self.limit, what))


@dataclass(frozen=True)
class Pair:
    """A 2-tuple of `first` and `second`."""

    first: FieldCodec
    second: FieldCodec

    def encode(self, value: Any) -> Any:
        return [self.first.encode(value[0]), self.second.encode(value[1])]

    def decode(self, value: Any, what: str) -> Any:
        a, b = read_array(value, 2, what)
        return (self.first.decode(a, what), self.second.decode(b, what))


UINT = Uint()
FLAG = Flag()
HASH = Raw(size=HASH_LEN, make=Hash32)
ADDRESS = Raw(size=ADDRESS_LEN, make=Address)
MAYBE_ADDRESS = Maybe(ADDRESS)


class Record:
    """Derives `to_fields`/`from_fields` from the `Annotated` declarations of a dataclass."""

    __slots__ = ()
    NAME: ClassVar[str] = ""
    """The record's name in decoding errors (default: the class name, lower case)."""

    def to_fields(self) -> list[Any]:
        return [codec.encode(getattr(self, name)) for name, codec in _codecs(type(self))]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        what = cls.NAME or cls.__name__.lower()
        codecs = _codecs(cls)
        items = read_array(value, len(codecs), what)
        return cls(**{name: codec.decode(item, f"{what}.{name}")
                      for (name, codec), item in zip(codecs, items, strict=True)})


_CODECS: dict[type, tuple[tuple[str, FieldCodec], ...]] = {}


def _codecs(cls: type) -> tuple[tuple[str, FieldCodec], ...]:
    """(name, codec) of every field of `cls`, in declaration order (worked out once)."""
    found = _CODECS.get(cls)
    if found is not None:
        return found
    hints = get_type_hints(cls, include_extras=True)
    out = []
    for f in fields(cls):
        codec = next((m for m in getattr(hints[f.name], "__metadata__", ())
                      if hasattr(m, "encode") and hasattr(m, "decode")), None)
        if codec is None:
            raise TypeError(f"{cls.__name__}.{f.name} declares no codec")
        out.append((f.name, codec))
    _CODECS[cls] = tuple(out)
    return _CODECS[cls]
