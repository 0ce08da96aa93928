"""Who the peers are: what each said of its chain, and which peer runs which validator.

`PeerTable` holds what the status exchange learnt: each peer's last `Status` (chain head, height)
and the peer each validator address last spoke from (consensus polls and fetches go there; health
counts the stake it can see). `StatusExchange` is that exchange, `/ogpu/status/1`: it answers
with our chain's head and validator address, and asks every connected peer for theirs (`refresh`;
the sync's status loop calls it every `status_interval_s`). A peer on another genesis is ignored.
"""

from __future__ import annotations

import trio

from ogpu_node.chain import Chain
from ogpu_node.encoding import decode, encode
from ogpu_node.errors import OgpuError
from ogpu_node.node import messages as m
from ogpu_node.types import Hash32
from p2p.errors import P2PError
from p2p.network import Network


class PeerTable:
    """What each peer last said in the status exchange."""

    def __init__(self) -> None:
        self.status: dict[str, m.Status] = {}
        """What each peer last said of its chain (for sync), by peer id."""
        self.validators: dict[bytes, str] = {}
        """The peer id each validator address last spoke from."""

    def record(self, peer: str, status: m.Status) -> None:
        """Remember what `peer` said, and that it runs `status.validator` if it names one."""
        self.status[peer] = status
        if status.validator:
            self.validators[status.validator] = peer

    def peer_of(self, validator: bytes) -> str | None:
        """The peer that runs `validator`, if we heard from it."""
        return self.validators.get(validator)

    def validator_by_peer(self) -> dict[str, bytes]:
        """Validator addresses by the peer id they last spoke from."""
        return {peer: v for v, peer in self.validators.items()}

    def most_advanced(self) -> tuple[str, m.Status] | None:
        """The peer that said the greatest height, with what it said (None: nobody spoke)."""
        if not self.status:
            return None
        return max(self.status.items(), key=lambda item: item[1].height)


class StatusExchange:
    """`/ogpu/status/1`, both ways: our status to whoever asks, theirs into the `PeerTable`."""

    def __init__(self, chain: Chain, network: Network, genesis_hash: Hash32, validator: bytes,
                 table: PeerTable, request_timeout_s: float) -> None:
        self.chain = chain
        self.network = network
        self.genesis_hash = genesis_hash
        self.validator = validator
        """Our validator address, empty when we do not validate."""
        self.table = table
        self.request_timeout_s = request_timeout_s

    async def on_status_request(self, peer: str, data: bytes) -> bytes:
        """Our chain, genesis, head and validator address."""
        decode(m.StatusRequest, data)
        state = self.chain.state
        return encode(m.Status(state.chain_id, self.genesis_hash, state.height, state.block_hash,
                               self.validator))

    async def refresh(self) -> None:
        """Ask every connected peer for its status at once; record the answers on our genesis
        (a peer that fails or is late keeps what it said before)."""
        peers = [p.peer_id for p in self.network.peers()]
        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(self._ask, peer)

    async def _ask(self, peer: str) -> None:
        try:
            with trio.fail_after(self.request_timeout_s):
                raw = await self.network.request(peer, m.PROTO_STATUS, encode(m.StatusRequest()))
            status = decode(m.Status, raw)
        except (P2PError, OgpuError, trio.TooSlowError):
            return
        if status.genesis_hash != self.genesis_hash:
            return
        self.table.record(peer, status)
