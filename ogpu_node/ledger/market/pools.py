"""Pools for continuous inference: one `process_*` per pool transaction, and the deadlines every
block runs.

A client opens a pool for a registered model with a budget and a price per request. Providers
join it with a bond. Each request the owner sends is raced by at most `max_racers` subscribers,
drawn from the request id and the parent block's hash; the first racer whose result lands on
chain wins it. A share `sample_bps` of the requests (drawn from the request id) is checked by a
committee before payment; the rest is paid when the owner's dispute window
(`pool_dispute_window_ms`) passes, unless the owner disputes the answer (`DISPUTE_ANSWER`: it
cannot fetch it, or doubts it), which sends it to a committee as a sampled one: an answer is
paid only if a check passed or the owner, who could fetch it, let the window pass. A check is
the same as a task's (`verification.py`): a committee drawn from a later block, sealed votes, a
quorum to settle; a check no committee settles (UNCHECKED) is not paid and costs the winner
nothing.

Money:

* opening escrows the budget, and the owner may add to it while the pool is open
  (`TOP_UP_POOL`); each request moves price + verification fee (`verifier_fee_bps`
  of the price) from the pool into the request;
* a paid request pays the price to the winner and, if it was checked, the fee to the members who
  revealed *accept*; the unused fee goes back to the pool (a dispute uses it: the committee that
  settles a dispute is paid as for a sampled answer);
* a rejected result costs the winner its whole bond: members who revealed *reject* get their fee
  from it,
  `slash_to_client_bps` of the rest goes to the owner, the remainder is burned; the winner leaves
  the pool and the request's escrow goes back to the pool;
* a request nobody answers in `request_ms` expires and its escrow goes back to the pool;
* closing (by the owner, or when the pool expires) pays answered ones, settles checked requests by
  a quorum of the votes revealed so far (else UNCHECKED), expires the open ones, releases every
  bond and refunds the pool's escrow.
"""

from __future__ import annotations

from dataclasses import replace

from ogpu_node.encoding import pack
from ogpu_node.hashing import digest
from ogpu_node.ledger.errors import (
    InsufficientFunds,
    InsufficientStake,
    InvalidTaskSpec,
    NotAProvider,
    NotPermitted,
    UnknownTask,
    WrongPhase,
)
from ogpu_node.ledger.market.checks import check_open_pool
from ogpu_node.ledger.market.payloads import (
    ClosePool,
    DisputeAnswer,
    JoinPool,
    LeavePool,
    OpenPool,
    PoolResult,
    RevealVerdict,
    SealVerdict,
    SendRequest,
    TopUpPool,
)
from ogpu_node.ledger.market.records import (
    LIVE_REQUESTS,
    MAX_POOL_REQUESTS,
    MAX_SUBSCRIBERS,
    MAX_TRAIL,
    Movement,
    Pool,
    PoolRequest,
    RequestStatus,
)
from ogpu_node.ledger.market.slashing import share_slashed, slash_provider
from ogpu_node.ledger.market.verification import (
    Outcome,
    Step,
    advance,
    dissenters,
    end_now,
    reveal_vote,
    seal_vote,
    start_check,
    verdict_seal,
)
from ogpu_node.ledger.params import BPS
from ogpu_node.ledger.working import Working
from ogpu_node.types import Address, Hash32
from ogpu_node.workloads.kinds import WorkloadSpec
from ogpu_node.workloads.models import ModelInferSpec, ModelLookup
from ogpu_node.workloads.spec import InferSpec

MAX_OPEN_REQUESTS = MAX_POOL_REQUESTS // 2


def request_spec(pool: Pool, request: PoolRequest, models: ModelLookup) -> WorkloadSpec:
    """What a request asks its racers to compute (bound to the pool's registered model, which
    is never removed): the one place the ledger, the providers and the committees read it."""
    if pool.model_id is None:
        return InferSpec(pool.model, request.seed, request.batch, request.inputs)
    info = models(pool.model_id)
    if info is None:
        raise UnknownTask(f"no registered model {pool.model_id.hex()}")
    return ModelInferSpec(pool.model_id, request.batch, request.inputs, info)


