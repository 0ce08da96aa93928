"""How ledger and node objects look in JSON.

Conventions (see `docs/rpc.md`): names in camelCase; hashes, keys and encodings as lowercase hex
without `0x` (the form `ogpu sign` prints); addresses as `ogpu1...` text; amounts as decimal
strings of base units (they exceed the 2**53 that JSON readers keep exactly) next to an `...Ogpu`
field formatted in whole OGPU; heights, nonces, indices and times (ms) as JSON numbers.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ogpu_node.address import address_to_text
from ogpu_node.ledger import Block, InvalidTransaction, State, Transaction, TxKind
from ogpu_node.ledger.state import Tombstone
from ogpu_node.ledger.transition import next_epoch_height
from ogpu_node.ledger.tx import Stake, Transfer, Unstake
from ogpu_node.node_api import Health, NodeStatus, PeerInfo, TxReceipt
from ogpu_node.types import Address, format_amount

JsonObject = dict[str, Any]


def amount_fields(name: str, units: int) -> JsonObject:
    """`{name: "1500000000", nameOgpu: "1.5"}`."""
    return {name: str(units), name + "Ogpu": format_amount(units)}


def dumps(value: Any) -> str:
    """Compact JSON text of an answer or notification (no NaN: it is not JSON)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def status_view(status: NodeStatus) -> JsonObject:
    return {
        "chainId": status.chain_id, "nodeId": status.node_id, "moniker": status.moniker,
        "height": status.height, "headHash": status.head_hash.hex(),
        "stateRoot": status.state_root.hex(), "headTimeMs": status.head_time_ms,
        "syncing": status.syncing, "peers": status.peers, "validator": status.validator,
        "mempoolSize": status.mempool_size,
    }


def health_view(health: Health) -> JsonObject:
    return {"healthy": health.healthy,
            "reasons": [{"code": r.code, "message": r.message} for r in health.reasons],
            "details": _json_safe(health.details)}


def _json_safe(value: object) -> Any:
    """Details are free-form: keep JSON types, turn bytes into hex and anything else into text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


def receipt_view(receipt: TxReceipt) -> JsonObject:
    return {
        "hash": receipt.hash.hex(), "state": receipt.state.value, "height": receipt.height,
        "index": receipt.index, "errorCode": receipt.error_code, "reason": receipt.reason,
    }


def payload_view(tx: Transaction) -> JsonObject | None:
    """The decoded payload, or None when it does not decode (then only `payloadHex` says it)."""
    try:
        payload = tx.decode_payload()
    except InvalidTransaction:
        return None
    if isinstance(payload, Transfer):
        return {"to": address_to_text(payload.to), **amount_fields("amount", payload.amount)}
    if isinstance(payload, Stake | Unstake):
        return amount_fields("amount", payload.amount)
    return None


def kind_name(kind: int) -> str:
    try:
        return TxKind(kind).name.lower()
    except ValueError:
        return "unknown"


def tx_view(tx: Transaction) -> JsonObject:
    return {
        "hash": tx.hash.hex(), "chainId": tx.chain_id,
        "sender": address_to_text(tx.sender), "senderKey": tx.sender_key.hex(),
        "nonce": tx.nonce, **amount_fields("fee", tx.fee), "kind": kind_name(tx.kind),
        "kindId": tx.kind, "payload": payload_view(tx), "payloadHex": tx.payload.hex(),
        "signature": tx.signature.hex(), "size": len(tx.encoded),
    }


def block_view(block: Block, *, full_txs: bool) -> JsonObject:
    h = block.header
    return {
        "hash": block.hash.hex(), "height": h.height, "chainId": h.chain_id,
        "parentHash": h.parent_hash.hex(), "timestampMs": h.timestamp,
        "proposer": address_to_text(h.proposer), "txRoot": h.tx_root.hex(),
        "stateRoot": h.state_root.hex(), "signature": block.signature.hex(),
        "txCount": len(block.txs),
        "txs": [tx_view(tx) if full_txs else tx.hash.hex() for tx in block.txs],
    }


def account_view(state: State, address: Address) -> JsonObject:
    """Balance, nonce, stake and unbonding entries of `address` in the finalised `state`."""
    acct = state.account(address)
    # A scan of every unbonding entry: fine while entries number in the thousands; an index by
    # owner belongs in the ledger state once they do not.
    entries = sorted((key[0], amount) for key, amount in state.unbonding.items()
                     if key[1] == address and amount)
    return {
        "address": address_to_text(address), "height": state.height, "nonce": acct.nonce,
        **amount_fields("balance", acct.balance), **amount_fields("stake", acct.stake),
        "unbonding": [{"releaseHeight": release, **amount_fields("amount", amount)}
                      for release, amount in entries],
        **amount_fields("unbondingTotal", sum(amount for _, amount in entries)),
        "publicKey": acct.public_key.hex() or None,
        "validator": address in state.validator_by_address,
        "tombstone": tombstone_view(state.tombstones.get(address)),
    }


def tombstone_view(tombstone: Tombstone | None) -> JsonObject | None:
    """Where an account was punished for signing two blocks for one slot, and what it lost."""
    if tombstone is None:
        return None
    return {"height": tombstone.height, "slot": tombstone.slot,
            **amount_fields("slashed", tombstone.slashed)}


def validators_view(state: State) -> JsonObject:
    total = sum(v.stake for v in state.validators)
    params = state.params
    return {
        "height": state.height, "count": len(state.validators),
        **amount_fields("totalStake", total),
        # what a staker needs to know when its stake counts and when unbonding ends
        "epochLength": params.epoch_length,
        "nextEpochHeight": next_epoch_height(state.height + 1, params.epoch_length),
        "unbondingPeriod": params.unbonding_period,
        **amount_fields("minValidatorStake", params.min_validator_stake),
        "validators": [{"address": address_to_text(v.address), "publicKey": v.public_key.hex(),
                        **amount_fields("stake", v.stake)} for v in state.validators],
    }


def peer_view(peer: PeerInfo) -> JsonObject:
    return {"peerId": peer.peer_id, "addresses": list(peer.addresses),
            "validator": peer.validator}
