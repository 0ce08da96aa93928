"""`/ogpu/result-key/1`: how a committee member gets the key that opens the claim it checks.

A task's result and a pool's answer are sealed (`ogpu_node.result_crypto`). A member asks the
peers it is connected to for the provider's ephemeral key of the claim (a task's attempt, or a
pool request); the provider's node answers only a peer proven (by a signed validator claim,
`node/identity.py`) to run a validator on that claim's current committee, while the committee
checks, and only over the Noise-encrypted stream libp2p gives every request. Anyone else gets
an empty answer. The member checks what it gets against the claim's commitment, so a wrong
answer from any peer costs it nothing but a retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import trio

from ogpu_node.encoding import decode, encode, read_array, read_bytes, read_uint
from ogpu_node.errors import DecodeError, OgpuError
from ogpu_node.ledger import State
from ogpu_node.ledger.market.records import RequestStatus, TaskStatus
from ogpu_node.node.node import Node
from ogpu_node.result_crypto import KEY_BYTES, ResultKey, ResultKeyError, member_key
from ogpu_node.types import HASH_LEN, Hash32

log = logging.getLogger("ogpu.result_keys")

PROTO_RESULT_KEY = "/ogpu/result-key/1"


class ResultKeyUnavailable(OgpuError):
    """No connected peer gave the key of the result (its provider is gone or withholds it)."""


@dataclass(frozen=True)
class ResultKeyRequest:
    """The claim: a task (`request_id` empty) at `attempt`, or a request of pool `target`."""

    target: Hash32
    request_id: bytes
    attempt: int

    MAX_BYTES: ClassVar[int] = 96

    def to_fields(self) -> list[Any]:
        return [self.target, self.request_id, self.attempt]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        target, request_id, attempt = read_array(value, 3, "result_key_request")
        request = read_bytes(request_id, "result_key_request.request_id", max_len=HASH_LEN)
        if request and len(request) != HASH_LEN:
            raise DecodeError("result_key_request.request_id: 32 bytes or none")
        return cls(Hash32(read_bytes(target, "result_key_request.target", size=HASH_LEN)),
                   request, read_uint(attempt, "result_key_request.attempt"))


@dataclass(frozen=True)
class ResultKeyResponse:
    key: bytes
    """The provider's ephemeral private key of the attempt; empty when not given."""

    MAX_BYTES: ClassVar[int] = 48

    def to_fields(self) -> list[Any]:
        return [self.key]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (key,) = read_array(value, 1, "result_key_response")
        return cls(read_bytes(key, "result_key_response.key", max_len=KEY_BYTES))


def may_have_key(state: State, request: ResultKeyRequest, validator: bytes | None) -> bool:
    """Whether `validator` is on the committee checking the claim now."""
    if validator is None:
        return False
    if request.request_id:
        pool = state.pools.get(request.target)
        answer = pool.request(request.request_id) if pool else None
        return (answer is not None and request.attempt == 0
                and answer.status == RequestStatus.VERIFYING and answer.check is not None
                and validator in answer.check.committee)
    task = state.tasks.get(request.target)
    return (task is not None and task.attempt.number == request.attempt
            and task.status == TaskStatus.VERIFYING and task.attempt.check is not None
            and validator in task.attempt.check.committee)


def serve_result_keys(node: Node,
                      key_of: Callable[[Hash32, bytes, int], bytes | None]) -> None:
    """Answer `/ogpu/result-key/1` with `key_of(target, request_id, attempt)` for the members
    of its claim's committee (see the module docstring)."""

    async def on_request(peer: str, data: bytes) -> bytes:
        request = decode(ResultKeyRequest, data)
        validator = node.peer_table.validator_of(peer)
        key = None
        if may_have_key(node.chain.state, request, validator):
            key = key_of(request.target, request.request_id, request.attempt)
        return encode(ResultKeyResponse(key or b""))

    node.network.set_handler(PROTO_RESULT_KEY, on_request)


async def fetch_result_key(node: Node, target: Hash32, request_id: bytes, attempt: int,
                           commitment: bytes, client_ed25519: bytes, *, attempts: int,
                           retry_s: float) -> ResultKey:
    """The key of a claim (a task's attempt, or a pool request), from whichever connected peer
    gives the ephemeral key its commitment names; `ResultKeyUnavailable` after `attempts`
    rounds. `client_ed25519` is the key of whom it is sealed for (the client, or the pool's
    owner)."""
    request = encode(ResultKeyRequest(target, request_id, attempt))
    item = request_id or bytes(target)  # what the files' key is bound to
    for round_ in range(attempts):
        if round_:
            await trio.sleep(retry_s)
        for peer in node.network.peers():
            try:
                answer = decode(ResultKeyResponse,
                                await node.network.request(peer.peer_id, PROTO_RESULT_KEY,
                                                           request))
                if answer.key:
                    return member_key(answer.key, commitment, client_ed25519, item, attempt)
            except OgpuError as exc:  # a network or decoding error, or a wrong key: ask on
                if isinstance(exc, ResultKeyError):
                    log.warning("peer %s gave a key that does not match the result of %s",
                                peer.peer_id, item.hex()[:12])
    raise ResultKeyUnavailable(f"no peer gave the key of {item.hex()[:12]}'s result")
