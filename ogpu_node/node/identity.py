"""Which peer is which validator: a validator's signed claim of the libp2p peer it runs as.

A node votes with the stake of the validators it polls, so the map from validator to peer decides
whose chits count. A peer's word is not enough (any process could answer status requests with a
validator's address and collect its queries). The claim is a signature by the validator's key
over the chain's genesis hash and the peer id the node runs as, sent in the status exchange; the
receiver accepts it only for the peer id that libp2p's Noise handshake authenticated for that
connection. Replaying a validator's claim therefore needs that validator's node key as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ogpu_node.encoding import pack, read_array, read_bytes
from ogpu_node.errors import OgpuError, SignatureError
from ogpu_node.keys import PrivateKey, address_of, verify
from ogpu_node.types import PUBKEY_LEN, SIGNATURE_LEN, Address

SIGN_KIND_PEER = "peer"
MAX_PEER_ID_LEN = 128
"""Longest peer id (base58 text) a claim names; libp2p's Ed25519 ids are 52 characters."""


class InvalidClaim(OgpuError):
    """A validator claim that does not prove what it says."""

    code = "invalid_validator_claim"


@dataclass(frozen=True, slots=True)
class ValidatorClaim:
    """`public_key`'s validator says it runs the node whose libp2p peer id was signed."""

    public_key: bytes
    signature: bytes

    MAX_BYTES: ClassVar[int] = 128

    def to_fields(self) -> list[Any]:
        return [self.public_key, self.signature]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        key, signature = read_array(value, 2, "validator_claim")
        return cls(read_bytes(key, "validator_claim.public_key", size=PUBKEY_LEN),
                   read_bytes(signature, "validator_claim.signature", size=SIGNATURE_LEN))

    @property
    def validator(self) -> Address:
        """The address claimed (the key's; only `verify_claim` says the claim holds)."""
        return address_of(self.public_key)


def _claimed(genesis_hash: bytes, peer_id: str) -> bytes:
    return pack([genesis_hash, peer_id])


def make_claim(key: PrivateKey, chain_id: str, genesis_hash: bytes, peer_id: str
               ) -> ValidatorClaim:
    """The claim that validator `key` runs the node of `peer_id` on this chain."""
    return ValidatorClaim(key.public_key.raw,
                          key.sign(chain_id, SIGN_KIND_PEER, _claimed(genesis_hash, peer_id)))


def verify_claim(claim: ValidatorClaim, chain_id: str, genesis_hash: bytes, peer_id: str
                 ) -> Address:
    """The validator address `claim` proves for the connection authenticated as `peer_id`, or
    `InvalidClaim`. One signature check: callers check claims only when they change."""
    if len(peer_id) > MAX_PEER_ID_LEN:
        raise InvalidClaim("peer id too long")
    try:
        verify(claim.public_key, chain_id, SIGN_KIND_PEER, _claimed(genesis_hash, peer_id),
               claim.signature)
    except SignatureError as exc:
        raise InvalidClaim(f"the claim is not signed by its key for peer {peer_id}") from exc
    return claim.validator


class ValidatorPeers:
    """Validator address <-> peer id, changed only by verified claims.

    A validator keeps the peer it was first proven on while that peer stays connected: a second
    peer proving the same validator (the operator's second node, or a stolen node key) does not
    take its place. A peer that proves another validator moves to it."""

    def __init__(self) -> None:
        self._peer_of: dict[bytes, str] = {}
        self._validator_of: dict[str, bytes] = {}

    def bind(self, validator: bytes, peer: str, connected: set[str]) -> bool:
        """Map `validator` to `peer` (its claim verified); False when another connected peer
        holds it already."""
        holder = self._peer_of.get(validator)
        if holder == peer:
            return True
        if holder is not None and holder in connected:
            return False
        self.forget_peer(peer)
        if holder is not None:
            self._validator_of.pop(holder, None)
        self._peer_of[validator] = peer
        self._validator_of[peer] = validator
        return True

    def forget_peer(self, peer: str) -> None:
        """Drop `peer`'s binding (it disconnected, or stopped claiming)."""
        validator = self._validator_of.pop(peer, None)
        if validator is not None and self._peer_of.get(validator) == peer:
            del self._peer_of[validator]

    def peer_of(self, validator: bytes) -> str | None:
        return self._peer_of.get(validator)

    def validator_of(self, peer: str) -> bytes | None:
        return self._validator_of.get(peer)

    def items(self) -> list[tuple[bytes, str]]:
        """(validator, peer) pairs."""
        return list(self._peer_of.items())
