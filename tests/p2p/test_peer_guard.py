"""The peer guard's request buckets on trio's mock clock: refills, a bounded table, and
settings that check themselves."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from p2p.network import Limits, NetworkStats
from p2p.peer_guard import PeerGuard, RequestRate


async def test_buckets_refill_at_their_rate_per_peer_and_protocol(
    autojump_clock: MockClock,
) -> None:
    limits = Limits(request_rate=RequestRate(per_s=4.0, burst=2),
                    request_rates={"/fast/1": RequestRate(per_s=100.0, burst=50)})
    stats = NetworkStats()
    guard = PeerGuard(limits, stats)
    assert [guard.admit_request("p", "/q/1") for _ in range(3)] == [True, True, False]
    assert guard.admit_request("other", "/q/1") and guard.admit_request("p", "/fast/1")
    await trio.sleep(0.24)  # 0.96 of a token
    assert not guard.admit_request("p", "/q/1")
    await trio.sleep(0.26)  # the refused attempt spent nothing: 2 tokens by now, capped at 2
    assert guard.admit_request("p", "/q/1")
    await trio.sleep(10)
    assert [guard.admit_request("p", "/q/1") for _ in range(3)] == [True, True, False]
    assert stats.requests_rate_limited == 3


async def test_the_bucket_table_stays_bounded(autojump_clock: MockClock) -> None:
    limits = Limits(max_tracked_peers=3, request_rate=RequestRate(per_s=1.0, burst=1))
    guard = PeerGuard(limits, NetworkStats())
    for i in range(100):
        guard.admit_request(f"peer{i}", "/q/1")
        await trio.sleep(1)  # each bucket is full again a second later: forgettable
    assert len(guard._buckets) <= 4


@pytest.mark.parametrize(
    "change", [{"max_tracked_peers": 0}, {"request_rates": {"/q/1": (10.0, 5)}}]
)
def test_limits_refuse_bad_settings(change: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Limits(**change)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [(0.0, 1), (float("inf"), 1), (1.0, 0)])
def test_request_rates_refuse_bad_values(rate: tuple[float, int]) -> None:
    with pytest.raises(ValueError):
        RequestRate(*rate)
