"""Fixtures of the storage tests: one store factory parametrised over both backends, and a
deterministic chain of block commits shared by the chain-store, restart and crash tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from hashlib import sha256
from pathlib import Path
from typing import Any, Protocol

import pytest

from ogpu_node.storage import DEFAULT_LIMITS, KVLimits, KVStore, LevelDBKV, MemoryKV, WriteHook

BlockCommit = dict[str, Any]
"""Keyword arguments of `ChainStore.commit_block`."""


class KVFactory(Protocol):
    """Makes a store of the backend under test."""

    def __call__(
        self, *, limits: KVLimits = DEFAULT_LIMITS, write_hook: WriteHook | None = None
    ) -> KVStore: ...


@pytest.fixture(params=["memory", "leveldb"])
def make_kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KVFactory]:
    """A factory of fresh stores of one backend; every store it made is closed at teardown."""
    made: list[KVStore] = []

    def make(*, limits: KVLimits = DEFAULT_LIMITS, write_hook: WriteHook | None = None) -> KVStore:
        store: KVStore
        if request.param == "memory":
            store = MemoryKV(limits=limits, write_hook=write_hook)
        else:
            store = LevelDBKV(tmp_path / f"db{len(made)}", limits=limits, write_hook=write_hook)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def kv(make_kv: KVFactory) -> KVStore:
    """A fresh store of the backend under test, with default limits and no hook."""
    return make_kv()


def _state_key(n: int) -> bytes:
    return b"acct/%04d" % n


def block_commit(height: int, n_txs: int = 5, n_state: int = 9) -> BlockCommit:
    """The commit of block `height` of a deterministic test chain.

    Block h puts state keys 3h .. 3h+n_state-1 (so most overwrite keys of block h-1) and, from
    height 1 on, deletes key 3(h-1), written by block h-1 and not rewritten here.
    """
    changes: dict[bytes, bytes | None] = {
        _state_key(3 * height + i): b"value %d.%d" % (height, i) for i in range(n_state)
    }
    if height > 0:
        changes[_state_key(3 * (height - 1))] = None
    tx_hashes = [sha256(b"tx %d/%d" % (height, i)).digest() for i in range(n_txs if height else 0)]
    return {
        "height": height,
        "block_hash": sha256(b"block %d" % height).digest(),
        "block_bytes": (b"genesis document" if height == 0 else b"block body %d " % height) * 8,
        "tx_hashes": tx_hashes,
        "state_changes": changes,
        "meta": b"state root %d" % height,
    }


def expected_state(commits: Sequence[BlockCommit]) -> dict[bytes, bytes]:
    """The state that results from applying `commits` in order (the model of the store)."""
    state: dict[bytes, bytes] = {}
    for commit in commits:
        for key, value in commit["state_changes"].items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    return state


@pytest.fixture
def make_commit() -> Callable[..., BlockCommit]:
    """`block_commit(height, n_txs=5, n_state=9)` of the deterministic test chain."""
    return block_commit


@pytest.fixture
def model() -> Callable[[Sequence[BlockCommit]], dict[bytes, bytes]]:
    """`expected_state(commits)`: the state after applying the commits in order."""
    return expected_state
