"""The JSON-RPC error codes the node answers with, in a module of their own so that clients (the
SDK) read them without importing the server.

The spec's codes (-32700 .. -32603) keep their meaning; our own codes live in -32000 .. -32099 and
are documented in `docs/rpc.md`. A code, once published, never changes meaning.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Every code the server answers with."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603

    TX_REJECTED = -32000
    """The node refused a transaction; `data.code` is the ledger's code (`bad_nonce`, ...)."""
    NOT_FOUND = -32001
    TIMEOUT = -32002
    """`tx_sendAndWait`: accepted but not final in time; `data` has the hash and the receipt."""
    RATE_LIMITED = -32003
    TOO_MANY_CONNECTIONS = -32004
    TOO_MANY_SUBSCRIPTIONS = -32005
    REQUEST_TOO_LARGE = -32006
    WEBSOCKET_REQUIRED = -32007
    TOO_MANY_PENDING = -32008
    """Too many requests of one WebSocket connection are still being answered."""
    BLOB_UNAVAILABLE = -32009
    """Neither this node nor any connected peer has the chunk (or the node keeps no blobs)."""
    BLOB_REFUSED = -32010
    """The blob store refused a file (full), or a file id names a chunk that is no manifest."""
    UPLOADS_DISABLED = -32011
    """This node serves no uploads (`rpc_uploads = false`)."""
    UPLOAD_QUOTA_EXCEEDED = -32012
    """The client uploaded its quota of bytes in the window; `data.retryAfterMs` says when
    this upload will fit."""
