"""Method parameters: declared once per method, bound by position or by name, checked by type.

Every problem becomes -32602 naming the parameter (`invalid params: hash: expected 32 bytes of
hex, got 31`). Parameters may be given as an array (in declared order) or as an object (by name);
unknown names and surplus positions are errors, not silently ignored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ogpu_node.address import address_from_text
from ogpu_node.errors import AddressError
from ogpu_node.rpc.errors import invalid_params, invalid_request
from ogpu_node.types import HASH_LEN, Address

MAX_HEIGHT = 2**63 - 1

Parser = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Param:
    """One declared parameter: its name, how to check it, and its default when optional."""

    name: str
    parse: Parser
    required: bool = True
    default: Any = None


_MISSING = object()


def bind_params(specs: Sequence[Param], raw: Any) -> dict[str, Any]:
    """Check `raw` (the request's `params`, absent as `_MISSING`/None) against `specs`."""
    if raw is None or raw is _MISSING:
        given: dict[str, Any] = {}
    elif isinstance(raw, list):
        if len(raw) > len(specs):
            raise invalid_params("params", f"expected at most {len(specs)} positional "
                                           f"parameters ({_names(specs)}), got {len(raw)}")
        given = {spec.name: value for spec, value in zip(specs, raw, strict=False)}
    elif isinstance(raw, dict):
        known = {spec.name for spec in specs}
        unknown = sorted(str(k) for k in raw if k not in known)
        if unknown:
            raise invalid_params(unknown[0], f"unknown parameter (expected {_names(specs)})")
        given = dict(raw)
    else:
        raise invalid_request("params must be an array or an object")
    bound: dict[str, Any] = {}
    for spec in specs:
        value = given.get(spec.name, _MISSING)
        if value is _MISSING or (value is None and not spec.required):
            if spec.required:
                raise invalid_params(spec.name, "missing required parameter")
            bound[spec.name] = spec.default
        else:
            bound[spec.name] = spec.parse(spec.name, value)
    return bound


def _names(specs: Sequence[Param]) -> str:
    return "[" + ", ".join(s.name if s.required else s.name + "?" for s in specs) + "]" \
        if specs else "none"


# --- parsers ------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def hex_bytes(name: str, value: Any, *, size: int | None = None, max_len: int | None = None
              ) -> bytes:
    """Hex text, with or without `0x`, as bytes of `size` (or at most `max_len`) bytes."""
    if not isinstance(value, str):
        raise invalid_params(name, f"expected a hex string, got {_type_name(value)}")
    text = value.removeprefix("0x").removeprefix("0X")
    if max_len is not None and len(text) > 2 * max_len:
        raise invalid_params(name, f"longer than {max_len} bytes")
    if len(text) % 2:
        raise invalid_params(name, "hex has an odd number of digits")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise invalid_params(name, "not hex (digits 0-9 and a-f only)") from None
    if size is not None and len(raw) != size:
        raise invalid_params(name, f"expected {size} bytes of hex, got {len(raw)}")
    return raw


def hash32(name: str, value: Any) -> bytes:
    return hex_bytes(name, value, size=HASH_LEN)


def address(name: str, value: Any) -> Address:
    """A checksummed `ogpu1...` text address."""
    if not isinstance(value, str):
        raise invalid_params(name, f"expected an ogpu1... address, got {_type_name(value)}")
    try:
        return address_from_text(value)
    except AddressError as exc:
        raise invalid_params(name, str(exc)) from None


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid_params(name, f"expected true or false, got {_type_name(value)}")
    return value


def height(name: str, value: Any) -> int:
    """A block height: an integer JSON number in 0..2**63-1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_params(name, f"expected a block height (integer), got {_type_name(value)}")
    if not 0 <= value <= MAX_HEIGHT:
        raise invalid_params(name, f"height {value} outside 0..{MAX_HEIGHT}")
    return value


def block_ref(name: str, value: Any) -> int | str | bytes:
    """A height (number), `"latest"`, or a block hash (32 bytes of hex)."""
    if isinstance(value, str) and value == "latest":
        return "latest"
    if isinstance(value, str):
        return hash32(name, value)
    if isinstance(value, int) and not isinstance(value, bool):
        return height(name, value)
    raise invalid_params(name, f"expected a height, \"latest\" or a block hash, "
                               f"got {_type_name(value)}")


def seconds(max_s: float) -> Parser:
    """A duration in seconds, a number in (0, max_s]."""

    def parse(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid_params(name, f"expected seconds (a number), got {_type_name(value)}")
        if not 0 < value <= max_s:
            raise invalid_params(name, f"must be more than 0 and at most {max_s:g} seconds")
        return float(value)

    return parse


def one_of(*choices: str) -> Parser:
    def parse(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise invalid_params(name, "expected one of " + ", ".join(map(repr, choices)))
        return value

    return parse


def text(max_len: int) -> Parser:
    def parse(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise invalid_params(name, f"expected a string, got {_type_name(value)}")
        if len(value) > max_len:
            raise invalid_params(name, f"longer than {max_len} characters")
        return value

    return parse


def base64_bytes(max_len: int) -> Parser:
    """Standard base64 text (with padding) of at most `max_len` decoded bytes."""

    def parse(name: str, value: Any) -> bytes:
        if not isinstance(value, str):
            raise invalid_params(name, f"expected base64 text, got {_type_name(value)}")
        if len(value) > 4 * (-(-max_len // 3)):
            raise invalid_params(name, f"longer than {max_len} bytes once decoded")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise invalid_params(name, "not base64 (A-Z, a-z, 0-9, + and /, padded with =)"
                                 ) from None
        if len(raw) > max_len:
            raise invalid_params(name, f"longer than {max_len} bytes once decoded")
        return raw

    return parse


def count(max_value: int) -> Parser:
    """An integer in 1..max_value (a page size)."""

    def parse(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_params(name, f"expected an integer, got {_type_name(value)}")
        if not 1 <= value <= max_value:
            raise invalid_params(name, f"must be within 1..{max_value}")
        return value

    return parse


def list_of(item: Parser, max_len: int) -> Parser:
    """An array of at most `max_len` items, each parsed by `item` (named `name[i]` in errors)."""

    def parse(name: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise invalid_params(name, f"expected an array, got {_type_name(value)}")
        if len(value) > max_len:
            raise invalid_params(name, f"at most {max_len} items, got {len(value)}")
        return [item(f"{name}[{i}]", v) for i, v in enumerate(value)]

    return parse
