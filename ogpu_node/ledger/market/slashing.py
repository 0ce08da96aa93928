"""Slashing a provider, shared by tasks and pools: who gets the slashed collateral.

Members who revealed *reject* get their verification fee from it (they caught the fault), the client
gets `slash_to_client_bps` of the rest as compensation, and the remainder is burned. A returned
task's penalty (`return_penalty_bps` of the collateral) is shared out the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from ogpu_node.ledger.market.records import Movement
from ogpu_node.ledger.params import BPS
from ogpu_node.ledger.working import Working
from ogpu_node.types import Address


def slash_provider(w: Working, provider_address: Address, held: int) -> int:
    """Take `held` (collateral or bond, part of `locked`) from the provider's stake and count a
    failure; returns the amount actually taken."""
    return penalise_provider(w, provider_address, held, held)


def penalise_provider(w: Working, provider_address: Address, held: int, penalty: int) -> int:
    """Release `held` (collateral or bond, part of `locked`), take `penalty` (at most `held`)
    from the provider's stake and count a failure; returns the amount actually taken."""
    provider = w.provider(provider_address)
    if provider is None:
        return 0
    taken = min(penalty, held, provider.stake)
    w.set_provider(provider_address, replace(
        provider, stake=provider.stake - taken, locked=provider.locked - held,
        failed=provider.failed + 1, fail_streak=provider.fail_streak + 1))
    return taken


def share_slashed(w: Working, slashed: int, provider_address: Address, client: Address,
                  rejecters: Iterable[Address], fee: int, *,
                  event: str = "provider_slashed") -> list[Movement]:
    """Pay out `slashed` (see the module docstring); returns the money trail lines, the first
    one `event` (what was taken from the provider, and why)."""
    lines = [Movement(event, provider_address, slashed)]
    left = slashed
    for member in rejecters:
        if fee and left:
            pay = min(fee, left)
            w.credit(member, pay)
            lines.append(Movement("verifier_fee", member, pay))
            left -= pay
    to_client = left * w.base.params.slash_to_client_bps // BPS
    w.credit(client, to_client)
    w.burned += left - to_client
    return [*lines, Movement("slash_to_client", client, to_client),
            Movement("slash_burned", provider_address, left - to_client)]
