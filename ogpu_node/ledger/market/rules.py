"""The market's state transitions: one `process_*` function per transaction kind, and
`process_deadlines`, which every block runs (at its timestamp) before its transactions.

A task's life (`TaskStatus`):

    BIDDING --bid window ends, or no other provider can bid--> REVEALING --reveal window ends,
        or the last sealed bid is revealed--> RUNNING (awarded)
    RUNNING --result committed--> VERIFYING --committee accepts--> RELEASING --provider releases
        its key--> CLOSED (COMPLETED); --release window ends--> provider slashed --> re-offer
    VERIFYING --committee rejects--> provider slashed --> re-offer or CLOSED
    RUNNING --deadline missed--> provider slashed --> BIDDING again (re-offer) or CLOSED
    RUNNING --provider returns it (cannot run it)--> return penalty --> re-offer or CLOSED
    RUNNING --provider reports the inputs missing--> CHECKING_INPUTS --committee confirms-->
        CLOSED (INPUTS_WITHHELD); --committee finds them--> provider slashed --> re-offer or CLOSED
    VERIFYING --result rejected--> provider slashed --> BIDDING again (re-offer) or CLOSED
    VERIFYING / CHECKING_INPUTS --no committee settles it--> CLOSED (UNCHECKED)
    BIDDING / REVEALING --no usable bid--> CLOSED (NO_BIDS, with `why`)
    any open phase but VERIFYING --client cancels--> CLOSED

A committee's check (`verification.py`) is drawn from a block made after the claim, votes
sealed then revealed, and settles only on a quorum of the drawn committee: nothing is paid on a
claim nobody checked.

Money (all integers, every path conserves value; the property tests check it):

* submission escrows budget (max price x work units) + verification reserve (`verifier_fee_bps`
  of the budget) + client collateral (`client_collateral_bps` of the budget);
* a sealed bid locks a deposit (`bid_deposit_bps` of the budget, at least `bid_deposit_min`)
  from the bidder's free provider stake, recorded in its `Bid`; the reveal returns it. When the
  reveal window ends (the award), every deposit still sealed goes to the client (one trail line,
  `bid_deposits_forfeited`: a line per bid could outgrow `MAX_TRAIL`); a cancel by the client
  while bidding or revealing returns them all (the bidders did nothing wrong). So a deposit is
  never locked beside the collateral of the same bid: the award comes after its reveal. A
  provider may bid only when its free stake covers the deposit plus the collateral an award at
  the maximum price would lock, so that the bid can be honoured the moment it is placed;
* the award locks `provider_collateral_bps` of the payment from the winner's provider stake;
* the release of an accepted result's key pays the provider price x work units, each committee
  member who revealed *accept* reserve / committee size, burns the fee of each member who
  revealed *reject* (refunded, it would pay a client for an ally's dissent), returns the
  provider's collateral and refunds the client the rest; a key not released in
  `release_window_ms` is slashed as a missed deadline, the accepting members paid their fee
  from the slash;
* a rejected result or a missed deadline slashes the provider's collateral: members who revealed
  *reject* get their fee from it, `slash_to_client_bps` of the rest goes to the client and the
  remainder is burned; the escrow stays for the re-offer, or is refunded when the task closes;
* an unchecked claim (UNCHECKED) returns the provider's collateral and refunds the client;
* committee members' penalties (silence, an accept of a rejected claim) come from their
  validator stake (`verification.py`);
* a returned task (`RETURN_TASK`, the provider cannot run it) costs the provider
  `return_penalty_bps` of its collateral, shared as a slash is (`slash_to_client_bps` of it to
  the client, the rest burned; no member has voted), and releases the rest; the escrow stays
  for the re-offer, or is refunded when the task closes (RETURNED);
* cancelling before the award refunds everything; after the award the client's collateral goes
  to the provider and the rest is refunded;
* inputs withheld (the committee upholds the provider's report that the client's uploaded inputs
  cannot be fetched or are malformed): as a cancel after the award, and each member who upheld
  the report is paid reserve / committee size. A report the committee rejects is slashed like a
  rejected result.

Every rule checks everything before its first write; `process_tx` also rolls the working state
back if a rule raises, so a rejected transaction leaves no trace but its absence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from ogpu_node.ledger.errors import (
    BadReveal,
    InsufficientFunds,
    InsufficientStake,
    MarketRuleError,
    NotAProvider,
    NotPermitted,
    UnknownTask,
    WrongPhase,
)
from ogpu_node.ledger.market import pools
from ogpu_node.ledger.market.auction import bid_commitment, score_bids, second_price
from ogpu_node.ledger.market.checks import check_register_provider, task_escrow, task_terms
from ogpu_node.ledger.market.payloads import (
    CancelTask,
    ClosePool,
    CommitBid,
    CommitResult,
    DisputeAnswer,
    JoinPool,
    LeavePool,
    MarketPayload,
    OpenPool,
    PoolResult,
    RegisterModel,
    RegisterProvider,
    ReleaseResult,
    ReportMissingInputs,
    ReturnTask,
    RevealBid,
    RevealVerdict,
    SealVerdict,
    SendRequest,
    SubmitTask,
    TopUpPool,
    WithdrawProvider,
)
from ogpu_node.ledger.market.records import (
    Attempt,
    Bid,
    CloseReason,
    Movement,
    Provider,
    Task,
    TaskStatus,
    key_commitment,
)
from ogpu_node.ledger.market.registry import process_register_model
from ogpu_node.ledger.market.slashing import penalise_provider, share_slashed, slash_provider
from ogpu_node.ledger.market.verification import (
    Outcome,
    Step,
    accepters,
    advance,
    dissenters,
    reveal_vote,
    seal_vote,
    start_check,
    verdict_seal,
)
from ogpu_node.ledger.params import BPS, Params
from ogpu_node.ledger.working import Working
from ogpu_node.types import Address, Hash32
from ogpu_node.workloads.kinds import checkpoint_total, decode_spec


def process_market_tx(w: Working, task_id: Hash32, sender: Address,
                      payload: MarketPayload) -> None:
    """Apply one market payload sent by `sender`; `task_id` is the transaction's hash (the id a
    submitted task, an opened pool or a pool request gets). Pool rules live in `pools.py`."""
    match payload:
        case RegisterProvider():
            process_register_provider(w, sender, payload)
        case WithdrawProvider():
            process_withdraw_provider(w, sender, payload)
        case SubmitTask():
            process_submit_task(w, task_id, sender, payload)
        case CommitBid():
            process_commit_bid(w, sender, payload)
        case RevealBid():
            process_reveal_bid(w, sender, payload)
        case CommitResult():
            process_commit_result(w, sender, payload)
        case SealVerdict():
            if payload.request_id:
                pools.process_pool_seal(w, sender, payload)
            else:
                process_seal_verdict(w, sender, payload)
        case RevealVerdict():
            if payload.request_id:
                pools.process_pool_reveal(w, sender, payload)
            else:
                process_reveal_verdict(w, sender, payload)
        case CancelTask():
            process_cancel(w, sender, payload)
        case ReportMissingInputs():
            process_report_missing_inputs(w, sender, payload)
        case ReleaseResult():
            process_release_result(w, sender, payload)
        case ReturnTask():
            process_return_task(w, sender, payload)
        case RegisterModel():
            process_register_model(w, task_id, sender, payload)
        case OpenPool():
            pools.process_open_pool(w, task_id, sender, payload)
        case JoinPool():
            pools.process_join_pool(w, sender, payload)
        case LeavePool():
            pools.process_leave_pool(w, sender, payload)
        case SendRequest():
            pools.process_send_request(w, task_id, sender, payload)
        case PoolResult():
            pools.process_pool_result(w, sender, payload)
        case ClosePool():
            pools.process_close_pool(w, sender, payload)
        case TopUpPool():
            pools.process_top_up_pool(w, sender, payload)
        case DisputeAnswer():
            pools.process_dispute_answer(w, sender, payload)


# --- providers ----------------------------------------------------------------------------------


def process_register_provider(w: Working, sender: Address, p: RegisterProvider) -> None:
    """Register or update a provider's declaration, bonding `p.stake` more from its balance."""
    check_register_provider(p)
    existing = w.provider(sender)
    stake = (existing.stake if existing else 0) + p.stake
    if stake < w.base.params.provider_min_stake:
        raise InsufficientStake(
            f"provider stake {stake} below the minimum {w.base.params.provider_min_stake}")
    acct = w.account(sender)
    if acct.balance < p.stake:
        raise InsufficientFunds(f"balance {acct.balance} is below the stake {p.stake}")
    w.credit(sender, -p.stake)
    base = existing or Provider(devices=(), benchmark=0, price_floor=0, stake=0)
    w.set_provider(sender, replace(base, devices=p.devices, benchmark=p.benchmark,
                                   price_floor=p.price_floor, stake=stake))


