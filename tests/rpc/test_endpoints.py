"""`/health`, `/metrics`, the reported address, settings checks, the rate limiter's arithmetic."""

from __future__ import annotations

from dataclasses import fields

import pytest
import trio

from ogpu_node.node_api import HealthReason
from ogpu_node.rpc.config import RpcConfig, RpcConfigError
from ogpu_node.rpc.limits import ClientRateLimiter, TokenBucket
from ogpu_node.rpc.metrics import P2P_COUNTERS, NodeMetrics
from ogpu_node.rpc.server import serve_rpc
from p2p.network import NetworkStats
from tests.rpc.conftest import Rpc
from tests.rpc.local_node import LocalNode


async def test_health_200_when_healthy_503_with_reasons_otherwise(rpc: Rpc) -> None:
    response = await rpc.http.get(rpc.address.http_url + "health")
    assert response.status_code == 200
    assert response.json()["healthy"] is True

    rpc.node.healthy = False
    rpc.node.unhealthy_reasons = (
        HealthReason("syncing", "not synced: 120 blocks behind peers"),
        HealthReason("not_finalising", "no block finalised for 30 s"))
    response = await rpc.http.get(rpc.address.http_url + "health")
    assert response.status_code == 503
    assert response.json()["reasons"] == [
        {"code": "syncing", "message": "not synced: 120 blocks behind peers"},
        {"code": "not_finalising", "message": "no block finalised for 30 s"}]


async def test_metrics_exposition(rpc: Rpc) -> None:
    rpc.metrics.set_height(7)
    rpc.metrics.observe_finality(0.8)
    rpc.metrics.count_poll("finished")
    rpc.metrics.set_peers(3)
    rpc.metrics.set_mempool_size(2)
    rpc.metrics.set_network_stats(NetworkStats(requests_sent=5, streams_opened=2))
    await rpc.result("chain_status")
    await rpc.error("attacker_chosen_name_1")
    response = await rpc.http.get(rpc.address.http_url + "metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in ("ogpu_chain_height 7.0", "ogpu_finality_latency_seconds_bucket",
                 'ogpu_consensus_polls_total{outcome="finished"} 1.0', "ogpu_p2p_peers 3.0",
                 "ogpu_mempool_size 2.0", "ogpu_p2p_requests_sent_total 5.0",
                 "ogpu_p2p_streams_opened_total 2.0", "ogpu_p2p_gossip_dropped_total 0.0",
                 'ogpu_rpc_requests_total{method="chain_status",outcome="ok"} 1.0',
                 'ogpu_rpc_requests_total{method="unknown",outcome="error"} 1.0',
                 'ogpu_rpc_request_duration_seconds_bucket{le="0.001",method="chain_status"}',
                 "ogpu_rpc_connections", "ogpu_rpc_subscriptions", "ogpu_rpc_rejections_total"):
        assert name in text, name
    assert "attacker_chosen_name_1" not in text


def test_each_node_has_its_own_registry() -> None:
    first, second = NodeMetrics(), NodeMetrics()
    first.set_height(5)
    assert first.registry.get_sample_value("ogpu_chain_height") == 5
    assert second.registry.get_sample_value("ogpu_chain_height") == 0
    with pytest.raises(ValueError, match="poll outcome"):
        first.count_poll("whatever")


def test_p2p_counters_follow_the_networks_running_totals() -> None:
    metrics = NodeMetrics()
    metrics.set_network_stats(NetworkStats(requests_sent=3, frames_refused=1))
    metrics.set_network_stats(NetworkStats(requests_sent=10, frames_refused=1))
    assert metrics.registry.get_sample_value("ogpu_p2p_requests_sent_total") == 10
    assert metrics.registry.get_sample_value("ogpu_p2p_frames_refused_total") == 1
    assert set(P2P_COUNTERS) == {f.name for f in fields(NetworkStats)}  # none left unexported


async def test_serve_rpc_reports_the_real_port_and_stops_on_cancel() -> None:
    node = LocalNode()
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve_rpc, node, RpcConfig(listen="127.0.0.1:0"),
                                      NodeMetrics())
        assert address.host == "127.0.0.1"
        assert address.port > 0
        assert address.ws_url == f"ws://127.0.0.1:{address.port}/ws"
        stream = await trio.open_tcp_stream(address.host, address.port)
        await stream.aclose()
        nursery.cancel_scope.cancel()
    with pytest.raises(OSError):
        await trio.open_tcp_stream(address.host, address.port)


def test_default_config_binds_localhost() -> None:
    assert RpcConfig().listen.startswith("127.0.0.1:")


@pytest.mark.parametrize(("changes", "problem"), [
    ({"listen": "localhost"}, "listen must be host:port"),
    ({"listen": "127.0.0.1:70000"}, "listen must be host:port"),
    ({"max_batch": 0}, "max_batch must be at least 1"),
    ({"rate_limit_per_s": -1}, "rate_limit_per_s"),
    ({"send_and_wait_default_s": 200}, "send_and_wait_default_s"),
])
def test_config_refuses_settings_that_cannot_work(changes: dict[str, object],
                                                  problem: str) -> None:
    with pytest.raises(RpcConfigError, match=problem):
        RpcConfig(**changes)  # type: ignore[arg-type]


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(capacity=2, rate=4, tokens=2, updated=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.25)
    assert bucket.take(0.25) == 0.0
    assert bucket.take(10.0) == 0.0 and bucket.tokens == 1.0  # never above capacity


def test_rate_limiter_keeps_a_bounded_number_of_clients() -> None:
    limiter = ClientRateLimiter(rate_per_s=1, burst=1, max_clients=3)
    for client in ("a", "b", "c", "d"):
        assert limiter.acquire(client, 0.0) == 0.0
    assert len(limiter) == 3
    assert limiter.acquire("d", 0.0) > 0  # still tracked, out of tokens
    assert limiter.acquire("a", 0.0) == 0.0  # forgotten, so it starts afresh
    assert ClientRateLimiter(0, 1, 1).acquire("x", 0.0) == 0.0  # 0 turns it off
