"""The state transition: `apply_tx` and `apply_block`.

Both are pure: they read the given `State`, write only to a private `Working` overlay, and either
return a new `State` or raise a typed error, leaving their input untouched. A block is processed as
a short list of steps, each a small function:

    process_unbonding(w)   release stake whose unbonding period ended
    process_emission(w)    mint the block reward (proposer share, the rest to the reward pool)
    process_deadlines(w)   move market tasks whose phase ended at this block's time (market/)
    process_tx(w, tx)      for each transaction, in order (market kinds: market/rules.py,
                           equivocation evidence: equivocation.py, governance:
                           governance/rules.py)
    process_governance(w)  tally proposals whose voting ends here, make the parameter changes
                           that activate here (for the next block on)
    process_epoch(w)       at epoch boundaries: pay the reward pool, then fix the next validator set
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from ogpu_node.errors import SignatureError
from ogpu_node.keys import PrivateKey, verify
from ogpu_node.ledger.block import SIGN_KIND_BLOCK, Block, BlockHeader, compute_tx_root, sign_header
from ogpu_node.ledger.emission import block_reward
from ogpu_node.ledger.equivocation import (
    ReportEquivocation,
    check_equivocation,
    slash_equivocation,
)
from ogpu_node.ledger.errors import (
    BadNonce,
    InsufficientFunds,
    InvalidBlock,
    InvalidTransaction,
    Tombstoned,
    failures_contained,
)
from ogpu_node.ledger.governance.records import GovernancePayload, Propose, Vote
from ogpu_node.ledger.governance.rules import process_governance, process_governance_tx
from ogpu_node.ledger.market.payloads import MarketPayload
from ogpu_node.ledger.market.rules import process_deadlines, process_market_tx
from ogpu_node.ledger.params import BPS
from ogpu_node.ledger.state import State, select_validators
from ogpu_node.ledger.tx import Stake, Transaction, Transfer, Unstake, check_transaction
from ogpu_node.ledger.working import Working
from ogpu_node.types import HASH_LEN, Address, Hash32

NO_HASH = Hash32(bytes(HASH_LEN))


# --- transactions -------------------------------------------------------------------------------


def process_tx(w: Working, tx: Transaction, proposer: Address) -> None:
    """Check `tx` against the working state and apply it; on error nothing has been written.

    Raises only `InvalidTransaction`s: anything else is contained as `UnexpectedFailure`."""
    with failures_contained():
        _process_tx(w, tx, proposer)


def _process_tx(w: Working, tx: Transaction, proposer: Address) -> None:
    payload = check_transaction(tx, w.base.chain_id, w.base.params, w.model_info)
    sender = tx.sender
    acct = w.account(sender)
    if tx.nonce != acct.nonce:
        raise BadNonce(f"nonce {tx.nonce}, account expects {acct.nonce}")
    if isinstance(payload, ReportEquivocation):
        process_equivocation(w, tx, payload, proposer)
        return
    if isinstance(payload, Propose | Vote):
        _process_governance_tx(w, tx, payload, proposer)
        return
    if not isinstance(payload, Transfer | Stake | Unstake):
        _process_market_tx(w, tx, payload, proposer)
        return
    spend = tx.fee + (payload.amount if isinstance(payload, Transfer | Stake) else 0)
    if acct.balance < spend:
        raise InsufficientFunds(f"balance {acct.balance} is below the {spend} this needs")
    if isinstance(payload, Unstake) and acct.stake < payload.amount:
        raise InsufficientFunds(f"stake {acct.stake} is below the {payload.amount} to unstake")
    if isinstance(payload, Stake) and w.tombstone(sender) is not None:
        raise Tombstoned("this account was punished for equivocation and may not stake again")

    # Every check has passed: from here on only writes, re-reading accounts that may alias.
    _charge_fee(w, tx, proposer)
    if isinstance(payload, Transfer):
        w.credit(sender, -payload.amount)
        w.credit(payload.to, payload.amount)
    elif isinstance(payload, Stake):
        acct = w.account(sender)
        w.set_account(sender, replace(acct, balance=acct.balance - payload.amount,
                                       stake=acct.stake + payload.amount))
    else:
        acct = w.account(sender)
        w.set_account(sender, replace(acct, stake=acct.stake - payload.amount))
        key = (w.height + w.base.params.unbonding_period, sender)
        w.unbonding[key] = w.unbonding_amount(key) + payload.amount


def process_equivocation(w: Working, tx: Transaction, report: ReportEquivocation,
                         proposer: Address) -> None:
    """Equivocation evidence: every check first (`check_equivocation`), then the fee, then the
    slash, paid in part to the sender (`ledger/equivocation.py`)."""
    _check_fee_funds(w, tx)
    offence = check_equivocation(w, report)
    _charge_fee(w, tx, proposer)
    slash_equivocation(w, offence, tx.sender)


def _process_market_tx(w: Working, tx: Transaction, payload: MarketPayload,
                       proposer: Address) -> None:
    _check_fee_funds(w, tx)
    saved = w.savepoint()
    try:
        _charge_fee(w, tx, proposer)
        process_market_tx(w, tx.hash, tx.sender, payload)
    except Exception:
        w.restore(saved)
        raise


def _process_governance_tx(w: Working, tx: Transaction, payload: GovernancePayload,
                           proposer: Address) -> None:
    _check_fee_funds(w, tx)
    saved = w.savepoint()
    try:
        _charge_fee(w, tx, proposer)
        process_governance_tx(w, tx.sender, payload)
    except Exception:
        w.restore(saved)
        raise


def _check_fee_funds(w: Working, tx: Transaction) -> None:
    balance = w.account(tx.sender).balance
    if balance < tx.fee:
        raise InsufficientFunds(f"balance {balance} is below the fee {tx.fee}")


def _charge_fee(w: Working, tx: Transaction, proposer: Address) -> None:
    """Take the fee from the sender, use its nonce and record its key; pay the proposer."""
    acct = w.account(tx.sender)
    w.set_account(tx.sender, replace(acct, balance=acct.balance - tx.fee, nonce=acct.nonce + 1,
                                     public_key=tx.sender_key))
    burn = tx.fee * w.base.params.fee_burn_bps // BPS
    w.burned += burn
    w.credit(proposer, tx.fee - burn)


def apply_tx(state: State, tx: Transaction, proposer: Address) -> State:
    """`state` with `tx` applied as if included by `proposer` in the next block.

    Raises a typed `InvalidTransaction`; `state` is never modified.
    """
    w = Working(state)
    process_tx(w, tx, proposer)
    # A lone transaction does not advance the chain: height, hash and time stay those of the input.
    return w.finish(height=state.height, block_hash=state.block_hash, timestamp=state.timestamp)


def apply_txs(state: State, txs: Iterable[Transaction], proposer: Address) -> State:
    """Apply several transactions in order, as `apply_tx` does one."""
    for tx in txs:
        state = apply_tx(state, tx, proposer)
    return state


# --- blocks -------------------------------------------------------------------------------------


def process_unbonding(w: Working) -> None:
    """Return to their owners the unbonding entries that mature at this height."""
    for key in sorted(k for k in w.base.unbonding if k[0] <= w.height):
        amount = w.unbonding_amount(key)
        w.unbonding[key] = 0
        w.credit(key[1], amount)


def process_block_start(w: Working, proposer: Address) -> None:
    """What a block does before its transactions (also run by the block builder)."""
    process_unbonding(w)
    process_emission(w, proposer)
    process_deadlines(w)


def process_emission(w: Working, proposer: Address) -> None:
    """Mint the block reward: the proposer's share at once, the rest pooled for all validators."""
    reward = block_reward(w.base.params, w.height, w.issued)
    w.issued += reward
    to_proposer = reward * w.base.params.proposer_reward_bps // BPS
    w.credit(proposer, to_proposer)
    w.reward_pool += reward - to_proposer


