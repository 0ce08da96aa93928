"""libp2p-specific behaviour: hostile bytes on the TCP port, a peer that answers more than it
was asked, identity from the node key, bootstrap reconnection, GossipSub scoring."""

from __future__ import annotations

import contextlib
import random

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamError

from ogpu_node.keys import PrivateKey
from p2p.errors import RequestFailed
from p2p.framing import encode_frame, encode_ok
from p2p.libp2p_host import (
    GossipConfig,
    Libp2pConfig,
    Libp2pNetwork,
    key_pair_from_seed,
    parse_peer_id,
    peer_id_from_seed,
)
from p2p.network import INVALID_MESSAGE_PENALTY, MAX_IDLE_STREAMS

BOUND = 10.0


async def echo(from_peer: str, data: bytes) -> bytes:
    return data


def _port(net: Libp2pNetwork) -> int:
    return int(net.listen_addrs[0].split("/tcp/")[1].split("/")[0])


async def test_garbage_on_the_tcp_port_does_not_hurt_the_node() -> None:
    rng = random.Random(7)
    a, b = Libp2pNetwork.from_seed(b"\x01" * 32), Libp2pNetwork.from_seed(b"\x02" * 32)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        a.set_handler("/test/echo/1", echo)
        with trio.fail_after(BOUND):
            payloads = [
                bytes(rng.randrange(256) for _ in range(4096)),
                b"\x13/multistream/1.0.0\n" + bytes(rng.randrange(256) for _ in range(512)),
                b"\x13/multistream/1.0.0\n\x07/noise\n" + b"\xff" * 70000,
                b"",
            ]
            for junk in payloads:
                stream = await trio.open_tcp_stream("127.0.0.1", _port(a))
                try:
                    await stream.send_all(junk)
                except trio.BrokenResourceError:
                    pass  # the node hung up on us: fine
                finally:
                    await stream.aclose()
            await b.connect(a.listen_addrs[0])
            assert await b.request(a.peer_id, "/test/echo/1", b"alive") == b"alive"
        nursery.cancel_scope.cancel()


async def test_bytes_after_a_response_fail_the_request_and_the_stream_is_not_reused() -> None:
    """A peer that writes more than one answer: the extra bytes would be read as the next
    request's answer if its stream went back to the pool."""
    a, b = Libp2pNetwork.from_seed(b"\x01" * 32), Libp2pNetwork.from_seed(b"\x02" * 32)
    opened: list[int] = []

    async def chatty(stream: INetStream) -> None:
        opened.append(1)
        with contextlib.suppress(StreamError):  # raised in a handler, it stalls the host
            while await stream.read(65536):
                await stream.write(encode_frame(encode_ok(b"answer"), 100)
                                   + encode_frame(encode_ok(b"extra"), 100))

    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        a._require_running().host.set_stream_handler(TProtocol("/test/chatty/1"), chatty)
        with trio.fail_after(BOUND):
            await b.connect(a.listen_addrs[0])
            for attempt in (1, 2):
                with pytest.raises(RequestFailed, match="after the response"):
                    await b.request(a.peer_id, "/test/chatty/1", b"ask")
                assert len(opened) == attempt  # a fresh stream each time
        # each broken response counts against the peer: 2 x 30 of the 100 that ban
        assert b.stats().offences_reported == 2 and b.banned() == []
        nursery.cancel_scope.cancel()


async def test_a_burst_of_requests_reuses_the_streams_of_the_last_one() -> None:
    a, b = Libp2pNetwork.from_seed(b"\x01" * 32), Libp2pNetwork.from_seed(b"\x02" * 32)
    burst, arrived = MAX_IDLE_STREAMS, 0
    all_in = trio.Event()

    async def slow_echo(from_peer: str, data: bytes) -> bytes:
        nonlocal arrived
        arrived += 1
        if arrived % burst == 0:
            all_in.set()
        await all_in.wait()  # every request of the burst is in flight at once
        return data

    async def one(i: int) -> None:
        assert await b.request(a.peer_id, "/test/slow/1", b"%d" % i) == b"%d" % i

    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        a.set_handler("/test/slow/1", slow_echo)
        with trio.fail_after(BOUND):
            await b.connect(a.listen_addrs[0])
            for _ in range(2):
                all_in = trio.Event()
                async with trio.open_nursery() as requests:
                    for i in range(burst):
                        requests.start_soon(one, i)
                assert b.stats().streams_opened == burst  # the second burst opened none
        nursery.cancel_scope.cancel()


