"""Containing what should never happen, and what a hostile peer does.

`contained`: an unexpected exception in one node service.

Every input a node handles is checked and refused with a typed error, but a bug reached by some
input must not end the node's nursery (and with it the node): `contained(where)` logs the
exception with its traceback, counts it by service in `CONTAINED` (exported as
`ogpu_node_contained_errors_total{service=...}`), and lets the service go on with its next
input. Cancellation (a `BaseException`) passes through, and so do typed rejections when the
caller handles them itself first.

`report`: a peer that sent something invalid on its own (a forged transaction, a block that
fails validation, a message that does not decode) is reported to the network, which bans it
for a while once its penalties add up (`p2p.peer_guard`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from p2p.errors import P2PError
from p2p.network import Network
from p2p.peer_guard import Offence

log = logging.getLogger("ogpu.node")

CONTAINED: Counter[str] = Counter()
"""Unexpected exceptions contained so far, by service (one process, one node)."""


@contextmanager
def contained(where: str) -> Iterator[None]:
    """Run a block of service `where`; an unexpected exception is logged, counted and ends the
    block only."""
    try:
        yield
    except Exception:
        CONTAINED[where] += 1
        log.exception("unexpected error in %s (contained; the node goes on)", where)


def report(network: Network, peer: str, offence: Offence) -> None:
    """Hold `offence` against `peer` (the network bans a peer whose penalties add up); a peer
    that left or is ourselves is not an error."""
    try:
        if network.report(peer, offence):
            log.warning("peer %s banned after %s", peer, offence.value)
    except P2PError as exc:
        log.debug("could not report %s: %s", peer, exc)