def process_epoch(w: Working) -> None:
    """Pay the reward pool pro rata to the active set, then fix the set for the next epoch.

    Stake changes take effect only here, at a height every node knows. Rounding dust stays in the
    pool for the next epoch, so no value is created or lost. Validators tombstoned for
    equivocation during the epoch are paid nothing and leave the set.
    """
    tombstoned = w.tombstoned()
    payees = [v for v in w.validators if v.address not in tombstoned]
    total = sum(v.stake for v in payees)
    if total:
        paid = 0
        for v in payees:
            share = w.reward_pool * v.stake // total
            w.credit(v.address, share)
            paid += share
        w.reward_pool -= paid
    merged = dict(w.base.accounts)
    merged.update(w.accounts)
    new_set = select_validators(merged, w.base.params, tombstoned)
    if new_set:  # a chain whose every validator left keeps its last set rather than halt blindly
        w.validators = new_set


def next_epoch_height(height: int, epoch_length: int) -> int:
    """The first epoch boundary at or after `height`: the block whose state fixes the validator
    set for the blocks after it (`process_epoch`), so stake bonded at `height` counts there."""
    return -(-height // epoch_length) * epoch_length


def check_header(state: State, block: Block) -> bytes:
    """Header checks against the parent state; returns the proposer's public key."""
    h = block.header
    if h.chain_id != state.chain_id:
        raise InvalidBlock(f"block is for chain {h.chain_id!r}, this is {state.chain_id!r}")
    if h.height != state.height + 1:
        raise InvalidBlock(f"height {h.height}, expected {state.height + 1}")
    if h.parent_hash != state.block_hash:
        raise InvalidBlock("parent hash does not match the last block")
    if h.timestamp <= state.timestamp:
        raise InvalidBlock(f"timestamp {h.timestamp} not after the parent's {state.timestamp}")
    params = state.params
    if len(block.txs) > params.max_block_txs:
        raise InvalidBlock(f"{len(block.txs)} transactions, limit {params.max_block_txs}")
    size = sum(len(tx.encoded) for tx in block.txs)
    if size > params.max_block_bytes:
        raise InvalidBlock(f"transactions total {size} bytes, limit {params.max_block_bytes}")
    validator = state.validator_by_address.get(h.proposer)
    if validator is None:
        raise InvalidBlock("proposer is not in the active validator set")
    try:
        verify(validator.public_key, h.chain_id, SIGN_KIND_BLOCK, h.encoded, block.signature)
    except SignatureError as exc:
        raise InvalidBlock(f"proposer signature: {exc}") from exc
    if compute_tx_root(block.txs) != h.tx_root:
        raise InvalidBlock("transactions root does not match the transactions")
    return validator.public_key


def execute_block(
    state: State,
    txs: Sequence[Transaction],
    *,
    proposer: Address,
    timestamp: int,
    block_hash: Hash32 = NO_HASH,
) -> State:
    """Run a block's state changes without checking a header (shared by validation and building).

    The result's `root` is the state root the block's header must carry.
    """
    w = Working(state, timestamp)
    process_block_start(w, proposer)
    for index, tx in enumerate(txs):
        try:
            process_tx(w, tx, proposer)
        except InvalidTransaction as exc:
            raise InvalidBlock(f"transaction {index}: {exc.code}: {exc}", tx_index=index) from exc
    process_governance(w)
    if w.height % state.params.epoch_length == 0:
        process_epoch(w)
    return w.finish(height=w.height, block_hash=block_hash, timestamp=timestamp)


def apply_block(state: State, block: Block) -> State:
    """The state after `block`, or a typed `InvalidBlock`; `state` is never modified.

    Raises only `InvalidBlock`: an unexpected exception (a bug) rejects the block, the same way
    on every node, instead of stopping the node that met it."""
    try:
        return _apply_block(state, block)
    except InvalidBlock:
        raise
    except Exception as exc:
        raise InvalidBlock(f"unexpected {type(exc).__name__}: {exc}") from exc


def _apply_block(state: State, block: Block) -> State:
    check_header(state, block)
    h = block.header
    result = execute_block(state, block.txs, proposer=h.proposer, timestamp=h.timestamp,
                           block_hash=block.hash)
    if result.root != h.state_root:
        raise InvalidBlock("state root does not match the result of the transactions")
    return result


def build_block(
    state: State, txs: Sequence[Transaction], key: PrivateKey, timestamp: int
) -> tuple[Block, State]:
    """Propose a block of `txs` on top of `state`, signed by `key`; returns it and its state.

    Raises `InvalidBlock` if a transaction does not apply (callers select valid ones first).
    """
    result = execute_block(state, txs, proposer=key.address, timestamp=timestamp)
    header = BlockHeader(
        chain_id=state.chain_id, height=state.height + 1, parent_hash=state.block_hash,
        timestamp=timestamp, proposer=key.address, tx_root=compute_tx_root(list(txs)),
        state_root=result.root,
    )
    block = Block(header, sign_header(key, header), tuple(txs))
    return block, replace(result, block_hash=header.hash)
