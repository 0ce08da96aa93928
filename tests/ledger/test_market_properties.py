"""Property tests of the market rules: random sequences of market actions, some invalid on
purpose, with time jumping across every kind of deadline. After every block:

* value is conserved (balances + stakes + provider bonds + task escrow + ... = issued - burned);
* no balance, stake, escrow or lock is negative, and a provider's lock never exceeds its stake;
* each provider's lock equals the collateral of the tasks it runs or has under verification,
  plus the deposits of its sealed bids on tasks still bidding or revealing, plus its pool bonds;
* a closed task holds no escrow and has a close reason; an open one has none;
* the incremental commitment equals the one computed from scratch, and the open-task index
  matches the tasks;
* a refused transaction leaves the state exactly as it was.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from hypothesis import event, given, settings
from hypothesis import strategies as st

from ogpu_node.encoding import encode
from ogpu_node.hashing import digest
from ogpu_node.ledger import Params, apply_tx
from ogpu_node.ledger.builder import select_transactions
from ogpu_node.ledger.errors import InvalidTransaction
from ogpu_node.ledger.market.auction import bid_commitment
from ogpu_node.ledger.market.payloads import (
    CancelTask,
    ClosePool,
    CommitBid,
    CommitResult,
    DisputeAnswer,
    JoinPool,
    LeavePool,
    OpenPool,
    PoolResult,
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
    LIVE_REQUESTS,
    Check,
    CheckPhase,
    CloseReason,
    RequestStatus,
    ReturnReason,
    TaskStatus,
)
from ogpu_node.ledger.market.verification import verdict_seal
from ogpu_node.ledger.state import State, compute_records_hash, open_task_ids
from ogpu_node.ledger.tx import Payload, Transaction
from ogpu_node.types import Hash32, ogpu
from ogpu_node.workloads.spec import MatmulSpec
from tests.ledger.helpers import KEYS, snapshot
from tests.ledger.market_helpers import GPU, MARKET_PARAMS, RELEASED_KEY, MarketChain, result_for
from tests.ledger.profiles import examples

POOL_ACTIONS = ("pool", "join", "leave", "request", "answer", "pool_vote", "close_pool",
                "pool_step", "dispute", "top_up")
TASK_ACTIONS = ["submit", "step", "step", "step", "step", "bid", "reveal", "result", "vote",
                "report", "return", "cancel", "register", "withdraw", "wait", "deadline",
                "deadline"]
ACTIONS = ["submit", "step", "step", "step", "step", "bid", "reveal", "result", "vote", "report",
           "return", "cancel", "register", "withdraw", "wait", "deadline", "deadline", "pool",
           "join", "join", "leave", "request", "request", "request", "answer", "answer",
           "answer", "pool_vote", "pool_vote", "close_pool", "pool_step", "pool_step",
           "pool_step", "pool_step", "dispute", "top_up"]
"""`step` moves a random open task the natural way for its phase (a bid, a reveal, the result,
a report of missing inputs or a return of the task, a vote); `deadline` makes a block exactly
when a random open task's phase ends; `wait` makes one after a random time; the others send
their transaction to a random task, often out of phase on purpose."""


def check_market_invariants(state: State) -> None:
    assert state.total_held() == state.issued - state.burned
    assert state.records_hash == compute_records_hash(
        state.accounts, state.unbonding, state.providers, state.tasks, state.pools,
        models=state.models)
    assert state.open_tasks == open_task_ids(state.tasks)
    for acct in state.accounts.values():
        assert acct.balance >= 0 and acct.stake >= 0
    locks: dict[bytes, int] = defaultdict(int)
    for task in state.tasks.values():
        assert task.escrow >= 0
        if task.status == TaskStatus.CLOSED:
            assert task.escrow == 0 and task.close_reason is not None
        else:
            assert task.close_reason is None
        if task.status in (TaskStatus.RUNNING, TaskStatus.VERIFYING,
                           TaskStatus.CHECKING_INPUTS, TaskStatus.RELEASING):
            assert task.attempt.provider is not None
            locks[task.attempt.provider] += task.attempt.collateral
        if task.status in (TaskStatus.BIDDING, TaskStatus.REVEALING):
            for bid in task.attempt.bids:
                if not bid.revealed:
                    locks[bid.bidder] += bid.deposit
    for pool in state.pools.values():
        assert pool.escrow >= 0 and all(r.escrow >= 0 for r in pool.requests)
        if pool.closed:
            assert pool.escrow == 0 and not pool.subscribers
        for member, bond in pool.subscribers:
            locks[member] += bond
    for address, provider in state.providers.items():
        assert 0 <= provider.locked <= provider.stake
        assert provider.locked == locks.get(address, 0)


DEAR_BIDS = replace(MARKET_PARAMS, bid_deposit_min=ogpu(100), bid_deposit_bps=5_000)
"""Deposits so large that the providers' free stake (150 OGPU) covers one sealed bid at a time."""


