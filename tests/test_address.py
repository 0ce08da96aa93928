"""Text addresses: bech32m with prefix `ogpu`; every typo a checksum can catch is rejected."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogpu_node import address
from ogpu_node.address import _CHARSET, HRP, address_from_text, address_to_text
from ogpu_node.errors import AddressError
from ogpu_node.keys import address_of
from ogpu_node.types import ADDRESS_LEN
from tests.ledger.helpers import KEYS
from tests.ledger.profiles import examples

ADDRESSES = [
    bytes(ADDRESS_LEN), b"\xff" * ADDRESS_LEN, bytes(range(ADDRESS_LEN)), KEYS[1].address,
]
TEXT = address_to_text(KEYS[1].address)


@pytest.mark.parametrize("raw", ADDRESSES)
def test_round_trip(raw: bytes) -> None:
    text = address_to_text(raw)
    assert text.startswith(HRP + "1")
    assert text == text.lower()
    assert address_from_text(text) == raw


@given(st.binary(min_size=ADDRESS_LEN, max_size=ADDRESS_LEN))
@settings(max_examples=examples(100))
def test_round_trip_any_address(raw: bytes) -> None:
    assert address_from_text(address_to_text(raw)) == raw


def test_upper_case_is_the_same_address() -> None:
    assert address_from_text(TEXT.upper()) == KEYS[1].address


def test_address_derivation_vector() -> None:
    # Fixed vectors: the derivation (sha256 of len(tag) || "address" || key, first 20 bytes) and
    # the text form are protocol; they must never drift.
    public_key = bytes(range(32))
    assert hashlib.sha256(b"\x07address" + public_key).digest()[:20] == address_of(public_key)
    assert address_to_text(address_of(public_key)) == "ogpu18x8gvg8ak0rtnqr3pf5nu7mg3qa55se75p80xc"
    assert address_to_text(bytes(ADDRESS_LEN)) == "ogpu1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqd6ekhn"


@pytest.mark.parametrize(
    "text",
    ["a1lqfn3a", "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
     "split1checkupstagehandshakeupstreamerranterredcaperredlc445v", "?1v759aa"],
)
def test_checksum_matches_bip350_vectors(text: str) -> None:
    # Valid bech32m strings from BIP-350: checks the checksum code against the reference.
    pos = text.rfind("1")
    data = [_CHARSET.index(c) for c in text[pos + 1 :]]
    assert address._polymod(address._hrp_expand(text[:pos]) + data) == address._BECH32M_CONST


def _bech32(prefix: str, raw: bytes, const: int = address._BECH32M_CONST) -> str:
    """`raw` under `prefix` with a checksum made with `const`, bypassing the encoder's checks."""
    data = address._convert_bits(raw, 8, 5, pad=True)
    poly = address._polymod([*address._hrp_expand(prefix), *data, 0, 0, 0, 0, 0, 0]) ^ const
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return prefix + "1" + "".join(_CHARSET[d] for d in data + checksum)


def test_bech32_helper_matches_the_encoder() -> None:
    assert _bech32(HRP, KEYS[1].address) == TEXT


@pytest.mark.parametrize("text", [address_to_text(a) for a in ADDRESSES])
def test_every_single_character_substitution_is_rejected(text: str) -> None:
    tried = 0
    for i, original in enumerate(text):
        for c in _CHARSET + "1":
            if c == original:
                continue
            typo = text[:i] + c + text[i + 1 :]
            with pytest.raises(AddressError):
                address_from_text(typo)
            tried += 1
    assert tried >= len(text) * (len(_CHARSET) - 1)


@pytest.mark.parametrize("text", [address_to_text(a) for a in ADDRESSES])
def test_every_adjacent_swap_is_rejected(text: str) -> None:
    swaps = 0
    for i in range(len(text) - 1):
        if text[i] == text[i + 1]:
            continue
        swapped = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        with pytest.raises(AddressError):
            address_from_text(swapped)
        swaps += 1
    assert swaps >= 5


@pytest.mark.parametrize("prefix", ["bc", "ogp", "ogpuu", "tb", "xgpu"])
def test_wrong_prefix_is_rejected(prefix: str) -> None:
    # A valid bech32m string of the same data under another prefix: the checksum is right for
    # that prefix, so only the prefix check can stop it.
    text = _bech32(prefix, KEYS[1].address)
    with pytest.raises(AddressError, match="prefix"):
        address_from_text(text)


def test_mixed_case_is_rejected() -> None:
    for i, c in enumerate(TEXT):
        if c.isalpha():
            with pytest.raises(AddressError, match="mixed-case"):
                address_from_text(TEXT[:i] + c.upper() + TEXT[i + 1 :])


@pytest.mark.parametrize("size", [0, 1, 19, 21, 32])
def test_wrong_payload_length_is_rejected(size: int) -> None:
    with pytest.raises(AddressError):
        address_to_text(bytes(size))


@pytest.mark.parametrize("size", [1, 19, 21, 32])
def test_wrong_payload_length_with_valid_checksum_is_rejected(size: int) -> None:
    text = _bech32(HRP, bytes(range(size)))
    with pytest.raises(AddressError):
        address_from_text(text)


@pytest.mark.parametrize(
    "text",
    ["", "1", "ogpu1", "ogpu1qqqqqq", "ogpu", TEXT[:-1], TEXT + "q", TEXT[:-6],
     TEXT.replace("1", "", 1), TEXT + "q" * 60, "ogpu1" + "b" * 32, " " + TEXT, TEXT + "\n"],
)
def test_malformed_text_is_rejected(text: str) -> None:
    with pytest.raises(AddressError):
        address_from_text(text)


def test_non_text_is_rejected() -> None:
    with pytest.raises(AddressError):
        address_from_text(KEYS[1].address)  # type: ignore[arg-type]


def test_bech32_checksum_is_not_bech32m() -> None:
    # The same data under the original bech32 constant (1) must not pass as bech32m.
    text = _bech32(HRP, KEYS[1].address, const=1)
    with pytest.raises(AddressError, match="checksum"):
        address_from_text(text)
