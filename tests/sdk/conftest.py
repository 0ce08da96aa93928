"""Fixtures of the SDK tests: the real RPC server over a `LocalNode`, in the test's own trio
loop (for `Client` under trio) or in a thread of its own (for `Client` under asyncio and for
the blocking `SyncClient`)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from tests.rpc import conftest as rpc_fixtures
from tests.rpc.conftest import serving
from tests.rpc.local_node import LocalNode

T = TypeVar("T")

node = rpc_fixtures.node
rpc = rpc_fixtures.rpc
"""The RPC tests' fixtures: a `LocalNode`, and the server over it with a plain client."""
STARTUP_S = 30.0


def assert_shape(answer: Mapping[str, Any], typed: type) -> None:
    """Every key the SDK's TypedDict `typed` declares is in the node's `answer`."""
    missing = set(typed.__required_keys__) - set(answer)  # type: ignore[attr-defined]
    assert not missing, f"{typed.__name__} declares keys the node does not send: {missing}"


async def produce_blocks(local: LocalNode) -> None:
    """Finalise whatever arrives, one block per arrival."""
    while True:
        await local.wait_until(lambda: bool(local.mempool))
        local.produce_block()


@asynccontextmanager
async def producing(local: LocalNode) -> AsyncIterator[None]:
    """Blocks are produced for every arrival while inside."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce_blocks, local)
        yield
        nursery.cancel_scope.cancel()


@dataclass
class ThreadedNode:
    """A node served by a trio loop in another thread; `run` calls into that loop."""

    node: LocalNode
    url: str
    token: trio.lowlevel.TrioToken

    def run(self, func: Callable[..., T], *args: Any) -> T:
        return trio.from_thread.run_sync(func, *args, trio_token=self.token)


@pytest.fixture
def threaded_node(tmp_path: Path) -> Iterator[ThreadedNode]:
    local = LocalNode(blob_root=tmp_path / "blobs")
    ready = threading.Event()
    served: dict[str, Any] = {}

    async def serve() -> None:
        async with serving(local) as server:
            served["stop"] = trio.Event()
            served["url"] = server.address.http_url
            served["token"] = trio.lowlevel.current_trio_token()
            ready.set()
            await served["stop"].wait()

    thread = threading.Thread(target=trio.run, args=(serve,), name="rpc-node")
    thread.start()
    try:
        if not ready.wait(STARTUP_S):
            raise RuntimeError("the RPC server did not start")
        threaded = ThreadedNode(local, served["url"], served["token"])
        try:
            yield threaded
        finally:
            threaded.run(served["stop"].set)
    finally:
        thread.join()
