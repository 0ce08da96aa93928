"""JSON-RPC 2.0 framing: parse a message, run its call or batch, and frame the answers.

Transport-neutral: HTTP and WebSocket hand a message in and send the text that comes out. Per the
spec, notifications (calls without `id`) are run but never answered, a batch is answered with the
answers of its calls that have an id, and an empty batch or anything that is not a call object is
an invalid request. The batch limit is checked before any call runs, so an oversize batch costs
one error, not thousands.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ogpu_node.node_api import NodeApi
from ogpu_node.rpc.config import RpcConfig
from ogpu_node.rpc.errors import ErrorCode, RpcError, invalid_request
from ogpu_node.rpc.limits import ClientRateLimiter, UploadQuota
from ogpu_node.rpc.methods import CallContext, build_methods
from ogpu_node.rpc.metrics import NodeMetrics
from ogpu_node.rpc.params import bind_params
from ogpu_node.rpc.subscriptions import WsSession
from ogpu_node.rpc.views import dumps

log = logging.getLogger(__name__)

_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
_MAX_ECHOED_NAME = 64


@dataclass
class Reply:
    """The text to send (None: nothing, all were notifications) and what to run after sending."""

    text: str | None
    after_send: list[Callable[[], None]] = field(default_factory=list)


def error_answer(call_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": call_id}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _valid_id(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


class Dispatcher:
    """Runs JSON-RPC messages against a `NodeApi`, enforcing batch and rate limits."""

    def __init__(self, api: NodeApi, config: RpcConfig, metrics: NodeMetrics) -> None:
        self.api = api
        self.config = config
        self.metrics = metrics
        self.methods = build_methods(config)
        metrics.add_rpc_methods(self.methods)
        self.limiter = ClientRateLimiter(config.rate_limit_per_s, config.rate_limit_burst,
                                         config.rate_limit_clients)
        self.uploads = UploadQuota(config.upload_quota_bytes, config.upload_window_s,
                                   config.rate_limit_clients)

    async def handle(self, message: bytes | str, client: str,
                     session: WsSession | None = None) -> Reply:
        """Answer one HTTP body or WebSocket message from `client` (its IP address)."""
        try:
            request = json.loads(message, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            error = RpcError(ErrorCode.PARSE_ERROR, f"parse error: {_short(exc)}")
            return Reply(dumps(error_answer(None, error)))
        reply = Reply(None)
        if not isinstance(request, list):
            answer = await self._call(request, client, session, reply.after_send)
            reply.text = None if answer is None else dumps(answer)
            return reply
        if not request:
            return Reply(dumps(error_answer(None, invalid_request("empty batch"))))
        if len(request) > self.config.max_batch:
            self.metrics.count_rejection("batch_too_large")
            error = RpcError(ErrorCode.INVALID_REQUEST,
                             f"invalid request: batch of {len(request)} calls exceeds the limit "
                             f"of {self.config.max_batch}", {"limit": self.config.max_batch})
            return Reply(dumps(error_answer(None, error)))
        answers: list[dict[str, Any] | None] = [None] * len(request)

        async def run(index: int, call: Any) -> None:
            answers[index] = await self._call(call, client, session, reply.after_send)

        async with trio.open_nursery() as nursery:
            for index, call in enumerate(request):
                nursery.start_soon(run, index, call)
        batch = [a for a in answers if a is not None]
        reply.text = dumps(batch) if batch else None
        return reply

    async def _call(self, call: Any, client: str, session: WsSession | None,
                    after_send: list[Callable[[], None]]) -> dict[str, Any] | None:
        """Run one call; its answer, or None for a notification."""
        started = time.perf_counter()
        method: object = None
        outcome = "error"
        call_id: Any = None
        try:
            if not isinstance(call, dict):
                raise invalid_request("a call must be a JSON object")
            if "id" in call:
                if not _valid_id(call["id"]):
                    raise invalid_request("id must be a string, a number or null")
                call_id = call["id"]
            unknown = sorted(str(k) for k in call if k not in _MEMBERS)
            if unknown:
                raise invalid_request(f"unknown member {unknown[0][:_MAX_ECHOED_NAME]!r}")
            if call.get("jsonrpc") != "2.0":
                raise invalid_request('"jsonrpc" must be "2.0"')
            method = call.get("method")
            if not isinstance(method, str):
                raise invalid_request('"method" must be a string')
        except RpcError as error:
            self.metrics.observe_rpc("", "error", time.perf_counter() - started)
            return error_answer(call_id, error)
        try:
            wait = self.limiter.acquire(client, trio.current_time())
            if wait > 0:
                outcome = "rate_limited"
                self.metrics.count_rejection("rate_limited")
                raise RpcError(ErrorCode.RATE_LIMITED,
                               f"rate limited: at most {self.config.rate_limit_per_s:g} calls/s "
                               f"per client, retry in {math.ceil(wait * 1000)} ms",
                               {"retryAfterMs": math.ceil(wait * 1000)})
            spec = self.methods.get(method)
            if spec is None:
                raise RpcError(ErrorCode.METHOD_NOT_FOUND,
                               f"method not found: {method[:_MAX_ECHOED_NAME]!r}")
            args = bind_params(spec.params, call.get("params"))
            ctx = CallContext(self.api, self.config, self.uploads, client, session)
            result = await spec.handler(ctx, args)
            after_send.extend(ctx.after_response)
            outcome = "ok"
            answer: dict[str, Any] = {"jsonrpc": "2.0", "result": result, "id": call_id}
        except RpcError as error:
            if error.code == ErrorCode.UPLOAD_QUOTA_EXCEEDED:
                self.metrics.count_rejection("upload_quota")
            answer = error_answer(call_id, error)
        except Exception:
            # The client learns only that it failed; the operator gets the traceback.
            log.exception("internal error in RPC method %s", self.metrics.method_label(method))
            answer = error_answer(call_id, RpcError(ErrorCode.INTERNAL_ERROR, "internal error"))
        finally:
            self.metrics.observe_rpc(str(method), outcome, time.perf_counter() - started)
        return answer if "id" in call else None


def _short(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]
