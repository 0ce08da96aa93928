"""Property tests: honest nodes under any delivery order, drops and delays.

Hypothesis builds a fork tree of blocks, hands the blocks to random subsets of nodes, then
interleaves deliveries, drops, reorderings and clock advances. Afterwards the network heals
(everyone gets every block and every message arrives). Properties: no two honest nodes ever
finalise different blocks at one height, and after healing all finalise the same chain.
Profiles: ``consensus-ci`` by default, ``consensus-deep`` with OGPU_DEEP=1 (see conftest).
"""

from __future__ import annotations

import hashlib
import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.engine import Engine
from consensus.params import Parameters
from consensus.sim.lockstep import LockstepNetwork
from consensus.validators import ValidatorSet

# Profiles are registered in conftest.py.
PROFILE = settings.get_profile(
    "consensus-deep" if os.environ.get("OGPU_DEEP") == "1" else "consensus-ci")
G = hashlib.sha256(b"genesis").digest()
TIMEOUT = 100


def vid(i: int) -> bytes:
    return hashlib.sha256(b"v" + bytes([i])).digest()[:20]


def make_network(n: int, params: Parameters, stakes: list[int], seed: int) -> LockstepNetwork:
    vset = ValidatorSet((vid(i), stakes[i]) for i in range(n))
    engines = {
        vid(i): Engine(vid(i), params, validators=vset, last_accepted_id=G,
                       last_accepted_height=0, rng=random.Random(seed * 97 + i))
        for i in range(n)
    }
    return LockstepNetwork(engines)


def assert_no_conflicts(net: LockstepNetwork) -> None:
    by_height: dict[int, bytes] = {}
    for node in net.live:
        for decision in net.decisions[node]:
            if decision.accepted:
                first = by_height.setdefault(decision.height, decision.block_id)
                assert first == decision.block_id, f"conflict at height {decision.height}"


@st.composite
def scenarios(draw: st.DrawFn, max_nodes: int) -> tuple[int, list[int], list[list[int]], int]:
    n = draw(st.integers(4, max_nodes))
    stakes = draw(st.lists(st.integers(1, 10), min_size=n, max_size=n))
    # Fork tree: per height, each block names a parent among the previous height's blocks.
    levels = draw(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=3),
                           min_size=1, max_size=4))
    seed = draw(st.integers(0, 2**16))
    return n, stakes, levels, seed


def build_blocks(net: LockstepNetwork, levels: list[list[int]]) -> list[bytes]:
    previous = [G]
    created: list[bytes] = []
    for height, parents in enumerate(levels, start=1):
        current = []
        for index, choice in enumerate(parents):
            parent = previous[choice % len(previous)]
            block_id = hashlib.sha256(b"%d/%d/" % (height, index) + parent).digest()
            net.blocks[block_id] = (parent, height)
            current.append(block_id)
        created.extend(current)
        previous = current
    return created


def chaos_then_heal(data: st.DataObject, net: LockstepNetwork, blocks: list[bytes]) -> None:
    nodes = net.live
    for block_id in blocks:
        for node in data.draw(st.lists(st.sampled_from(nodes), max_size=len(nodes)),
                              label="first receivers"):
            net.give_block(node, block_id)
    steps = data.draw(st.integers(0, 300), label="chaos steps")
    for _ in range(steps):
        action = data.draw(st.integers(0, 9))
        if net.mailbox and action <= 5:
            net.deliver(data.draw(st.integers(0, len(net.mailbox) - 1)))
        elif net.mailbox and action == 6:
            net.drop(data.draw(st.integers(0, len(net.mailbox) - 1)))
        elif action == 7:
            net.advance(TIMEOUT)
        else:
            net.give_block(data.draw(st.sampled_from(nodes)), data.draw(st.sampled_from(blocks)))
        assert_no_conflicts(net)
    # Heal: every node learns every block, then messages flow reliably until all decide.
    for node in nodes:
        for block_id in blocks:
            net.give_block(node, block_id)
    for _ in range(400):
        net.flush(max_messages=200_000)
        assert_no_conflicts(net)
        if all(net.engines[node].tree.processing_count == 0 for node in nodes):
            break
        net.advance(TIMEOUT)
    chains = {tuple(net.accepted_chain(node)) for node in nodes}
    assert len(chains) == 1, "honest nodes finalised different chains after healing"
    assert all(net.engines[node].tree.processing_count == 0 for node in nodes)


@PROFILE
@given(scenario=scenarios(max_nodes=7), data=st.data())
def test_small_set_mode_is_safe_and_converges_after_healing(
        scenario: tuple[int, list[int], list[list[int]], int], data: st.DataObject) -> None:
    n, stakes, levels, seed = scenario
    net = make_network(n, Parameters(poll_timeout=TIMEOUT), stakes, seed)
    chaos_then_heal(data, net, build_blocks(net, levels))


@PROFILE
@given(scenario=scenarios(max_nodes=12), data=st.data())
def test_sampling_mode_is_safe_and_converges_after_healing(
        scenario: tuple[int, list[int], list[list[int]], int], data: st.DataObject) -> None:
    n, stakes, levels, seed = scenario
    # k below n so that polls sample by stake; same thresholds as the defaults scaled to k=3.
    params = Parameters(k=3, alpha_preference=3, alpha_confidence=3, beta=20,
                        concurrent_polls=2, poll_timeout=TIMEOUT)
    net = make_network(n, params, stakes, seed)
    chaos_then_heal(data, net, build_blocks(net, levels))