def test_identity_comes_from_the_node_key_seed() -> None:
    key = PrivateKey.from_seed(b"\x05" * 32)
    pair = key_pair_from_seed(key.secret_bytes())
    assert pair.public_key.to_bytes() == key.public_key.raw
    net = Libp2pNetwork.from_seed(key.secret_bytes())
    assert net.peer_id == peer_id_from_seed(key.secret_bytes())
    assert net.peer_id.startswith("12D3KooW")


async def test_bootstrap_peer_is_redialled_until_it_comes_back() -> None:
    seed_a = b"\x0a" * 32
    first = Libp2pNetwork.from_seed(seed_a)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.serve)
        addr, port = first.listen_addrs[0], _port(first)
        nursery.cancel_scope.cancel()
    # `b` starts while `a` is down, then `a` comes back on the same port: b's keeper redials.
    b = Libp2pNetwork.from_seed(b"\x0b" * 32, Libp2pConfig(bootstrap=(addr,)))
    a = Libp2pNetwork.from_seed(seed_a, Libp2pConfig(listen_port=port))
    async with trio.open_nursery() as nursery:
        await nursery.start(b.serve)
        await b.subscribe("t")
        await nursery.start(a.serve)
        await a.subscribe("t")
        with trio.fail_after(BOUND):
            await a.wait_for_topic_peers("t", [b.peer_id])
        assert [p.peer_id for p in b.peers()] == [a.peer_id]
        nursery.cancel_scope.cancel()


async def test_rejected_gossip_scores_its_forwarder_down_in_gossipsub() -> None:
    """P4 (invalid messages) counts the rejection, P6 (application score) carries our
    penalty of the peer; an honest peer scores 0."""
    a, b, c = (Libp2pNetwork.from_seed(bytes([i]) * 32) for i in (1, 2, 3))
    judged = trio.Event()

    def validate(origin: str, data: bytes) -> bool:
        judged.set()
        return data != b"bad"

    async with trio.open_nursery() as nursery:
        for net in (a, b, c):
            await nursery.start(net.serve)
        b.set_topic_validator("t", validate)
        with trio.fail_after(BOUND):
            await a.connect(b.listen_addrs[0])
            await c.connect(b.listen_addrs[0])
            for net in (a, b, c):
                await net.subscribe("t")
            await b.wait_for_topic_peers("t", [a.peer_id, c.peer_id])
            await a.publish("t", b"bad")
            await judged.wait()
        scorer = b._require_running().gossipsub.scorer
        assert scorer is not None
        peer = parse_peer_id(a.peer_id)
        g = GossipConfig()
        assert scorer.topic_score(peer, "t") == pytest.approx(-g.invalid_message_weight, rel=0.05)
        expected = -g.invalid_message_weight - INVALID_MESSAGE_PENALTY * g.app_specific_weight
        assert scorer.score(peer, ["t"]) == pytest.approx(expected, rel=0.05)
        assert scorer.score(parse_peer_id(c.peer_id), ["t"]) == 0.0
        assert b.stats().gossip_rejected == 1
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("change", [
    {"graylist_threshold": -5.0}, {"gossip_threshold": 1.0}, {"invalid_message_weight": -1.0},
    {"behaviour_penalty_decay": 0.0}, {"ip_colocation_weight": float("nan")},
    {"degree_low": 7}, {"accept_px_threshold": -1.0},
])
def test_gossip_config_refuses_bad_settings(change: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GossipConfig(**change)  # type: ignore[arg-type]
