"""A committee that is silent and copies, and a bidder that never reveals, on a devnet of real
processes: a wrong result is not paid, and whoever did not do its part pays for it.

    node1  provider, fault injection `corrupt` (every result it commits is wrong)
    node0  validator with its verifier off: drawn, it never votes
    node2  validator running `tests.integration.copying_verifier`: it seals a copy of another
           member's seal instead of checking, and cannot open it
    node3  honest validator and verifier; also a provider running
           `tests.integration.silent_bidder`: it seals a bid on every task and never reveals it

The provider's committee is {node0, node2, node3}: one honest reveal is no quorum, the round is
silent, and no validator is left for a fresh one, so the task closes unchecked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ogpu_node import devnet
from ogpu_node.address import address_to_text
from ogpu_node.encoding import encode
from ogpu_node.genesis import dev_account_key, load_template
from ogpu_node.keys import read_key_file
from ogpu_node.ledger.market.payloads import SubmitTask
from ogpu_node.polling import wait_until
from ogpu_node.sdk.sync_client import rpc_call, send_transaction
from ogpu_node.workloads.spec import MatmulSpec
from tests.integration.node_logs import assert_no_traceback_through_our_code

pytestmark = pytest.mark.integration
PENALTY = 10 * 10**9
"""The devnet's verifier_silence_penalty (10 OGPU)."""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("committee")
    template = load_template()
    template["params"] = {**template["params"], "bid_window_ms": 4_000,
                          "reveal_window_ms": 4_000, "verdict_window_ms": 10_000,
                          "verdict_reveal_window_ms": 6_000}
    template_path = root.parent / f"{root.name}-template.json"
    template_path.write_text(json.dumps(template))
    base = devnet.free_port_base(12)
    settings: dict[int, dict[str, object]] = {
        0: {"verifier": False},
        1: {"provider": True, "provider_fault": "corrupt", "provider_benchmark": 100,
            "provider_price_floor": 1_000, "provider_device": "cpu"},
        3: {"provider": True, "provider_benchmark": 100, "provider_price_floor": 1_000,
            "provider_device": "cpu"},
    }
    devnet.create(root, 4, base_p2p=base, base_rpc=base + 6, providers=0,
                  node_settings=settings, template=template_path)
    devnet.start(root, modules={"node2": "tests.integration.copying_verifier",
                                "node3": "tests.integration.silent_bidder"})
    try:
        devnet.wait_healthy(root)
        url = devnet.rpc_url(root / "node0")
        wait_until(lambda: rpc_call(url, "provider_list")["count"] == 2, "the providers",
                   timeout=90)
        yield root
    finally:
        devnet.stop(root)
        assert_no_traceback_through_our_code(root)


def validator(root: Path, index: int) -> str:
    return address_to_text(read_key_file(root / f"node{index}" / "validator_key.json").address)


def test_a_wrong_result_before_a_silent_and_a_copying_member_is_not_paid(root: Path) -> None:
    """... and a bid sealed and never revealed pays its deposit to the client."""
    url = devnet.rpc_url(root / "node0")

    def stake(index: int) -> int:
        return int(rpc_call(url, "account_get", {"address": validator(root, index)})["stake"])

    before = {i: stake(i) for i in (0, 2, 3)}
    spec = MatmulSpec(n=512, seed=3)
    receipt = send_transaction(url, dev_account_key(1), SubmitTask(
        spec.KIND, encode(spec), 10_000_000, 0, 20_000, 180_000))
    assert receipt["state"] == "finalized", receipt
    task_id = str(receipt["hash"])

    def closed() -> dict[str, Any] | None:
        task: dict[str, Any] = rpc_call(url, "task_get", {"taskId": task_id})
        return task if task["status"] == "closed" else None

    task = wait_until(closed, "the task to close", timeout=150)
    assert task["provider"] == validator(root, 1)
    # node3 sealed a bid and never revealed it: its deposit went to the client
    sealed = [b for b in task["bids"] if b["bidder"] == validator(root, 3)]
    assert sealed and not sealed[0]["revealed"]
    forfeited = [m for m in task["trail"] if m["event"] == "bid_deposits_forfeited"]
    assert forfeited and forfeited[0]["address"] == address_to_text(dev_account_key(1).address)
    assert int(forfeited[0]["amount"]) == int(sealed[0]["deposit"]) > 0
    silent_bidder = rpc_call(url, "provider_get", {"address": validator(root, 3)})
    assert int(silent_bidder["counters"]["unrevealed"]) == 1
    assert task["closeReason"] == "unchecked", task["closeReason"]
    trail = [(m["event"], m["address"]) for m in task["trail"]]
    assert not any(event == "payment" for event, _ in trail)  # the wrong result is not paid
    # node0 never sealed, node2 sealed a copy it could not open: each paid the penalty, and
    # the one member who checked was paid from it
    assert ("silence_penalty", validator(root, 0)) in trail
    assert ("silence_penalty", validator(root, 2)) in trail
    assert ("silent_round_fee", validator(root, 3)) in trail
    assert stake(0) == before[0] - PENALTY and stake(2) == before[2] - PENALTY
    assert stake(3) == before[3]
