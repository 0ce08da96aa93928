"""Validator claims: only a claim signed by the validator's key, for the peer id of the
connection it arrives on, maps a validator to a peer."""

from __future__ import annotations

import pytest

from ogpu_node.encoding import decode, encode
from ogpu_node.errors import DecodeError
from ogpu_node.node.identity import (
    InvalidClaim,
    ValidatorClaim,
    ValidatorPeers,
    make_claim,
    verify_claim,
)
from ogpu_node.node.peers import PeerTable
from tests.ledger.helpers import KEYS

CHAIN = "ogpu-test"
GENESIS = b"\7" * 32
VALIDATOR, OTHER = KEYS[0], KEYS[1]
PEER, IMPOSTOR = "12D3KooWPeerOfTheValidator", "12D3KooWImpostor"


def test_a_claim_proves_its_validator_for_its_peer() -> None:
    claim = decode(ValidatorClaim, encode(make_claim(VALIDATOR, CHAIN, GENESIS, PEER)))
    assert verify_claim(claim, CHAIN, GENESIS, PEER) == VALIDATOR.address


@pytest.mark.parametrize("where", ["another peer", "another chain", "another genesis"])
def test_a_claim_replayed_elsewhere_proves_nothing(where: str) -> None:
    """An impostor that copies a validator's claim from its status answer cannot use it: the
    claim names the validator's own peer id, which only its node key can authenticate."""
    claim = make_claim(VALIDATOR, CHAIN, GENESIS, PEER)
    peer, chain, genesis = PEER, CHAIN, GENESIS
    if where == "another peer":
        peer = IMPOSTOR
    elif where == "another chain":
        chain = "ogpu-other"
    else:
        genesis = b"\x08" * 32
    with pytest.raises(InvalidClaim):
        verify_claim(claim, chain, genesis, peer)


def test_a_claim_signed_by_another_key_proves_nothing() -> None:
    forged = ValidatorClaim(VALIDATOR.public_key.raw,
                            make_claim(OTHER, CHAIN, GENESIS, IMPOSTOR).signature)
    with pytest.raises(InvalidClaim):
        verify_claim(forged, CHAIN, GENESIS, IMPOSTOR)


def test_malformed_claims_are_decode_errors() -> None:
    with pytest.raises(DecodeError):
        decode(ValidatorClaim, encode(ValidatorClaim(b"\1" * 31, b"\2" * 64)))


def test_a_validator_keeps_its_peer_while_connected() -> None:
    table = ValidatorPeers()
    v = bytes(VALIDATOR.address)
    assert table.bind(v, PEER, {PEER})
    assert not table.bind(v, IMPOSTOR, {PEER, IMPOSTOR})
    assert table.peer_of(v) == PEER and table.validator_of(IMPOSTOR) is None
    # once the first peer is gone, a second peer proving the same key takes over
    assert table.bind(v, IMPOSTOR, {IMPOSTOR})
    assert table.peer_of(v) == IMPOSTOR and table.validator_of(PEER) is None


def test_a_peer_that_proves_another_validator_moves_to_it() -> None:
    table = ValidatorPeers()
    first, second = bytes(VALIDATOR.address), bytes(OTHER.address)
    table.bind(first, PEER, {PEER})
    table.bind(second, PEER, {PEER})
    assert table.peer_of(first) is None and table.peer_of(second) == PEER
    table.forget_peer(PEER)
    assert table.items() == []


def test_a_claim_by_a_key_outside_the_validator_set_binds_nothing() -> None:
    """Found in review: any fresh key could prove itself and be asked first by sync (it
    reported the greatest height) and stall it for a timeout per range. Only a key of the
    current set is bound."""
    table = PeerTable()
    outsider = make_claim(OTHER, CHAIN, GENESIS, IMPOSTOR)
    current_set = {bytes(VALIDATOR.address)}
    assert table.prove(IMPOSTOR, outsider, CHAIN, GENESIS, {IMPOSTOR}, current_set) is None
    assert table.validators.items() == []
    member = make_claim(VALIDATOR, CHAIN, GENESIS, PEER)
    assert table.prove(PEER, member, CHAIN, GENESIS, {PEER}, current_set) == VALIDATOR.address
    assert table.validator_of(PEER) == VALIDATOR.address
