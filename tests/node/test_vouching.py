"""The sync target and the block at a height: only what validators holding alpha_confidence/k of
the stake vouch for (avalanchego's bootstrapping rule)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consensus.params import Parameters
from consensus.validators import ValidatorSet
from ogpu_node.node.vouching import vouched_hash, vouched_height

PARAMS = Parameters()  # alpha_confidence / k = 15 / 20: three quarters of the stake
A, B, C, D = (bytes([i]) * 20 for i in range(1, 5))
EQUAL = ValidatorSet([(A, 10), (B, 10), (C, 10), (D, 10)])


def test_the_height_three_quarters_of_the_stake_have_reached() -> None:
    assert vouched_height({A: 50, B: 52, C: 51, D: 49}, EQUAL, PARAMS) == 50
    assert vouched_height({A: 50, B: 52, C: 51}, EQUAL, PARAMS) == 50


def test_a_lying_minority_cannot_raise_the_target() -> None:
    """One validator (a quarter of the stake) reporting a height nobody has changes nothing."""
    assert vouched_height({A: 50, B: 50, C: 50, D: 10**12}, EQUAL, PARAMS) == 50


def test_too_little_stake_heard_gives_no_target() -> None:
    assert vouched_height({A: 50, B: 50}, EQUAL, PARAMS) is None
    assert vouched_height({A: 50, B: 50, b"\x09" * 20: 60}, EQUAL, PARAMS) is None


def test_stake_weighs_not_headcount() -> None:
    whale = ValidatorSet([(A, 80), (B, 10), (C, 10)])
    assert vouched_height({A: 70, B: 90, C: 95}, whale, PARAMS) == 70
    assert vouched_height({B: 90, C: 95}, whale, PARAMS) is None


def test_the_hash_three_quarters_agree_on() -> None:
    honest, fork = b"\1" * 32, b"\2" * 32
    assert vouched_hash({A: honest, B: honest, C: honest, D: fork}, EQUAL, PARAMS) == honest
    assert vouched_hash({A: honest, B: honest, C: fork, D: fork}, EQUAL, PARAMS) is None
    assert vouched_hash({A: honest, B: honest, C: b"", D: b""}, EQUAL, PARAMS) is None


@given(st.dictionaries(st.sampled_from([A, B, C, D]), st.integers(0, 2**64 - 1)),
       st.sampled_from([A, B, C, D]))
def test_no_single_validator_decides(heights: dict[bytes, int], liar: bytes) -> None:
    """Whatever one validator reports, the target is one that some honest validator reached."""
    honest = {v: h for v, h in heights.items() if v != liar}
    for lie in (0, 2**64 - 1):
        target = vouched_height({**honest, liar: lie}, EQUAL, PARAMS)
        if target is not None:
            assert target <= max(honest.values())
