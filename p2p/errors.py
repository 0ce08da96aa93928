"""Typed errors of the p2p layer.

Every failure the network reports on purpose is a `P2PError`, itself an `OgpuError`: a caller
that catches `P2PError` around `request` or `publish` catches every refusal and breakage of the
network and nothing else. Time limits are the caller's (`trio.fail_after`), so a slow peer shows up
as `trio.TooSlowError`, not as one of these.
"""

from __future__ import annotations

from ogpu_node.errors import OgpuError


class P2PError(OgpuError):
    """Base of all errors of the p2p layer."""


class FrameError(P2PError):
    """A frame that breaks the wire format or its limits."""


class FrameTooLarge(FrameError):
    """A frame or gossip message larger than the limit of its protocol or topic.

    `remote` is true when the peer refused it (its limit is lower than ours), false when this node
    refused to send or receive it.
    """

    def __init__(self, message: str, *, size: int, limit: int, remote: bool = False) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit
        self.remote = remote


class MalformedFrame(FrameError):
    """Bytes that are not a valid frame: truncated, or an unknown response status."""


class TruncatedFrame(MalformedFrame):
    """The stream ended inside a frame: a peer or connection that went away mid-frame, which is
    not held against the peer (unlike the other malformed frames)."""


class PeerUnavailable(P2PError):
    """The peer cannot be reached: not connected and not dialable, or the dial failed."""


class PeerBanned(PeerUnavailable):
    """This node banned the peer (`Network.report`): no connection or request until it ends."""


class InvalidPeerAddress(P2PError):
    """A peer id or multiaddr that does not parse, or a multiaddr without `/p2p/<id>`."""


class ProtocolNotSupported(P2PError):
    """The peer has no handler for the requested protocol."""


class RequestFailed(P2PError):
    """The stream broke during a request (reset by the peer, connection lost, early EOF)."""


class RateLimited(RequestFailed):
    """The peer refused the request at once: this node sent it more than its rate limit."""


class RemoteHandlerError(P2PError):
    """The peer's handler raised; `message` is the text the peer sent back (bounded in size)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NetworkClosed(P2PError):
    """The network is not running (not started yet, or shut down)."""
