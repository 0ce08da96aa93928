"""One conformance suite for every `Network` implementation (memory and libp2p on 127.0.0.1).

No test sleeps to synchronise: they wait on channels and on `wait_for_topic_peers`, bounded by
`trio.fail_after`.
"""

from __future__ import annotations

import gc
import threading

import pytest
import trio
from trio.testing import MockClock

from p2p.errors import (
    FrameTooLarge,
    InvalidPeerAddress,
    NetworkClosed,
    P2PError,
    PeerBanned,
    PeerUnavailable,
    ProtocolNotSupported,
    RateLimited,
    RemoteHandlerError,
    RequestFailed,
)
from p2p.network import GossipMessage, Limits, Network, TopicValidator
from p2p.peer_guard import Offence, RequestRate
from tests.p2p.conftest import ClusterFactory

BOUND = 10.0
"""Upper bound of any single wait in these tests (seconds); normal runs take milliseconds."""


async def echo(from_peer: str, data: bytes) -> bytes:
    return from_peer.encode() + b"|" + data


async def collect(
    channel: trio.MemoryReceiveChannel[GossipMessage], wanted: set[GossipMessage]
) -> list[GossipMessage]:
    """Messages received until every one of `wanted` has arrived (duplicates kept)."""
    got: list[GossipMessage] = []
    while not wanted <= set(got):
        got.append(await channel.receive())
    return got


async def test_gossip_reaches_every_subscriber_exactly_once(open_cluster: ClusterFactory) -> None:
    async with open_cluster() as cluster:
        nodes = cluster.nodes
        a = nodes[0]
        channels = [await node.subscribe("blocks") for node in nodes]
        other = await nodes[1].subscribe("other")
        with trio.fail_after(BOUND):
            for node in nodes:
                await node.wait_for_topic_peers(
                    "blocks", [n.peer_id for n in nodes if n is not node]
                )
            sent = [GossipMessage(a.peer_id, "blocks", b"block %d" % i) for i in range(20)]
            for message in sent:
                await a.publish("blocks", message.data)
            got_1 = await collect(channels[1], set(sent))
            got_2 = await collect(channels[2], set(sent))
            # A barrier: every node publishes a marker and waits for everyone else's. Anything
            # else still queued afterwards (a duplicate, the publisher's own message, another
            # topic) shows up in the channels' buffers below.
            markers = [GossipMessage(n.peer_id, "blocks", b"done") for n in nodes]
            for node in nodes:
                await node.publish("blocks", b"done")
            for i, channel in enumerate(channels):
                others = {m for j, m in enumerate(markers) if j != i}
                assert sorted(await collect(channel, others), key=repr) == sorted(others, key=repr)
        assert sorted(got_1, key=repr) == sorted(sent, key=repr)
        assert sorted(got_2, key=repr) == sorted(sent, key=repr)
        for channel in [*channels, other]:
            with pytest.raises(trio.WouldBlock):
                channel.receive_nowait()


async def test_request_round_trip_and_reuse(open_cluster: ClusterFactory) -> None:
    async with open_cluster() as cluster:
        a, b, _ = cluster.nodes
        b.set_handler("/test/echo/1", echo)
        with trio.fail_after(BOUND):
            for i in range(5):
                assert await a.request(b.peer_id, "/test/echo/1", b"x%d" % i) == (
                    a.peer_id.encode() + b"|x%d" % i
                )
            answers: dict[int, bytes] = {}

            async def one(i: int) -> None:
                answers[i] = await a.request(b.peer_id, "/test/echo/1", b"%d" % i)

            async with trio.open_nursery() as nursery:
                for i in range(16):
                    nursery.start_soon(one, i)
            assert answers == {i: a.peer_id.encode() + b"|%d" % i for i in range(16)}
            assert await a.request(b.peer_id, "/test/echo/1", b"") == a.peer_id.encode() + b"|"


async def test_handler_exception_is_typed_and_node_keeps_serving(
    open_cluster: ClusterFactory,
) -> None:
    async def fragile(from_peer: str, data: bytes) -> bytes:
        if data == b"boom":
            raise ValueError("cannot parse boom")
        return data.upper()

    async with open_cluster() as cluster:
        a, b, c = cluster.nodes
        b.set_handler("/test/fragile/1", fragile)
        with trio.fail_after(BOUND):
            with pytest.raises(RemoteHandlerError, match="ValueError: cannot parse boom"):
                await a.request(b.peer_id, "/test/fragile/1", b"boom")
            assert await a.request(b.peer_id, "/test/fragile/1", b"ok") == b"OK"
            assert await c.request(b.peer_id, "/test/fragile/1", b"fine") == b"FINE"
        assert b.stats().handler_errors == 1


