"""Test-only adversary: a libp2p peer with no stake and no validator key that poses as a validator.

It takes the status a real validator sends (with that validator's signed claim), then, while
that validator is down, dials the other nodes, answers every status request with the stolen
status as its own, and answers consensus queries with a block nobody has, counting them.
Against a node that maps validators to peers on the peer's word, it collects that validator's
queries and its chits move votes with its stake.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ogpu_node.encoding import decode, encode
from ogpu_node.node import messages as m
from p2p.libp2p_host import Libp2pConfig, Libp2pNetwork


@dataclass
class Impostor:
    nodes: list[str]
    """Multiaddrs (with /p2p/<id>) of the nodes to pose to."""
    stolen: bytes
    """The status the victim validator sent (`steal_status`), replayed as the impostor's."""
    queries: int = 0
    status_answers: dict[str, int] = field(default_factory=dict)
    """Status requests answered, by asking peer."""
    peer_id: str = ""

    async def run(self, rounds: int, while_posing: Callable[[Impostor], None],
                  timeout_s: float = 60.0) -> None:
        """Pose until every node has asked for its status `rounds` times (each time mapping
        the victim's validator to the impostor, if it believes the claim), call `while_posing`
        (in a thread: it may block on RPC), then leave."""
        network = Libp2pNetwork.from_seed(os.urandom(32), Libp2pConfig(listen_port=0))
        self.peer_id = network.peer_id
        asked_enough = trio.Event()

        async def on_status(peer: str, data: bytes) -> bytes:
            decode(m.StatusRequest, data)
            self.status_answers[peer] = self.status_answers.get(peer, 0) + 1
            if (len(self.status_answers) == len(self.nodes)
                    and min(self.status_answers.values()) >= rounds):
                asked_enough.set()
            return self.stolen

        async def on_query(peer: str, data: bytes) -> bytes:
            decode(m.Query, data)
            self.queries += 1
            return encode(m.Chits(b"\x66" * 32))

        network.set_handler(m.PROTO_STATUS, on_status)
        network.set_handler(m.PROTO_QUERY, on_query)
        async with trio.open_nursery() as nursery:
            await nursery.start(network.serve)
            for addr in self.nodes:
                await network.connect(addr)
            with trio.fail_after(timeout_s):
                await asked_enough.wait()
            await trio.to_thread.run_sync(while_posing, self)
            nursery.cancel_scope.cancel()


async def steal_status(victim: str) -> bytes:
    """The status the validator at multiaddr `victim` sends to anyone who asks."""
    network = Libp2pNetwork.from_seed(os.urandom(32), Libp2pConfig(listen_port=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(network.serve)
        raw = await network.request(await network.connect(victim), m.PROTO_STATUS,
                                    encode(m.StatusRequest()))
        nursery.cancel_scope.cancel()
    return raw
