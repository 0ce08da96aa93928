"""Engine behaviour: polls, ordering, timeouts, and the small-validator-set mode."""

from __future__ import annotations

import hashlib
import random
from itertools import combinations

import pytest

from consensus.engine import Engine
from consensus.params import DEFAULT_PARAMETERS, Parameters
from consensus.sim.lockstep import LockstepNetwork
from consensus.validators import ValidatorSet

G = hashlib.sha256(b"genesis").digest()


def vid(i: int) -> bytes:
    return bytes([i + 1]) * 20


def bid(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def network(stakes: list[int], silent: set[int], params: Parameters = DEFAULT_PARAMETERS,
            seed: int = 1) -> LockstepNetwork:
    vset = ValidatorSet((vid(i), s) for i, s in enumerate(stakes))
    engines = {
        vid(i): Engine(vid(i), params, validators=vset, last_accepted_id=G, last_accepted_height=0,
                       rng=random.Random(seed * 1000 + i))
        for i in range(len(stakes))
    }
    return LockstepNetwork(engines, silent=frozenset(vid(i) for i in silent))


def run_chain(net: LockstepNetwork, height: int, rounds: int = 200) -> None:
    parent = G
    for h in range(1, height + 1):
        net.publish(bid(f"b{h}"), parent, h)
        parent = bid(f"b{h}")
    for _ in range(rounds):
        net.flush()
        net.advance(DEFAULT_PARAMETERS.poll_timeout)


@pytest.mark.parametrize("silent", [0, 1, 2, 3])
def test_four_equal_validators_finalise_with_any_one_silent(silent: int) -> None:
    net = network([100] * 4, {silent})
    run_chain(net, 3)
    expected = [bid("b1"), bid("b2"), bid("b3")]
    for node in net.live:
        assert net.accepted_chain(node) == expected


@pytest.mark.parametrize("silent", list(combinations(range(4), 2)))
def test_four_equal_validators_with_two_silent_finalise_nothing(silent: tuple[int, int]) -> None:
    net = network([100] * 4, set(silent))
    parent = G
    net.publish(bid("a1"), parent, 1, to=[net.live[0]])
    net.publish(bid("c1"), parent, 1, to=[net.live[1]])
    for _ in range(60):
        net.flush()
        net.advance(DEFAULT_PARAMETERS.poll_timeout)
    for node in net.live:
        assert net.decisions[node] == []
        assert net.engines[node].last_accepted_id == G


def test_stake_share_not_head_count_decides_in_small_mode() -> None:
    # One validator holds 80 % of stake: it alone passes 15/20, the three others do not.
    heavy_alive = network([800, 70, 70, 60], {1, 2, 3})
    run_chain(heavy_alive, 1, rounds=40)
    assert heavy_alive.accepted_chain(vid(0)) == [bid("b1")]
    heavy_silent = network([800, 70, 70, 60], {0})
    run_chain(heavy_silent, 1, rounds=40)
    assert all(heavy_silent.decisions[n] == [] for n in heavy_silent.live)


def test_large_set_samples_k_and_finalises() -> None:
    net = network([10 + i for i in range(30)], set(), seed=7)
    assert not net.engines[vid(0)].small_set_mode
    run_chain(net, 2)
    for node in net.live:
        assert net.accepted_chain(node) == [bid("b1"), bid("b2")]


def test_polls_are_bounded_and_applied_in_issue_order() -> None:
    params = Parameters(k=4, alpha_preference=3, alpha_confidence=3, beta=5,
                        concurrent_polls=3, poll_timeout=50)
    net = network([1] * 4, set(), params=params)
    me = net.engines[vid(0)]
    net.publish(bid("b1"), G, 1)
    net.mailbox = [e for e in net.mailbox if e.src == vid(0)]
    assert me.outstanding_polls == 3
    assert len(net.mailbox) == 9
    # Answer poll 2 and 3 completely but leave poll 1 open: nothing is applied yet.
    for index in reversed(range(len(net.mailbox))):
        if net.mailbox[index].poll_id != 1:
            net.deliver(index)
    while any(e.kind == "chits" for e in net.mailbox):
        net.deliver(next(i for i, e in enumerate(net.mailbox) if e.kind == "chits"))
    assert me.polls_applied == 0
    assert me.tree.confidence_of(G) == 0
    # Poll 1 times out: its answers count as no vote, and then 2 and 3 apply in order.
    net.mailbox.clear()
    me.tick(params.poll_timeout)
    assert me.polls_applied == 3
    assert me.tree.confidence_of(G) == 2
    assert me.outstanding_polls == 3


def test_chits_from_strangers_or_twice_are_ignored() -> None:
    params = Parameters(k=4, alpha_preference=3, alpha_confidence=3, beta=5, concurrent_polls=1)
    net = network([1] * 4, set(), params=params)
    me = net.engines[vid(0)]
    net.publish(bid("b1"), G, 1, to=[vid(0)])
    stranger = b"\xee" * 20
    assert me.on_chits(stranger, 1, bid("b1"), 0).decisions == ()
    me.on_chits(vid(1), 1, bid("b1"), 0)
    me.on_chits(vid(1), 1, bid("b1"), 0)
    assert me.polls_applied == 0
    me.on_chits(vid(2), 1, bid("b1"), 0)
    assert me.polls_applied == 1  # early termination: 3 of 4 with one missing


def test_unknown_voted_block_produces_a_fetch() -> None:
    params = Parameters(k=4, alpha_preference=3, alpha_confidence=3, beta=5, concurrent_polls=1)
    net = network([1] * 4, set(), params=params)
    me = net.engines[vid(0)]
    net.publish(bid("b1"), G, 1, to=[vid(0)])
    out = me.on_chits(vid(1), 1, bid("other"), 0)
    assert [(f.to, f.block_id) for f in out.fetches] == [(vid(1), bid("other"))]


def test_single_validator_finalises_alone() -> None:
    net = network([5], set())
    net.publish(bid("b1"), G, 1)
    assert net.accepted_chain(vid(0)) == [bid("b1")]


def test_validator_set_change_applies_to_later_polls_only() -> None:
    net = network([1] * 4, set())
    me = net.engines[vid(0)]
    bigger = ValidatorSet((vid(i), 1) for i in range(30))
    me.set_validators(bigger)
    assert not me.small_set_mode
    net.publish(bid("b1"), G, 1, to=[vid(0)])
    recipients = {e.dst for e in net.mailbox if e.src == vid(0)}
    assert recipients <= set(bigger.ids)
    assert recipients - {vid(i) for i in range(4)}  # the new members are being sampled
    assert me.outstanding_polls == DEFAULT_PARAMETERS.concurrent_polls


class _LowestDraw:
    """A random source whose every draw is 0: a split poll's draw picks the lowest block id
    that got a vote (here A), the worst case for the scenario below."""

    def getrandbits(self, k: int, /) -> int:
        return 0


def test_a_late_answer_does_not_fork_four_validators() -> None:
    """The fork seen in the market tests: n1 proposed A, n0 proposed B (two slots, one
    height). n3 finalised B on the answers of n0, n2 and itself while the others' first polls
    waited, and moved on to its block C on B. n0's and n2's polls then counted B 2, A 1 and
    nothing from n3 (its answers late here; in the devnet, votes for C, not yet fetched): a
    split, whose draw moved them to A, and n0, n1, n2 finalised A over n3's B. A validator
    that may still be part of a quorum for its preference must not leave it on a split
    poll."""
    a, b, c = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
    vset = ValidatorSet((vid(i), 100) for i in range(4))
    net = LockstepNetwork({
        vid(i): Engine(vid(i), DEFAULT_PARAMETERS, validators=vset, last_accepted_id=G,
                       last_accepted_height=0, rng=_LowestDraw())
        for i in range(4)})
    n0, n1, n2, n3 = (vid(i) for i in range(4))
    net.publish(a, G, 1, to=[n1])
    net.publish(b, G, 1, to=[n0, n2, n3])

    def n3_polling(index: int) -> bool:
        envelope = net.mailbox[index]
        return (envelope.src if envelope.kind == "query" else envelope.dst) == n3

    # only n3's polls get through: n3 finalises B on n0's, n2's and its own votes
    while not net.accepted_chain(n3):
        net.deliver(next(i for i in range(len(net.mailbox)) if n3_polling(i)))
    assert net.accepted_chain(n3) == [b]
    net.publish(c, b, 2, to=[n3])
    # n3 is slow for one round of the others' polls: its answers come after their deadline
    for index in reversed(range(len(net.mailbox))):
        if n3 in (net.mailbox[index].src, net.mailbox[index].dst):
            net.drop(index)
    # then every message arrives (bounded: a node left alone on a fork would poll for ever)
    for _ in range(20):
        net.flush(max_messages=2_000)
        net.advance(DEFAULT_PARAMETERS.poll_timeout)
    for node in (n0, n1, n2):
        assert net.accepted_chain(node)[:1] == [b], node.hex()