async def test_oversize_frames_are_refused_and_node_keeps_serving(
    open_cluster: ClusterFactory,
) -> None:
    small = Limits(frame_limits={"/test/small/1": 1024}, max_gossip_bytes=4096)
    async with open_cluster(limits={1: small, 0: Limits(max_gossip_bytes=4096)}) as cluster:
        a, b, _ = cluster.nodes

        async def big_answer(from_peer: str, data: bytes) -> bytes:
            return b"y" * int(data)

        b.set_handler("/test/small/1", big_answer)
        with trio.fail_after(BOUND):
            # b's limit is 1 KiB, a's is the default: b refuses, a gets a typed error.
            with pytest.raises(FrameTooLarge) as refused:
                await a.request(b.peer_id, "/test/small/1", b"9" * 2048)
            assert refused.value.remote and refused.value.limit == 1024
            # An answer over the serving side's limit is refused there, typed here.
            with pytest.raises(FrameTooLarge) as too_big:
                await a.request(b.peer_id, "/test/small/1", b"2000")
            assert too_big.value.remote
            # The caller's own limit: refused before anything is sent.
            with pytest.raises(FrameTooLarge) as local:
                await b.request(a.peer_id, "/test/small/1", b"1" * 1025)
            assert not local.value.remote
            with pytest.raises(FrameTooLarge):
                await a.publish("blocks", b"z" * 4097)
            # Still serving, on the same protocol.
            assert await a.request(b.peer_id, "/test/small/1", b"10") == b"y" * 10
        assert b.stats().frames_refused >= 2


async def test_unknown_protocol_and_unreachable_peer_are_typed(
    open_cluster: ClusterFactory,
) -> None:
    async with open_cluster(n=2) as cluster:
        a, b = cluster.nodes
        b.set_handler("/test/echo/1", echo)
        with trio.fail_after(BOUND):
            with pytest.raises(ProtocolNotSupported):
                await a.request(b.peer_id, "/test/nothing/1", b"?")
            assert await a.request(b.peer_id, "/test/echo/1", b"k") == a.peer_id.encode() + b"|k"
            with pytest.raises(PeerUnavailable):
                await a.request(cluster.spare_peer_id, "/test/echo/1", b"k")
            with pytest.raises(InvalidPeerAddress):
                await a.connect("/not/an/address")
        assert [p.peer_id for p in a.peers()] == [b.peer_id]
        assert a.peers()[0].addrs


