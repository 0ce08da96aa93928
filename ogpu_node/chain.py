"""The persisted chain: the ledger's state and finalised blocks kept in a `ChainStore`.

`Chain` is the one place where ledger objects become storage records. A finalised block and every
state record it changed go to disk in one atomic, synced batch; on open, the state is rebuilt from
the records and checked against its commitment, so a node resumes exactly where it stopped.

State records (under the chain store's state prefix):

    b"a" + address                        -> Account fields
    b"u" + u64be(release height) + address -> [amount]          (unbonding)
    b"p" + address                        -> Provider fields    (market)
    b"t" + task id                        -> Task fields        (market)
    b"o" + pool id                        -> Pool fields        (market)
    b"m" + model id                       -> Model fields       (market)
    b"x" + address                        -> Tombstone fields   (equivocation)
    b"q" + u64be(proposal number)         -> Proposal fields    (governance)
    b"v" + u64be(proposal number) + address -> [option]         (governance votes)
    b"g"                                  -> globals: chain id, params, height, block hash,
                                             timestamp, issued, burned, reward pool,
                                             validators, records hash
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ogpu_node.earnings_index import index_entries
from ogpu_node.encoding import (
    Codable,
    decode,
    encode,
    pack,
    read_array,
    read_bytes,
    read_list,
    read_str,
    read_uint,
    unpack,
)
from ogpu_node.errors import DecodeError, OgpuError
from ogpu_node.genesis import Genesis
from ogpu_node.ledger import Block, Params, State, Validator, apply_block
from ogpu_node.ledger.governance.records import Proposal, VoteKey, VoteOption
from ogpu_node.ledger.market.records import Model, Pool, Provider, Task
from ogpu_node.ledger.state import (
    Account,
    Tombstone,
    UnbondingKey,
    compute_records_hash,
    open_proposal_ids,
    open_task_ids,
)
from ogpu_node.storage import ChainStore, CorruptStore
from ogpu_node.types import ADDRESS_LEN, HASH_LEN, Address, Hash32

_ACCOUNT = b"a"
_UNBONDING = b"u"
_PROVIDER = b"p"
_TASK = b"t"
_POOL = b"o"
_MODEL = b"m"
_TOMBSTONE = b"x"
_PROPOSAL = b"q"
_VOTE = b"v"
_GLOBALS = b"g"
MAX_VALIDATORS = 100_000


class ChainMismatch(OgpuError):
    """The store holds a different chain than the genesis given."""


def _unbonding_key(key: UnbondingKey) -> bytes:
    return _UNBONDING + key[0].to_bytes(8, "big") + key[1]


def _vote_key(key: VoteKey) -> bytes:
    return _VOTE + key[0].to_bytes(8, "big") + key[1]


def _globals(state: State) -> bytes:
    return pack([
        state.chain_id, state.params.to_fields(), state.height, state.block_hash,
        state.timestamp, state.issued, state.burned, state.reward_pool,
        [v.to_fields() for v in state.validators], state.records_hash,
    ])


def state_changes(state: State) -> dict[bytes, bytes | None]:
    """The records to write for the transition that produced `state` (None deletes)."""
    changes: dict[bytes, bytes | None] = {
        _ACCOUNT + a: encode(state.accounts[a]) for a in state.changed_accounts
    }
    for key in state.changed_unbonding:
        amount = state.unbonding.get(key)
        changes[_unbonding_key(key)] = pack([amount]) if amount else None
    for address in state.changed_providers:
        provider = state.providers.get(address)
        changes[_PROVIDER + address] = encode(provider) if provider else None
    for task_id in state.changed_tasks:
        changes[_TASK + task_id] = encode(state.tasks[task_id])
    for pool_id in state.changed_pools:
        changes[_POOL + pool_id] = encode(state.pools[pool_id])
    for model_id in state.changed_models:
        changes[_MODEL + model_id] = encode(state.models[model_id])
    for address in state.changed_tombstones:  # never removed
        changes[_TOMBSTONE + address] = encode(state.tombstones[address])
    for proposal_id in state.changed_proposals:  # never removed
        changes[_PROPOSAL + proposal_id.to_bytes(8, "big")] = encode(
            state.proposals[proposal_id])
    for key in state.changed_votes:
        option = state.votes.get(key)
        changes[_vote_key(key)] = None if option is None else pack([int(option)])
    changes[_GLOBALS] = _globals(state)
    return changes


K = TypeVar("K")
R = TypeVar("R", bound=Codable)


def _records(store: ChainStore, prefix: bytes, key: Callable[[bytes], K], key_size: int,
             record: type[R]) -> dict[K, R]:
    """Every record under `prefix`, by its key (the bytes after the prefix)."""
    return {key(read_bytes(k[1:], f"{record.__name__} key", size=key_size)): decode(record, v)
            for k, v in store.state_items(prefix)}


def load_state(store: ChainStore) -> State:
    """Rebuild the state from its records, checking them against their commitment."""
    try:
        raw = store.state_get(_GLOBALS)
        if raw is None:
            raise CorruptStore("state globals are missing")
        g = read_array(unpack(raw), 10, "globals")
        accounts = _records(store, _ACCOUNT, Address, ADDRESS_LEN, Account)
        unbonding: dict[UnbondingKey, int] = {}
        for key, value in store.state_items(_UNBONDING):
            (amount,) = read_array(unpack(value), 1, "unbonding")
            address = Address(read_bytes(key[9:], "unbonding.address", size=ADDRESS_LEN))
            unbonding[(int.from_bytes(key[1:9], "big"), address)] = read_uint(amount, "amount")
        providers = _records(store, _PROVIDER, Address, ADDRESS_LEN, Provider)
        tasks = _records(store, _TASK, Hash32, HASH_LEN, Task)
        pools = _records(store, _POOL, Hash32, HASH_LEN, Pool)
        models = _records(store, _MODEL, Hash32, HASH_LEN, Model)
        tombstones = _records(store, _TOMBSTONE, Address, ADDRESS_LEN, Tombstone)
        proposals = {int.from_bytes(read_bytes(k[1:], "proposal key", size=8), "big"):
                     decode(Proposal, v) for k, v in store.state_items(_PROPOSAL)}
        votes: dict[VoteKey, VoteOption] = {}
        for key, value in store.state_items(_VOTE):
            (option,) = read_array(unpack(value), 1, "vote")
            voter = Address(read_bytes(key[9:], "vote.voter", size=ADDRESS_LEN))
            votes[(int.from_bytes(key[1:9], "big"), voter)] = VoteOption(
                read_uint(option, "vote.option", min_value=min(VoteOption),
                          max_value=max(VoteOption)))
        state = State(
            chain_id=read_str(g[0], "chain_id", max_len=64), params=Params.from_fields(g[1]),
            height=read_uint(g[2], "height"),
            block_hash=Hash32(read_bytes(g[3], "block_hash", size=HASH_LEN)),
            timestamp=read_uint(g[4], "timestamp"), accounts=accounts, unbonding=unbonding,
            validators=tuple(Validator.from_fields(v)
                             for v in read_list(g[8], MAX_VALIDATORS, "validators")),
            issued=read_uint(g[5], "issued"), burned=read_uint(g[6], "burned"),
            reward_pool=read_uint(g[7], "reward_pool"),
            providers=providers, tasks=tasks, pools=pools, tombstones=tombstones,
            models=models, proposals=proposals, votes=votes,
            records_hash=read_bytes(g[9], "records_hash", max_len=4096),
            open_tasks=open_task_ids(tasks), open_proposals=open_proposal_ids(proposals),
        )
    except DecodeError as exc:
        raise CorruptStore(f"state record does not decode: {exc}") from exc
    if compute_records_hash(accounts, unbonding, providers, tasks, pools,
                            tombstones, models, proposals, votes) != state.records_hash:
        raise CorruptStore("state records do not match their commitment")
    return state


class Chain:
    """The finalised chain of one node: its current state and the store behind it."""

    def __init__(self, store: ChainStore, state: State) -> None:
        self.store = store
        self.state = state

    @classmethod
    def open(cls, store: ChainStore, genesis: Genesis) -> Chain:
        """Resume from `store`, or initialise it from `genesis` when it is empty."""
        head = store.head()
        if head is None:
            state = genesis.state()
            store.commit_block(height=0, block_hash=genesis.hash,
                               block_bytes=genesis.to_json().encode(), tx_hashes=(),
                               state_changes=state_changes(state), meta=state.root)
            return cls(store, state)
        if store.block_hash_at(0) != genesis.hash:
            raise ChainMismatch("the data folder holds another chain (genesis hash differs)")
        state = load_state(store)
        if state.height != head.height or state.block_hash != head.block_hash:
            raise CorruptStore("state and head disagree")
        if state.root != head.meta:
            raise CorruptStore("state root differs from the one committed with the head")
        return cls(store, state)

    def commit(self, block: Block, new_state: State) -> None:
        """Persist a finalised block whose application gave `new_state`, with its entries of
        the earnings index (`earnings_index.py`: not state, but in the same atomic commit)."""
        self.store.commit_block(
            height=block.height, block_hash=block.hash, block_bytes=block.encoded,
            tx_hashes=[tx.hash for tx in block.txs],
            state_changes={**state_changes(new_state), **index_entries(self.state, new_state)},
            meta=new_state.root,
        )
        self.state = new_state

    def apply_and_commit(self, block: Block) -> State:
        """Validate `block` against the current state, then persist it."""
        new_state = apply_block(self.state, block)
        self.commit(block, new_state)
        return new_state

    def genesis_document(self) -> bytes:
        """The genesis file this chain was started from, as committed at height 0 (JSON)."""
        document = self.store.block_by_height(0)
        if document is None:
            raise CorruptStore("the store has no genesis document at height 0")
        return document

    def block_at(self, height: int) -> Block | None:
        """The finalised block at `height` (none at 0: the genesis state has no block)."""
        return None if height == 0 else self._decode(self.store.block_by_height(height))

    def block_bytes(self, block_hash: bytes) -> bytes | None:
        """The encoding of a finalised block by hash (not the genesis document)."""
        if self.store.block_hash_at(0) == block_hash:
            return None
        return self.store.block_by_hash(block_hash)

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        return self._decode(self.block_bytes(block_hash))

    @staticmethod
    def _decode(raw: bytes | None) -> Block | None:
        if raw is None:
            return None
        try:
            return decode(Block, raw)
        except DecodeError as exc:
            raise CorruptStore(f"a stored block does not decode: {exc}") from exc
