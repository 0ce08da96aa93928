"""Block emission: a reward per block, halving every `halving_interval` blocks, capped by supply."""

from __future__ import annotations

from ogpu_node.ledger.params import Params
from ogpu_node.types import MAX_SUPPLY, Amount


def scheduled_reward(params: Params, height: int) -> Amount:
    """The reward the schedule gives block `height` (heights start at 1), before the cap."""
    if height < 1:
        return Amount(0)
    era = (height - 1) // params.halving_interval
    if era >= 64:
        return Amount(0)
    return Amount(params.initial_block_reward >> era)


def block_reward(params: Params, height: int, issued: int) -> Amount:
    """The reward minted at `height`: the schedule, clipped so issued never exceeds the cap."""
    return Amount(max(0, min(scheduled_reward(params, height), MAX_SUPPLY - issued)))