def histories(actions: list[str]) -> st.SearchStrategy[list[tuple[str, int]]]:
    return st.lists(st.tuples(st.sampled_from(actions), st.integers(0, 2**32)), min_size=10,
                    max_size=80)


@settings(max_examples=examples(100, 2000))
@given(histories(TASK_ACTIONS), st.booleans())
def test_random_task_histories_keep_every_invariant(steps: list[tuple[str, int]],
                                                    dear_bids: bool) -> None:
    run_history(steps, DEAR_BIDS if dear_bids else MARKET_PARAMS)


@settings(max_examples=examples(100, 2000))
@given(histories(ACTIONS), st.booleans())
def test_random_task_and_pool_histories_keep_every_invariant(
        steps: list[tuple[str, int]], dear_bids: bool) -> None:
    run_history(steps, DEAR_BIDS if dear_bids else MARKET_PARAMS)


RETURN_ACTIONS = ["submit", "step", "step", "step", "step", "step", "step", "return", "wait",
                  "deadline"]
"""Histories that mostly move tasks along, so that many reach RUNNING and some are returned
(once, twice, or until no round is left), re-offered, completed or timed out."""


@settings(max_examples=examples(100, 2000))
@given(histories(RETURN_ACTIONS))
def test_random_histories_with_returns_keep_every_invariant(
        steps: list[tuple[str, int]]) -> None:
    run_history(steps, MARKET_PARAMS)


