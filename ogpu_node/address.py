"""Addresses in text: bech32m with the human-readable prefix `ogpu` (BIP-350).

bech32m's checksum detects any error affecting up to 4 characters and any single swap of adjacent
characters, so a mistyped address is rejected instead of sending funds to nobody. The encoder and
decoder follow the BIP-173/350 reference implementation.
"""

from __future__ import annotations

from ogpu_node.errors import AddressError
from ogpu_node.types import ADDRESS_LEN, Address

HRP = "ogpu"
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32M_CONST = 0x2BC830A3
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= _GEN[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise AddressError("invalid padding in address data")
    return out


def address_to_text(address: bytes) -> str:
    """The checksummed text form, e.g. 'ogpu1qz...'."""
    if len(address) != ADDRESS_LEN:
        raise AddressError(f"an address is {ADDRESS_LEN} bytes, got {len(address)}")
    data = _convert_bits(address, 8, 5, pad=True)
    poly = _polymod([*_hrp_expand(HRP), *data, 0, 0, 0, 0, 0, 0]) ^ _BECH32M_CONST
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return HRP + "1" + "".join(_CHARSET[d] for d in data + checksum)


def address_from_text(text: str) -> Address:
    """Parse a text address, rejecting wrong prefixes, bad characters and checksum mismatches."""
    if not isinstance(text, str):
        raise AddressError("an address must be text")
    if text.lower() != text and text.upper() != text:
        raise AddressError("mixed-case address")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or len(text) > 90:
        raise AddressError(f"not an address: {text!r}")
    hrp, rest = text[:pos], text[pos + 1 :]
    if hrp != HRP:
        raise AddressError(f"address prefix is {hrp!r}, expected {HRP!r}")
    if len(rest) < 7 or any(c not in _CHARSET for c in rest):
        raise AddressError(f"address has invalid characters or is too short: {text!r}")
    data = [_CHARSET.index(c) for c in rest]
    if _polymod(_hrp_expand(hrp) + data) != _BECH32M_CONST:
        raise AddressError(f"address checksum mismatch (typo?): {text!r}")
    raw = bytes(_convert_bits(data[:-6], 5, 8, pad=False))
    if len(raw) != ADDRESS_LEN:
        raise AddressError(f"address holds {len(raw)} bytes, expected {ADDRESS_LEN}")
    return Address(raw)
