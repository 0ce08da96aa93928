"""The peer guard on trio's mock clock: bucket refills, penalty decay, ban expiry at the exact
virtual time, bounded tables, and settings that check themselves."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from p2p.network import Limits, NetworkStats
from p2p.peer_guard import Offence, PeerGuard, RequestRate


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []

    def ban(self, peer: str) -> None:
        self.events.append(("ban", peer, trio.current_time()))

    def unban(self, peer: str) -> None:
        self.events.append(("unban", peer, trio.current_time()))


def guard_for(limits: Limits) -> tuple[PeerGuard, NetworkStats, Recorder]:
    stats, recorder = NetworkStats(), Recorder()
    return PeerGuard(limits, stats, on_ban=recorder.ban, on_unban=recorder.unban), stats, recorder


async def test_buckets_refill_at_their_rate_per_peer_and_protocol(
    autojump_clock: MockClock,
) -> None:
    limits = Limits(request_rate=RequestRate(per_s=4.0, burst=2),
                    request_rates={"/fast/1": RequestRate(per_s=100.0, burst=50)})
    guard, stats, _ = guard_for(limits)
    assert [guard.admit_request("p", "/q/1") for _ in range(3)] == [True, True, False]
    assert guard.admit_request("other", "/q/1") and guard.admit_request("p", "/fast/1")
    await trio.sleep(0.24)  # 0.96 of a token
    assert not guard.admit_request("p", "/q/1")
    await trio.sleep(0.26)  # the refused attempt spent nothing: 2 tokens by now, capped at 2
    assert guard.admit_request("p", "/q/1")
    await trio.sleep(10)
    assert [guard.admit_request("p", "/q/1") for _ in range(3)] == [True, True, False]
    assert stats.requests_rate_limited == 3
    assert guard.penalty("p") == pytest.approx(3 * limits.rate_limited_penalty, rel=0.05)


async def test_penalties_halve_every_half_life_and_ban_at_the_threshold(
    autojump_clock: MockClock,
) -> None:
    limits = Limits(penalty_half_life_s=100.0, ban_threshold=100.0, invalid_message_penalty=40.0)
    guard, stats, recorder = guard_for(limits)
    assert not guard.report("p", Offence.INVALID_MESSAGE)
    await trio.sleep(100)
    assert guard.penalty("p") == pytest.approx(20.0)
    assert not guard.report("p", Offence.INVALID_MESSAGE)  # 60
    assert recorder.events == []
    assert guard.report("p", Offence.INVALID_MESSAGE)  # 100
    assert recorder.events == [("ban", "p", 100.0)]
    assert guard.penalty("p") == 0.0  # the ban replaces the penalty
    assert guard.report("p", Offence.INVALID_BLOCK)  # banned: not counted again
    assert (stats.offences_reported, stats.peers_banned) == (3, 1)


async def test_a_ban_is_lifted_when_it_ends(autojump_clock: MockClock) -> None:
    guard, _, recorder = guard_for(Limits(ban_s=60.0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(guard.lift_bans_when_due)
        await trio.sleep(1)
        guard.ban("p", Offence.INVALID_BLOCK)
        await trio.sleep(30)
        guard.ban("q", Offence.INVALID_FRAME)
        assert [(b.peer_id, b.remaining_s, b.offence) for b in guard.banned()] == [
            ("p", 30.0, Offence.INVALID_BLOCK), ("q", 60.0, Offence.INVALID_FRAME)]
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    assert recorder.events == [("ban", "p", 1.0), ("ban", "q", 31.0),
                               ("unban", "p", 61.0), ("unban", "q", 91.0)]
    assert not guard.is_banned("p") and guard.banned() == []


async def test_tables_stay_bounded(autojump_clock: MockClock) -> None:
    limits = Limits(max_tracked_peers=3, request_rate=RequestRate(per_s=1.0, burst=1))
    guard, _, recorder = guard_for(limits)
    for i in range(4):
        guard.ban(f"p{i}", Offence.INVALID_BLOCK)
        await trio.sleep(1)
    assert [b.peer_id for b in guard.banned()] == ["p1", "p2", "p3"]  # p0 ended soonest
    assert ("unban", "p0", 3.0) in recorder.events
    for i in range(100):
        guard.admit_request(f"peer{i}", "/q/1")
        await trio.sleep(1)  # each bucket is full again a second later: forgettable
    assert len(guard._buckets) <= 4
    for i in range(100):
        guard.report(f"peer{i}", Offence.RATE_LIMITED)
        await trio.sleep(limits.penalty_half_life_s)
    assert len(guard._penalties) <= 4


@pytest.mark.parametrize("change", [
    {"ban_s": 0.0}, {"ban_threshold": -1.0}, {"penalty_half_life_s": float("inf")},
    {"invalid_block_penalty": float("nan")}, {"rate_limited_penalty": -1.0},
    {"max_tracked_peers": 0}, {"request_rates": {"/q/1": (10.0, 5)}},
])
def test_limits_refuse_bad_settings(change: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Limits(**change)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [(0.0, 1), (float("inf"), 1), (1.0, 0)])
def test_request_rates_refuse_bad_values(rate: tuple[float, int]) -> None:
    with pytest.raises(ValueError):
        RequestRate(*rate)
