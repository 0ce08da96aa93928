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
import trio

from gpu.device import BLAS_THREAD_VARIABLES
from ogpu_node import devnet
from ogpu_node.address import address_to_text
from ogpu_node.config import load_config
from ogpu_node.encoding import pack
from ogpu_node.genesis import dev_account_key
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Transfer
from ogpu_node.ledger.market.payloads import OpenPool, SubmitTask
from ogpu_node.ledger.tx import Payload
from ogpu_node.polling import wait_until
from ogpu_node.sdk import RpcCallError
from ogpu_node.sdk.sync_client import rpc_call, send_transaction
from ogpu_node.types import Amount
from ogpu_node.workloads.spec import InferSpec, MatmulSpec, TrainSpec
from tests.integration.impostor import Impostor, steal_status
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

    def multiaddr(self, name: str) -> str:
        listen = load_config(self.root / name, environ={}).p2p_listen
        return f"{listen}/p2p/{rpc_call(self.url(name), 'chain_status')['nodeId']}"

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


def _hostile_payloads() -> list[tuple[str, Payload]]:
    """Transactions a funded user can sign that once stopped every node, or could: specs whose
    checks listed what they count, integers at 2**64 - 1, escrows nobody can pay."""
    day = 24 * 3600 * 1000

    def task(spec: MatmulSpec | TrainSpec | InferSpec, price: int = 1) -> SubmitTask:
        return SubmitTask(int(spec.KIND), pack(spec.to_fields()), price, 0, 20_000, day)

    train = TrainSpec(seed=1, n_features=8, hidden=(8,), n_classes=2, n_samples=64, batch=8,
                      steps=2**40, lr_micros=1_000, checkpoint_every=1)
    top = 2**64 - 1
    return [
        ("train, 2^40 steps, a checkpoint each", task(train)),
        ("train, 2^64 - 1 steps", task(TrainSpec(1, 8, (8,), 2, 64, 8, top, 1_000, 1))),
        ("matmul n = 2^64 - 1", task(MatmulSpec(n=top, seed=top))),
        ("infer, 2^63 - 1 rows", task(InferSpec("mlp-small", top, 2**63 - 1))),
        ("an escrow above the balance", task(MatmulSpec(n=1024, seed=1), price=10**15)),
        ("a pool at the integer edges", OpenPool("mlp-small", top, top, top, top, top, top, top,
                                                top)),
    ]


def test_hostile_transactions_are_refused_and_every_node_keeps_finalising(net: Net) -> None:
    """The README's devnet, a funded account, and the transactions above sent to every node
    through JSON-RPC: each is refused with its reason at admission (so none is gossiped or
    built into a block), and every node goes on finalising."""
    start = min(net.height(n) for n in VALIDATORS)
    sender = dev_account_key(3)
    for name in VALIDATORS:
        for what, payload in _hostile_payloads():
            with pytest.raises(RpcCallError) as refused:
                send_transaction(net.url(name), sender, payload, wait=False)
            assert isinstance(refused.value.data, dict), what
            assert refused.value.data["code"] in (
                "invalid_spec", "insufficient_funds", "amount_out_of_range"), (what, refused)
    tx = net.transfer("node2", sender, 81)
    height = wait_until(lambda: net.finalized_on("node0", tx), "finality after the attack")
    wait_until(lambda: net.agree_at(VALIDATORS, height), "agreement after the attack")
    assert height > start


def test_a_peer_posing_as_a_validator_gets_no_query_and_moves_no_vote(net: Net) -> None:
    """node1 is down; a process with no stake and no validator key dials the others and answers
    their status requests with node1's own status, signed claim included. Nodes check the claim
    against the peer id the connection authenticated, so nobody maps node1's validator to it:
    it gets no consensus query, and the three others finalise without it."""
    victim = rpc_call(net.url("node1"), "chain_status")
    stolen = trio.run(steal_status, net.multiaddr("node1"))
    others = [n for n in VALIDATORS if n != "node1"]
    addrs = [net.multiaddr(n) for n in others]
    devnet.stop(net.root, only=["node1"])

    def while_posing(impostor: Impostor) -> None:
        for name in others:
            peers = {p["peerId"]: p["validator"] for p in rpc_call(net.url(name), "peers_list")}
            assert peers[impostor.peer_id] is None, name
            assert victim["validator"] not in peers.values(), name
        tx = net.transfer("node2", dev_account_key(4), 82)
        height = wait_until(lambda: net.finalized_on("node0", tx), "finality beside the impostor")
        wait_until(lambda: net.agree_at(others, height), "agreement beside the impostor")

    impostor = Impostor(addrs, stolen)
    try:
        trio.run(impostor.run, 3, while_posing)
    finally:
        devnet.start(net.root, only=["node1"])
    assert set(impostor.status_answers) == {a.rsplit("/", 1)[1] for a in addrs}
    assert impostor.queries == 0
    target = net.height("node0")
    wait_until(lambda: net.height("node1") >= target, "node1 back")
