"""Proposer schedule: who may propose the block at a height, per slot window.

The draw is stake-weighted and seeded by sha256(chain id, height, slot), so every node
computes the same proposer from the same validator set. Slot ``s`` opens ``s`` windows after
the parent's timestamp; if slot ``s``'s proposer is silent, slot ``s + 1``'s takes over.
"""

from __future__ import annotations

import hashlib

from consensus.errors import InvalidSchedule
from consensus.validators import ValidatorSet

_DOMAIN = b"ogpu/consensus/proposer/v1"


def proposer_for(chain_id: bytes, height: int, slot: int, validators: ValidatorSet) -> bytes:
    """The validator allowed to propose at ``height`` in ``slot``."""
    if height < 0 or slot < 0:
        raise InvalidSchedule(f"height {height} and slot {slot} must be >= 0")
    digest = hashlib.sha256(
        _DOMAIN
        + len(chain_id).to_bytes(2, "big")
        + chain_id
        + height.to_bytes(8, "big")
        + slot.to_bytes(8, "big")
    ).digest()
    # 256 bits reduced modulo a stake total below 2**64 leaves a bias under 2**-190.
    offset = int.from_bytes(digest, "big") % validators.total_stake
    return validators.at_stake_offset(offset)


def slot_at(parent_time: int, now: int, window: int) -> int:
    """The slot open at ``now`` for a block whose parent was stamped ``parent_time``."""
    if window <= 0:
        raise InvalidSchedule(f"slot window {window} must be > 0")
    if now <= parent_time:
        return 0
    return (now - parent_time) // window


def slot_start(parent_time: int, slot: int, window: int) -> int:
    """The time slot ``slot`` opens."""
    if window <= 0 or slot < 0:
        raise InvalidSchedule(f"slot {slot} and window {window} must be >= 0 and > 0")
    return parent_time + slot * window


def may_propose(chain_id: bytes, validator: bytes, height: int, *, parent_time: int, now: int,
                window: int, validators: ValidatorSet) -> bool:
    """Whether ``validator`` holds the slot open at ``now`` for ``height``."""
    slot = slot_at(parent_time, now, window)
    return proposer_for(chain_id, height, slot, validators) == validator
