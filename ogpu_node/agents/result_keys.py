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
from ogpu_node.ledger.market.records import CheckPhase, RequestStatus, TaskStatus
from ogpu_node.node.broadcast import Notifier
from ogpu_node.node.node import Node
from ogpu_node.result_crypto import KEY_BYTES, ResultKey, ResultKeyError, member_key
from ogpu_node.types import HASH_LEN, Hash32

log = logging.getLogger("ogpu.result_keys")

PROTO_RESULT_KEY = "/ogpu/result-key/1"
KEY_WAIT_S = 5.0
"""Longest a key request waits for our state to show its claim's committee (see
`committee_pending`); members ask for 4.5 s (`verifier.FETCH_ATTEMPTS`), so a provider that
lags them by a few blocks still answers in time, and a waiting request holds one of the
network's handler slots only that long."""


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


def committee_pending(state: State, request: ResultKeyRequest, provider: bytes) -> bool:
    """Whether the claim is `provider`'s and its committee is not drawn in `state` yet: a node
    that does not validate learns of finality after the validators do, so a member can ask
    for the key of a claim whose committee our state does not show yet."""
    if request.request_id:
        pool = state.pools.get(request.target)
        answer = pool.request(request.request_id) if pool else None
        return (answer is not None and request.attempt == 0 and answer.winner == provider
                and answer.status in (RequestStatus.ANSWERED, RequestStatus.VERIFYING)
                and (answer.check is None or answer.check.phase == CheckPhase.DRAWING))
    task = state.tasks.get(request.target)
    return (task is not None and task.attempt.number == request.attempt
            and task.attempt.provider == provider
            and task.status in (TaskStatus.RUNNING, TaskStatus.VERIFYING)
            and (task.attempt.check is None or task.attempt.check.phase == CheckPhase.DRAWING))


async def answer_key_request(request: ResultKeyRequest, validator: bytes | None,
                             state: Callable[[], State], changed: Notifier, provider: bytes,
                             key_of: Callable[[Hash32, bytes, int], bytes | None]) -> bytes:
    """The key for `validator` if it is on the claim's committee; else, while the claim is
    `provider`'s with its committee not drawn in our state yet, the answer waits for our state
    to catch up (`changed`: notified on each finalised block), at most `KEY_WAIT_S`; empty
    bytes when not given."""
    if validator is None:
        return b""
    with trio.move_on_after(KEY_WAIT_S):
        while True:
            change = changed.event  # taken before looking, so that no change is missed
            now = state()
            if may_have_key(now, request, validator):
                return key_of(request.target, request.request_id, request.attempt) or b""
            if not committee_pending(now, request, provider):
                return b""
            await change.wait()
    return b""


def serve_result_keys(node: Node,
                      key_of: Callable[[Hash32, bytes, int], bytes | None]) -> None:
    """Answer `/ogpu/result-key/1` with `key_of(target, request_id, attempt)` for the members
    of its claim's committee (see the module docstring and `answer_key_request`)."""
    provider = bytes(node.key.address) if node.key is not None else b""  # agents have a key

    async def on_request(peer: str, data: bytes) -> bytes:
        request = decode(ResultKeyRequest, data)
        key = await answer_key_request(request, node.peer_table.validator_of(peer),
                                       lambda: node.chain.state, node.receipts.finalized,
                                       provider, key_of)
        return encode(ResultKeyResponse(key))

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
