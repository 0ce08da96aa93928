"""The state at height 0, from a chain's genesis contents."""

from __future__ import annotations

from collections.abc import Sequence

from ogpu_node.keys import address_of
from ogpu_node.ledger.params import Params
from ogpu_node.ledger.state import Account, State, compute_records_hash, select_validators
from ogpu_node.types import Address, Hash32


def make_genesis_state(
    *,
    chain_id: str,
    params: Params,
    genesis_hash: Hash32,
    timestamp: int,
    allocations: Sequence[tuple[Address, int]],
    validators: Sequence[tuple[bytes, int]],
) -> State:
    """Height-0 state: `allocations` as balances, `validators` (public key, stake) bonded.

    Validation of the inputs (cap, minimum stake, duplicates) is the genesis file's job; this only
    builds. Everything allocated or staked counts as issued.
    """
    accounts: dict[Address, Account] = {}
    for address, amount in allocations:
        acct = accounts.get(address, Account())
        accounts[address] = Account(acct.balance + amount, 0, acct.stake, acct.public_key)
    for public_key, stake in validators:
        address = address_of(public_key)
        acct = accounts.get(address, Account())
        accounts[address] = Account(acct.balance, 0, acct.stake + stake, public_key)
    issued = sum(a for _, a in allocations) + sum(s for _, s in validators)
    return State(
        chain_id=chain_id, params=params, height=0, block_hash=genesis_hash,
        timestamp=timestamp, accounts=accounts, unbonding={},
        validators=select_validators(accounts, params), issued=issued, burned=0, reward_pool=0,
        records_hash=compute_records_hash(accounts, {}),
        changed_accounts=tuple(sorted(accounts)),
    )
