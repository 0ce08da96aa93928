"""Frames: round trips, limits, and fuzzed decoding (only typed errors escape)."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from p2p.errors import (
    FrameTooLarge,
    MalformedFrame,
    P2PError,
    RateLimited,
    RemoteHandlerError,
    RequestFailed,
    TruncatedFrame,
)
from p2p.framing import (
    READ_AHEAD_BYTES,
    BufferedReads,
    ReadSome,
    decode_response,
    encode_frame,
    encode_handler_error,
    encode_ok,
    encode_rate_limited,
    encode_too_large,
    read_frame,
)
from p2p.network import result_of_response


def reader(data: bytes, chunk: int = 3) -> ReadSome:
    view = memoryview(data)
    pos = 0

    async def read_some(n: int) -> bytes:
        nonlocal pos
        out = bytes(view[pos : pos + min(n, chunk)])
        pos += len(out)
        return out

    return read_some


@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 7))
def test_frames_round_trip_through_any_chunking(bodies: list[bytes], chunk: int) -> None:
    wire = b"".join(encode_frame(body, 300) for body in bodies)

    async def main() -> list[bytes]:
        read_some = reader(wire, chunk)
        out = []
        while (body := await read_frame(read_some, 300)) is not None:
            out.append(body)
        return out

    assert trio.run(main) == bodies


@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 400), st.integers(1, 64))
def test_buffered_reads_hand_out_the_same_frames(bodies: list[bytes], chunk: int,
                                                 read_ahead: int) -> None:
    wire = b"".join(encode_frame(body, 300) for body in bodies)

    async def main() -> list[bytes]:
        reads = BufferedReads(reader(wire, chunk), read_ahead)
        out = []
        while (body := await read_frame(reads.read_some, 300)) is not None:
            out.append(body)
        assert reads.pending == 0
        return out

    assert trio.run(main) == bodies


def test_a_frame_that_arrived_whole_costs_one_read_of_the_stream() -> None:
    wire = encode_frame(b"a" * 200, 300) + encode_frame(b"b" * 100, 300)
    asked: list[int] = []
    stream = reader(wire, chunk=len(wire))

    async def counted(n: int) -> bytes:
        asked.append(n)
        return await stream(n)

    async def main() -> None:
        reads = BufferedReads(counted)
        assert await read_frame(reads.read_some, 300) == b"a" * 200
        assert asked == [READ_AHEAD_BYTES]  # the header and the body in one read
        assert reads.pending == 104  # the next frame, kept for the next call
        assert await read_frame(reads.read_some, 300) == b"b" * 100
        assert len(asked) == 1
        assert await read_frame(reads.read_some, 300) is None

    trio.run(main)


def test_limits_are_enforced_from_the_header() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * 11, 10)

    async def main() -> None:
        with pytest.raises(FrameTooLarge) as exc:
            await read_frame(reader(encode_frame(b"x" * 11, 100)), 10)
        assert exc.value.size == 11 and exc.value.limit == 10
        with pytest.raises(TruncatedFrame):  # a MalformedFrame not held against the peer
            await read_frame(reader(encode_frame(b"abc", 10)[:-1]), 10)

    trio.run(main)


@given(st.binary(max_size=64))
def test_decoding_garbage_raises_only_typed_errors(data: bytes) -> None:
    async def main() -> None:
        try:
            body = await read_frame(reader(data), 32)
            if body is not None:
                result_of_response(body, 32)
        except P2PError:
            pass

    trio.run(main)


def test_responses_map_to_results_and_typed_errors() -> None:
    assert result_of_response(encode_ok(b"hi"), 10) == b"hi"
    with pytest.raises(RemoteHandlerError, match="boom"):
        result_of_response(encode_handler_error("boom"), 10)
    with pytest.raises(FrameTooLarge) as exc:
        result_of_response(encode_too_large(99, 10), 10)
    assert exc.value.remote and (exc.value.size, exc.value.limit) == (99, 10)
    assert len(decode_response(encode_handler_error("é" * 5000))[1]) <= 1024
    with pytest.raises(MalformedFrame):
        decode_response(b"\x09")
    with pytest.raises(RateLimited) as limited:
        result_of_response(encode_rate_limited(), 10)
    assert isinstance(limited.value, RequestFailed)  # callers catching RequestFailed see it
    with pytest.raises(MalformedFrame):
        decode_response(encode_rate_limited() + b"x")
