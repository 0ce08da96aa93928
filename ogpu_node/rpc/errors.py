"""The one exception every method raises to answer with an error (the codes themselves live
in `ogpu_node.rpc_error_codes`, which clients import without the server)."""

from __future__ import annotations

from typing import Any

from ogpu_node.errors import OgpuError
from ogpu_node.rpc_error_codes import ErrorCode

__all__ = ["ErrorCode", "RpcError", "invalid_params", "invalid_request", "not_found"]


class RpcError(OgpuError):
    """An error answer: `code`, a human `message` and optional structured `data`."""

    def __init__(self, code: ErrorCode, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": int(self.code), "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def invalid_params(param: str, problem: str) -> RpcError:
    """-32602 naming the parameter and what is wrong with it."""
    return RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: {param}: {problem}",
                    {"param": param})


def invalid_request(problem: str) -> RpcError:
    return RpcError(ErrorCode.INVALID_REQUEST, f"invalid request: {problem}")


def not_found(what: str, key: str) -> RpcError:
    return RpcError(ErrorCode.NOT_FOUND, f"{what} not found: {key}", {"what": what, "key": key})
