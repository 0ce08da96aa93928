"""A devnet where one validator process signs two blocks for each of its slots: the others
report it, it is slashed and leaves the validator set at the next epoch, and no two nodes ever
finalise different blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ogpu_node import devnet
from ogpu_node.polling import wait_until
from ogpu_node.sdk import RpcCallError
from ogpu_node.sdk.sync_client import rpc_call
from tests.integration.node_logs import assert_no_traceback_through_our_code

pytestmark = pytest.mark.integration
NODES = ["node0", "node1", "node2", "node3"]
OFFENDER = "node3"


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    base = devnet.free_port_base(12)
    devnet.create(tmp_path, 4, base_p2p=base, base_rpc=base + 6, providers=0)
    devnet.start(tmp_path, modules={OFFENDER: "tests.integration.equivocating_node"})
    try:
        devnet.wait_healthy(tmp_path)
        yield tmp_path
    finally:
        devnet.stop(tmp_path)
        assert_no_traceback_through_our_code(tmp_path)


def test_an_equivocating_validator_is_slashed_and_nothing_conflicts(root: Path) -> None:
    def url(name: str) -> str:
        return devnet.rpc_url(root / name)

    def account(address: str) -> dict[str, object]:
        result: dict[str, object] = rpc_call(url("node0"), "account_get", {"address": address})
        return result

    def hash_at(name: str, height: int) -> str | None:
        try:
            return str(rpc_call(url(name), "chain_getBlock", {"block": height})["hash"])
        except RpcCallError:
            return None

    offender = str(rpc_call(url(OFFENDER), "chain_status")["validator"])
    staked = int(str(account(offender)["stake"]))
    tombstone = wait_until(lambda: account(offender)["tombstone"], "the offender's tombstone",
                           timeout=120)
    assert isinstance(tombstone, dict)
    slashed = int(str(tombstone["slashed"]))
    assert slashed == staked * 500 // 10_000  # the devnet's equivocation_slash_bps
    assert int(str(account(offender)["stake"])) == staked - slashed

    def out_of_the_set() -> bool:
        validators = rpc_call(url("node0"), "validators_list")["validators"]
        return offender not in {v["address"] for v in validators}

    wait_until(out_of_the_set, "the offender leaving the set at the epoch", timeout=120)
    top = min(int(rpc_call(url(n), "chain_status")["height"]) for n in NODES)
    for height in range(1, top + 1):
        assert len({hash_at(n, height) for n in NODES}) == 1, f"conflict at height {height}"
