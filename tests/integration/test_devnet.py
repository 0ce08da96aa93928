"""A real devnet: validator processes on 127.0.0.1 talking libp2p, driven through JSON-RPC.

One 4-validator network is shared by the tests of this module (starting processes is the slow
part). Waiting on another process's state is done by polling its RPC for a condition, bounded by
a deadline: there is no event to wait on across process boundaries.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from gpu.device import BLAS_THREAD_VARIABLES
from ogpu_node import devnet
from ogpu_node.address import address_to_text
from ogpu_node.config import load_config
from ogpu_node.genesis import dev_account_key
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Transfer
from ogpu_node.polling import wait_until
from ogpu_node.rpc_client import RpcCallError, rpc_call, send_transaction
from ogpu_node.types import Amount
from tests.integration.node_logs import assert_no_traceback_through_our_code

pytestmark = pytest.mark.integration


class Net:
    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, name: str) -> str:
        return devnet.rpc_url(self.root / name)

    def height(self, name: str) -> int:
        return int(rpc_call(self.url(name), "chain_status")["height"])

    def block_hash(self, name: str, height: int) -> str | None:
        try:
            return str(rpc_call(self.url(name), "chain_getBlock", {"block": height})["hash"])
        except RpcCallError:
            return None

    def transfer(self, name: str, sender: PrivateKey, amount: int) -> str:
        receipt = send_transaction(self.url(name), sender,
                                   Transfer(dev_account_key(9).address, Amount(amount)),
                                   wait=False)
        return str(receipt["hash"])

    def finalized_on(self, name: str, tx_hash: str) -> int | None:
        receipt = rpc_call(self.url(name), "tx_status", {"hash": tx_hash})
        return int(receipt["height"]) if receipt["state"] == "finalized" else None

    def agree_at(self, names: list[str], height: int) -> bool:
        hashes = {self.block_hash(n, height) for n in names}
        return len(hashes) == 1 and None not in hashes


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("devnet")
    base = devnet.free_port_base(12)
    devnet.create(root, 4, base_p2p=base, base_rpc=base + 6, providers=0)
    devnet.start(root)
    try:
        devnet.wait_healthy(root)
        yield Net(root)
    finally:
        devnet.stop(root)
        assert_no_traceback_through_our_code(root)


VALIDATORS = ["node0", "node1", "node2", "node3"]


def test_node_processes_run_one_blas_thread_unless_told_otherwise(net: Net) -> None:
    """Four nodes and their workers share this machine: spinning BLAS threads would make their
    small-matrix work ten times slower."""
    for pid in json.loads((net.root / "pids").read_text()).values():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for name in BLAS_THREAD_VARIABLES:
            want = os.environ.get(name, "1")
            assert f"{name}={want}".encode() in environ


def test_transfers_sent_to_different_nodes_finalise_everywhere_with_one_state(net: Net) -> None:
    hashes = [net.transfer(name, dev_account_key(i), 1_000 + i)
              for i, name in enumerate(VALIDATORS)]
    heights = []
    for tx_hash in hashes:
        for name in VALIDATORS:
            heights.append(wait_until(partial(net.finalized_on, name, tx_hash),
                                      f"{tx_hash} on {name}"))
    top = max(heights)
    wait_until(lambda: net.agree_at(VALIDATORS, top), "agreement")
    roots = {rpc_call(net.url(n), "chain_getBlock", {"block": top})["stateRoot"]
             for n in VALIDATORS}
    assert len(roots) == 1
    # Balances are equal on every node too.
    balances = {rpc_call(net.url(n), "account_get",
                         {"address": address_to_text(dev_account_key(9).address)})["balance"]
                for n in VALIDATORS if net.height(n) == top}
    assert len(balances) <= 1


def test_the_demo_transfer_is_shown_final_on_every_node(net: Net,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # each node finalises on its own: the demo waits for each before printing its view
    devnet.demo_transfer(net.root)
    out = capsys.readouterr().out
    for name in VALIDATORS:
        assert f"  {name}: finalized at height" in out, out


def test_a_killed_validator_does_not_stop_the_others_and_catches_up(net: Net) -> None:
    devnet.stop(net.root, only=["node3"], sig=signal.SIGKILL)
    alive = ["node0", "node1", "node2"]
    tx = net.transfer("node1", dev_account_key(5), 77)
    height = wait_until(lambda: net.finalized_on("node0", tx), "finality with node3 down")
    wait_until(lambda: net.agree_at(alive, height), "agreement of the three")

    devnet.start(net.root, only=["node3"])
    target = net.height("node0")
    wait_until(lambda: net.height("node3") >= target, "node3 catching up")
    assert net.agree_at(VALIDATORS, target)
    tx = net.transfer("node3", dev_account_key(6), 78)
    height = wait_until(lambda: net.finalized_on("node3", tx), "finality through node3")
    wait_until(lambda: net.agree_at(VALIDATORS, height), "agreement of all four")


def test_a_new_node_syncs_from_genesis_and_agrees(net: Net) -> None:
    node0 = load_config(net.root / "node0", environ={})
    base_p2p = int(node0.p2p_listen.rsplit("/", 1)[1])
    base_rpc = int(node0.rpc_listen.rsplit(":", 1)[1])
    devnet.add_follower(net.root, "node4", base_p2p + 4, base_rpc + 4)
    target = net.height("node0")
    devnet.start(net.root, only=["node4"])
    wait_until(lambda: net.height("node4") >= target, "node4 syncing", timeout=90)
    assert net.agree_at(["node0", "node4"], target)
    tx = net.transfer("node4", dev_account_key(7), 79)
    height = wait_until(lambda: net.finalized_on("node4", tx), "finality seen by node4")
    wait_until(lambda: net.agree_at([*VALIDATORS, "node4"], height), "agreement of five")
