"""The canonical encoding: round trips, one test per rejection, and fuzzing of the decoders.

The fuzzers check the contract of principle 3/5: whatever bytes arrive, decoding either gives an
object whose re-encoding is exactly those bytes, or raises a typed `OgpuError`; nothing else
(no `KeyError`, `TypeError`, `IndexError`, `ValueError`) escapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogpu_node.encoding import (
    MAX_DEPTH,
    decode,
    encode,
    pack,
    read_array,
    read_bytes,
    read_list,
    read_str,
    read_uint,
    unpack,
)
from ogpu_node.errors import DecodeError, EncodeError, OgpuError
from ogpu_node.ledger import Block, BlockHeader, Params, Stake, Transfer, Unstake
from ogpu_node.ledger.errors import MalformedTransaction, TransactionTooLarge
from ogpu_node.ledger.params import MAX_TX_BYTES
from ogpu_node.ledger.state import Account, Tombstone, Validator
from ogpu_node.ledger.tx import Transaction, decode_transaction
from ogpu_node.types import U64_MAX, Amount
from tests.ledger.helpers import KEYS, double_sign, genesis, next_block, parent_header, signed
from tests.ledger.profiles import examples

FUZZ = settings(max_examples=examples(250, 5000), deadline=None)

# --- round trips ---------------------------------------------------------------------------------

canonical_values = st.recursive(
    st.integers(0, U64_MAX) | st.binary(max_size=40) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if type(value) is not list:
        return 0
    return 1 + max((_depth(v) for v in value), default=0)


@given(st.lists(canonical_values, max_size=5))
@settings(max_examples=examples(200))
def test_round_trip_of_canonical_values(value: list[Any]) -> None:
    if _depth(value) >= MAX_DEPTH:
        return
    data = pack(value)
    assert unpack(data) == value
    assert pack(unpack(data)) == data


@pytest.mark.parametrize("value", [0, 127, 128, 255, 256, 65_535, 65_536, 2**32, U64_MAX])
def test_integer_boundaries_round_trip(value: int) -> None:
    assert unpack(pack([value])) == [value]


def test_bytes_and_text_stay_distinct() -> None:
    value = [b"abc", "abc"]
    decoded = unpack(pack(value))
    assert decoded == value
    assert type(decoded[0]) is bytes
    assert type(decoded[1]) is str


def _sample_objects() -> list[Any]:
    state = genesis()
    txs = [signed(KEYS[1], 0, Transfer(KEYS[2].address, Amount(5))),
           signed(KEYS[2], 0, Stake(Amount(7))), signed(KEYS[3], 0, Unstake(Amount(1)))]
    block, _ = next_block(state, txs[:2])
    return [
        *txs, block, block.header, Params(), Account(1, 2, 3, KEYS[1].public_key.raw),
        Transfer(KEYS[1].address, Amount(9)), double_sign(KEYS[1], parent_header(4, 1_000)),
        Tombstone(5, 1, 9),
    ]


SAMPLES = _sample_objects()


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_codable_objects_round_trip(obj: Any) -> None:
    data = encode(obj)
    again = decode(type(obj), data)
    assert again == obj
    assert encode(again) == data


def test_validator_fields_round_trip() -> None:
    # Validator has fields but no MAX_BYTES (it is only encoded inside the state root).
    v = Validator(KEYS[0].address, KEYS[0].public_key.raw, 10)
    assert Validator.from_fields(unpack(pack(v.to_fields()))) == v


def test_decode_transaction_round_trip() -> None:
    tx = SAMPLES[0]
    assert decode_transaction(encode(tx)) == tx


# --- rejections ----------------------------------------------------------------------------------


def test_rejects_trailing_bytes() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        unpack(pack([1, 2]) + b"\x00")


@pytest.mark.parametrize(
    "data",
    [
        b"\x91\xcd\x00\x05",  # 5 as uint16
        b"\x91\xcc\x05",  # 5 as uint8
        b"\x91\xce\x00\x00\x01\x00",  # 256 as uint32
        b"\x91\xcf\x00\x00\x00\x00\x00\x00\x00\x05",  # 5 as uint64
        b"\xdc\x00\x01\x05",  # one-element array with an array16 header
        b"\x91\xd9\x01a",  # one-character text with a str8 header
        b"\x91\xc5\x00\x01a",  # one byte with a bin16 header
    ],
    ids=["uint16", "uint8", "uint32", "uint64", "array16", "str8", "bin16"],
)
def test_rejects_non_canonical_headers(data: bytes) -> None:
    # msgpack itself accepts every one of these; only the re-encoding check catches them.
    msgpack.unpackb(data)
    with pytest.raises(DecodeError, match="non-canonical"):
        unpack(data)


@pytest.mark.parametrize("data", [b"\x80", b"\x81\x01\x02", b"\x91\x81\xa1a\x01"],
                         ids=["empty", "top", "nested"])
def test_rejects_maps(data: bytes) -> None:
    with pytest.raises(DecodeError):
        unpack(data)


@pytest.mark.parametrize("data", [b"\xca\x3f\x80\x00\x00", b"\x91\xcb" + b"\x3f\xf0" + bytes(6)],
                         ids=["float32", "float64"])
def test_rejects_floats(data: bytes) -> None:
    with pytest.raises(DecodeError, match="float"):
        unpack(data)


@pytest.mark.parametrize("data", [b"\xc0", b"\x91\xc0", b"\xc2", b"\x92\x01\xc3"],
                         ids=["nil", "nested-nil", "false", "nested-true"])
def test_rejects_nil_and_booleans(data: bytes) -> None:
    with pytest.raises(DecodeError, match=r"NoneType|bool"):
        unpack(data)


@pytest.mark.parametrize(
    "data",
    [b"\xd4\x01\x00", b"\x91\xd5\x02\x00\x00", b"\xc7\x00\x05", b"\xd6\xff" + bytes(4),
     b"\xc7\x00\xff"],
    ids=["fixext1", "nested-fixext2", "ext8-empty", "timestamp32", "timestamp-empty"],
)
def test_rejects_extension_types(data: bytes) -> None:
    with pytest.raises(DecodeError):
        unpack(data)


@pytest.mark.parametrize("data", [b"\xff", b"\x91\xe0", b"\x91\xd0\x80", b"\xd3" + b"\xff" * 8],
                         ids=["fixneg", "nested-fixneg", "int8", "int64"])
def test_rejects_negative_integers(data: bytes) -> None:
    with pytest.raises(DecodeError, match="negative"):
        unpack(data)


def _nested(depth: int) -> bytes:
    return b"\x91" * (depth - 1) + b"\x90"


def test_accepts_nesting_up_to_the_limit() -> None:
    assert _depth(unpack(_nested(MAX_DEPTH - 1))) == MAX_DEPTH - 1


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1, 5_000])
def test_rejects_over_deep_nesting(depth: int) -> None:
    with pytest.raises(DecodeError):
        unpack(_nested(depth))


def test_rejects_oversize_input() -> None:
    data = pack([b"x" * 100])
    assert unpack(data, max_bytes=len(data)) == [b"x" * 100]
    with pytest.raises(DecodeError, match="limit"):
        unpack(data, max_bytes=len(data) - 1)


def test_decode_applies_the_class_limit() -> None:
    header = SAMPLES[4]
    assert isinstance(header, BlockHeader)
    oversize = pack([*header.to_fields()[:-1], b"\0" * 300])
    with pytest.raises(DecodeError, match="limit"):
        decode(BlockHeader, oversize)


@pytest.mark.parametrize("length", [2**16, 2**32 - 1])
def test_rejects_length_headers_beyond_the_input(length: int) -> None:
    # An array, string or binary header claiming more items than the input has bytes.
    for head in (b"\xdd", b"\xdb", b"\xc6"):
        with pytest.raises(DecodeError):
            unpack(head + length.to_bytes(4, "big") + b"\x00")


@pytest.mark.parametrize("data", [b"\xa2\xff\xfe", b"\x91\xa1\x80", b"\xa3\xed\xa0\x80"],
                         ids=["invalid-start", "lone-continuation", "surrogate"])
def test_rejects_invalid_utf8(data: bytes) -> None:
    with pytest.raises(DecodeError):
        unpack(data)


@pytest.mark.parametrize("data", [b"", bytearray(), memoryview(b"")], ids=["bytes", "ba", "mv"])
def test_rejects_empty_input(data: bytes) -> None:
    with pytest.raises(DecodeError, match="empty"):
        unpack(data)


@pytest.mark.parametrize("data", [b"\x92\x01", b"\xc4\x05ab", b"\xc1"],
                         ids=["short-array", "short-bin", "reserved-byte"])
def test_rejects_truncated_and_reserved(data: bytes) -> None:
    with pytest.raises(DecodeError):
        unpack(data)


def test_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError):
        unpack("\x90")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [[-1], [1.5], [None], [True], [{1: 2}], [2**64]])
def test_pack_of_values_outside_the_encoding(value: list[Any]) -> None:
    # pack() itself is lenient on the types msgpack knows (the decoder is the gate), but a value
    # msgpack cannot represent must be a typed EncodeError, never an OverflowError.
    try:
        data = pack(value)
    except EncodeError:
        return
    with pytest.raises(DecodeError):
        unpack(data)


def test_encode_refuses_an_object_over_its_limit() -> None:
    header = SAMPLES[4]
    assert isinstance(header, BlockHeader)
    with pytest.raises(EncodeError, match="limit"):
        encode(replace(header, chain_id="€" * 64))


def test_field_readers_name_the_field() -> None:
    with pytest.raises(DecodeError, match="f: expected 2 fields"):
        read_array([1], 2, "f")
    with pytest.raises(DecodeError, match="f: expected an array"):
        read_array(b"", 0, "f")
    with pytest.raises(DecodeError, match="f: 3 items"):
        read_list([1, 2, 3], 2, "f")
    with pytest.raises(DecodeError, match="f: 11 outside"):
        read_uint(11, "f", max_value=10)
    with pytest.raises(DecodeError, match="f: expected an integer"):
        read_uint(True, "f")
    with pytest.raises(DecodeError, match="f: expected 2 bytes"):
        read_bytes(b"abc", "f", size=2)
    with pytest.raises(DecodeError, match="f: 3 bytes, limit 2"):
        read_bytes(b"abc", "f", max_len=2)
    with pytest.raises(DecodeError, match="f: expected bytes"):
        read_bytes("abc", "f")
    with pytest.raises(DecodeError, match="f: 3 characters"):
        read_str("abc", "f", max_len=2)
    with pytest.raises(DecodeError, match="f: expected text"):
        read_str(b"abc", "f", max_len=9)


def test_decode_transaction_typed_errors() -> None:
    with pytest.raises(TransactionTooLarge):
        decode_transaction(b"\x00" * (MAX_TX_BYTES + 1))
    with pytest.raises(MalformedTransaction):
        decode_transaction(pack([1, 2, 3]))
    tx = SAMPLES[0]
    assert isinstance(tx, Transaction)
    fields = tx.to_fields()
    fields[0] = 7  # the chain id as an integer
    with pytest.raises(MalformedTransaction, match="chain_id"):
        decode_transaction(pack(fields))


def test_block_header_inside_a_block_respects_the_header_limit() -> None:
    # A block whose header alone is over BlockHeader.MAX_BYTES could be decoded, but its hash
    # (the encoding of the header) could not be computed.
    block = SAMPLES[3]
    assert isinstance(block, Block)
    fields = block.to_fields()
    fields[0][0] = "€" * 64
    with pytest.raises(DecodeError, match=r"block\.header"):
        decode(Block, pack(fields))


# --- fuzzing -------------------------------------------------------------------------------------


def _decode_tx(data: bytes) -> bytes:
    return decode_transaction(data).encoded


def _decode_block(data: bytes) -> bytes:
    block = decode(Block, data)
    _ = block.hash, [tx.hash for tx in block.txs]  # derived values must be computable too
    return encode(block)


def _decode_header(data: bytes) -> bytes:
    header = decode(BlockHeader, data)
    _ = header.hash
    return encode(header)


DECODERS: list[tuple[str, Callable[[bytes], bytes], bytes]] = [
    ("tx", _decode_tx, encode(SAMPLES[0])),
    ("block", _decode_block, encode(SAMPLES[3])),
    ("header", _decode_header, encode(SAMPLES[4])),
]


def _check_decoder(decoder: Callable[[bytes], bytes], data: bytes) -> None:
    """Decoding succeeds with an exact re-encoding, or raises a typed error: nothing else."""
    try:
        again = decoder(data)
    except OgpuError:
        return
    assert again == data


@given(st.binary(max_size=300))
@FUZZ
def test_fuzz_unpack_random_bytes(data: bytes) -> None:
    try:
        value = unpack(data)
    except DecodeError:
        return
    assert pack(value) == data


@pytest.mark.parametrize("name", [d[0] for d in DECODERS])
@given(data=st.binary(max_size=300))
@FUZZ
def test_fuzz_decoders_random_bytes(name: str, data: bytes) -> None:
    decoder = next(d[1] for d in DECODERS if d[0] == name)
    _check_decoder(decoder, data)


@pytest.mark.parametrize("name", [d[0] for d in DECODERS])
@given(value=canonical_values)
@FUZZ
def test_fuzz_decoders_well_formed_values(name: str, value: Any) -> None:
    # Canonical msgpack of the wrong shape: exercises every from_fields type and length check.
    decoder = next(d[1] for d in DECODERS if d[0] == name)
    _check_decoder(decoder, pack(value) if _depth(value) < MAX_DEPTH else b"\x90")


mutation = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
    st.integers(0, 1 << 16),
    st.integers(0, 255),
)


def _mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, byte in ops:
        i = pos % (len(buf) + 1)
        if op == "insert":
            buf.insert(i, byte)
        elif not buf:
            continue
        elif op == "flip":
            buf[i % len(buf)] ^= 1 << (byte % 8)
        elif op == "set":
            buf[i % len(buf)] = byte
        elif op == "delete":
            del buf[i % len(buf)]
        else:
            del buf[i:]
    return bytes(buf)


@pytest.mark.parametrize("name", [d[0] for d in DECODERS])
@given(ops=st.lists(mutation, min_size=1, max_size=4))
@FUZZ
def test_fuzz_decoders_mutated_encodings(name: str, ops: list[tuple[str, int, int]]) -> None:
    _, decoder, valid = next(d for d in DECODERS if d[0] == name)
    _check_decoder(decoder, _mutate(valid, ops))


@pytest.mark.parametrize("name", [d[0] for d in DECODERS])
def test_every_single_byte_change_is_typed(name: str) -> None:
    # Exhaustive over positions: each byte of a valid encoding replaced by a few telling values
    # (type-changing headers, lengths of zero and maximum), and each byte deleted.
    _, decoder, valid = next(d for d in DECODERS if d[0] == name)
    for i in range(len(valid)):
        for byte in (0x00, 0x7F, 0x80, 0x90, 0xA0, 0xC0, 0xC4, 0xCB, 0xD9, 0xDC, 0xFF):
            _check_decoder(decoder, valid[:i] + bytes((byte,)) + valid[i + 1 :])
        _check_decoder(decoder, valid[:i] + valid[i + 1 :])
        _check_decoder(decoder, valid[:i])
