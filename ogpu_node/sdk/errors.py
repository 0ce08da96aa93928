"""The errors of the SDK: every failure of a call is an `RpcCallError` (a subclass of
`OgpuError`), with the node's JSON-RPC `code` and `data` when the node answered one."""

from __future__ import annotations

from typing import Any

from ogpu_node.errors import OgpuError
from ogpu_node.rpc_error_codes import ErrorCode


class RpcCallError(OgpuError):
    """The node answered with a JSON-RPC error, or could not be reached.

    `code` is the JSON-RPC error code (an `ErrorCode` value) or None when there was no answer;
    `data` is the error's structured data (for a rejected transaction, `data["code"]` is the
    ledger's stable code, e.g. `bad_nonce`)."""

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class RpcTimeout(RpcCallError):
    """A wait ran out: the HTTP call, a subscription with no news for its idle timeout, or
    `tx_sendAndWait` for a transaction accepted but not final in time (then `code` is
    `ErrorCode.TIMEOUT` and `data` has the hash and the receipt)."""


class FeeRefused(RpcCallError):
    """The node asked for a fee above what the SDK pays without being told (`MAX_AUTO_FEE`)."""


def error_from_answer(method: str, error: dict[str, Any]) -> RpcCallError:
    """The typed error for the `error` member of a JSON-RPC answer to `method`."""
    data = error.get("data")
    code = error.get("code")
    detail = f" ({data['code']})" if isinstance(data, dict) and "code" in data else ""
    kind = RpcTimeout if code == ErrorCode.TIMEOUT else RpcCallError
    return kind(f"{method}: {error.get('message')}{detail}", code, data)
