"""Who the peers are: what each said of its chain, and which peer runs which validator.

`PeerTable` holds what the status exchange learnt: each connected peer's last `Status` (chain
head, height) and when it said it, and which peer runs which validator (consensus polls and
fetches go there, chits count only from there, health counts the stake it can see, sync counts
its heights). `StatusExchange` is that exchange, `/ogpu/status/2`: it answers with our chain's
head and, when we validate, our validator's claim to run as this peer (`identity.py`); it asks
every connected peer for theirs (`refresh`; the sync's status loop calls it every
`status_interval_s`). A validator is mapped to a peer only on a claim signed by its key for
that peer's id: a peer's word proves nothing. A peer on another genesis is ignored; a peer that
disconnects, or that has not answered for `STALE_AFTER_ROUNDS` rounds, leaves the table.
"""

from __future__ import annotations

import logging
from collections.abc import Container

import trio

from ogpu_node.chain import Chain
from ogpu_node.encoding import decode, encode
from ogpu_node.errors import OgpuError
from ogpu_node.keys import PrivateKey
from ogpu_node.node import messages as m
from ogpu_node.node.identity import (
    InvalidClaim,
    ValidatorClaim,
    ValidatorPeers,
    make_claim,
    verify_claim,
)
from ogpu_node.types import Hash32
from p2p.errors import P2PError
from p2p.network import Network

log = logging.getLogger("ogpu.node")

STALE_AFTER_ROUNDS = 5
"""Status rounds a connected peer may miss before what it said is forgotten."""


class PeerTable:
    """What each connected peer last said in the status exchange, and who proved what."""

    def __init__(self) -> None:
        self.status: dict[str, m.Status] = {}
        """What each peer last said of its chain (for sync), by peer id."""
        self.heard_at: dict[str, float] = {}
        """When each peer last answered (trio time)."""
        self.validators = ValidatorPeers()
        """Validator <-> peer, from verified claims only."""
        self._verified: dict[str, ValidatorClaim] = {}
        """The claim each peer proved last (a claim is checked once, not every round)."""

    def record(self, peer: str, status: m.Status, now: float) -> None:
        """Remember what `peer` said (its claim, if any, is checked by `prove`)."""
        self.status[peer] = status
        self.heard_at[peer] = now

    def prove(self, peer: str, claim: ValidatorClaim | None, chain_id: str,
              genesis_hash: bytes, connected: set[str], validators: Container[bytes]
              ) -> bytes | None:
        """Bind `peer` to the validator its claim proves, if the claim is signed for this peer
        by that validator's key and that key is in `validators` (the current set: a throwaway
        key proves nothing worth binding); returns the validator, or None. A peer that stops
        claiming, or claims falsely, loses its binding. Raises nothing: a false claim is
        logged."""
        if claim is None or bytes(claim.validator) not in validators:
            self._verified.pop(peer, None)
            self.validators.forget_peer(peer)
            return None
        if self._verified.get(peer) != claim:
            try:
                verify_claim(claim, chain_id, genesis_hash, peer)
            except InvalidClaim as exc:
                log.warning("peer %s: %s", peer, exc)
                self._verified.pop(peer, None)
                self.validators.forget_peer(peer)
                return None
            self._verified[peer] = claim
        validator = bytes(claim.validator)
        if not self.validators.bind(validator, peer, connected):
            log.info("peer %s proves validator %s, which peer %s holds: kept there", peer,
                     validator.hex()[:12], self.validators.peer_of(validator))
            return None
        return validator

    def prune(self, connected: set[str], now: float, stale_after_s: float) -> None:
        """Forget peers that disconnected or went quiet for `stale_after_s`."""
        for peer in list(self.status):
            if peer not in connected or now - self.heard_at[peer] > stale_after_s:
                self.forget(peer)
        for _, peer in self.validators.items():
            if peer not in connected:
                self.forget(peer)

    def forget(self, peer: str) -> None:
        self.status.pop(peer, None)
        self.heard_at.pop(peer, None)
        self._verified.pop(peer, None)
        self.validators.forget_peer(peer)

    def peer_of(self, validator: bytes) -> str | None:
        """The peer proven to run `validator`."""
        return self.validators.peer_of(validator)

    def validator_of(self, peer: str) -> bytes | None:
        """The validator `peer` proved it runs."""
        return self.validators.validator_of(peer)

    def validator_by_peer(self) -> dict[str, bytes]:
        """Proven validator addresses by peer id."""
        return {peer: v for v, peer in self.validators.items()}

    def validator_heights(self) -> dict[bytes, int]:
        """The height each proven validator last reported."""
        return {v: self.status[peer].height for v, peer in self.validators.items()
                if peer in self.status}


class StatusExchange:
    """`/ogpu/status/2`, both ways: our status to whoever asks, theirs into the `PeerTable`."""

    def __init__(self, chain: Chain, network: Network, genesis_hash: Hash32,
                 key: PrivateKey | None, table: PeerTable, request_timeout_s: float,
                 status_interval_s: float) -> None:
        self.chain = chain
        self.network = network
        self.genesis_hash = genesis_hash
        self.claim = (None if key is None else
                      make_claim(key, chain.state.chain_id, genesis_hash, network.peer_id))
        """Our validator's claim to run as our peer id; None when we do not validate."""
        self.table = table
        self.request_timeout_s = request_timeout_s
        self.stale_after_s = STALE_AFTER_ROUNDS * max(status_interval_s, request_timeout_s)

    async def on_status_request(self, peer: str, data: bytes) -> bytes:
        """Our chain, genesis, head and validator claim."""
        decode(m.StatusRequest, data)
        state = self.chain.state
        return encode(m.Status(state.chain_id, self.genesis_hash, state.height, state.block_hash,
                               self.claim))

    async def refresh(self) -> None:
        """Ask every connected peer for its status at once; record the answers on our genesis
        (a peer that fails or is late keeps what it said before, until it is stale)."""
        peers = [p.peer_id for p in self.network.peers()]
        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(self._ask, peer)
        self.table.prune({p.peer_id for p in self.network.peers()}, trio.current_time(),
                         self.stale_after_s)

    async def _ask(self, peer: str) -> None:
        try:
            with trio.fail_after(self.request_timeout_s):
                raw = await self.network.request(peer, m.PROTO_STATUS, encode(m.StatusRequest()))
            status = decode(m.Status, raw)
        except (P2PError, OgpuError, trio.TooSlowError):
            return
        if status.genesis_hash != self.genesis_hash or status.chain_id != self.chain.state.chain_id:
            return
        self.table.record(peer, status, trio.current_time())
        self.table.prove(peer, status.claim, status.chain_id, self.genesis_hash,
                         {p.peer_id for p in self.network.peers()},
                         self.chain.state.validator_by_address)
