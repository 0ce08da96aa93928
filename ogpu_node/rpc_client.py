"""A small synchronous JSON-RPC client for the CLIs and scripts (httpx)."""

from __future__ import annotations

from itertools import count
from typing import Any

import httpx

from ogpu_node.errors import OgpuError

DEFAULT_RPC = "http://127.0.0.1:8545"
_ids = count(1)


class RpcCallError(OgpuError):
    """The node answered with a JSON-RPC error, or could not be reached."""

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


def rpc_call(url: str, method: str, params: dict[str, Any] | None = None,
             timeout: float = 10.0) -> Any:
    """Call `method` on the node at `url` and return its result, or raise `RpcCallError`."""
    body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params or {}}
    try:
        response = httpx.post(url, json=body, timeout=timeout)
        reply = response.json()
    except httpx.HTTPError as exc:
        raise RpcCallError(f"cannot reach the node at {url}: {exc}") from exc
    except ValueError as exc:
        raise RpcCallError(f"{url} did not answer JSON (HTTP {response.status_code})") from exc
    error = reply.get("error") if isinstance(reply, dict) else None
    if error:
        data = error.get("data")
        detail = f" ({data['code']})" if isinstance(data, dict) and "code" in data else ""
        raise RpcCallError(f"{method}: {error.get('message')}{detail}", error.get("code"), data)
    return reply["result"]