def run_history(steps: list[tuple[str, int]], params: Params) -> None:
    chain = MarketChain.start(params)
    stake = ogpu(500) if params == MARKET_PARAMS else ogpu(150)
    chain.register(KEYS[1], stake=stake)
    chain.register(KEYS[2], benchmark=3_000, stake=stake)
    salts: dict[tuple[bytes, int, bytes], tuple[int, bytes]] = {}
    votes: dict[tuple[bytes, bytes, int, int, bytes], bool] = {}
    pending: list[Transaction] = []
    nonces: dict[bytes, int] = defaultdict(int)

    def tx(key_index: int, payload: Payload) -> None:
        key = KEYS[key_index]
        offset = nonces[key.address]
        candidate = chain.tx(key, payload, nonce_offset=offset)
        # try it on the state the pending block has built so far
        state = chain.state
        before = snapshot(state)
        try:
            for earlier in [*pending, candidate]:
                state = apply_tx(state, earlier, KEYS[0].address)
        except InvalidTransaction as exc:
            assert snapshot(chain.state) == before
            event(f"refused kind {candidate.kind}: {exc.code}")
            return
        pending.append(candidate)
        event(f"accepted kind {candidate.kind}")
        nonces[key.address] += 1

    def flush(after_ms: int) -> None:
        # as a proposer does: keep what still applies at the block's time (a deadline may have
        # passed since the transaction was checked)
        selected, _ = select_transactions(chain.state, pending, KEYS[0].address,
                                          chain.state.timestamp + after_ms)
        chain.block(*selected, after_ms=after_ms)
        pending.clear()
        nonces.clear()
        check_market_invariants(chain.state)

    def vote(target: Hash32, request_id: bytes, attempt: int, check: Check, r: int) -> None:
        """A member seals a vote while the committee seals, and reveals it (now and then a
        wrong one) while it reveals."""
        if not check.committee:
            return
        member = check.committee[r % len(check.committee)]
        index = next(i for i, k in enumerate(KEYS) if k.address == member)
        accept = bool(r % 3)
        if check.phase == CheckPhase.SEALING:
            seal = verdict_seal(target, request_id, attempt, check.round, member, accept, "x",
                                b"s")
            votes[(target, request_id, attempt, check.round, member)] = accept
            tx(index, SealVerdict(target, request_id, attempt, check.round, seal))
        elif check.phase == CheckPhase.REVEALING:
            sealed = votes.get((target, request_id, attempt, check.round, member), accept)
            tx(index, RevealVerdict(target, request_id, attempt, check.round,
                                    sealed if r % 11 else not sealed, "x", b"s"))

    def pool_action(action: str, r: int) -> None:
        pool_ids = sorted(chain.state.pools)
        if action == "pool_step":  # the natural next move in a random open pool
            pool_ids = [p for p in pool_ids if not chain.state.pools[p].closed]
        pool_id = Hash32(pool_ids[r % len(pool_ids)]) if pool_ids else Hash32(bytes(32))
        pool = chain.state.pools.get(pool_id)
        who = 1 + (r >> 5) % 3
        live = [q for q in pool.requests if q.status in LIVE_REQUESTS] if pool else []
        request = live[r % len(live)] if live else None
        if action == "pool_step":
            if pool is None:
                action = "pool"
            elif len(pool.subscribers) < 1 + r % 2:
                action = "join"
            elif request is None:
                action = "request"
            else:
                action = {RequestStatus.OPEN: "answer", RequestStatus.ANSWERED: "dispute"}.get(
                    request.status, "pool_vote")
        if action == "pool":
            tx(5, OpenPool("mlp-small", 64, 1 + r % ogpu(1), ogpu(1 + r % 20), 1 + r % 3,
                           (r >> 4) % 10_001, ogpu(1 + r % 60), 500 + r % 8_000,
                           5_000 + r % 60_000))
        elif action == "join":
            tx(1 + (r >> 5) % 2, JoinPool(pool_id, (pool.min_stake if pool else 1) + r % 1_000))
        elif action == "leave":
            tx(who, LeavePool(pool_id))
        elif action == "request":
            tx(5, SendRequest(pool_id, r, 1 + r % 64))
        elif action == "answer" and request is not None:
            racer = request.racers[r % len(request.racers)]
            index = next(i for i, k in enumerate(KEYS) if k.address == racer)
            tx(index, PoolResult(pool_id, request.request_id, digest(b"o", bytes([r % 256])),
                                 RELEASED_KEY))
        elif action == "pool_vote" and request is not None and request.check is not None:
            vote(pool_id, request.request_id, 0, request.check, r)
        elif action == "dispute" and request is not None:
            tx(5, DisputeAnswer(pool_id, request.request_id))
        elif action == "close_pool":
            tx(5, ClosePool(pool_id))
        elif action == "top_up":  # by the owner, or a stranger; sometimes nothing
            tx(5 if r % 4 else who, TopUpPool(pool_id, r % ogpu(5)))

    for drawn, r in steps:
        action, natural = drawn, drawn == "step"
        if natural:
            open_ids = sorted(chain.state.open_tasks)
            if open_ids:
                phase = chain.state.tasks[open_ids[r % len(open_ids)]].status
                action = {TaskStatus.BIDDING: "bid", TaskStatus.REVEALING: "reveal",
                          TaskStatus.RUNNING: ("report", "return", "result", "result")[r % 4],
                          TaskStatus.VERIFYING: "vote", TaskStatus.CHECKING_INPUTS: "vote",
                          TaskStatus.RELEASING: "release" if r % 4 else "wait"}[phase]
                tasks = open_ids
            else:
                action, tasks = "submit", []
        else:
            tasks = sorted(chain.state.tasks)
        task_id = Hash32(tasks[r % len(tasks)]) if tasks else Hash32(bytes(32))
        task = chain.state.tasks.get(task_id)
        who = 1 + (r >> 5) % 3  # providers 1 and 2, and validator 3 who is not one
        if natural and task is not None and task.status == TaskStatus.REVEALING:
            sealed = [b.bidder for b in task.attempt.bids if not b.revealed]
            if sealed:
                who = next(i for i, k in enumerate(KEYS) if k.address == sealed[r % len(sealed)])
        if action == "submit":
            uploaded = digest(b"inputs", r.to_bytes(8, "big")) if r % 2 else b""
            spec = MatmulSpec(n=256 * (1 + r % 5), seed=r, inputs=uploaded)
            tx(5, SubmitTask(1, encode(spec), 1 + r % ogpu(1), (r >> 3) % 1_500,
                             1_000 + r % 20_000, 10_000 + r % 80_000))
        if action == "bid" and task is not None:
            price, salt = 1 + (r >> 4) % task.max_price, r.to_bytes(8, "big")
            salts[(task_id, task.attempt.number, KEYS[who].address)] = (price, salt)
            tx(who, CommitBid(task_id, bid_commitment(task_id, task.attempt.number,
                                                      KEYS[who].address, price, salt)))
        elif action == "reveal" and task is not None:
            price, salt = salts.get((task_id, task.attempt.number, KEYS[who].address), (1, b"x"))
            tx(who, RevealBid(task_id, price if r % 11 else price + 1, salt))
        elif action == "result" and task is not None and task.attempt.provider is not None:
            index = next(i for i, k in enumerate(KEYS) if k.address == task.attempt.provider)
            tx(index, CommitResult(task_id, result_for(task)))
        elif action == "release" and task is not None and task.attempt.provider is not None:
            index = next(i for i, k in enumerate(KEYS) if k.address == task.attempt.provider)
            tx(index, ReleaseResult(task_id, task.attempt.number, RELEASED_KEY))
        elif action == "report" and task is not None and task.attempt.provider is not None:
            index = next(i for i, k in enumerate(KEYS) if k.address == task.attempt.provider)
            tx(index, ReportMissingInputs(task_id, "inputs_missing"))
        elif action == "return" and task is not None and task.attempt.provider is not None:
            index = next(i for i, k in enumerate(KEYS) if k.address == task.attempt.provider)
            tx(index, ReturnTask(task_id, ReturnReason(1 + (r >> 2) % max(ReturnReason))))
        elif action == "vote" and task is not None and task.attempt.check is not None:
            vote(task_id, b"", task.attempt.number, task.attempt.check, r)
        elif action == "cancel":
            tx(5, CancelTask(task_id))
        elif action == "register":
            tx(who, RegisterProvider(GPU, 1 + r % 5_000, r % 1_000, ogpu(100 + r % 300)))
        elif action in POOL_ACTIONS:
            pool_action(action, r)
        elif action == "withdraw":
            provider = chain.state.providers.get(KEYS[who].address)
            amount = provider.free_stake if provider and r % 2 else 1 + r % ogpu(50)
            tx(who, WithdrawProvider(max(1, amount)))
        if (natural or action in POOL_ACTIONS) and r % 3:  # usually lands at once
            flush(after_ms=1 + (r >> 7) % 300)
        elif action == "deadline":
            open_ids = sorted(chain.state.open_tasks)
            end = chain.state.tasks[open_ids[r % len(open_ids)]].phase_end_ms if open_ids else 0
            flush(after_ms=max(1, end - chain.state.timestamp))
        elif action == "wait":  # mostly short, so that transactions land in their phase
            flush(after_ms=1 + (r >> 2) % (40_000 if r % 4 == 0 else 1_500))
    flush(after_ms=1_000)
    # let every deadline pass: every task ends closed, every lock released
    for _ in range(40):
        flush(after_ms=100_000)
    assert all(t.status == TaskStatus.CLOSED for t in chain.state.tasks.values())
    for t in chain.state.tasks.values():
        assert t.close_reason is not None
        event(f"closed {t.close_reason.name.lower()} after {t.attempt.number} attempt(s)")
        if any(m.event == "bid_deposits_forfeited" for m in t.trail):
            event("sealed bids forfeited their deposits")
        if t.close_reason == CloseReason.CANCELLED and any(not b.revealed for b in t.attempt.bids):
            event("a cancel returned sealed bids' deposits")
    assert all(p.locked == 0 for p in chain.state.providers.values())
    assert all(p.closed for p in chain.state.pools.values())
    for pool in chain.state.pools.values():
        event(f"pool served {min(pool.served, 2)}+, rejected {min(pool.rejected, 1)}+, "
              f"expired {min(pool.expired, 1)}+")
