"""The fault tests' criteria catch what they are for (one that could not fail would pass every
fault scenario): two blocks at one height, a reported block that changed, a store missing or
altering a block its node reported final."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ogpu_node.chain import Chain
from ogpu_node.storage import ChainStore, LevelDBKV
from tests.integration.faults import assert_store_holds, check_one_chain
from tests.test_chain import grow, make_genesis


def test_one_chain_accepts_prefixes_of_one_chain() -> None:
    check_one_chain({"a": ["h1", "h2", "h3"], "b": ["h1", "h2"], "c": []},
                    {"a": {3: "h3"}, "b": {1: "h1", 2: "h2"}})


def test_one_chain_catches_two_blocks_at_one_height() -> None:
    with pytest.raises(AssertionError, match="two blocks final at height 2"):
        check_one_chain({"a": ["h1", "h2"], "b": ["h1", "x2", "x3"]}, {})


def test_one_chain_catches_a_reported_block_that_changed_or_vanished() -> None:
    with pytest.raises(AssertionError, match="reported h2 final at height 2 and now has x2"):
        check_one_chain({"a": ["h1", "x2"]}, {"a": {2: "h2"}})
    with pytest.raises(AssertionError, match="at height 3 and now has None"):
        check_one_chain({"a": ["h1", "h2"]}, {"a": {3: "h3"}})


@pytest.fixture
def home_with_blocks(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A node home (default config: data in `data/`) whose store holds 5 blocks."""
    (tmp_path / "data").mkdir()
    chain = Chain.open(ChainStore(LevelDBKV(tmp_path / "data" / "chain")), make_genesis())
    grow(chain, 5)
    hashes = []
    for height in range(1, 6):
        block = chain.block_at(height)
        assert block is not None
        hashes.append(block.hash.hex())
    chain.store.close()
    yield tmp_path, hashes


def test_a_store_holding_every_reported_block_passes(
        home_with_blocks: tuple[Path, list[str]]) -> None:
    home, hashes = home_with_blocks
    assert assert_store_holds(home, {2: hashes[1], 5: hashes[4]}) == 5


def test_a_store_missing_or_changing_a_reported_block_fails(
        home_with_blocks: tuple[Path, list[str]]) -> None:
    home, hashes = home_with_blocks
    with pytest.raises(AssertionError, match="at height 6; its store has nothing"):
        assert_store_holds(home, {5: hashes[4], 6: "ab" * 32})
    with pytest.raises(AssertionError, match="at height 3; its store has"):
        assert_store_holds(home, {3: hashes[2][::-1]})
