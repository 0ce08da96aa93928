"""Inference pools on the ledger: joining with a bond, racing requests, sampled verification,
slashing a wrong result, expiry and closing, with the money checked to the unit."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ogpu_node.keys import PrivateKey
from ogpu_node.ledger.errors import (
    AmountOutOfRange,
    InsufficientFunds,
    InsufficientStake,
    InvalidTaskSpec,
    NotAProvider,
    NotPermitted,
    UnknownTask,
    WrongPhase,
)
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
from ogpu_node.ledger.market.pools import choose_racers, is_sampled
from ogpu_node.ledger.market.records import CheckPhase, Pool, PoolRequest, RequestStatus
from ogpu_node.ledger.market.verification import verdict_seal
from ogpu_node.ledger.params import BPS
from ogpu_node.ledger.tx import Payload
from ogpu_node.types import Hash32, ogpu
from tests.ledger.helpers import FEE, KEYS
from tests.ledger.market_helpers import CLIENT, OUTSIDER, PROVIDER_A, PROVIDER_B, MarketChain
from tests.ledger.test_market_rules import conserved

PRICE = ogpu(1)
ANSWER_KEY = b"\x0a" * 32
"""The public key the answers of these tests are sealed with."""
FEE_RESERVE = PRICE * 200 // BPS
BUDGET = ogpu(20)
BOND = ogpu(50)


def open_pool(chain: MarketChain, *, sample_bps: int = 0, racers: int = 2,
              request_ms: int = 5_000, ttl_ms: int = 600_000) -> Hash32:
    return chain.send(CLIENT, OpenPool("mlp-small", 256, PRICE, BUDGET, racers, sample_bps,
                                       BOND, request_ms, ttl_ms)).hash


def pool_of(chain: MarketChain, pool_id: Hash32) -> Pool:
    return chain.state.pools[pool_id]


def request_of(chain: MarketChain, pool_id: Hash32, request_id: Hash32) -> PoolRequest:
    found = pool_of(chain, pool_id).request(request_id)
    assert found is not None
    return found


def key_of(address: bytes) -> PrivateKey:
    return next(k for k in KEYS if k.address == address)


def joined(chain: MarketChain, **kwargs: int) -> Hash32:
    pool_id = open_pool(chain, **kwargs)
    chain.send(PROVIDER_A, JoinPool(pool_id, BOND))
    chain.send(PROVIDER_B, JoinPool(pool_id, BOND))
    return pool_id


def send_request(chain: MarketChain, pool_id: Hash32, seed: int = 1) -> Hash32:
    return chain.send(CLIENT, SendRequest(pool_id, seed, 32)).hash


def test_open_join_request_and_pay_the_first_result(chain: MarketChain) -> None:
    client_before = chain.state.account(CLIENT.address).balance
    pool_id = joined(chain)
    pool = pool_of(chain, pool_id)
    assert pool.escrow == BUDGET and len(pool.subscribers) == 2
    assert chain.state.account(CLIENT.address).balance == client_before - BUDGET - FEE
    assert chain.state.providers[PROVIDER_A.address].locked == BOND
    conserved(chain.state)

    request_id = send_request(chain, pool_id)
    request = request_of(chain, pool_id, request_id)
    assert set(request.racers) == {PROVIDER_A.address, PROVIDER_B.address}
    assert request.escrow == PRICE + FEE_RESERVE
    assert pool_of(chain, pool_id).escrow == BUDGET - PRICE - FEE_RESERVE
    first = key_of(request.racers[0])
    before = chain.state.account(first.address).balance
    chain.send(first, PoolResult(pool_id, request_id, Hash32(b"\1" * 32), ANSWER_KEY))
    request = request_of(chain, pool_id, request_id)
    # not sampled: paid once the owner's dispute window passes without a dispute
    assert request.status == RequestStatus.ANSWERED and request.winner == first.address
    assert chain.state.account(first.address).balance == before - FEE
    chain.block(after_ms=request.deadline_ms - chain.state.timestamp)
    request = request_of(chain, pool_id, request_id)
    assert request.status == RequestStatus.PAID
    assert chain.state.account(first.address).balance == before - FEE + PRICE
    # the unchecked request's fee reserve went back to the pool
    assert pool_of(chain, pool_id).escrow == BUDGET - PRICE
    # the second racer is too late
    second = key_of(request.racers[1])
    with pytest.raises(WrongPhase):
        chain.check(second, PoolResult(pool_id, request_id, Hash32(b"\2" * 32), ANSWER_KEY))
    assert chain.state.providers[first.address].completed == 1
    conserved(chain.state)


def test_racers_are_capped_and_drawn_from_the_members(chain: MarketChain) -> None:
    members = tuple(sorted((k.address, 1) for k in KEYS[:5]))
    drawn = choose_racers(members, 2, b"r" * 32, b"b" * 32)
    assert len(drawn) == 2 and set(drawn) <= {a for a, _ in members}
    assert drawn == choose_racers(members, 2, b"r" * 32, b"b" * 32)
    assert {choose_racers(members, 2, bytes([i]) * 32, b"b" * 32) for i in range(20)} != {drawn}


def _sampled_request(chain: MarketChain, pool_id: Hash32) -> Hash32:
    """Send requests until one is sampled for checking (sample_bps 5,000: about every other)."""
    for seed in range(40):
        tx = chain.tx(CLIENT, SendRequest(pool_id, seed, 32))
        if is_sampled(tx.hash, 5_000):
            chain.block(tx)
            return tx.hash
    raise AssertionError("no sampled request in 40 seeds")


def vote_on_request(chain: MarketChain, pool_id: Hash32, request_id: Hash32, accept: bool,
                    voters: int = 2) -> list[PrivateKey]:
    """Draw the request's committee; `voters` members seal `accept`, then reveal it once
    sealing ends. Returns the voters."""
    while (check := request_of(chain, pool_id, request_id).check) and (
            check.phase == CheckPhase.DRAWING):
        chain.block()
    assert check is not None
    members = [key_of(a) for a in check.committee][:voters]
    for key in members:
        seal = verdict_seal(pool_id, request_id, 0, check.round, key.address, accept, "x",
                            b"salt")
        chain.send(key, SealVerdict(pool_id, request_id, 0, check.round, seal))
    check = request_of(chain, pool_id, request_id).check
    if check is not None and check.phase == CheckPhase.SEALING:
        chain.block(after_ms=check.ends_ms - chain.state.timestamp)
    for key in members:
        chain.send(key, RevealVerdict(pool_id, request_id, 0, check.round if check else 1,
                                      accept, "x", b"salt"))
    return members


@pytest.mark.parametrize("accept", [True, False])
def test_a_sampled_result_is_checked_before_payment(chain: MarketChain, accept: bool) -> None:
    pool_id = joined(chain, sample_bps=5_000)
    request_id = _sampled_request(chain, pool_id)
    winner = key_of(request_of(chain, pool_id, request_id).racers[0])
    owner_before = chain.state.account(CLIENT.address).balance
    winner_stake = chain.state.providers[winner.address].stake
    chain.send(winner, PoolResult(pool_id, request_id, Hash32(b"\3" * 32), ANSWER_KEY))
    request = request_of(chain, pool_id, request_id)
    assert request.status == RequestStatus.VERIFYING
    vote_on_request(chain, pool_id, request_id, accept)
    request = request_of(chain, pool_id, request_id)
    assert request.check is not None
    assert winner.address not in request.check.committee and request.check.committee
    pool = pool_of(chain, pool_id)
    provider = chain.state.providers[winner.address]
    if accept:
        assert request.status == RequestStatus.PAID and pool.served == 1
        assert provider.stake == winner_stake
    else:
        assert request.status == RequestStatus.REJECTED and pool.rejected == 1
        assert provider.stake == winner_stake - BOND and provider.failed == 1
        assert winner.address not in {a for a, _ in pool.subscribers}
        share = FEE_RESERVE // len(request.check.committee)
        to_owner = (BOND - 2 * share) * 5_000 // BPS
        assert chain.state.account(CLIENT.address).balance == owner_before + to_owner
        assert pool.escrow == BUDGET  # the request's escrow went back to the pool
    assert provider.locked == (BOND if accept else 0)
    conserved(chain.state)


def test_unanswered_requests_expire_and_closing_refunds(chain: MarketChain) -> None:
    client_before = chain.state.account(CLIENT.address).balance
    pool_id = joined(chain, request_ms=2_000)
    request_id = send_request(chain, pool_id)
    chain.block(after_ms=2_000)
    assert request_of(chain, pool_id, request_id).status == RequestStatus.EXPIRED
    assert pool_of(chain, pool_id).escrow == BUDGET and pool_of(chain, pool_id).expired == 1
    send_request(chain, pool_id, seed=2)
    chain.send(CLIENT, ClosePool(pool_id))
    pool = pool_of(chain, pool_id)
    assert pool.closed and pool.escrow == 0 and pool.subscribers == ()
    assert all(r.status == RequestStatus.EXPIRED for r in pool.requests)
    assert chain.state.providers[PROVIDER_A.address].locked == 0
    assert chain.state.account(CLIENT.address).balance == client_before - 4 * FEE
    with pytest.raises(WrongPhase):
        chain.check(CLIENT, SendRequest(pool_id, 3, 1))
    conserved(chain.state)


def test_a_top_up_lets_a_drained_pool_serve_again(chain: MarketChain) -> None:
    pool_id = open_pool(chain)
    chain.send(CLIENT, ClosePool(pool_id))  # (a second pool below; this one is closed)
    drained = chain.send(CLIENT, OpenPool("mlp-small", 256, PRICE, PRICE + FEE_RESERVE, 1, 0,
                                          BOND, 5_000, 600_000)).hash
    chain.send(PROVIDER_A, JoinPool(drained, BOND))
    send_request(chain, drained)
    assert pool_of(chain, drained).escrow == 0
    with pytest.raises(InsufficientFunds):  # nothing left for a second request
        chain.check(CLIENT, SendRequest(drained, 2, 32))
    before = chain.state.account(CLIENT.address).balance
    chain.send(CLIENT, TopUpPool(drained, BUDGET))
    pool = pool_of(chain, drained)
    assert pool.escrow == BUDGET and pool.trail[-1].amount == BUDGET
    assert chain.state.account(CLIENT.address).balance == before - BUDGET - FEE
    send_request(chain, drained, seed=2)
    assert pool_of(chain, drained).escrow == BUDGET - PRICE - FEE_RESERVE
    conserved(chain.state)
    cases: list[tuple[PrivateKey, Payload, type[Exception]]] = [
        (PROVIDER_A, TopUpPool(drained, PRICE), NotPermitted),  # only the owner
        (CLIENT, TopUpPool(drained, 0), AmountOutOfRange),
        (CLIENT, TopUpPool(drained, ogpu(9_000_000)), InsufficientFunds),
        (CLIENT, TopUpPool(Hash32(b"\7" * 32), PRICE), UnknownTask),
        (CLIENT, TopUpPool(pool_id, PRICE), WrongPhase),  # closed
    ]
    for key, payload, error in cases:
        with pytest.raises(error):
            chain.check(key, payload)


def test_a_pool_closes_itself_when_it_expires(chain: MarketChain) -> None:
    pool_id = joined(chain, ttl_ms=10_000)
    chain.block(after_ms=10_000)
    assert pool_of(chain, pool_id).closed
    assert chain.state.providers[PROVIDER_B.address].locked == 0
    conserved(chain.state)


def test_leaving_releases_the_bond(chain: MarketChain) -> None:
    pool_id = joined(chain)
    chain.send(PROVIDER_A, LeavePool(pool_id))
    assert chain.state.providers[PROVIDER_A.address].locked == 0
    assert pool_of(chain, pool_id).stake_of(PROVIDER_A.address) == 0
    with pytest.raises(NotPermitted):
        chain.check(PROVIDER_A, LeavePool(pool_id))


def test_pool_rejections_are_typed(chain: MarketChain) -> None:
    pool_id = open_pool(chain)
    good = OpenPool("mlp-small", 256, PRICE, BUDGET, 2, 0, BOND, 5_000, 600_000)
    cases: list[tuple[PrivateKey, Payload, type[Exception]]] = [
        (CLIENT, replace(good, model="nope"), InvalidTaskSpec),
        (CLIENT, replace(good, max_racers=9), InvalidTaskSpec),
        (CLIENT, replace(good, budget=PRICE), InvalidTaskSpec),
        (CLIENT, replace(good, budget=ogpu(9_000_000)), InsufficientFunds),
        (OUTSIDER, JoinPool(pool_id, BOND), NotAProvider),
        (PROVIDER_A, JoinPool(pool_id, BOND - 1), InsufficientStake),
        (PROVIDER_A, JoinPool(pool_id, ogpu(10_000)), InsufficientStake),
        (PROVIDER_A, JoinPool(Hash32(b"\7" * 32), BOND), UnknownTask),
        (CLIENT, SendRequest(pool_id, 1, 1), NotPermitted),  # no members yet
        (PROVIDER_A, SendRequest(pool_id, 1, 1), NotPermitted),  # not the owner
        (PROVIDER_A, ClosePool(pool_id), NotPermitted),
    ]
    for key, payload, error in cases:
        with pytest.raises(error):
            chain.check(key, payload)
    chain.send(PROVIDER_A, JoinPool(pool_id, BOND))
    with pytest.raises(InvalidTaskSpec):
        chain.check(CLIENT, SendRequest(pool_id, 1, 257))
    request_id = send_request(chain, pool_id)
    with pytest.raises(NotPermitted):  # not drawn to race it
        chain.check(PROVIDER_B, PoolResult(pool_id, request_id, Hash32(b"\1" * 32), ANSWER_KEY))


def _unsampled_request(chain: MarketChain, pool_id: Hash32) -> Hash32:
    for seed in range(40):
        tx = chain.tx(CLIENT, SendRequest(pool_id, seed, 32))
        if not is_sampled(tx.hash, 5_000):
            chain.block(tx)
            return tx.hash
    raise AssertionError("no unsampled request in 40 seeds")


@pytest.mark.parametrize("served", [True, False])
def test_a_disputed_answer_is_paid_only_if_a_committee_passes_it(chain: MarketChain,
                                                                 served: bool) -> None:
    """The owner cannot fetch an answer (or doubts it) and disputes it in its window: a
    committee checks it; an answer nobody can fetch is rejected and its winner slashed."""
    pool_id = joined(chain, sample_bps=5_000)
    request_id = _unsampled_request(chain, pool_id)
    winner = key_of(request_of(chain, pool_id, request_id).racers[0])
    winner_before = chain.state.account(winner.address).balance
    chain.send(winner, PoolResult(pool_id, request_id, Hash32(b"\3" * 32), ANSWER_KEY))
    with pytest.raises(NotPermitted):  # only the owner disputes
        chain.check(winner, DisputeAnswer(pool_id, request_id))
    chain.send(CLIENT, DisputeAnswer(pool_id, request_id))
    request = request_of(chain, pool_id, request_id)
    assert request.status == RequestStatus.VERIFYING and request.check is not None
    vote_on_request(chain, pool_id, request_id, accept=served)
    request = request_of(chain, pool_id, request_id)
    if served:
        assert request.status == RequestStatus.PAID
        assert chain.state.account(winner.address).balance == winner_before - FEE + PRICE
    else:
        assert request.status == RequestStatus.REJECTED
        assert chain.state.account(winner.address).balance == winner_before - FEE
        assert chain.state.providers[winner.address].failed == 1
    conserved(chain.state)


def test_an_answer_cannot_be_disputed_after_its_window(chain: MarketChain) -> None:
    pool_id = joined(chain)
    request_id = send_request(chain, pool_id)
    winner = key_of(request_of(chain, pool_id, request_id).racers[0])
    chain.send(winner, PoolResult(pool_id, request_id, Hash32(b"\3" * 32), ANSWER_KEY))
    request = request_of(chain, pool_id, request_id)
    chain.block(after_ms=request.deadline_ms - chain.state.timestamp)
    with pytest.raises(WrongPhase):
        chain.check(CLIENT, DisputeAnswer(pool_id, request_id))
    assert request_of(chain, pool_id, request_id).status == RequestStatus.PAID
