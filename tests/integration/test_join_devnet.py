"""Operators joining a running devnet of real processes: a new validator by stake.

Three validators (node0..node2, equal stake S) run a genesis with short epochs. node3 starts as a
follower with a fresh key, is funded, and stakes 2S with `ogpu stake`. At the next epoch
boundary every node lists it as a validator; it then proposes blocks, and finality survives
stopping node0: the live stake is 4S of 5S (80%, above the 75% a poll needs), which holds only
because node3 answers polls; without its votes 2S of 5S could finalise nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner

from ogpu_node import devnet
from ogpu_node.address import address_to_text
from ogpu_node.cli.user_cli import main as user_cli
from ogpu_node.genesis import dev_account_key, load_template
from ogpu_node.keys import read_key_file
from ogpu_node.ledger import Transfer
from ogpu_node.polling import wait_until
from ogpu_node.rpc_client import rpc_call, send_transaction
from ogpu_node.types import ogpu
from tests.integration.node_logs import assert_no_traceback_through_our_code

pytestmark = pytest.mark.integration

EPOCH_LENGTH = 4
"""Short epochs: the boundary comes a few blocks after the stake, not a hundred."""
ORIGINAL = ["node0", "node1", "node2"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("join")
    template = load_template()
    template["params"] = {**template["params"], "epoch_length": EPOCH_LENGTH}
    template_path = root.parent / f"{root.name}-template.json"
    template_path.write_text(json.dumps(template))
    base = devnet.free_port_base(12)
    devnet.create(root, 3, base_p2p=base, base_rpc=base + 6, providers=0, template=template_path)
    devnet.start(root)
    try:
        devnet.wait_healthy(root)
        yield root
    finally:
        devnet.stop(root)
        assert_no_traceback_through_our_code(root)


def url(root: Path, name: str) -> str:
    return devnet.rpc_url(root / name)


def test_a_follower_that_stakes_validates_from_the_next_epoch_boundary(root: Path) -> None:
    base = devnet.free_port_base(2)
    home = devnet.add_follower(root, "node3", base, base + 1)
    devnet.start(root, only=["node3"])
    devnet.wait_healthy(root)
    key_file = home / "validator_key.json"
    address = address_to_text(read_key_file(key_file).address)
    new_url = url(root, "node3")
    stake = 2 * int(rpc_call(new_url, "validators_list")["minValidatorStake"])
    funded = send_transaction(new_url, dev_account_key(0),
                              Transfer(read_key_file(key_file).address, ogpu(25_000)))
    assert funded["state"] == "finalized", funded

    result = CliRunner().invoke(user_cli, ["--rpc", new_url, "stake", str(stake // ogpu(1)),
                                           "--key", str(key_file), "--json"])
    assert result.exit_code == 0, result.output
    staked = json.loads(result.output)
    boundary = staked["epochBoundary"]
    assert boundary % EPOCH_LENGTH == 0 and boundary >= staked["height"]

    def listed(name: str) -> bool:
        validators = rpc_call(url(root, name), "validators_list")
        return (validators["height"] >= boundary
                and address in {v["address"] for v in validators["validators"]})

    for name in [*ORIGINAL, "node3"]:
        wait_until(partial(listed, name), f"node3 in the validator set on {name}", 60)
    assert rpc_call(new_url, "chain_status")["validator"] == address

    def proposed_by_node3() -> bool:
        head = rpc_call(new_url, "chain_status")["height"]
        blocks = rpc_call(new_url, "chain_getBlockRange",
                          {"from": boundary + 1, "to": max(head, boundary + 1)})
        return any(b["proposer"] == address for b in blocks)

    wait_until(proposed_by_node3, "a block proposed by node3", 60)

    devnet.stop(root, only=["node0"])
    alive = ["node1", "node2", "node3"]
    tx = send_transaction(url(root, "node1"), dev_account_key(1),
                          Transfer(dev_account_key(2).address, ogpu(1)))
    assert tx["state"] == "finalized", tx  # 4S of 5S voting: only with node3's votes

    def final_on(name: str) -> bool:
        return bool(rpc_call(url(root, name), "tx_status", {"hash": tx["hash"]})["state"]
                    == "finalized")

    for name in alive:
        wait_until(partial(final_on, name), f"the transfer final on {name}", 30)
