"""The in-memory network's own features: seeded latency and loss on trio's (mock) clock."""

from __future__ import annotations

import trio
import trio.testing

from p2p.memory import MemoryHub


def run_lossy(seed: int) -> tuple[list[bytes], float]:
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def main() -> tuple[list[bytes], float]:
        hub = MemoryHub(seed=seed, latency=(0.010, 0.050), loss=0.3)
        a, b = hub.node("a"), hub.node("b")
        async with trio.open_nursery() as nursery:
            await nursery.start(a.serve)
            await nursery.start(b.serve)
            await a.connect(b.listen_addrs[0])
            channel = await b.subscribe("t")
            b.set_handler("/echo/1", lambda peer, data: _echo(data))
            start = trio.current_time()
            assert await a.request("b", "/echo/1", b"ping") == b"ping"
            rtt = trio.current_time() - start
            for i in range(50):
                await a.publish("t", b"%d" % i)
            await trio.sleep(1)  # virtual time: every delayed delivery is due by now
            got = []
            while True:
                try:
                    got.append(channel.receive_nowait().data)
                except trio.WouldBlock:
                    break
            nursery.cancel_scope.cancel()
        return got, rtt

    return trio.run(main, clock=clock)


async def _echo(data: bytes) -> bytes:
    return data


def test_latency_and_loss_are_reproducible_from_the_seed() -> None:
    got, rtt = run_lossy(3)
    assert (got, rtt) == run_lossy(3)
    assert 0.020 <= rtt <= 0.100  # two legs of 10..50 ms
    assert 20 < len(got) < 50  # about 30 % lost
    assert run_lossy(4)[0] != got
