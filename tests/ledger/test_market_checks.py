"""A committee's check of a claim (`ledger/market/verification.py`): drawn from a block made after
the claim, sealed votes, a quorum to settle, fresh committees for silent ones, and what each
member's behaviour costs or earns."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ogpu_node.encoding import decode, encode
from ogpu_node.ledger.errors import BadReveal, NotPermitted, WrongPhase
from ogpu_node.ledger.market.committee import draw_committee
from ogpu_node.ledger.market.payloads import ReleaseResult, RevealVerdict, SealVerdict
from ogpu_node.ledger.market.records import MAX_TRAIL, CheckPhase, CloseReason, Task, TaskStatus
from ogpu_node.ledger.market.verification import verdict_seal
from ogpu_node.ledger.working import Working
from ogpu_node.types import Hash32
from tests.ledger.helpers import FEE, KEYS
from tests.ledger.market_helpers import (
    MARKET_PARAMS,
    PROVIDER_A,
    PROVIDER_B,
    RELEASED_KEY,
    SILENCE,
    WRONG_ACCEPT,
    MarketChain,
)
from tests.ledger.test_market_rules import conserved


def running_task(chain: MarketChain) -> Hash32:
    chain.register(PROVIDER_A)
    chain.register(PROVIDER_B)
    task_id = chain.submit()
    chain.auction(task_id, {1: 10})
    assert chain.task(task_id).attempt.provider == PROVIDER_A.address
    return task_id


@pytest.fixture
def chain() -> MarketChain:
    return MarketChain.start()


def stake(chain: MarketChain, index: int) -> int:
    return chain.state.account(KEYS[index].address).stake


def test_the_committee_is_drawn_from_a_block_made_after_the_result(chain: MarketChain) -> None:
    task_id = running_task(chain)
    chain.commit_result(task_id)
    commit_height = chain.state.height
    check = chain.task(task_id).attempt.check
    assert check is not None and check.phase == CheckPhase.DRAWING and not check.committee
    assert check.draw_height == commit_height + MARKET_PARAMS.committee_delay_blocks
    # the draw goes by height: nodes propose the next blocks without waiting for an idle one
    assert chain.state.next_market_deadline == chain.state.timestamp + 1
    chain.block()
    seed_block = chain.state.block_hash  # block commit_height + 1: made after the result
    chain.block()
    check = chain.task(task_id).attempt.check
    assert check is not None and check.phase == CheckPhase.SEALING
    expected = draw_committee(chain.state.validators, MARKET_PARAMS.committee_size,
                              item_id=task_id, attempt=1, round_=1, block_hash=seed_block,
                              exclude=(PROVIDER_A.address, KEYS[5].address))
    assert check.committee == expected and PROVIDER_A.address not in expected


def test_a_member_that_accepts_a_rejected_result_loses_stake(chain: MarketChain) -> None:
    task_id = running_task(chain)
    chain.commit_result(task_id)
    first, second, third = chain.committee(task_id)
    before = {k.address: chain.state.account(k.address).stake for k in (first, second, third)}
    for key, accept in ((first, True), (second, False), (third, False)):
        chain.seal(key, task_id, accept)
    for key, accept in ((first, True), (second, False), (third, False)):
        chain.reveal_vote(key, task_id, accept)
    task = chain.task(task_id)
    assert task.status == TaskStatus.BIDDING and task.why == "rejected"  # re-offered
    assert chain.state.account(first.address).stake == before[first.address] - WRONG_ACCEPT
    for key in (second, third):  # the rejecters lose nothing and are paid from the slash
        assert chain.state.account(key.address).stake == before[key.address]
    fees = [m.address for m in task.trail if m.event == "verifier_fee"]
    assert fees == [second.address, third.address]
    conserved(chain.state)


def test_a_seal_cannot_be_copied_or_opened_to_another_vote(chain: MarketChain) -> None:
    task_id = running_task(chain)
    chain.commit_result(task_id)
    honest, copier, _ = chain.committee(task_id)
    chain.seal(honest, task_id, False, salt=b"secret")
    task = chain.task(task_id)
    assert task.attempt.check is not None
    copied = task.attempt.check.votes[0].seal  # public once in a block
    chain.send(copier, SealVerdict(task_id, b"", 1, 1, copied))
    with pytest.raises(WrongPhase):  # nothing opens while members are still sealing
        chain.check(honest, RevealVerdict(task_id, b"", 1, 1, False, "matmul_mismatch",
                                          b"secret"))
    chain.pass_phase(task_id)
    chain.reveal_vote(honest, task_id, False, salt=b"secret")
    # the copier knows the vote and the salt now, but the seal binds the member who made it
    with pytest.raises(BadReveal):
        chain.check(copier, RevealVerdict(task_id, b"", 1, 1, False, "matmul_mismatch",
                                          b"secret"))
    with pytest.raises(NotPermitted):  # and the honest member cannot open its seal twice
        chain.check(honest, RevealVerdict(task_id, b"", 1, 1, True, "ok", b"secret"))


def test_a_silent_member_is_replaced_by_a_fresh_draw_and_pays() -> None:
    """A committee of one: the first member never votes; a second, not drawn before, accepts."""
    chain = MarketChain.start(replace(MARKET_PARAMS, committee_size=1, committee_min_size=1))
    task_id = running_task(chain)
    chain.commit_result(task_id)
    (silent,) = chain.committee(task_id)
    silent_stake = chain.state.account(silent.address).stake
    chain.pass_phase(task_id)  # no seal: a silent round
    check = chain.task(task_id).attempt.check
    assert check is not None and check.round == 2 and check.earlier == (silent.address,)
    (fresh,) = chain.committee(task_id)
    assert fresh != silent
    chain.vote(task_id, accept=True)
    task = chain.task(task_id)
    assert task.close_reason == CloseReason.COMPLETED
    assert chain.state.account(silent.address).stake == silent_stake - SILENCE
    assert [m.address for m in task.trail if m.event == "verifier_fee"] == [fresh.address]
    conserved(chain.state)


def test_a_tie_never_accepts() -> None:
    """Two members split: no quorum either way, and no third validator for a fresh round."""
    chain = MarketChain.start(replace(MARKET_PARAMS, committee_size=2, committee_min_size=2))
    task_id = running_task(chain)
    provider_before = chain.state.account(PROVIDER_A.address).balance
    chain.commit_result(task_id)
    yes, no = chain.committee(task_id)
    chain.seal(yes, task_id, True)
    chain.seal(no, task_id, False)
    chain.reveal_vote(yes, task_id, True)
    chain.reveal_vote(no, task_id, False)
    chain.draw(task_id)
    task = chain.task(task_id)
    assert task.close_reason == CloseReason.UNCHECKED
    assert chain.state.account(PROVIDER_A.address).balance == provider_before - FEE
    conserved(chain.state)


def test_a_member_that_seals_and_never_reveals_pays_the_silence_penalty(
        chain: MarketChain) -> None:
    task_id = running_task(chain)
    chain.commit_result(task_id)
    first, second, hider = chain.committee(task_id)
    hider_stake = chain.state.account(hider.address).stake
    for key in (first, second, hider):
        chain.seal(key, task_id, True)
    chain.reveal_vote(first, task_id, True)
    chain.reveal_vote(second, task_id, True)
    assert chain.task(task_id).status == TaskStatus.VERIFYING  # waits for the last seal
    chain.pass_phase(task_id)
    assert chain.task(task_id).status == TaskStatus.RELEASING
    chain.release(task_id)
    task = chain.task(task_id)
    assert task.close_reason == CloseReason.COMPLETED
    assert chain.state.account(hider.address).stake == hider_stake - SILENCE
    assert hider.address not in [m.address for m in task.trail if m.event == "verifier_fee"]
    conserved(chain.state)


def test_a_seal_binds_claim_round_and_member() -> None:
    member = KEYS[0].address
    base = verdict_seal(b"t" * 32, b"", 1, 1, member, True, "ok", b"s")
    assert len({base, verdict_seal(b"u" * 32, b"", 1, 1, member, True, "ok", b"s"),
                verdict_seal(b"t" * 32, b"", 2, 1, member, True, "ok", b"s"),
                verdict_seal(b"t" * 32, b"", 1, 2, member, True, "ok", b"s"),
                verdict_seal(b"t" * 32, b"", 1, 1, KEYS[1].address, True, "ok", b"s"),
                verdict_seal(b"t" * 32, b"", 1, 1, member, False, "ok", b"s")}) == 6


def test_a_task_record_keeps_a_trail_it_can_decode(chain: MarketChain) -> None:
    """Rounds of penalties on many attempts could outgrow the record's trail: the escrow line
    and the latest lines are kept, and the record still decodes."""
    task_id = running_task(chain)
    task = chain.task(task_id)
    line = task.trail[-1]
    w = Working(chain.state)
    w.set_task(task_id, replace(task, trail=task.trail + (line,) * (2 * MAX_TRAIL)))
    kept = w.tasks[task_id]
    assert len(kept.trail) == MAX_TRAIL and kept.trail[0] == task.trail[0]
    assert decode(Task, encode(kept)) == kept


def test_an_accepted_result_is_paid_only_when_its_key_is_released(chain: MarketChain) -> None:
    task_id = running_task(chain)
    chain.commit_result(task_id)
    chain.vote(task_id, accept=True, release=False)
    task = chain.task(task_id)
    assert task.status == TaskStatus.RELEASING and not task.attempt.released_key
    assert not any(m.event == "payment" for m in task.trail)
    with pytest.raises(NotPermitted):  # only the provider releases
        chain.check(PROVIDER_B, ReleaseResult(task_id, 1, RELEASED_KEY))
    with pytest.raises(BadReveal):  # and only the key its result committed to
        chain.check(PROVIDER_A, ReleaseResult(task_id, 1, b"\x01" * 32))
    with pytest.raises(WrongPhase):
        chain.check(PROVIDER_A, ReleaseResult(task_id, 2, RELEASED_KEY))
    chain.release(task_id)
    task = chain.task(task_id)
    assert task.close_reason == CloseReason.COMPLETED and task.attempt.released_key == RELEASED_KEY
    assert [m.event for m in task.trail].count("payment") == 1
    conserved(chain.state)


def test_a_key_never_released_is_slashed_and_the_task_offered_again(
        chain: MarketChain) -> None:
    task_id = running_task(chain)
    stake = chain.state.providers[PROVIDER_A.address].stake
    chain.commit_result(task_id)
    accepters = chain.committee(task_id)
    chain.vote(task_id, accept=True, release=False)
    collateral = chain.task(task_id).attempt.collateral
    chain.pass_phase(task_id)  # the release window ends
    task = chain.task(task_id)
    assert task.status == TaskStatus.BIDDING and task.why == "timed_out"
    assert task.attempt.number == 2
    assert PROVIDER_A.address in task.excluded
    assert chain.state.providers[PROVIDER_A.address].stake == stake - collateral
    # the members who checked are paid from the slash, not from the client's reserve
    paid = [m.address for m in task.trail if m.event == "verifier_fee"]
    assert sorted(paid) == sorted(k.address for k in accepters)
    assert task.escrow == chain.task(task_id).escrow
    conserved(chain.state)
