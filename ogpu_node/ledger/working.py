"""`Working`: the changes a transition makes on top of a base state, which it only reads.

Every `process_*` function writes here; `finish` freezes the changes into a new `State` and
updates the state commitment with exactly the records that changed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import TypeVar

from ogpu_node.ledger.commitment import lthash_update
from ogpu_node.ledger.governance.records import (
    OPEN_STATUSES,
    Proposal,
    VoteKey,
    VoteOption,
    proposal_record,
    vote_record,
)
from ogpu_node.ledger.market.records import MAX_TRAIL, Model, Pool, Provider, Task, TaskStatus
from ogpu_node.ledger.state import (
    Account,
    State,
    Tombstone,
    UnbondingKey,
    account_record,
    model_record,
    pool_record,
    provider_record,
    task_record,
    tombstone_record,
    unbonding_record,
)
from ogpu_node.types import Address, Hash32
from ogpu_node.workloads.models import ModelInfo

K = TypeVar("K", bound=tuple[int, Address] | bytes | int)
V = TypeVar("V")


class Working:
    """Changes on top of a base state; the base is only read."""

    def __init__(self, base: State, timestamp: int | None = None) -> None:
        self.base = base
        self.height = base.height + 1
        self.timestamp = base.timestamp if timestamp is None else timestamp
        """Block time of the block being made (the base's time for a lone transaction)."""
        self.accounts: dict[Address, Account] = {}
        self.unbonding: dict[UnbondingKey, int] = {}
        self.providers: dict[Address, Provider | None] = {}
        self.tasks: dict[Hash32, Task] = {}
        self.pools: dict[Hash32, Pool] = {}
        self.tombstones: dict[Address, Tombstone] = {}
        self.models: dict[Hash32, Model] = {}
        self.proposals: dict[int, Proposal] = {}
        self.votes: dict[VoteKey, VoteOption | None] = {}
        self.params = base.params
        """The parameters the next block runs under: governance may change them at the end of
        this one (rules read `base.params`, so a block runs under one set throughout)."""
        self.issued = base.issued
        self.burned = base.burned
        self.reward_pool = base.reward_pool
        self.validators = base.validators

    # --- accounts and unbonding ---

    def account(self, address: Address) -> Account:
        found = self.accounts.get(address)
        return found if found is not None else self.base.account(address)

    def set_account(self, address: Address, account: Account) -> None:
        self.accounts[address] = account

    def credit(self, address: Address, amount: int) -> None:
        if amount:
            acct = self.account(address)
            self.set_account(address, replace(acct, balance=acct.balance + amount))

    def unbonding_amount(self, key: UnbondingKey) -> int:
        found = self.unbonding.get(key)
        return found if found is not None else self.base.unbonding.get(key, 0)

    # --- tombstones (equivocation) ---

    def tombstone(self, address: Address) -> Tombstone | None:
        found = self.tombstones.get(address)
        return found if found is not None else self.base.tombstones.get(address)

    def set_tombstone(self, address: Address, tombstone: Tombstone) -> None:
        self.tombstones[address] = tombstone

    def tombstoned(self) -> set[Address]:
        """Every tombstoned address, including those marked in this transition."""
        return set(self.base.tombstones) | set(self.tombstones)

    # --- market ---

    def provider(self, address: Address) -> Provider | None:
        if address in self.providers:
            return self.providers[address]
        return self.base.providers.get(address)

    def set_provider(self, address: Address, provider: Provider | None) -> None:
        """Replace a provider record; None removes it (a provider that withdrew everything)."""
        self.providers[address] = provider

    def task(self, task_id: Hash32) -> Task | None:
        found = self.tasks.get(task_id)
        return found if found is not None else self.base.tasks.get(task_id)

    def set_task(self, task_id: Hash32, task: Task) -> None:
        """Record `task`; a money trail longer than a record holds keeps its latest lines (the
        first, the escrow, is always kept), so no sequence of rounds and penalties can make a
        task record that does not decode."""
        if len(task.trail) > MAX_TRAIL:
            task = replace(task, trail=(task.trail[0], *task.trail[-(MAX_TRAIL - 1):]))
        self.tasks[task_id] = task

    def pool(self, pool_id: Hash32) -> Pool | None:
        found = self.pools.get(pool_id)
        return found if found is not None else self.base.pools.get(pool_id)

    def set_pool(self, pool_id: Hash32, pool: Pool) -> None:
        self.pools[pool_id] = pool

    def model(self, model_id: Hash32) -> Model | None:
        found = self.models.get(model_id)
        return found if found is not None else self.base.models.get(model_id)

    def model_info(self, model_id: Hash32) -> ModelInfo | None:
        """The info of registered model `model_id` (None: no such model)."""
        model = self.model(model_id)
        return None if model is None else model.info

    def add_model(self, model_id: Hash32, model: Model) -> None:
        self.models[model_id] = model

    def open_pool_ids(self) -> list[Hash32]:
        """Pools not closed, in id order (pools are few: scanned every block)."""
        ids = set(self.base.pools) | set(self.pools)
        return sorted(p for p in ids if (pool := self.pool(p)) is not None and not pool.closed)

    def open_task_ids(self) -> list[Hash32]:
        """Open tasks, including those opened in this block, in id order."""
        ids = set(self.base.open_tasks)
        ids.update(t for t, task in self.tasks.items() if task.status != TaskStatus.CLOSED)
        return sorted(t for t in ids if (task := self.task(t)) is not None
                      and task.status != TaskStatus.CLOSED)

    # --- governance ---

    def proposal(self, proposal_id: int) -> Proposal | None:
        found = self.proposals.get(proposal_id)
        return found if found is not None else self.base.proposals.get(proposal_id)

    def set_proposal(self, proposal_id: int, proposal: Proposal) -> None:
        self.proposals[proposal_id] = proposal

    def next_proposal_id(self) -> int:
        """The number the next proposal gets (proposals are never removed: 1, 2, 3, ...)."""
        return len(self.base.proposals) + sum(1 for p in self.proposals
                                              if p not in self.base.proposals) + 1

    def open_proposal_ids(self) -> list[int]:
        """Proposals VOTING or PASSED, including those made in this block, in number order."""
        ids = set(self.base.open_proposals) | set(self.proposals)
        return sorted(p for p in ids if (prop := self.proposal(p)) is not None
                      and prop.status in OPEN_STATUSES)

    def set_vote(self, key: VoteKey, option: VoteOption | None) -> None:
        """Record a vote (None removes it)."""
        self.votes[key] = option

    def votes_on(self, proposal_ids: Collection[int]
                 ) -> dict[int, list[tuple[VoteKey, VoteOption]]]:
        """The votes on each of `proposal_ids`, by voter, in one pass over the live votes (those
        of open proposals: at most `MAX_OPEN_PROPOSALS` times the voters), however many
        proposals a block tallies."""
        wanted = set(proposal_ids)
        keys = {k for k in self.base.votes if k[0] in wanted}
        keys.update(k for k in self.votes if k[0] in wanted)
        out: dict[int, list[tuple[VoteKey, VoteOption]]] = {p: [] for p in sorted(wanted)}
        for key in sorted(keys):
            option = self.votes[key] if key in self.votes else self.base.votes.get(key)
            if option is not None:
                out[key[0]].append((key, option))
        return out

    # --- savepoints: a rule that raises halfway leaves nothing behind ---

    def savepoint(self) -> Working:
        """A copy of the changes so far (the base is shared: it is never written)."""
        saved = Working(self.base, self.timestamp)
        saved.restore(self)
        return saved

    def restore(self, saved: Working) -> None:
        """Put back the changes `saved` holds."""
        self.accounts, self.unbonding = dict(saved.accounts), dict(saved.unbonding)
        self.providers, self.tasks = dict(saved.providers), dict(saved.tasks)
        self.pools, self.tombstones = dict(saved.pools), dict(saved.tombstones)
        self.models = dict(saved.models)
        self.proposals, self.votes = dict(saved.proposals), dict(saved.votes)
        self.params = saved.params
        self.issued, self.burned = saved.issued, saved.burned
        self.reward_pool, self.validators = saved.reward_pool, saved.validators

    # --- result ---

    def finish(self, *, height: int, block_hash: Hash32, timestamp: int) -> State:
        """Freeze the changes into a new `State` with an updated commitment."""
        base = self.base
        added: list[bytes] = []
        removed: list[bytes] = []
        accounts, changed_accounts = _merge(base.accounts, self.accounts, account_record,
                                            added, removed)
        unbonding, changed_unbonding = _merge(
            base.unbonding, {k: (v or None) for k, v in self.unbonding.items()},
            unbonding_record, added, removed)
        providers, changed_providers = _merge(base.providers, self.providers, provider_record,
                                              added, removed)
        tasks, changed_tasks = _merge(base.tasks, self.tasks, task_record, added, removed)
        pools, changed_pools = _merge(base.pools, self.pools, pool_record, added, removed)
        tombstones, changed_tombstones = _merge(base.tombstones, self.tombstones,
                                                tombstone_record, added, removed)
        models, changed_models = _merge(base.models, self.models, model_record, added, removed)
        proposals, changed_proposals = _merge(base.proposals, self.proposals, proposal_record,
                                              added, removed)
        votes, changed_votes = _merge(base.votes, self.votes, vote_record, added, removed)
        open_tasks = set(base.open_tasks)
        for t in changed_tasks:
            if tasks[t].status == TaskStatus.CLOSED:
                open_tasks.discard(t)
            else:
                open_tasks.add(t)
        open_proposals = set(base.open_proposals)
        for p in changed_proposals:
            if proposals[p].status in OPEN_STATUSES:
                open_proposals.add(p)
            else:
                open_proposals.discard(p)
        return State(
            chain_id=base.chain_id, params=self.params, height=height,
            block_hash=block_hash, timestamp=timestamp, accounts=accounts, unbonding=unbonding,
            validators=self.validators, issued=self.issued, burned=self.burned,
            reward_pool=self.reward_pool, providers=providers, tasks=tasks, pools=pools,
            tombstones=tombstones, models=models, proposals=proposals, votes=votes,
            records_hash=lthash_update(base.records_hash, added, removed),
            open_tasks=frozenset(open_tasks), open_proposals=frozenset(open_proposals),
            changed_accounts=tuple(changed_accounts), changed_unbonding=tuple(changed_unbonding),
            changed_providers=tuple(changed_providers), changed_tasks=tuple(changed_tasks),
            changed_pools=tuple(changed_pools), changed_tombstones=tuple(changed_tombstones),
            changed_models=tuple(changed_models), changed_proposals=tuple(changed_proposals),
            changed_votes=tuple(changed_votes),
        )


def _merge(
    base: Mapping[K, V], changes: Mapping[K, V | None], record: Callable[[K, V], bytes],
    added: list[bytes], removed: list[bytes],
) -> tuple[Mapping[K, V], list[K]]:
    """`base` with `changes` applied (None deletes), the changed keys in order, and the records
    added to and removed from the commitment. Returns `base` itself when nothing changed."""
    changed = sorted(k for k, v in changes.items() if v != base.get(k))
    if not changed:
        return base, []
    merged = dict(base)
    for k in changed:
        old, new = base.get(k), changes[k]
        if old is not None:
            removed.append(record(k, old))
        if new is None:
            del merged[k]
        else:
            added.append(record(k, new))
            merged[k] = new
    return merged, changed