def request_cost(w: Working, pool: Pool) -> tuple[int, int]:
    """(price, verification fee) a request moves from the pool into its escrow."""
    return pool.price, pool.price * w.base.params.verifier_fee_bps // BPS


def is_sampled(request_id: bytes, sample_bps: int) -> bool:
    """Whether a request's result is checked before payment (known to all, not to choose)."""
    return int.from_bytes(digest(b"pool-sample", request_id)[:8], "big") % BPS < sample_bps


def choose_racers(subscribers: tuple[tuple[Address, int], ...], count: int, request_id: bytes,
                  block_hash: bytes) -> tuple[Address, ...]:
    """Up to `count` subscribers, ranked by a hash of the request and the parent block."""
    ranked = sorted(subscribers, key=lambda s: digest(b"racer", pack([request_id, block_hash,
                                                                      s[0]])))
    return tuple(sorted(a for a, _ in ranked[:count]))


def _live_pool(w: Working, pool_id: Hash32) -> Pool:
    pool = w.pool(pool_id)
    if pool is None:
        raise UnknownTask(f"no pool {pool_id.hex()}")
    if pool.closed or w.timestamp >= pool.expires_ms:
        raise WrongPhase("the pool is closed")
    return pool


def _with_request(pool: Pool, request: PoolRequest) -> Pool:
    """`pool` with `request` replaced or added; finished requests beyond the record's limit are
    forgotten oldest first (their money has moved; the counters keep the totals)."""
    requests = [r for r in pool.requests if r.request_id != request.request_id] + [request]
    while len(requests) > MAX_POOL_REQUESTS:
        oldest = next(r for r in requests if r.status not in LIVE_REQUESTS)
        requests.remove(oldest)
    requests.sort(key=lambda r: (r.created_ms, r.request_id))
    return replace(pool, requests=tuple(requests))


def _trail(pool: Pool, *lines: Movement) -> Pool:
    return replace(pool, trail=(*pool.trail, *lines)[-MAX_TRAIL:])


# --- transactions -------------------------------------------------------------------------------


def process_open_pool(w: Working, pool_id: Hash32, sender: Address, p: OpenPool) -> None:
    check_open_pool(w.base.params, p, w.model_info)
    if w.pool(pool_id) is not None:
        raise NotPermitted("pool exists")
    if w.account(sender).balance < p.budget:
        raise InsufficientFunds(f"balance {w.account(sender).balance} is below the budget")
    w.credit(sender, -p.budget)
    w.set_pool(pool_id, Pool(
        owner=sender, model=p.model, max_batch=p.max_batch, price=p.price,
        max_racers=p.max_racers, sample_bps=p.sample_bps, min_stake=p.min_stake,
        request_ms=p.request_ms, expires_ms=w.timestamp + p.ttl_ms, created_ms=w.timestamp,
        escrow=p.budget, trail=(Movement("escrow", sender, p.budget),),
        model_id=Hash32(p.model_id) if p.model_id else None))


def process_join_pool(w: Working, sender: Address, p: JoinPool) -> None:
    pool = _live_pool(w, p.pool_id)
    provider = w.provider(sender)
    if provider is None or provider.stake < w.base.params.provider_min_stake:
        raise NotAProvider("only a provider with at least the minimum stake may join a pool")
    if sender == pool.owner or pool.stake_of(sender):
        raise NotPermitted("the owner cannot join its pool, and a member cannot join twice")
    if len(pool.subscribers) >= MAX_SUBSCRIBERS:
        raise NotPermitted(f"the pool has {MAX_SUBSCRIBERS} members")
    if p.stake < pool.min_stake:
        raise InsufficientStake(f"bond {p.stake} below the pool's minimum {pool.min_stake}")
    if provider.free_stake < p.stake:
        raise InsufficientStake(f"free stake {provider.free_stake} below the bond {p.stake}")
    w.set_provider(sender, replace(provider, locked=provider.locked + p.stake))
    w.set_pool(p.pool_id, replace(pool, subscribers=tuple(sorted(
        (*pool.subscribers, (sender, p.stake))))))


