"""The ledger state: accounts, stakes, unbonding entries, the active validator set, totals,
tombstones of validators punished for equivocation, the market's providers and tasks, and
governance's proposals and votes.

A `State` is never mutated after it is made: transitions build a new one (see `transition.py`),
sharing unchanged records. Its `root` commits to everything consensus-relevant, so two nodes that
applied the same blocks hold the same root.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Self

from ogpu_node.encoding import pack, read_array, read_bytes, read_uint
from ogpu_node.hashing import digest
from ogpu_node.ledger.commitment import EMPTY_LTHASH, lthash_update
from ogpu_node.ledger.governance.records import (
    OPEN_STATUSES,
    Proposal,
    VoteKey,
    VoteOption,
    proposal_record,
    vote_record,
)
from ogpu_node.ledger.market.records import (
    LIVE_REQUESTS,
    Check,
    CheckPhase,
    Model,
    Pool,
    Provider,
    Task,
    TaskStatus,
)
from ogpu_node.ledger.params import Params
from ogpu_node.types import ADDRESS_LEN, PUBKEY_LEN, Address, Hash32
from ogpu_node.workloads.models import ModelInfo

UnbondingKey = tuple[int, Address]
"""(release height, owner): at most one entry per owner and height; amounts unstaked in the same
block add up."""


@dataclass(frozen=True, slots=True)
class Account:
    """An address's balance, next nonce, bonded stake and (once known) public key."""

    balance: int = 0
    nonce: int = 0
    stake: int = 0
    public_key: bytes = b""

    MAX_BYTES: ClassVar[int] = 96

    def to_fields(self) -> list[Any]:
        return [self.balance, self.nonce, self.stake, self.public_key]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        balance, nonce, stake, key = read_array(value, 4, "account")
        return cls(read_uint(balance, "account.balance"), read_uint(nonce, "account.nonce"),
                   read_uint(stake, "account.stake"),
                   read_bytes(key, "account.public_key", max_len=PUBKEY_LEN))