def _all_tasks() -> set[trio.lowlevel.Task]:
    tasks: set[trio.lowlevel.Task] = set()
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        tasks.add(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return tasks


async def test_shutdown_leaves_nothing_running(open_cluster: ClusterFactory) -> None:
    threads_before = set(threading.enumerate())
    tasks_before = _all_tasks()
    async with open_cluster() as cluster:
        a, b, _ = cluster.nodes
        b.set_handler("/test/echo/1", echo)
        channel = await a.subscribe("blocks")
        with trio.fail_after(BOUND):
            await a.request(b.peer_id, "/test/echo/1", b"warm")
            await b.subscribe("blocks")
            await b.wait_for_topic_peers("blocks", [a.peer_id])
            await b.publish("blocks", b"one")
            assert (await channel.receive()).data == b"one"
    assert _all_tasks() == tasks_before
    # no thread started here is left (idle worker threads of earlier tests may time out)
    assert set(threading.enumerate()) <= threads_before
    gc.collect()  # an unclosed socket would raise ResourceWarning (an error under -W error)
    with pytest.raises(NetworkClosed):
        await a.request(b.peer_id, "/test/echo/1", b"late")
    with pytest.raises(NetworkClosed):
        await a.publish("blocks", b"late")
    assert a.listen_addrs == []
    async for _ in channel:
        raise AssertionError("no message after shutdown")


def test_every_implementation_is_a_network() -> None:
    from p2p.libp2p_host import Libp2pNetwork
    from p2p.memory import MemoryHub

    nets: list[Network] = [MemoryHub().node(), Libp2pNetwork.from_seed(b"\x07" * 32)]
    assert all(net.listen_addrs == [] for net in nets)


# --- hostile peers: rate limits, reports, bans -----------------------------------------------


async def test_requests_over_the_rate_limit_are_refused_before_the_handler(
    open_cluster: ClusterFactory, clock: MockClock
) -> None:
    slow = RequestRate(per_s=0.02, burst=3)  # a token every 50 s: none comes back by itself
    limits = Limits(request_rate=slow, request_rates={"/test/free/1": RequestRate(1000.0, 1000)})
    async with open_cluster(limits={1: limits}) as cluster:
        a, b, c = cluster.nodes
        served: list[str] = []

        async def counted(from_peer: str, data: bytes) -> bytes:
            served.append(from_peer)
            return data

        b.set_handler("/test/echo/1", counted)
        b.set_handler("/test/free/1", counted)
        with trio.fail_after(BOUND):
            for i in range(3):
                assert await a.request(b.peer_id, "/test/echo/1", b"%d" % i) == b"%d" % i
            with pytest.raises(RateLimited):
                await a.request(b.peer_id, "/test/echo/1", b"one too many")
            assert served == [a.peer_id] * 3
            # other peers and other protocols have buckets of their own
            assert await c.request(b.peer_id, "/test/echo/1", b"c") == b"c"
            for _ in range(5):
                assert await a.request(b.peer_id, "/test/free/1", b"f") == b"f"
        clock.jump(50)  # one token back (outside `fail_after`, whose deadline it would pass)
        with trio.fail_after(BOUND):
            assert await a.request(b.peer_id, "/test/echo/1", b"again") == b"again"
            with pytest.raises(RequestFailed, match="rate limited"):
                await a.request(b.peer_id, "/test/echo/1", b"and again")
        assert b.stats().requests_rate_limited == 2
        assert b.stats().offences_reported == 2  # each refusal counts against the peer
        assert b.banned() == []  # but two are far from a ban


async def test_refusals_add_up_to_a_ban(open_cluster: ClusterFactory) -> None:
    limits = Limits(request_rate=RequestRate(per_s=0.01, burst=1), rate_limited_penalty=60.0)
    async with open_cluster(n=2, limits={1: limits}) as cluster:
        a, b = cluster.nodes
        b.set_handler("/test/echo/1", echo)
        with trio.fail_after(BOUND):
            await a.request(b.peer_id, "/test/echo/1", b"ok")
            with pytest.raises(RateLimited):
                await a.request(b.peer_id, "/test/echo/1", b"flood")
            with pytest.raises(P2PError):  # RateLimited, or the disconnect overtook the answer
                await a.request(b.peer_id, "/test/echo/1", b"flood")
            assert [(ban.peer_id, ban.offence) for ban in b.banned()] == [
                (a.peer_id, Offence.RATE_LIMITED)
            ]
            await a.wait_disconnected(b.peer_id)


async def test_oversize_frames_count_against_the_sender(open_cluster: ClusterFactory) -> None:
    limits = Limits(frame_limits={"/test/small/1": 1024}, invalid_frame_penalty=60.0)
    async with open_cluster(n=2, limits={1: limits}) as cluster:
        a, b = cluster.nodes
        b.set_handler("/test/small/1", echo)
        with trio.fail_after(BOUND):
            with pytest.raises(FrameTooLarge):
                await a.request(b.peer_id, "/test/small/1", b"x" * 2048)
            assert b.banned() == []
            with pytest.raises(P2PError):  # FrameTooLarge, or the disconnect overtook it
                await a.request(b.peer_id, "/test/small/1", b"x" * 2048)
            assert [(ban.peer_id, ban.offence) for ban in b.banned()] == [
                (a.peer_id, Offence.INVALID_FRAME)
            ]
        assert b.stats().frames_refused == 2


async def test_report_bans_disconnects_refuses_and_expires(
    open_cluster: ClusterFactory, clock: MockClock
) -> None:
    async with open_cluster(limits={1: Limits(ban_s=30.0)}) as cluster:
        a, b, c = cluster.nodes
        for node in cluster.nodes:
            node.set_handler("/test/echo/1", echo)
        with trio.fail_after(BOUND):
            await a.request(b.peer_id, "/test/echo/1", b"warm")  # an idle stream to reuse
            assert not b.report(a.peer_id, Offence.INVALID_BLOCK)  # 60 of 100
            assert b.banned() == []
            assert b.report(a.peer_id, Offence.INVALID_BLOCK)
            [ban] = b.banned()
            assert (ban.peer_id, ban.offence) == (a.peer_id, Offence.INVALID_BLOCK)
            assert 25.0 < ban.remaining_s <= 30.0
            assert a.peer_id not in {p.peer_id for p in b.peers()}
            await a.wait_disconnected(b.peer_id)
            await b.wait_disconnected(a.peer_id)
            # b neither dials nor asks a; a's connections and requests are refused
            with pytest.raises(PeerBanned):
                await b.request(a.peer_id, "/test/echo/1", b"?")
            with pytest.raises(PeerBanned):
                await b.connect(a.listen_addrs[0])
            with pytest.raises(PeerUnavailable):
                await a.connect(b.listen_addrs[0])
            with pytest.raises(P2PError):
                await a.request(b.peer_id, "/test/echo/1", b"?")
            assert await c.request(b.peer_id, "/test/echo/1", b"c") == c.peer_id.encode() + b"|c"
            assert b.report(a.peer_id, Offence.INVALID_FRAME)  # still banned, nothing new
        clock.jump(30)
        with trio.fail_after(BOUND):
            assert b.banned() == []
            assert await a.connect(b.listen_addrs[0]) == b.peer_id
            assert await a.request(b.peer_id, "/test/echo/1", b"back") == (
                a.peer_id.encode() + b"|back"
            )
            assert not b.report(a.peer_id, Offence.INVALID_BLOCK)  # the penalty starts over
        stats = b.stats()
        assert (stats.peers_banned, stats.offences_reported) == (1, 3)
        assert stats.banned_refused >= 1
        with pytest.raises(InvalidPeerAddress):
            b.report(b.peer_id, Offence.INVALID_BLOCK)


async def test_topic_validators_drop_invalid_gossip_and_report_its_forwarder(
    open_cluster: ClusterFactory,
) -> None:
    judged: dict[tuple[str, bytes], trio.Event] = {}

    def validator_of(node: Network) -> TopicValidator:
        def validate(origin: str, data: bytes) -> bool:
            judged.setdefault((node.peer_id, data), trio.Event()).set()
            if data == b"raise":
                raise ValueError("cannot parse")  # an exception rejects too
            return not data.startswith(b"bad")

        return validate

    async def judged_by(node: Network, data: bytes) -> None:
        await judged.setdefault((node.peer_id, data), trio.Event()).wait()

    limits = Limits(invalid_message_penalty=60.0)
    async with open_cluster(limits={1: limits, 2: limits}) as cluster:
        a, b, c = cluster.nodes
        for node in cluster.nodes:  # every node runs the same validators
            node.set_topic_validator("blocks", validator_of(node))
        channels = [await node.subscribe("blocks") for node in cluster.nodes]
        with trio.fail_after(BOUND):
            for node in cluster.nodes:
                await node.wait_for_topic_peers(
                    "blocks", [n.peer_id for n in cluster.nodes if n is not node]
                )
            await a.publish("blocks", b"bad 1")  # a does not judge its own messages
            for node in (b, c):
                await judged_by(node, b"bad 1")
                assert node.banned() == []
            assert b.stats().gossip_rejected >= 1
            await a.publish("blocks", b"good")
            for channel in channels[1:]:
                assert (await channel.receive()).data == b"good"  # "bad 1" never arrived
            await a.publish("blocks", b"raise")
            for node in (b, c):
                await judged_by(node, b"raise")
                assert [(ban.peer_id, ban.offence) for ban in node.banned()] == [
                    (a.peer_id, Offence.INVALID_MESSAGE)
                ]
            await c.publish("blocks", b"from c")
            assert (await channels[1].receive()).data == b"from c"
            b.set_topic_validator("blocks", None)
            await c.publish("blocks", b"bad but unjudged")
            assert (await channels[1].receive()).data == b"bad but unjudged"


async def test_gossip_of_a_banned_peer_is_dropped_even_when_forwarded(
    open_cluster: ClusterFactory,
) -> None:
    async with open_cluster() as cluster:
        a, b, c = cluster.nodes
        channels = [await node.subscribe("blocks") for node in cluster.nodes]
        with trio.fail_after(BOUND):
            for node in cluster.nodes:
                await node.wait_for_topic_peers(
                    "blocks", [n.peer_id for n in cluster.nodes if n is not node]
                )
            b.report(a.peer_id, Offence.INVALID_BLOCK)
            assert b.report(a.peer_id, Offence.INVALID_BLOCK)
            await b.wait_disconnected(a.peer_id)
            await a.publish("blocks", b"from a")
            assert (await channels[2].receive()).data == b"from a"  # c takes it, passes it on
            for data in (b"from c", b"again from c"):  # what c passed on would be ahead
                await c.publish("blocks", data)
                assert (await channels[1].receive()).data == data