def process_leave_pool(w: Working, sender: Address, p: LeavePool) -> None:
    pool = w.pool(p.pool_id)
    if pool is None:
        raise UnknownTask(f"no pool {p.pool_id.hex()}")
    if not pool.stake_of(sender):
        raise NotPermitted("the sender is not a member of this pool")
    _release_bond(w, pool, sender)
    w.set_pool(p.pool_id, replace(pool, subscribers=tuple(
        s for s in pool.subscribers if s[0] != sender)))


def process_send_request(w: Working, request_id: Hash32, sender: Address,
                         p: SendRequest) -> None:
    pool = _live_pool(w, p.pool_id)
    if sender != pool.owner:
        raise NotPermitted("only the pool's owner sends requests")
    if not 1 <= p.batch <= pool.max_batch:
        raise InvalidTaskSpec(f"batch must be within 1..{pool.max_batch}")
    if (pool.model_id is not None) != bool(p.inputs):
        raise InvalidTaskSpec("a registered model's request needs uploaded inputs; a built-in "
                              "model's is generated from its seed")
    if not pool.subscribers:
        raise NotPermitted("the pool has no members to serve requests")
    if sum(r.status in LIVE_REQUESTS for r in pool.requests) >= MAX_OPEN_REQUESTS:
        raise NotPermitted(f"at most {MAX_OPEN_REQUESTS} requests can be open at once")
    price, fee = request_cost(w, pool)
    if pool.escrow < price + fee:
        raise InsufficientFunds(f"pool budget {pool.escrow} below a request's {price + fee}")
    racers = choose_racers(pool.subscribers, pool.max_racers, request_id, w.base.block_hash)
    request = PoolRequest(request_id, p.seed, p.batch, w.timestamp,
                          w.timestamp + pool.request_ms, racers, escrow=price + fee,
                          inputs=p.inputs)
    w.set_pool(p.pool_id, _with_request(replace(pool, escrow=pool.escrow - price - fee), request))


def process_pool_result(w: Working, sender: Address, p: PoolResult) -> None:
    pool = _live_pool(w, p.pool_id)
    request = pool.request(p.request_id)
    if request is None:
        raise UnknownTask(f"no request {p.request_id.hex()} in this pool")
    if request.status != RequestStatus.OPEN or w.timestamp >= request.deadline_ms:
        raise WrongPhase("the request is not open (answered, or past its deadline)")
    if sender not in request.racers or not pool.stake_of(sender):
        raise NotPermitted("only a member drawn to race this request may answer it")
    request = replace(request, winner=sender, output_id=p.output_id, key=p.key)
    if is_sampled(p.request_id, pool.sample_bps):
        request = replace(request, status=RequestStatus.VERIFYING, check=start_check(w))
    else:
        request = replace(request, status=RequestStatus.ANSWERED,
                          deadline_ms=w.timestamp + w.base.params.pool_dispute_window_ms)
    w.set_pool(p.pool_id, _with_request(pool, request))


def process_dispute_answer(w: Working, sender: Address, p: DisputeAnswer) -> None:
    """The owner disputes an unsampled answer in its window: a committee checks it."""
    pool = _live_pool(w, p.pool_id)
    if sender != pool.owner:
        raise NotPermitted("only the pool's owner disputes its answers")
    request = pool.request(p.request_id)
    if request is None:
        raise UnknownTask(f"no request {p.request_id.hex()} in this pool")
    if request.status != RequestStatus.ANSWERED or w.timestamp >= request.deadline_ms:
        raise WrongPhase("only an answer in its dispute window can be disputed")
    w.set_pool(p.pool_id, _with_request(pool, replace(
        request, status=RequestStatus.VERIFYING, check=start_check(w))))


