"""Units and identifiers used everywhere: amounts, heights, addresses, hashes.

Types carry their unit (as in the Ethereum consensus specs): an `Amount` is always integer base
units, never a float and never whole OGPU.
"""

from __future__ import annotations

from typing import NewType

Amount = NewType("Amount", int)
"""Integer base units of OGPU. 1 OGPU = 10**9 units."""

Height = NewType("Height", int)
"""Block height; the genesis state is height 0, the first block height 1."""

Address = NewType("Address", bytes)
"""20 bytes derived from an Ed25519 public key (see `ogpu_node.keys`)."""

Hash32 = NewType("Hash32", bytes)
"""A 32-byte digest made by `ogpu_node.hashing.digest`."""

Timestamp = NewType("Timestamp", int)
"""Milliseconds since the Unix epoch, as given by the block proposer."""

UNITS_PER_OGPU = 10**9
MAX_SUPPLY = Amount(21_000_000 * UNITS_PER_OGPU)
"""The cap: no height ever has more than this issued (21,000,000 OGPU)."""

MAX_AMOUNT = MAX_SUPPLY
"""No single amount can exceed the whole supply; every sum of amounts fits a signed 64-bit int."""

ADDRESS_LEN = 20
HASH_LEN = 32
PUBKEY_LEN = 32
SIGNATURE_LEN = 64
U64_MAX = 2**64 - 1


def ogpu(whole: int) -> Amount:
    """Whole OGPU expressed in base units (for tests, genesis building and docs)."""
    return Amount(whole * UNITS_PER_OGPU)


def format_amount(amount: int) -> str:
    """Base units as a decimal OGPU string without floats, e.g. 1500000000 -> '1.5'."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), UNITS_PER_OGPU)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")


def parse_amount(text: str) -> Amount:
    """Parse 'OGPU' decimal text ('1.5', '21000000') into base units, exactly (no floats).

    Raises ValueError on anything that is not a non-negative decimal with at most 9 fractional
    digits, or that exceeds the supply cap.
    """
    text = text.strip()
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > 9:
        raise ValueError(f"not an OGPU amount: {text!r} (use digits, at most 9 decimals)")
    units = int(whole) * UNITS_PER_OGPU + int(frac.ljust(9, "0") or 0)
    if units > MAX_AMOUNT:
        raise ValueError(f"amount {text} OGPU exceeds the 21,000,000 OGPU supply")
    return Amount(units)
