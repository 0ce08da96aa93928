"""`health_reasons`: each way a node is unhealthy gives its code and a sentence with the numbers;
`ogpu-node status` prints them."""

from __future__ import annotations

from dataclasses import replace

import trio

from ogpu_node.cli.node_cli import main as node_cli
from ogpu_node.node.health import BLOB_FULL_FRACTION, HealthInputs, health_reasons
from ogpu_node.node_api import HEALTH_CODES, HealthReason
from tests.rpc.conftest import serving
from tests.rpc.local_node import LocalNode
from tests.test_cli import run

HEALTHY = HealthInputs(syncing=False, height=500, target=500, peers=3, idle_s=1.0,
                       healthy_finality_s=10.0, seen_stake=40, total_stake=40, stake_ok=True,
                       needed_percent=67, blob_used=0, blob_limit=1_000,
                       agents={"provider": True, "verifier": True})


def codes(seen: HealthInputs) -> list[str]:
    return [r.code for r in health_reasons(seen)]


def test_a_healthy_node_has_no_reasons() -> None:
    assert health_reasons(HEALTHY) == []
    # one block behind is the normal lag between a peer's report and our own finalisation
    assert health_reasons(replace(HEALTHY, target=501)) == []
    # a lone validator holding all the stake needs no peer
    assert health_reasons(replace(HEALTHY, peers=0)) == []


def test_each_reason_has_its_code_and_numbers() -> None:
    cases = [
        (replace(HEALTHY, target=620), HealthReason(
            "syncing", "not synced: 120 blocks behind peers")),
        (replace(HEALTHY, syncing=True), HealthReason(
            "syncing", "not synced: catching up with peers")),
        (replace(HEALTHY, idle_s=30.4), HealthReason(
            "not_finalising", "no block finalised for 30 s")),
        (replace(HEALTHY, stake_ok=False, seen_stake=20), HealthReason(
            "stake_unseen", "sees validators with 50% of stake, needs 67%")),
        (replace(HEALTHY, blob_used=int(BLOB_FULL_FRACTION * 1_000)), HealthReason(
            "blob_store_full", "blob store full: 950 of 1000 bytes")),
        (replace(HEALTHY, agents={"provider": False, "verifier": True}), HealthReason(
            "agent_not_running", "provider agent not running")),
    ]
    for seen, reason in cases:
        assert health_reasons(seen) == [reason]
    assert {reason.code for _, reason in cases} | {"no_peers"} == set(HEALTH_CODES)


def test_a_node_cut_off_says_so_first() -> None:
    cut_off = replace(HEALTHY, peers=0, seen_stake=10, stake_ok=False, idle_s=45.0)
    assert codes(cut_off) == ["no_peers", "not_finalising", "stake_unseen"]
    assert health_reasons(cut_off)[0].message == "no peers: connected to no other node"
    # a node without a blob store is never full
    assert codes(replace(HEALTHY, blob_used=None, blob_limit=0)) == []


async def test_node_status_prints_each_reason_with_its_code() -> None:
    node = LocalNode()
    node.healthy = False
    node.unhealthy_reasons = (HealthReason("syncing", "not synced: 120 blocks behind peers"),
                              HealthReason("no_peers", "no peers: connected to no other node"))
    async with serving(node) as rpc:
        url = rpc.address.http_url
        code, out = await trio.to_thread.run_sync(
            lambda: run(node_cli, "status", "--rpc", url))
    assert code == 0, out
    assert "unhealthy: not synced: 120 blocks behind peers [syncing]" in out
    assert "unhealthy: no peers: connected to no other node [no_peers]" in out
    assert any(line.split() == ["healthy", "False"] for line in out.splitlines()), out