def _checked_request(w: Working, pool_id: Hash32, request_id: bytes,
                     attempt: int) -> tuple[Pool, PoolRequest]:
    pool = w.pool(pool_id)
    request = pool.request(request_id) if pool is not None else None
    if pool is None or request is None:
        raise UnknownTask("no such pool request")
    if request.status != RequestStatus.VERIFYING or request.check is None:
        raise WrongPhase("the request is not under verification")
    if attempt != 0:
        raise WrongPhase("a pool request has no attempts: send attempt 0")
    return pool, request


def process_pool_seal(w: Working, sender: Address, p: SealVerdict) -> None:
    """A committee member seals its vote on a sampled answer."""
    pool, request = _checked_request(w, p.target, p.request_id, p.attempt)
    assert request.check is not None
    check = seal_vote(w, request.check, sender, p.round, p.seal)
    _advance_check(w, p.target, pool, replace(request, check=check))


def process_pool_reveal(w: Working, sender: Address, p: RevealVerdict) -> None:
    """A committee member opens its sealed vote on a sampled answer."""
    pool, request = _checked_request(w, p.target, p.request_id, p.attempt)
    assert request.check is not None
    seal = verdict_seal(p.target, p.request_id, 0, p.round, sender, p.accept, p.reason, p.salt)
    check = reveal_vote(w, request.check, sender, p.round, p.accept, p.reason, seal)
    _advance_check(w, p.target, pool, replace(request, check=check))


def _advance_check(w: Working, pool_id: Hash32, pool: Pool, request: PoolRequest) -> None:
    """Move a sampled answer's check on and act on its outcome."""
    assert request.check is not None and request.winner is not None
    step = advance(w, request.request_id, 0, request.check,
                   exclude=(request.winner, pool.owner), last_ms=pool.expires_ms)
    _settle(w, pool_id, _trail(pool, *step.trail), replace(request, check=step.check), step)


def _settle(w: Working, pool_id: Hash32, pool: Pool, request: PoolRequest, step: Step) -> None:
    if step.outcome is None:
        w.set_pool(pool_id, _with_request(pool, request))
    elif step.outcome == Outcome.ACCEPT:
        _pay(w, pool_id, pool, request, step.paid)
    elif step.outcome == Outcome.REJECT:
        _reject(w, pool_id, pool, request, step.paid)
    else:  # nobody settled it: not paid, and the winner loses nothing
        w.set_pool(pool_id, _with_request(
            replace(pool, escrow=pool.escrow + request.escrow),
            replace(request, status=RequestStatus.UNCHECKED, escrow=0)))


def process_top_up_pool(w: Working, sender: Address, p: TopUpPool) -> None:
    pool = _live_pool(w, p.pool_id)
    if sender != pool.owner:
        raise NotPermitted("only the pool's owner may top it up")
    if w.account(sender).balance < p.amount:
        raise InsufficientFunds(f"balance {w.account(sender).balance} is below the top-up")
    w.credit(sender, -p.amount)
    w.set_pool(p.pool_id, _trail(replace(pool, escrow=pool.escrow + p.amount),
                                 Movement("escrow", sender, p.amount)))


def process_close_pool(w: Working, sender: Address, p: ClosePool) -> None:
    pool = w.pool(p.pool_id)
    if pool is None:
        raise UnknownTask(f"no pool {p.pool_id.hex()}")
    if sender != pool.owner:
        raise NotPermitted("only the pool's owner may close it")
    if pool.closed:
        raise WrongPhase("the pool is closed")
    _close(w, p.pool_id, pool)


# --- deadlines and settlement -------------------------------------------------------------------


def process_pool_deadlines(w: Working) -> None:
    """Expire unanswered requests, move checks on, close expired pools."""
    for pool_id in w.open_pool_ids():
        pool = w.pool(pool_id)
        assert pool is not None
        for request in pool.requests:
            pool = w.pool(pool_id)
            assert pool is not None
            if request.status == RequestStatus.VERIFYING:
                _advance_check(w, pool_id, pool, request)
            elif request.status == RequestStatus.OPEN and w.timestamp >= request.deadline_ms:
                _expire(w, pool_id, pool, request)
            elif request.status == RequestStatus.ANSWERED and w.timestamp >= request.deadline_ms:
                _pay(w, pool_id, pool, request, ())  # undisputed
        pool = w.pool(pool_id)
        if pool is not None and w.timestamp >= pool.expires_ms:
            _close(w, pool_id, pool)