def process_withdraw_provider(w: Working, sender: Address, p: WithdrawProvider) -> None:
    """Return free provider stake to the balance; withdrawing all of it stops bidding (the
    record, with its history, stays)."""
    provider = w.provider(sender)
    if provider is None:
        raise NotAProvider("the sender is not a registered provider")
    if p.amount > provider.free_stake:
        raise InsufficientStake(f"free stake is {provider.free_stake}, {provider.locked} locked")
    left = provider.stake - p.amount
    if 0 < left < w.base.params.provider_min_stake:
        raise NotPermitted("that would leave less than the minimum stake; withdraw all to exit")
    w.set_provider(sender, replace(provider, stake=left))
    w.credit(sender, p.amount)


def is_active(provider: Provider | None, params: Params) -> bool:
    return provider is not None and provider.stake >= params.provider_min_stake


def all_providers(w: Working) -> Iterator[tuple[Address, Provider]]:
    """Every provider record, in address order."""
    for address in sorted(set(w.base.providers) | set(w.providers)):
        provider = w.provider(address)
        if provider is not None:
            yield address, provider


# --- tasks: submission, bids ---------------------------------------------------------------------


def provider_collateral(params: Params, payment: int) -> int:
    return max(1, payment * params.provider_collateral_bps // BPS)


def bid_deposit(params: Params, task: Task) -> int:
    """What a sealed bid on `task` locks until it is revealed (see the module docstring)."""
    return max(params.bid_deposit_min, task.budget * params.bid_deposit_bps // BPS)


def _unlock(w: Working, address: Address, amount: int) -> None:
    """Release `amount` of a provider's locked stake (a deposit returned)."""
    provider = w.provider(address)
    if provider is not None and amount:
        w.set_provider(address, replace(provider, locked=provider.locked - amount))


def process_submit_task(w: Working, task_id: Hash32, sender: Address, p: SubmitTask) -> None:
    """Open a task for bidding and escrow what it may cost."""
    params = w.base.params
    terms = task_terms(params, p, w.model_info)
    if w.task(task_id) is not None:
        raise NotPermitted("task exists")
    acct = w.account(sender)
    if acct.balance < terms.escrow:
        raise InsufficientFunds(f"balance {acct.balance} is below the escrow {terms.escrow}")
    w.credit(sender, -terms.escrow)
    w.set_task(task_id, Task(
        client=sender, kind=p.kind, spec=p.spec, work_units=terms.work_units,
        memory_mb=terms.memory_mb, max_price=p.max_price, min_benchmark=p.min_benchmark,
        exec_ms=p.exec_ms,
        expires_ms=w.timestamp + p.ttl_ms, created_ms=w.timestamp, escrow=terms.escrow,
        status=TaskStatus.BIDDING, phase_end_ms=w.timestamp + params.bid_window_ms,
        trail=(Movement("escrow", sender, terms.escrow),),
    ))


def with_attempt(task: Task, **changes: Any) -> Task:
    """`task` with its current attempt changed."""
    return replace(task, attempt=replace(task.attempt, **changes))


def _open_task(w: Working, task_id: Hash32, *phases: TaskStatus) -> Task:
    """The task, if it is in one of `phases` and that phase's window is still open."""
    task = w.task(task_id)
    if task is None:
        raise UnknownTask(f"no task {task_id.hex()}")
    if task.status not in phases or w.timestamp >= task.phase_end_ms:
        raise WrongPhase(f"task is {task.status.name.lower()}"
                         + ("" if task.status not in phases else " but its window has closed")
                         + f", this needs {' or '.join(p.name.lower() for p in phases)}")
    return task


def process_commit_bid(w: Working, sender: Address, p: CommitBid) -> None:
    """Record a sealed bid from a provider that `bid_eligibility` lets bid. When no other
    provider could bid any more (every eligible one has, or the task has all the bids it takes),
    the bid window ends at once: waiting could not add a bid."""
    params = w.base.params
    task = _open_task(w, p.task_id, TaskStatus.BIDDING)
    provider = w.provider(sender)
    code = bid_eligibility(params, sender, provider, task)
    if code is not None:
        raise BID_REFUSAL_ERRORS[code](f"{NO_BID_REASONS[code]} ({code})")
    assert provider is not None  # bid_eligibility gives a code for a sender that is no provider
    deposit = bid_deposit(params, task)
    task = with_attempt(task, bids=(*task.attempt.bids, Bid(sender, p.commitment, deposit)))
    w.set_task(p.task_id, task)
    w.set_provider(sender, replace(provider, bids=provider.bids + 1,
                                   locked=provider.locked + deposit))
    if all(bid_eligibility(params, a, other, task) is not None for a, other in all_providers(w)):
        _end_bidding(w, p.task_id, task)


NO_BID_REASONS = {
    # what keeps one provider from bidding, in the order `bid_eligibility` checks it: a NO_BIDS
    # `why` is the code of the provider that got furthest down this list
    "not_a_provider": "not a registered provider with at least the minimum stake",
    "excluded": "the task's own client, or a provider whose result or deadline failed on it",
    "below_min_benchmark": "benchmark below the task's minimum",
    "device_too_small": "no declared device has the memory the task needs "
                        "(ogpu_node.workloads.limits.memory_needed_mb)",
    "already_bid": "holds a sealed bid on this round of the task already",
    "task_full": "the task holds all the bids it takes (max_bids_per_task)",
    "insufficient_free_stake": "free stake below the bid deposit plus the collateral an award "
                               "at the maximum price would lock",
    # advisory: the chain cannot check it (a sealed price is hidden until the reveal)
    "price_floor_above_max_price": "price floor above the task's maximum price",
    # about the task's bids as a whole
    "no_bids_received": "some provider could bid but none did (busy, offline, or the work "
                        "would not fit in the execution time)",
    "no_bid_revealed": "sealed bids came in but none was revealed (their deposits went to the "
                       "client)",
    "bidders_lack_collateral": "the best bidders could no longer lock their collateral",
}
"""Every code `bid_eligibility` gives and every `why` of a NO_BIDS close, with its explanation
(shown by `task_why` and the provider agent)."""

BID_REFUSAL_ERRORS: dict[str, type[MarketRuleError]] = {
    "not_a_provider": NotAProvider,
    "excluded": NotPermitted,
    "below_min_benchmark": NotPermitted,
    "device_too_small": NotPermitted,
    "already_bid": NotPermitted,
    "task_full": NotPermitted,
    "insufficient_free_stake": InsufficientStake,
}
"""The error a refused `CommitBid` raises, by the code `bid_eligibility` gave."""

_CHECK_ORDER = tuple(NO_BID_REASONS)


def bid_eligibility(params: Params, address: Address, provider: Provider | None, task: Task,
                    *, advisory: bool = False) -> str | None:
    """Why `address` (whose provider record is `provider`) may not commit a sealed bid on `task`
    while its bid window is open, as a `NO_BID_REASONS` code; None when it may.

    The one bid rule: `process_commit_bid` refuses a bid exactly when this gives a code, and
    the provider agent asks it before bidding, so it sends no bid the chain refuses. With
    `advisory`, a provider that passes is also held to its declared price floor, which the
    chain cannot check (the price is sealed until the reveal): for explanations only.
    """
    if provider is None or not is_active(provider, params):
        return "not_a_provider"
    if address == task.client or address in task.excluded:
        return "excluded"
    if provider.benchmark < task.min_benchmark:
        return "below_min_benchmark"
    if not any(device.memory_mb >= task.memory_mb for device in provider.devices):
        return "device_too_small"  # it could only return the task it won
    if any(b.bidder == address for b in task.attempt.bids):
        return "already_bid"
    if len(task.attempt.bids) >= params.max_bids_per_task:
        return "task_full"
    if provider.free_stake < bid_deposit(params, task) + provider_collateral(params, task.budget):
        return "insufficient_free_stake"
    if advisory and provider.price_floor > task.max_price:
        return "price_floor_above_max_price"
    return None


def no_bid_reason(providers: Iterable[tuple[Address, Provider]], task: Task,
                  params: Params) -> str:
    """Why `task` gets no (further) bid: the `bid_eligibility` code, advisory floor included,
    of the provider that got furthest; `no_bids_received` when some provider could bid, and
    `not_a_provider` when there is none."""
    codes = [bid_eligibility(params, a, p, task, advisory=True) for a, p in providers]
    if any(code is None for code in codes):
        return "no_bids_received"
    return max((c for c in codes if c is not None), key=_CHECK_ORDER.index,
               default="not_a_provider")


def process_reveal_bid(w: Working, sender: Address, p: RevealBid) -> None:
    """Open a sealed bid; it must match its commitment and be within the client's maximum.
    The last one to be opened ends the reveal window at once: the award is made in this block
    (no bid can be added or changed after the bid window, so waiting would change nothing)."""
    task = _open_task(w, p.task_id, TaskStatus.REVEALING)
    index = next((i for i, b in enumerate(task.attempt.bids) if b.bidder == sender), None)
    if index is None or task.attempt.bids[index].revealed:
        raise NotPermitted("no sealed bid of this sender to reveal")
    expected = bid_commitment(p.task_id, task.attempt.number, sender, p.price, p.salt)
    if expected != task.attempt.bids[index].commitment:
        raise BadReveal("price and salt do not match the sealed bid")
    if p.price > task.max_price:
        raise NotPermitted(f"price {p.price} above the task's maximum {task.max_price}")
    bids = list(task.attempt.bids)
    bids[index] = replace(bids[index], price=p.price, revealed=True)
    task = with_attempt(task, bids=tuple(bids))
    w.set_task(p.task_id, task)
    _unlock(w, sender, bids[index].deposit)
    if all(b.revealed for b in task.attempt.bids):  # nothing left that could change the outcome
        _award(w, p.task_id, task)


# --- results and verdicts -------------------------------------------------------------------------


def process_commit_result(w: Working, sender: Address, p: CommitResult) -> None:
    """The awarded provider commits its result; a committee will be drawn to check it
    (`verification.py`: drawn from a later block, so the provider cannot choose it)."""
    task = _open_task(w, p.task_id, TaskStatus.RUNNING)
    if sender != task.attempt.provider:
        raise NotPermitted("only the awarded provider may commit a result")
    spec = decode_spec(task.kind, task.spec)
    wanted = checkpoint_total(spec)
    if len(p.result.checkpoint_ids) != wanted:
        raise MarketRuleError(f"the result must list {wanted} checkpoints, "
                              f"it lists {len(p.result.checkpoint_ids)}")
    if wanted and p.result.output_id != p.result.checkpoint_ids[-1]:
        # the client opens the output as the trained weights: the checked last checkpoint
        raise MarketRuleError("a training's output must be its last checkpoint")
    task = with_attempt(task, result=p.result, result_ms=w.timestamp, check=start_check(w))
    w.set_task(p.task_id, replace(task, status=TaskStatus.VERIFYING, phase_end_ms=0))


def process_report_missing_inputs(w: Working, sender: Address, p: ReportMissingInputs) -> None:
    """The awarded provider reports the client's uploaded inputs missing or malformed; a
    committee will be drawn to check the claim (members vote *accept* when they cannot fetch
    valid inputs either)."""
    task = _open_task(w, p.task_id, TaskStatus.RUNNING)
    if sender != task.attempt.provider:
        raise NotPermitted("only the awarded provider may report missing inputs")
    if not decode_spec(task.kind, task.spec).inputs:
        raise NotPermitted("this task's inputs come from its seed: there is nothing to withhold")
    task = with_attempt(task, check=start_check(w))
    w.set_task(p.task_id, replace(task, status=TaskStatus.CHECKING_INPUTS, phase_end_ms=0,
                                  why=p.reason))


def _checked_task(w: Working, task_id: Hash32, attempt: int) -> Task:
    """The task whose claim a verdict is about: under a committee's check, at `attempt`."""
    task = w.task(task_id)
    if task is None:
        raise UnknownTask(f"no task {task_id.hex()}")
    checking = (TaskStatus.VERIFYING, TaskStatus.CHECKING_INPUTS)
    if task.status not in checking or not task.attempt.check:
        raise WrongPhase(f"task is {task.status.name.lower()}, not under a committee's check")
    if attempt != task.attempt.number:
        raise WrongPhase(f"verdict for attempt {attempt}, the task is at {task.attempt.number}")
    return task


def process_seal_verdict(w: Working, sender: Address, p: SealVerdict) -> None:
    """A committee member seals its vote on a task's claim; the last seal opens the reveals."""
    task = _checked_task(w, p.target, p.attempt)
    assert task.attempt.check is not None  # _checked_task refuses a task without one
    check = seal_vote(w, task.attempt.check, sender, p.round, p.seal)
    _advance_check(w, p.target, with_attempt(task, check=check))


def process_reveal_verdict(w: Working, sender: Address, p: RevealVerdict) -> None:
    """A committee member opens its sealed vote; the last one settles the check."""
    task = _checked_task(w, p.target, p.attempt)
    assert task.attempt.check is not None
    seal = verdict_seal(p.target, b"", p.attempt, p.round, sender, p.accept, p.reason, p.salt)
    check = reveal_vote(w, task.attempt.check, sender, p.round, p.accept, p.reason, seal)
    _advance_check(w, p.target, with_attempt(task, check=check))


def _advance_check(w: Working, task_id: Hash32, task: Task) -> None:
    """Move the task's check on (draw, end of sealing, settlement) and act on its outcome."""
    attempt = task.attempt
    assert attempt.check is not None and attempt.provider is not None
    step = advance(w, task_id, attempt.number, attempt.check,
                   exclude=(attempt.provider, task.client), last_ms=task.expires_ms)
    task = replace(with_attempt(task, check=step.check), phase_end_ms=step.check.ends_ms,
                   trail=(*task.trail, *step.trail))
    if step.outcome is None:
        w.set_task(task_id, task)
    elif step.outcome == Outcome.UNCHECKED:
        _unchecked(w, task_id, task)
    elif task.status == TaskStatus.CHECKING_INPUTS and step.outcome == Outcome.ACCEPT:
        _inputs_withheld(w, task_id, task, step)
    elif step.outcome == Outcome.ACCEPT:
        w.set_task(task_id, replace(task, status=TaskStatus.RELEASING,
                                    phase_end_ms=w.timestamp + w.base.params.release_window_ms))
    else:
        _slash_and_reoffer(w, task_id, task, CloseReason.REJECTED, step.paid)


def process_return_task(w: Working, sender: Address, p: ReturnTask) -> None:
    """The awarded provider gives back a task it cannot run (`p.reason`): it pays
    `return_penalty_bps` of its collateral (shared as a slash is) and gets the rest back, and the
    task is offered again without it, or closed as RETURNED when no full round fits."""
    params = w.base.params
    task = _open_task(w, p.task_id, TaskStatus.RUNNING)
    if sender != task.attempt.provider:
        raise NotPermitted("only the awarded provider may return a task")
    collateral = task.attempt.collateral
    penalty = collateral * params.return_penalty_bps // BPS
    taken = penalise_provider(w, sender, collateral, penalty)
    trail = [*task.trail, *share_slashed(w, taken, sender, task.client, (), 0,
                                         event="return_penalty"),
             Movement("provider_collateral_returned", sender, collateral - taken)]
    why = p.reason.name.lower()  # kept when the task closes, too: the client learns the reason
    _reoffer_or_close(w, p.task_id, replace(task, trail=tuple(trail), why=why),
                      CloseReason.RETURNED, why)


def process_cancel(w: Working, sender: Address, p: CancelTask) -> None:
    """The client cancels: free before the award, its collateral after it."""
    task = w.task(p.task_id)
    if task is None:
        raise UnknownTask(f"no task {p.task_id.hex()}")
    if sender != task.client:
        raise NotPermitted("only the task's client may cancel it")
    if task.status in (TaskStatus.BIDDING, TaskStatus.REVEALING):
        for bid in task.attempt.bids:  # the bidders did nothing wrong: their deposits come back
            if not bid.revealed:
                _unlock(w, bid.bidder, bid.deposit)
        _close(w, p.task_id, task, CloseReason.CANCELLED)
    elif task.status == TaskStatus.RUNNING:
        _close(w, p.task_id, _client_collateral_to_provider(w, task),
               CloseReason.CANCELLED_AFTER_AWARD)
    else:
        raise WrongPhase(f"a task that is {task.status.name.lower()} cannot be cancelled")


# --- deadlines ---------------------------------------------------------------------------------


def process_deadlines(w: Working) -> None:
    """Move every open task whose phase has ended at this block's time to its next phase, then
    the pools' requests (`pools.process_pool_deadlines`)."""
    for task_id in w.open_task_ids():
        task = w.task(task_id)
        if task is None:
            continue
        if task.status in (TaskStatus.VERIFYING, TaskStatus.CHECKING_INPUTS):
            _advance_check(w, task_id, task)  # draws go by height, windows by time
            continue
        if w.timestamp < task.phase_end_ms:
            continue
        if task.status == TaskStatus.BIDDING:
            _end_bidding(w, task_id, task)
        elif task.status == TaskStatus.REVEALING:
            _award(w, task_id, task)
        elif task.status == TaskStatus.RUNNING:
            _slash_and_reoffer(w, task_id, task, CloseReason.TIMED_OUT)
        elif task.status == TaskStatus.RELEASING:  # accepted, but the client cannot read it
            _slash_and_reoffer(w, task_id, task, CloseReason.TIMED_OUT,
                               accepters(task.attempt.check))
    pools.process_pool_deadlines(w)


def _end_bidding(w: Working, task_id: Hash32, task: Task) -> None:
    if not task.attempt.bids:
        _close(w, task_id, replace(task, why=explain_no_bids(w, task)), CloseReason.NO_BIDS)
        return
    w.set_task(task_id, replace(task, status=TaskStatus.REVEALING,
                                phase_end_ms=w.timestamp + w.base.params.reveal_window_ms))


def _award(w: Working, task_id: Hash32, task: Task) -> None:
    """Score the revealed bids, award the best one that can lock its collateral, at the second
    price."""
    params = w.base.params
    task = _forfeit_sealed_deposits(w, task)
    candidates = []
    for bid in task.attempt.bids:
        bidder = w.provider(bid.bidder)
        if bid.revealed and bidder is not None and is_active(bidder, params):
            candidates.append((bid.bidder, bid.price, bidder))
    scored = score_bids(candidates)
    for index, winner in enumerate(scored):
        runner_up = scored[index + 1] if index + 1 < len(scored) else None
        price = second_price(winner, runner_up, task.max_price)
        collateral = provider_collateral(params, price * task.work_units)
        provider = w.provider(winner.bidder)
        if provider is None or provider.free_stake < collateral:
            continue
        w.set_provider(winner.bidder, replace(provider, locked=provider.locked + collateral))
        awarded = with_attempt(task, provider=winner.bidder, price=price,
                               collateral=collateral, awarded_ms=w.timestamp)
        w.set_task(task_id, replace(
            awarded, status=TaskStatus.RUNNING, phase_end_ms=w.timestamp + task.exec_ms,
            trail=(*task.trail, Movement("provider_collateral_locked", winner.bidder,
                                         collateral))))
        return
    why = "bidders_lack_collateral" if candidates else "no_bid_revealed"
    _close(w, task_id, replace(task, why=why), CloseReason.NO_BIDS)


def _forfeit_sealed_deposits(w: Working, task: Task) -> Task:
    """The reveal window has ended: every bid still sealed counts against its bidder and its
    deposit goes to the client; returns the task with the trail line."""
    forfeited = 0
    for bid in task.attempt.bids:
        bidder = w.provider(bid.bidder)
        if bid.revealed or bidder is None:
            continue
        taken = min(bid.deposit, bidder.stake)  # all of it: a lock never exceeds the stake
        w.set_provider(bid.bidder, replace(bidder, stake=bidder.stake - taken,
                                           locked=bidder.locked - bid.deposit,
                                           unrevealed=bidder.unrevealed + 1))
        forfeited += taken
    if not forfeited:
        return task
    w.credit(task.client, forfeited)
    return replace(task, trail=(*task.trail,
                                Movement("bid_deposits_forfeited", task.client, forfeited)))


def explain_no_bids(w: Working, task: Task) -> str:
    """Why no provider bid on `task` (see `no_bid_reason`), as a stable code."""
    return no_bid_reason(all_providers(w), task, w.base.params)


# --- settlement --------------------------------------------------------------------------------


def _release_collateral(w: Working, task: Task) -> None:
    if task.attempt.provider is None:
        return
    provider = w.provider(task.attempt.provider)
    if provider is not None:
        w.set_provider(task.attempt.provider,
                       replace(provider, locked=provider.locked - task.attempt.collateral))


def process_release_result(w: Working, sender: Address, p: ReleaseResult) -> None:
    """The provider of an accepted result releases its key: it is paid, the task completes."""
    task = _open_task(w, p.task_id, TaskStatus.RELEASING)
    if sender != task.attempt.provider:
        raise NotPermitted("only the awarded provider releases its result")
    if p.attempt != task.attempt.number:
        raise WrongPhase(f"release for attempt {p.attempt}, the task is at {task.attempt.number}")
    assert task.attempt.result is not None  # RELEASING follows an accepted result
    if key_commitment(p.key) != task.attempt.result.key_commitment:
        raise BadReveal("the key does not match the result's commitment")
    _accept(w, p.task_id, with_attempt(task, released_key=p.key))


def _accept(w: Working, task_id: Hash32, task: Task) -> None:
    """Pay the provider and the members who revealed *accept*, return collateral, refund the
    rest."""
    provider_address = task.attempt.provider
    if provider_address is None:
        raise MarketRuleError("accepting a task without a provider")
    trail = list(task.trail)
    w.credit(provider_address, task.payment)
    trail.append(Movement("payment", provider_address, task.payment))
    paid = task.payment + _pay_members(w, task, accepters(task.attempt.check), trail)
    paid += _forfeit_fees(w, task, dissenters(task.attempt.check), trail)
    _release_collateral(w, task)
    trail.append(Movement("provider_collateral_returned", provider_address,
                          task.attempt.collateral))
    provider = w.provider(provider_address)
    if provider is not None:
        w.set_provider(provider_address, replace(
            provider, completed=provider.completed + 1, fail_streak=0,
            work_done=provider.work_done + task.work_units,
            compute_ms=provider.compute_ms + max(0, task.attempt.result_ms
                                                 - task.attempt.awarded_ms)))
    task = replace(task, escrow=task.escrow - paid, trail=tuple(trail))
    _close(w, task_id, task, CloseReason.COMPLETED)


def _forfeit_fees(w: Working, task: Task, members: tuple[Address, ...],
                  trail: list[Movement]) -> int:
    """Burn the fee of each of `members` (who revealed a vote against the outcome): refunded,
    it would pay a client for an ally's dissent. Returns the total taken from the escrow."""
    fee = _member_fee(w, task)
    for member in members:
        trail.append(Movement("verifier_fee_forfeited", member, fee))
    w.burned += fee * len(members)
    return fee * len(members)


def _pay_members(w: Working, task: Task, members: tuple[Address, ...],
                 trail: list[Movement]) -> int:
    """Pay each of `members` (who revealed a vote matching the outcome) its fee from the
    verification reserve; returns the total (the caller takes it from the escrow)."""
    fee = _member_fee(w, task)
    for member in members:
        w.credit(member, fee)
        trail.append(Movement("verifier_fee", member, fee))
    return fee * len(members)


def _member_fee(w: Working, task: Task) -> int:
    params = w.base.params
    _, reserve, _ = task_escrow(params, task.max_price, task.work_units)
    return reserve // params.committee_size


def _client_collateral_to_provider(w: Working, task: Task) -> Task:
    """Release the provider's collateral and pay it the client's collateral from the escrow
    (a cancel after the award, or inputs withheld); returns the task with the escrow reduced."""
    provider_address = task.attempt.provider
    if provider_address is None:
        raise MarketRuleError("an awarded task without a provider")
    _, _, client_collateral = task_escrow(w.base.params, task.max_price, task.work_units)
    _release_collateral(w, task)
    w.credit(provider_address, client_collateral)
    return replace(task, escrow=task.escrow - client_collateral, trail=(
        *task.trail,
        Movement("provider_collateral_returned", provider_address, task.attempt.collateral),
        Movement("client_collateral_to_provider", provider_address, client_collateral)))


def _inputs_withheld(w: Working, task_id: Hash32, task: Task, step: Step) -> None:
    """The report of missing inputs stands: members who upheld it are paid, the client's
    collateral goes to the provider, the rest is refunded."""
    trail = list(task.trail)
    paid = _pay_members(w, task, step.paid, trail)
    paid += _forfeit_fees(w, task, dissenters(task.attempt.check), trail)
    task = replace(task, escrow=task.escrow - paid, trail=tuple(trail))
    _close(w, task_id, _client_collateral_to_provider(w, task), CloseReason.INPUTS_WITHHELD)


def _unchecked(w: Working, task_id: Hash32, task: Task) -> None:
    """No committee settled the claim: nothing is paid on it. The provider's collateral is
    returned and the client refunded (it cannot have been harmed by a claim nobody checked)."""
    _release_collateral(w, task)
    assert task.attempt.provider is not None
    returned = Movement("provider_collateral_returned", task.attempt.provider,
                        task.attempt.collateral)
    task = replace(task, trail=(*task.trail, returned))
    _close(w, task_id, task, CloseReason.UNCHECKED)


def _slash_and_reoffer(w: Working, task_id: Hash32, task: Task, reason: CloseReason,
                       rejecters: tuple[Address, ...] = ()) -> None:
    """Slash the provider's collateral (rejected result or missed deadline; `rejecters`, the
    members who revealed *reject*, are paid their fee from it), then offer the task again if a
    full round still fits before it expires, else close it with `reason`."""
    provider_address = task.attempt.provider
    if provider_address is None:
        raise MarketRuleError("slashing a task without a provider")
    slashed = slash_provider(w, provider_address, task.attempt.collateral)
    trail = [*task.trail, *share_slashed(w, slashed, provider_address, task.client,
                                         rejecters, _member_fee(w, task))]
    _reoffer_or_close(w, task_id, replace(task, trail=tuple(trail)), reason, reason.name.lower())


def _reoffer_or_close(w: Working, task_id: Hash32, task: Task, reason: CloseReason,
                      why: str) -> None:
    """After the provider failed the task (and paid for it): exclude it, then offer the task
    again, saying `why`, if a full round still fits before it expires, else close it with
    `reason`."""
    params = w.base.params
    provider_address = task.attempt.provider
    if provider_address is None:
        raise MarketRuleError("re-offering a task without a provider")
    task = replace(task, excluded=(*task.excluded, provider_address))
    one_round = params.bid_window_ms + params.reveal_window_ms + task.exec_ms
    fits = w.timestamp + one_round <= task.expires_ms
    if task.attempt.number < params.max_task_attempts and fits:
        w.set_task(task_id, replace(
            task, status=TaskStatus.BIDDING, attempt=Attempt(task.attempt.number + 1),
            phase_end_ms=w.timestamp + params.bid_window_ms, why=why))
    else:
        _close(w, task_id, task, reason)


def _close(w: Working, task_id: Hash32, task: Task, reason: CloseReason) -> None:
    """Refund what the escrow still holds and close the task with `reason`."""
    trail = task.trail
    if task.escrow:
        w.credit(task.client, task.escrow)
        trail = (*trail, Movement("refund", task.client, task.escrow))
    w.set_task(task_id, replace(task, status=TaskStatus.CLOSED, escrow=0, close_reason=reason,
                                phase_end_ms=w.timestamp, trail=trail))

