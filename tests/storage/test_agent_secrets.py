"""Agents' secrets (`ogpu_node.agents.secrets`) in the node's LevelDB: a sealed bid, a sealed
verdict or a result's ephemeral key written before its commitment leaves the node is there
after a restart, and the chain's own records never see it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ogpu_node.agents.secrets import AgentSecrets
from ogpu_node.chain import Chain
from ogpu_node.storage import ChainStore, InvalidCommit, LevelDBKV, MemoryKV
from tests.rpc.local_node import make_genesis


def open_chain(path: Path) -> Chain:
    return Chain.open(ChainStore(LevelDBKV(str(path))), make_genesis())


def test_secrets_outlive_a_restart_and_are_forgotten_on_request(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "chain")
    bids, votes = AgentSecrets(chain.store, "bid"), AgentSecrets(chain.store, "verdict")
    task = b"\x11" * 32
    bids.put((task, 1), (1_000, b"salt"))
    votes.put((task, b"", 1, 2), (0, "matmul_mismatch", b"vote-salt"))
    chain.store.close()

    chain = open_chain(tmp_path / "chain")  # the node restarts
    bids, votes = AgentSecrets(chain.store, "bid"), AgentSecrets(chain.store, "verdict")
    assert bids.get((task, 1)) == [1_000, b"salt"]
    assert votes.get((task, b"", 1, 2)) == [0, "matmul_mismatch", b"vote-salt"]
    assert bids.get((task, 2)) is None
    assert bids.recorded() == [[task, 1]] and votes.recorded() == [[task, b"", 1, 2]]
    bids.forget((task, 1))
    assert bids.get((task, 1)) is None and votes.get((task, b"", 1, 2)) is not None
    assert chain.state.root == make_genesis().state().root  # not chain state
    chain.store.close()


def test_no_secret_is_written_before_the_genesis() -> None:
    """A store holding a secret but no schema would not open again."""
    store = ChainStore(MemoryKV())
    with pytest.raises(InvalidCommit):
        AgentSecrets(store, "bid").put((b"t", 1), (1, b"s"))
    assert AgentSecrets(store, "bid").recorded() == []