def _expire(w: Working, pool_id: Hash32, pool: Pool, request: PoolRequest) -> None:
    w.set_pool(pool_id, _with_request(
        replace(pool, escrow=pool.escrow + request.escrow, expired=pool.expired + 1),
        replace(request, status=RequestStatus.EXPIRED, escrow=0)))


def _pay(w: Working, pool_id: Hash32, pool: Pool, request: PoolRequest,
         accepters: tuple[Address, ...]) -> None:
    """Pay the winner, and the members who revealed *accept*; the fee of each member who
    revealed *reject* is burned (back in the pool, it would pay an owner for an ally's
    dissent); the rest goes back to the pool."""
    winner = request.winner
    assert winner is not None
    price, fee = request_cost(w, pool)
    w.credit(winner, price)
    left = request.escrow - price
    share = fee // w.base.params.committee_size
    for member in accepters:
        if share and left >= share:
            w.credit(member, share)
            left -= share
    for _ in dissenters(request.check):
        burn = min(share, left)
        w.burned += burn
        left -= burn
    provider = w.provider(winner)
    if provider is not None:
        units = request_spec(pool, request, w.model_info).work_units()
        w.set_provider(winner, replace(provider, completed=provider.completed + 1, fail_streak=0,
                                       work_done=provider.work_done + units))
    pool = replace(pool, escrow=pool.escrow + left, served=pool.served + 1,
                   paid=pool.paid + price)
    w.set_pool(pool_id, _with_request(pool, replace(request, status=RequestStatus.PAID,
                                                    escrow=0)))


def _reject(w: Working, pool_id: Hash32, pool: Pool, request: PoolRequest,
            rejecters: tuple[Address, ...]) -> None:
    """The winner's result was wrong: it loses its bond and leaves; the request's escrow, less
    the fees of the members who rejected, goes back to the pool."""
    winner = request.winner
    assert winner is not None
    bond = pool.stake_of(winner)
    slashed = slash_provider(w, winner, bond)
    _, fee = request_cost(w, pool)
    pool = _trail(pool, *share_slashed(w, slashed, winner, pool.owner, rejecters,
                                       fee // w.base.params.committee_size))
    pool = replace(pool, escrow=pool.escrow + request.escrow, rejected=pool.rejected + 1,
                   subscribers=tuple(s for s in pool.subscribers if s[0] != winner))
    w.set_pool(pool_id, _with_request(pool, replace(request, status=RequestStatus.REJECTED,
                                                    escrow=0)))


def _release_bond(w: Working, pool: Pool, member: Address) -> None:
    provider = w.provider(member)
    if provider is not None:
        w.set_provider(member, replace(provider,
                                       locked=provider.locked - pool.stake_of(member)))


def _close(w: Working, pool_id: Hash32, pool: Pool) -> None:
    for request in pool.requests:
        current = w.pool(pool_id) or pool
        if request.status == RequestStatus.OPEN:
            _expire(w, pool_id, current, request)
        elif request.status == RequestStatus.ANSWERED:  # closing does not dodge a payment
            _pay(w, pool_id, current, request, ())
        elif request.status == RequestStatus.VERIFYING and request.check is not None:
            _settle(w, pool_id, current, request, end_now(request.check))
    pool = w.pool(pool_id) or pool
    for member, _ in pool.subscribers:
        _release_bond(w, pool, member)
    if pool.escrow:
        w.credit(pool.owner, pool.escrow)
        pool = _trail(pool, Movement("refund", pool.owner, pool.escrow))
    w.set_pool(pool_id, replace(pool, escrow=0, subscribers=(), closed=True))
