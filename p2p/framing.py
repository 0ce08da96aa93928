"""Length-prefixed frames of the request/response protocols, with size caps.

A frame is a 4-byte big-endian length followed by that many bytes. A request frame carries the
request bytes as they are; a response frame carries one status byte and then the payload:

    OK             the handler's answer
    HANDLER_ERROR  UTF-8 text of the handler's error, at most `MAX_ERROR_TEXT_BYTES`
    TOO_LARGE      8 bytes: the refused size and the limit (two big-endian uint32)
    RATE_LIMITED   empty: the asker is over its request rate limit, the handler did not run

Every protocol has a named frame limit (`DEFAULT_FRAME_LIMIT` unless configured). A length above
the limit is refused from the 4-byte header alone, before any of the body is read, so an oversize
frame never costs more memory than the limit.

The functions here are pure, except `read_frame`, which reads through a `read_some` callback so
that the same code serves a libp2p stream, a TCP stream or a test double, and `BufferedReads`,
which puts a read-ahead buffer in front of such a callback.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from enum import IntEnum

from p2p.errors import FrameTooLarge, MalformedFrame, TruncatedFrame

FRAME_HEADER_BYTES = 4
DEFAULT_FRAME_LIMIT = 4 * 1024 * 1024
"""Default cap on the payload of one request or response (4 MiB)."""
MAX_FRAME_LIMIT = 2**32 - 2
"""The largest limit the 4-byte header can express with the status byte added."""
MAX_ERROR_TEXT_BYTES = 1024
"""Cap on the error text a handler failure sends back."""

_HEADER = struct.Struct(">I")
_TOO_LARGE = struct.Struct(">II")

READ_AHEAD_BYTES = 64 * 1024
"""What `BufferedReads` asks of its stream at least (one yamux frame's payload)."""

ReadSome = Callable[[int], Awaitable[bytes]]
"""`read_some(n)` returns between 1 and `n` bytes, or b"" at end of stream."""


class Status(IntEnum):
    """First byte of a response frame."""

    OK = 0
    HANDLER_ERROR = 1
    TOO_LARGE = 2
    RATE_LIMITED = 3


def check_limit(limit: int) -> int:
    """Return `limit` if it is a usable frame limit, else raise `ValueError`."""
    if not 0 < limit <= MAX_FRAME_LIMIT:
        raise ValueError(f"frame limit {limit} outside 1..{MAX_FRAME_LIMIT}")
    return limit


def encode_frame(body: bytes, limit: int) -> bytes:
    """The frame of `body`; `FrameTooLarge` if `body` is longer than `limit`."""
    if len(body) > limit:
        raise FrameTooLarge(
            f"frame of {len(body)} bytes exceeds the limit of {limit}",
            size=len(body),
            limit=limit,
        )
    return _HEADER.pack(len(body)) + body


def decode_frame_length(header: bytes, limit: int) -> int:
    """The body length announced by a 4-byte header; `FrameTooLarge` above `limit`."""
    if len(header) != FRAME_HEADER_BYTES:
        raise MalformedFrame(f"frame header of {len(header)} bytes, expected 4")
    (length,) = _HEADER.unpack(header)
    if length > limit:
        raise FrameTooLarge(
            f"incoming frame of {length} bytes exceeds the limit of {limit}",
            size=length,
            limit=limit,
        )
    return int(length)


async def read_exactly(read_some: ReadSome, n: int) -> bytes:
    """Exactly `n` bytes; b"" if the stream ends before the first byte, `TruncatedFrame` if
    it ends after it."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = await read_some(n - got)
        if not chunk:
            if got == 0:
                return b""
            raise TruncatedFrame(f"stream ended after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


async def read_frame(read_some: ReadSome, limit: int) -> bytes | None:
    """The body of the next frame, or None if the stream ended cleanly between frames.

    Raises `FrameTooLarge` (before reading the body) or `TruncatedFrame`.
    """
    header = await read_exactly(read_some, FRAME_HEADER_BYTES)
    if not header:
        return None
    length = decode_frame_length(header, limit)
    if length == 0:
        return b""
    body = await read_exactly(read_some, length)
    if not body:
        raise TruncatedFrame(f"stream ended after the header of a {length}-byte frame")
    return body


class BufferedReads:
    """A `read_some` that asks its stream for at least `read_ahead` bytes and hands them out as
    they are asked for.

    A frame that arrived whole then costs one read of the stream instead of two (its header,
    then its body). That matters on libp2p: every yamux read sends the peer a window-update
    frame, so unbuffered a request and its answer cost four such frames instead of two.
    Bytes read ahead belong to the next frame: keep one `BufferedReads` per stream.
    """

    def __init__(self, read_some: ReadSome, read_ahead: int = READ_AHEAD_BYTES) -> None:
        self._read = read_some
        self._read_ahead = read_ahead
        self._pending = b""

    @property
    def pending(self) -> int:
        """Bytes read from the stream and not yet handed out."""
        return len(self._pending)

    async def read_some(self, n: int) -> bytes:
        if not self._pending:
            self._pending = await self._read(max(n, self._read_ahead))
        out, self._pending = self._pending[:n], self._pending[n:]
        return out


def encode_response(status: Status, payload: bytes) -> bytes:
    """The body of a response frame."""
    return bytes((status,)) + payload


def encode_ok(payload: bytes) -> bytes:
    return encode_response(Status.OK, payload)


def encode_handler_error(text: str) -> bytes:
    """A HANDLER_ERROR body whose text is cut to `MAX_ERROR_TEXT_BYTES` on a character boundary."""
    raw = text.encode("utf-8", "replace")[:MAX_ERROR_TEXT_BYTES]
    return encode_response(Status.HANDLER_ERROR, raw.decode("utf-8", "ignore").encode())


def encode_too_large(size: int, limit: int) -> bytes:
    return encode_response(Status.TOO_LARGE, _TOO_LARGE.pack(min(size, 2**32 - 1), limit))


def encode_rate_limited() -> bytes:
    return encode_response(Status.RATE_LIMITED, b"")


def decode_response(body: bytes) -> tuple[Status, bytes]:
    """Split a response body into its status and payload; `MalformedFrame` if it is invalid."""
    if not body:
        raise MalformedFrame("empty response frame")
    try:
        status = Status(body[0])
    except ValueError as exc:
        raise MalformedFrame(f"unknown response status {body[0]}") from exc
    payload = body[1:]
    if status is Status.TOO_LARGE and len(payload) != _TOO_LARGE.size:
        raise MalformedFrame("TOO_LARGE response with a malformed size field")
    if status is Status.RATE_LIMITED and payload:
        raise MalformedFrame("RATE_LIMITED response with a payload")
    if status is Status.HANDLER_ERROR and len(payload) > MAX_ERROR_TEXT_BYTES:
        raise MalformedFrame("handler error text longer than the limit")
    return status, payload


def decode_too_large(payload: bytes) -> tuple[int, int]:
    """(refused size, limit) of a TOO_LARGE payload already checked by `decode_response`."""
    size, limit = _TOO_LARGE.unpack(payload)
    return int(size), int(limit)
