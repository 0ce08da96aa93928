from __future__ import annotations

import contextlib
import struct
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu.artifacts import (
    MAGIC,
    MAX_ARRAYS,
    checkpoint_chain,
    decode_arrays,
    encode_arrays,
    expect_shapes,
)
from gpu.errors import ArtifactError
from ogpu_node.hashing import digest

SAMPLE = [("w0", np.arange(6, dtype=np.float32).reshape(2, 3)),
          ("b0", np.array([1.5, -2.0, 3.25], dtype=np.float32)),
          ("empty", np.zeros((0, 4), dtype=np.float32)),
          ("scalar", np.float32(7.0) * np.ones((), dtype=np.float32))]


def test_round_trip_keeps_names_shapes_and_values() -> None:
    data = encode_arrays(SAMPLE)
    out = decode_arrays(data)
    assert [n for n, _ in out] == [n for n, _ in SAMPLE]
    for (_, got), (_, want) in zip(out, SAMPLE, strict=True):
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    assert encode_arrays(out) == data


def test_layout_is_little_endian_and_aligned() -> None:
    data = encode_arrays([("x", np.array([1.0], dtype=np.float32))])
    assert data[:4] == MAGIC and data[4] == 1 and data[5] == 1
    assert struct.unpack_from("<H", data, 6) == (1,)
    assert data[-4:] == struct.pack("<f", 1.0)
    assert (len(data) - 4) % 8 == 0


def test_big_endian_input_encodes_the_same() -> None:
    a = np.array([1.0, 2.0], dtype=">f4")
    assert encode_arrays([("a", a)]) == encode_arrays([("a", a.astype("<f4"))])


@pytest.mark.parametrize("arrays", [
    [("w", np.zeros(2, dtype=np.float64))],
    [("", np.zeros(2, dtype=np.float32))],
    [("bad name", np.zeros(2, dtype=np.float32))],
    [("a", np.zeros(1, dtype=np.float32)), ("a", np.zeros(1, dtype=np.float32))],
    [("a", np.zeros((1, 1, 1, 1, 1), dtype=np.float32))],
    [(f"a{i}", np.zeros(1, dtype=np.float32)) for i in range(MAX_ARRAYS + 1)],
])
def test_encode_refuses_what_it_cannot_represent(
    arrays: list[tuple[str, npt.NDArray[Any]]],
) -> None:
    with pytest.raises(ArtifactError):
        encode_arrays(arrays)


def test_decode_rejects_each_malformation() -> None:
    good = encode_arrays(SAMPLE)
    cases = [b"", good[:7], b"XXXX" + good[4:], good[:4] + b"\x02" + good[5:],
             good[:5] + b"\x02" + good[6:], good + b"\x00", good[:-1],
             good[:8] + b"\x00" + good[9:]]
    for case in cases:
        with pytest.raises(ArtifactError):
            decode_arrays(case)
    with pytest.raises(ArtifactError):
        decode_arrays(good, max_bytes=len(good) - 1)
    with pytest.raises(ArtifactError):
        decode_arrays("text")  # type: ignore[arg-type]


def test_nonzero_padding_is_rejected() -> None:
    data = bytearray(encode_arrays([("abc", np.ones(1, dtype=np.float32))]))
    head = 8 + 1 + 3 + 1 + 4  # 17 bytes, padded to 24
    data[head] = 1
    with pytest.raises(ArtifactError, match="padding"):
        decode_arrays(bytes(data))


def test_decoded_arrays_are_read_only_views() -> None:
    (_, a), *_ = decode_arrays(encode_arrays(SAMPLE))
    with pytest.raises(ValueError):
        a[0, 0] = 1


def test_expect_shapes() -> None:
    arrays = decode_arrays(encode_arrays(SAMPLE[:2]))
    expect_shapes(arrays, [("w0", (2, 3)), ("b0", (3,))], "x")
    with pytest.raises(ArtifactError):
        expect_shapes(arrays, [("w0", (3, 2)), ("b0", (3,))], "x")


def test_checkpoint_chain_vectors() -> None:
    c0 = digest(b"ckpt-chain", b"")
    h1, h2 = bytes(range(32)), bytes(32)
    assert checkpoint_chain([]) == c0
    c1 = digest(b"ckpt-chain", c0 + h1)
    assert checkpoint_chain([h1]) == c1
    assert checkpoint_chain([h1, h2]) == digest(b"ckpt-chain", c1 + h2)
    assert checkpoint_chain([h2, h1]) != checkpoint_chain([h1, h2])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_fuzz_random_bytes_raise_only_artifact_error(data: bytes) -> None:
    with contextlib.suppress(ArtifactError):
        decode_arrays(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_artifacts_raise_only_artifact_error(data: st.DataObject) -> None:
    good = bytearray(encode_arrays(SAMPLE))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(good) - 1))
        good[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(good)))
    try:
        out = decode_arrays(bytes(good[:cut]))
    except ArtifactError:
        return
    assert all(a.dtype == np.float32 for _, a in out)
