"""What a stake majority vouches for: the height to sync to and the block at a height.

A node that is behind must not take finality from one peer: a peer may report a height it does
not have, or serve a private fork validly signed by a Byzantine validator that picked timestamps
in slots it holds. As avalanchego's bootstrapping does, a lagging node follows only what
validators holding at least alpha_confidence/k of the stake (the share that finalises a block)
say they have accepted; answers count only from peers proven to be those validators
(`node.identity`). Pure functions: the sync service asks, these decide.
"""

from __future__ import annotations

from collections.abc import Mapping

from consensus.params import Parameters
from consensus.validators import ValidatorSet


def vouched_height(heights: Mapping[bytes, int], validators: ValidatorSet,
                   params: Parameters) -> int | None:
    """The greatest height that validators holding alpha_confidence/k of the stake all report
    to have finalised (`heights`: validator -> its reported height), or None when the validators
    heard from hold too little stake. A Byzantine minority that reports any height moves it
    no higher than the honest majority's."""
    total = validators.total_stake
    weight = 0
    for height, validator in sorted(((h, v) for v, h in heights.items()), reverse=True):
        weight += validators.stake_of(validator)
        if params.passes(params.alpha_confidence, weight, total):
            return height
    return None


def vouched_hash(answers: Mapping[bytes, bytes], validators: ValidatorSet,
                 params: Parameters) -> bytes | None:
    """The block hash at one height that validators holding alpha_confidence/k of the stake
    gave (`answers`: validator -> the hash it has finalised there), or None."""
    weights: dict[bytes, int] = {}
    for validator, block_hash in answers.items():
        if block_hash:
            weights[block_hash] = weights.get(block_hash, 0) + validators.stake_of(validator)
    for block_hash, weight in sorted(weights.items()):
        if params.passes(params.alpha_confidence, weight, validators.total_stake):
            return block_hash
    return None
