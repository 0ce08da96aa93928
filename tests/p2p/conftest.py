"""A cluster of started nodes of either network implementation, fully connected."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
from trio.testing import MockClock

from p2p.libp2p_host import Libp2pConfig, Libp2pNetwork
from p2p.memory import MemoryHub, MemoryNetwork
from p2p.network import Limits, Network

KINDS = ["memory", "libp2p"]


@dataclass
class Cluster:
    nodes: list[Network]
    spare_peer_id: str
    """The id of a node that exists but never serves (for unreachable-peer tests)."""
    kind: str


ClusterFactory = Callable[..., AbstractAsyncContextManager[Cluster]]


def _make(kind: str, hub: MemoryHub, index: int, limits: Limits) -> Network:
    if kind == "memory":
        node: MemoryNetwork = hub.node(f"n{index}", limits=limits)
        return node
    return Libp2pNetwork.from_seed(bytes([index + 1]) * 32, Libp2pConfig(limits=limits))


@pytest.fixture
def clock() -> MockClock:
    """Trio's clock for a test that uses it: real speed (libp2p needs time to pass), but
    `clock.jump(s)` moves it on at once, for refills, decay and ban expiry."""
    return MockClock(rate=1.0)


@pytest.fixture(params=KINDS)
def open_cluster(request: pytest.FixtureRequest) -> ClusterFactory:
    """`async with open_cluster(n=3, limits={i: Limits(...)}) as cluster:` starts `n` nodes of
    the implementation under test, connects every pair, and stops them all on exit."""
    kind: str = request.param

    @asynccontextmanager
    async def open_cluster(
        n: int = 3, limits: Mapping[int, Limits] | None = None
    ) -> AsyncIterator[Cluster]:
        hub = MemoryHub(seed=1)
        nodes = [_make(kind, hub, i, (limits or {}).get(i, Limits())) for i in range(n)]
        spare = _make(kind, hub, n, Limits())
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.serve)  # type: ignore[attr-defined]
            for i, a in enumerate(nodes):
                for b in nodes[i + 1 :]:
                    assert await a.connect(b.listen_addrs[0]) == b.peer_id
            yield Cluster(nodes, spare.peer_id, kind)
            nursery.cancel_scope.cancel()

    return open_cluster
