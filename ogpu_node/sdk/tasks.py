"""What the async and the blocking clients share beyond the wire: ids and addresses as the node
reads them, file checks, signing, and the rules of submitting and watching a task. Pure
functions, no I/O."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ogpu_node.address import address_from_text, address_to_text
from ogpu_node.blobs import MAX_FILE_CHUNKS, Manifest, blob_id, file_id
from ogpu_node.encoding import encode
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Transaction, sign_transaction
from ogpu_node.ledger.market.payloads import SubmitTask
from ogpu_node.ledger.tx import Payload
from ogpu_node.result_crypto import ResultKeyError, open_output
from ogpu_node.sdk.answers import ChainStatus, Task, TxReceipt
from ogpu_node.sdk.errors import FeeRefused, RpcCallError
from ogpu_node.types import Amount, Hash32, parse_amount
from ogpu_node.workloads.kinds import WorkloadSpec

MAX_AUTO_FEE = parse_amount("1")
"""The most the helpers pay when they take the fee from the node (the chain's `min_fee` in
`chain_status`, which governance may move): a node asking more is refused, not paid."""
DEFAULT_SEND_TIMEOUT_S = 30.0
"""Seconds the helpers wait for a transaction to be final."""


def chosen_fee(fee: int | None, status: ChainStatus) -> int:
    """`fee`, or when None the chain's least fee now (`status["minFee"]`), refused (`FeeRefused`)
    above `MAX_AUTO_FEE`."""
    if fee is not None:
        return fee
    least = int(status["minFee"])
    if least > MAX_AUTO_FEE:
        raise FeeRefused(f"the node says the least fee is {least} base units, over the "
                         f"{MAX_AUTO_FEE} the SDK pays unasked: pass fee= to pay it")
    return least


@dataclass(frozen=True)
class TaskTerms:
    """What a client offers for a task: up to `max_price` base units per work unit, from
    providers of at least `min_benchmark`; each provider gets `exec_ms` from its award, and the
    task may be offered again while `ttl_ms` from submission allows."""

    max_price: int
    min_benchmark: int = 0
    exec_ms: int = 60_000
    ttl_ms: int = 600_000


@dataclass(frozen=True)
class TaskOutput:
    """A task's view (`task_get`) and its output, opened."""

    task: Task
    data: bytes


def hex_id(value: bytes | str) -> str:
    """A hash or id as the node reads it: 64 hex digits (`0x` allowed in text)."""
    return value.hex() if isinstance(value, bytes) else value.removeprefix("0x")


def address_text(value: bytes | str) -> str:
    """An address as the node reads it (`ogpu1...`); text is checked here, so a typo fails
    before anything is sent."""
    if isinstance(value, bytes):
        return address_to_text(value)
    address_from_text(value)
    return value


def chunks_of(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def sent_chunk(chunk: bytes, chunk_hex: str) -> bytes:
    """`chunk`, which the node sent as chunk `chunk_hex`, once its id matches."""
    if blob_id(chunk).hex() != chunk_hex:
        raise RpcCallError(f"the node sent bytes that are not chunk {chunk_hex}")
    return chunk


def stored_chunk(chunk: bytes, chunk_hex: str) -> str:
    """The id `chunk_hex` under which the node stored `chunk`, once it matches."""
    if blob_id(chunk).hex() != chunk_hex:
        raise RpcCallError("the node stored a chunk under another id")
    return chunk_hex


def manifest_chunks(manifest: Any, file_hex: str) -> list[str]:
    """The chunk ids of the manifest the node sent for file `file_hex`, once it is that file's
    (the file id is the manifest's own id): checked before any chunk is fetched, so a node
    cannot make a client download chunks without end for a file it does not have."""
    try:
        chunks = tuple(Hash32(bytes.fromhex(c)) for c in manifest["chunks"])
        sent = Manifest(int(manifest["size"]), chunks)
        ok = len(chunks) <= MAX_FILE_CHUNKS and blob_id(encode(sent)).hex() == file_hex
    except (KeyError, TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise RpcCallError(f"the node sent a manifest that is not file {file_hex}'s")
    return [c.hex() for c in chunks]


def check_file(data: bytes, file_hex: str, *, sent: bool = False) -> bytes:
    """The file id of `data`, once it matches `file_hex` (the node's answer, or the id asked
    for when the node `sent` the data)."""
    fid = file_id(data)
    if fid.hex() != file_hex:
        if sent:
            raise RpcCallError(f"the downloaded file does not match its id {file_hex}")
        raise RpcCallError("the node stored the file under another id")
    return bytes(fid)


def sign(key: PrivateKey, chain_id: str, nonce: int, fee: int, payload: Payload) -> Transaction:
    return sign_transaction(key, chain_id=chain_id, nonce=int(nonce), fee=fee, payload=payload)


def submit_payload(spec: WorkloadSpec, terms: TaskTerms) -> SubmitTask:
    """The `SubmitTask` of `spec` under `terms`; `RpcCallError` naming every problem of the
    spec (checked here so that a bad spec costs no fee)."""
    problems = spec.problems()
    if problems:
        raise RpcCallError(f"{type(spec).__name__}: " + "; ".join(problems))
    return SubmitTask(spec.KIND, encode(spec), Amount(terms.max_price), terms.min_benchmark,
                      terms.exec_ms, terms.ttl_ms)


def task_id_of(receipt: TxReceipt) -> str:
    """The id of the task a final submission created (the transaction's hash)."""
    if receipt["state"] != "finalized":
        raise RpcCallError(f"the task was not submitted: {receipt['state']} "
                           f"{receipt.get('reason') or ''}".rstrip())
    return receipt["hash"]


def task_pending(task_hex: str, receipt: TxReceipt) -> None:
    """Nothing while the submission `task_hex` is pending; otherwise no such task."""
    if receipt["state"] != "pending":
        raise RpcCallError(f"no task {task_hex} (its submission is {receipt['state']})")


def task_closed(view: Mapping[str, Any]) -> bool:
    return bool(view["status"] == "closed")


def open_result(key: PrivateKey, view: Task, data: bytes) -> TaskOutput:
    """The output `data` of the task `view` opened with its client's `key`."""
    if address_to_text(key.address) != view["client"]:
        raise ResultKeyError(f"only the task's client ({view['client']}) can open its result")
    return TaskOutput(view, open_output(key, view, data))


def tx_hex(tx: Transaction | bytes) -> str:
    return (tx if isinstance(tx, bytes) else tx.encoded).hex()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def with_limit(params: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """`params` with `limit` when given (the node's default otherwise)."""
    return params if limit is None else {**params, "limit": limit}


def task_list_params(status: str | None, client: bytes | str | None,
                     provider: bytes | str | None, open: bool,
                     limit: int | None) -> dict[str, Any]:
    """The params of `task_list` (addresses checked here)."""
    return with_limit({"status": status, "open": open,
                       "client": None if client is None else address_text(client),
                       "provider": None if provider is None else address_text(provider)},
                      limit)

