"""A parameter changed by a vote on a live devnet: a dev account proposes a higher minimum fee,
the four validators vote with their own keys (through different nodes), and every node runs
under the new fee from the activation height on, with one state root.

The genesis sets a short voting period and activation delay (governance's own bounds apply
to proposals, not to a genesis). Blocks come when transactions wait, so the test drives the
heights with transfers instead of waiting for idle blocks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from ogpu_node import devnet
from ogpu_node.address import address_to_text
from ogpu_node.config import load_config
from ogpu_node.genesis import dev_account_key, load_template
from ogpu_node.keys import PrivateKey, read_key_file
from ogpu_node.ledger import Transfer
from ogpu_node.ledger.governance.records import Propose, Vote, VoteOption
from ogpu_node.polling import wait_until
from ogpu_node.sdk import RpcCallError
from ogpu_node.sdk.sync_client import rpc_call, send_transaction
from ogpu_node.types import Amount, ogpu
from tests.integration.node_logs import assert_no_traceback_through_our_code

pytestmark = pytest.mark.integration
NODES = ["node0", "node1", "node2", "node3"]
VOTING_PERIOD = 10
DELAY = 2
OLD_FEE, NEW_FEE = 1_000, 2_000


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("gov-devnet")
    template = load_template()
    template["params"] = {**template["params"], "gov_voting_period": VOTING_PERIOD,
                          "gov_activation_delay": DELAY, "gov_min_deposit": str(ogpu(10))}
    (root / "template.json").write_text(json.dumps(template))
    base = devnet.free_port_base(12)
    devnet.create(root, 4, base_p2p=base, base_rpc=base + 6, providers=0,
                  template=root / "template.json")
    devnet.start(root)
    try:
        devnet.wait_healthy(root)
        yield root
    finally:
        devnet.stop(root)
        assert_no_traceback_through_our_code(root)


def url(root: Path, name: str) -> str:
    return devnet.rpc_url(root / name)


def validator_key(root: Path, name: str) -> PrivateKey:
    home = root / name
    return read_key_file(home / load_config(home, environ={}).validator_key_file)


def min_fee(root: Path, name: str) -> tuple[int, int]:
    """(height, min_fee) that `name` reports from its finalised state."""
    view = rpc_call(url(root, name), "gov_params")
    value = next(p["value"] for p in view["params"] if p["name"] == "min_fee")
    return int(view["height"]), int(value)


def height(root: Path, name: str) -> int:
    return int(rpc_call(url(root, name), "chain_status")["height"])


def reached(root: Path, name: str, target: int) -> bool:
    return height(root, name) >= target


def is_final(root: Path, tx_hash: str) -> bool:
    return bool(rpc_call(url(root, "node0"), "tx_status", {"hash": tx_hash})["state"]
                == "finalized")


def drive_to(root: Path, target: int, fee: int) -> None:
    """Finalise transfers through node0 until it reaches `target`, then wait for the others."""
    sender = dev_account_key(8)
    while height(root, "node0") < target:
        receipt = send_transaction(url(root, "node0"), sender,
                                   Transfer(dev_account_key(9).address, Amount(1)), fee=fee)
        assert receipt["state"] == "finalized", receipt
    for name in NODES:
        wait_until(partial(reached, root, name, target), f"{name} at height {target}")


def test_a_parameter_changes_by_vote_on_every_node_at_the_activation_height(root: Path) -> None:
    proposer = dev_account_key(0)
    receipt = send_transaction(url(root, "node1"), proposer, Propose(
        (("min_fee", NEW_FEE),), ogpu(10), "double the minimum fee"))
    assert receipt["state"] == "finalized", receipt
    wait_until(lambda: rpc_call(url(root, "node2"), "gov_list")["total"] == 1, "the proposal")
    listed = rpc_call(url(root, "node2"), "gov_list")
    (proposal,) = listed["proposals"]
    assert (proposal["id"], proposal["proposer"], proposal["status"]) == (
        1, address_to_text(proposer.address), "voting")
    voting_end = int(proposal["votingEnd"])

    # each validator votes with its own key, through its own node; one changes its mind
    hashes = [send_transaction(url(root, name), validator_key(root, name),
                               Vote(1, VoteOption.NO if name == "node3" else VoteOption.YES),
                               wait=False)["hash"] for name in NODES]
    for tx_hash in hashes:
        wait_until(partial(is_final, root, tx_hash), "a vote final")
    final = send_transaction(url(root, "node3"), validator_key(root, "node3"),
                             Vote(1, VoteOption.YES))
    assert final["state"] == "finalized", final
    running = rpc_call(url(root, "node3"), "gov_get", {"proposalId": 1})
    assert int(running["height"]) <= voting_end, "the votes came too late for the test"
    assert (running["tally"]["voteCount"], running["tally"]["no"], running["tally"]["outcome"]
            ) == (4, "0", "passed")

    drive_to(root, voting_end, OLD_FEE)
    passed = rpc_call(url(root, "node1"), "gov_get", {"proposalId": 1})
    assert (passed["status"], passed["activationHeight"]) == ("passed", voting_end + DELAY)
    assert passed["tally"]["yes"] == passed["tally"]["bonded"]  # all four, by stake
    activation = voting_end + DELAY
    for name in NODES:
        seen_at, fee = min_fee(root, name)
        assert fee == OLD_FEE or seen_at >= activation, (name, seen_at, fee)

    drive_to(root, activation, OLD_FEE)
    for name in NODES:
        seen_at, fee = min_fee(root, name)
        assert fee == NEW_FEE, (name, seen_at, fee)
    roots = {rpc_call(url(root, n), "chain_getBlock", {"block": activation})["stateRoot"]
             for n in NODES}
    assert len(roots) == 1

    # the new minimum is enforced everywhere: the old fee is refused, the new one accepted
    for name in NODES:
        with pytest.raises(RpcCallError, match="fee_too_low"):
            send_transaction(url(root, name), dev_account_key(7),
                             Transfer(dev_account_key(9).address, Amount(1)), fee=OLD_FEE)
    drive_to(root, activation + 1, NEW_FEE)