@dataclass(frozen=True, slots=True)
class Validator:
    """A member of the active validator set, with the stake it had at the last epoch boundary."""

    address: Address
    public_key: bytes
    stake: int

    def to_fields(self) -> list[Any]:
        return [self.address, self.public_key, self.stake]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        address, key, stake = read_array(value, 3, "validator")
        return cls(Address(read_bytes(address, "validator.address", size=ADDRESS_LEN)),
                   read_bytes(key, "validator.public_key", size=PUBKEY_LEN),
                   read_uint(stake, "validator.stake"))


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The mark of an account punished for equivocation: the (height, slot) it signed twice for
    and the amount slashed. It leaves the validator set at the next epoch boundary and may never
    bond stake again, so one record per offender is kept for good (`ledger/equivocation.py`)."""

    height: int
    slot: int
    slashed: int

    MAX_BYTES: ClassVar[int] = 32

    def to_fields(self) -> list[Any]:
        return [self.height, self.slot, self.slashed]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        height, slot, slashed = read_array(value, 3, "tombstone")
        return cls(read_uint(height, "tombstone.height"), read_uint(slot, "tombstone.slot"),
                   read_uint(slashed, "tombstone.slashed"))


def account_record(address: Address, account: Account) -> bytes:
    """The bytes an account contributes to the state commitment."""
    return pack(["account", address, *account.to_fields()])


def unbonding_record(key: UnbondingKey, amount: int) -> bytes:
    """The bytes an unbonding entry contributes to the state commitment."""
    return pack(["unbonding", key[0], key[1], amount])


def provider_record(address: Address, provider: Provider) -> bytes:
    """The bytes a provider contributes to the state commitment."""
    return pack(["provider", address, *provider.to_fields()])


def task_record(task_id: Hash32, task: Task) -> bytes:
    """The bytes a task contributes to the state commitment."""
    return pack(["task", task_id, *task.to_fields()])


def pool_record(pool_id: Hash32, pool: Pool) -> bytes:
    """The bytes a pool contributes to the state commitment."""
    return pack(["pool", pool_id, *pool.to_fields()])


def model_record(model_id: Hash32, model: Model) -> bytes:
    """The bytes a registered model contributes to the state commitment."""
    return pack(["model", model_id, *model.to_fields()])


def tombstone_record(address: Address, tombstone: Tombstone) -> bytes:
    """The bytes a tombstone contributes to the state commitment."""
    return pack(["tombstone", address, *tombstone.to_fields()])


@dataclass(frozen=True)
class State:
    """The ledger after `height` blocks. Treat every mapping in it as read-only."""

    chain_id: str
    params: Params
    height: int
    block_hash: Hash32
    """Hash of the block that made this state (the genesis hash at height 0); not in `root`."""
    timestamp: int
    accounts: Mapping[Address, Account]
    unbonding: Mapping[UnbondingKey, int]
    validators: tuple[Validator, ...]
    issued: int
    burned: int
    reward_pool: int
    """Emission owed to validators, paid out at the next epoch boundary."""
    providers: Mapping[Address, Provider] = field(default_factory=dict)
    tasks: Mapping[Hash32, Task] = field(default_factory=dict)
    """Every task ever submitted (closed ones keep their trail and close reason)."""
    pools: Mapping[Hash32, Pool] = field(default_factory=dict)
    tombstones: Mapping[Address, Tombstone] = field(default_factory=dict)
    """Accounts punished for equivocation (never removed)."""
    models: Mapping[Hash32, Model] = field(default_factory=dict)
    """Registered models (never removed)."""
    proposals: Mapping[int, Proposal] = field(default_factory=dict)
    """Governance proposals by number (never removed)."""
    votes: Mapping[VoteKey, VoteOption] = field(default_factory=dict)
    """Votes on proposals still VOTING (removed by the tally, which keeps their totals)."""
    records_hash: bytes = EMPTY_LTHASH
    open_tasks: frozenset[Hash32] = field(default=frozenset(), compare=False)
    """Ids of the tasks not yet closed: derived from `tasks`, so not committed separately."""
    open_proposals: frozenset[int] = field(default=frozenset(), compare=False)
    """Proposals VOTING or PASSED (not yet activated): derived from `proposals`."""
    changed_accounts: tuple[Address, ...] = field(default=(), compare=False)
    """Accounts the last transition changed (all of them at genesis), for persistence."""
    changed_unbonding: tuple[UnbondingKey, ...] = field(default=(), compare=False)
    changed_providers: tuple[Address, ...] = field(default=(), compare=False)
    changed_tasks: tuple[Hash32, ...] = field(default=(), compare=False)
    changed_pools: tuple[Hash32, ...] = field(default=(), compare=False)
    changed_tombstones: tuple[Address, ...] = field(default=(), compare=False)
    changed_models: tuple[Hash32, ...] = field(default=(), compare=False)
    changed_proposals: tuple[int, ...] = field(default=(), compare=False)
    changed_votes: tuple[VoteKey, ...] = field(default=(), compare=False)

    def account(self, address: Address) -> Account:
        """The account at `address` (an empty one if it never received anything)."""
        return self.accounts.get(address) or _EMPTY

    def model_info(self, model_id: Hash32) -> ModelInfo | None:
        """The info of registered model `model_id` (None: no such model)."""
        model = self.models.get(model_id)
        return None if model is None else model.info

    @cached_property
    def validator_by_address(self) -> Mapping[Address, Validator]:
        return {v.address: v for v in self.validators}

    @cached_property
    def root(self) -> Hash32:
        """Commitment to the whole consensus-relevant state."""
        return digest(b"state", pack([
            self.chain_id, self.height, self.timestamp, self.issued, self.burned,
            self.reward_pool, [v.to_fields() for v in self.validators], self.records_hash,
            self.params.to_fields(),
        ]))

    @cached_property
    def next_market_deadline(self) -> int | None:
        """The earliest block time after this state's at which a task or pool changes phase
        (None: nothing pending); the node proposes a block then, so deadlines pass when due."""
        drawing = self.timestamp + 1  # a committee is drawn by height: the next block
        times = [drawing if _drawing(self.tasks[t].attempt.check) else self.tasks[t].phase_end_ms
                 for t in self.open_tasks]
        for pool in self.pools.values():
            if not pool.closed:
                times.append(pool.expires_ms)
                times += [drawing if _drawing(r.check) else r.deadline_ms
                          for r in pool.requests if r.status in LIVE_REQUESTS]
        future = [t for t in times if t > self.timestamp]
        return min(future) if future else None

    def total_held(self) -> int:
        """Balances + stakes + unbonding + undistributed rewards + provider bonds + task and
        pool escrow + proposal deposits: must equal issued - burned."""
        held = sum(a.balance + a.stake for a in self.accounts.values())
        held += sum(p.stake for p in self.providers.values())
        held += sum(t.escrow for t in self.tasks.values())
        held += sum(p.escrow + sum(r.escrow for r in p.requests) for p in self.pools.values())
        held += sum(self.proposals[p].deposit_held for p in self.open_proposals)
        return held + sum(self.unbonding.values()) + self.reward_pool


def _drawing(check: Check | None) -> bool:
    return check is not None and check.phase == CheckPhase.DRAWING


_EMPTY = Account()


def compute_records_hash(
    accounts: Mapping[Address, Account], unbonding: Mapping[UnbondingKey, int],
    providers: Mapping[Address, Provider] | None = None,
    tasks: Mapping[Hash32, Task] | None = None,
    pools: Mapping[Hash32, Pool] | None = None,
    tombstones: Mapping[Address, Tombstone] | None = None,
    models: Mapping[Hash32, Model] | None = None,
    proposals: Mapping[int, Proposal] | None = None,
    votes: Mapping[VoteKey, VoteOption] | None = None,
) -> bytes:
    """The commitment over all records, from scratch (genesis, and a check for tests)."""
    records = [account_record(a, acct) for a, acct in accounts.items()]
    records += [unbonding_record(k, v) for k, v in unbonding.items()]
    records += [provider_record(a, p) for a, p in (providers or {}).items()]
    records += [task_record(t, task) for t, task in (tasks or {}).items()]
    records += [pool_record(p, pool) for p, pool in (pools or {}).items()]
    records += [tombstone_record(a, t) for a, t in (tombstones or {}).items()]
    records += [model_record(m, model) for m, model in (models or {}).items()]
    records += [proposal_record(p, prop) for p, prop in (proposals or {}).items()]
    records += [vote_record(k, v) for k, v in (votes or {}).items()]
    return lthash_update(EMPTY_LTHASH, records, ())


def open_task_ids(tasks: Mapping[Hash32, Task]) -> frozenset[Hash32]:
    """The ids of the tasks that are not closed."""
    return frozenset(t for t, task in tasks.items() if task.status != TaskStatus.CLOSED)


def open_proposal_ids(proposals: Mapping[int, Proposal]) -> frozenset[int]:
    """The numbers of the proposals a block still acts on (VOTING or PASSED)."""
    return frozenset(p for p, prop in proposals.items() if prop.status in OPEN_STATUSES)


def select_validators(accounts: Mapping[Address, Account], params: Params,
                      tombstoned: Collection[Address] = ()) -> tuple[Validator, ...]:
    """Accounts bonded at or above the minimum stake and not tombstoned, sorted by address."""
    return tuple(
        Validator(address, acct.public_key, acct.stake)
        for address, acct in sorted(accounts.items())
        if acct.stake >= params.min_validator_stake and len(acct.public_key) == PUBKEY_LEN
        and address not in tombstoned
    )
