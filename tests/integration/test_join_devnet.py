"""Operators joining a running devnet of real processes: a provider added while it runs, and a
new validator by stake. Three validators (node0..node2, equal stake S) run a genesis with short
epochs and no provider.

The provider (`devnet.add_provider`, the code of `ogpu-node join --provider`) is the devnet's
only one: it registers by itself and must win and be paid for a task, with no node restarted.

Then a new node joins (`ogpu-node join`) as a follower with a fresh key, is funded, and
stakes 2S with `ogpu stake`. At the next epoch boundary every node lists it as a validator; it
then proposes blocks, and finality survives stopping node0: the live stake is 4S of 5S (80%,
above the 75% a poll needs), which holds only because the new node answers polls; without its
votes 2S of 5S could finalise nothing. (The provider is no validator: it holds no validator stake.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ogpu_node import devnet
from ogpu_node.address import address_to_text
from ogpu_node.cli.node_cli import main as node_cli
from ogpu_node.cli.user_cli import main as user_cli
from ogpu_node.config import load_config
from ogpu_node.encoding import encode
from ogpu_node.genesis import dev_account_key, load_template
from ogpu_node.keys import read_key_file
from ogpu_node.ledger import Transfer
from ogpu_node.ledger.market.payloads import SubmitTask
from ogpu_node.polling import wait_until
from ogpu_node.sdk.sync_client import rpc_call, send_transaction
from ogpu_node.types import ogpu
from ogpu_node.workloads.spec import MatmulSpec
from tests.integration.node_logs import assert_no_traceback_through_our_code, timeline

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


def test_a_provider_added_to_a_running_devnet_wins_a_task_and_is_paid(root: Path) -> None:
    # node3 listens at base + 3: bases that put it on two ports free now (reserved at creation,
    # they could be taken meanwhile by another devnet on this machine)
    free = devnet.free_port_base(2)
    assert devnet.main(["add-provider", "--dir", str(root), "--base-p2p", str(free - 3),
                        "--base-rpc", str(free + 1 - 3), "--benchmark", "100",
                        "--price-floor", "1000", "--device", "cpu"]) == 0
    home = root / "node3"
    # it bootstraps from node0 and the peers node0 dials: every node of the devnet
    rpc0 = url(root, "node0")
    joining = rpc_call(rpc0, "chain_genesis")
    node0 = load_config(root / "node0", environ={})
    node0_id = rpc_call(rpc0, "chain_status")["nodeId"]
    assert joining["bootstrapPeers"] == [f"{node0.p2p_listen}/p2p/{node0_id}",
                                         *node0.bootstrap_peers]
    assert load_config(home, environ={}).bootstrap_peers == joining["bootstrapPeers"]
    address = address_to_text(read_key_file(home / "validator_key.json").address)
    wait_until(lambda: rpc_call(rpc0, "provider_list")["count"] == 1, "the provider's "
               "registration", 60)
    spec = MatmulSpec(n=256, seed=5)
    receipt = send_transaction(rpc0, dev_account_key(3), SubmitTask(
        spec.KIND, encode(spec), 10_000_000, 0, 20_000, 120_000))
    assert receipt["state"] == "finalized", receipt

    def closed() -> dict[str, Any] | None:
        task: dict[str, Any] = rpc_call(rpc0, "task_get", {"taskId": receipt["hash"]})
        return task if task["status"] == "closed" else None

    task = wait_until(closed, "the task to close", 90)
    assert (task["provider"], task["closeReason"]) == (address, "completed"), (
        task, timeline(root, receipt["hash"][:12]))
    paid = [m for m in task["trail"] if m["event"] == "payment"]
    assert paid and paid[0]["address"] == address and int(paid[0]["amount"]) > 0, task["trail"]
    earnings = rpc_call(rpc0, "provider_get", {"address": address})["earnings"]
    assert int(earnings["earned"]) == int(paid[0]["amount"]), earnings


def test_a_node_that_joins_and_stakes_validates_from_the_next_epoch_boundary(root: Path
                                                                           ) -> None:
    base = devnet.free_port_base(2)
    name = f"node{len(devnet.node_homes(root))}"
    home = root / name
    joined = CliRunner().invoke(node_cli, [
        "join", "--rpc", url(root, "node1"), "--home", str(home), "--moniker", name,
        "--p2p-listen", f"/ip4/127.0.0.1/tcp/{base}", "--rpc-listen", f"127.0.0.1:{base + 1}",
        "--no-start", "--json"])
    assert joined.exit_code == 0, joined.output
    devnet.start(root, only=[name])
    devnet.wait_healthy(root)
    key_file = home / "validator_key.json"
    address = address_to_text(read_key_file(key_file).address)
    new_url = url(root, name)
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

    for other in [*ORIGINAL, name]:
        wait_until(partial(listed, other), f"{name} in the validator set on {other}", 60)
    assert rpc_call(new_url, "chain_status")["validator"] == address

    def proposed_by_newcomer() -> bool:
        head = rpc_call(new_url, "chain_status")["height"]
        blocks = rpc_call(new_url, "chain_getBlockRange",
                          {"from": boundary + 1, "to": max(head, boundary + 1)})
        return any(b["proposer"] == address for b in blocks)

    wait_until(proposed_by_newcomer, f"a block proposed by {name}", 60)

    devnet.stop(root, only=["node0"])
    alive = ["node1", "node2", name]
    tx = send_transaction(url(root, "node1"), dev_account_key(1),
                          Transfer(dev_account_key(2).address, ogpu(1)))
    assert tx["state"] == "finalized", tx  # 4S of 5S voting: only with the new node's votes

    def final_on(name: str) -> bool:
        return bool(rpc_call(url(root, name), "tx_status", {"hash": tx["hash"]})["state"]
                    == "finalized")

    for name in alive:
        wait_until(partial(final_on, name), f"the transfer final on {name}", 30)
