"""A committee's check of one claim, shared by tasks and pools: a task's result, a provider's
report that the client's inputs are missing, or a pool request's sampled answer.

A `Check` goes through three phases:

* **drawing**: the claim lands in block h. The committee is drawn in the first block at height
  h + `committee_delay_blocks` (or later), seeded by the hash of that block's parent: a block
  made after the claim was final, which the claimant cannot know when it sends the claim
  (`committee.py` says what grinding it would still cost).
* **sealing**: each member sends `SealVerdict` with `verdict_seal(...)`, a hash of its vote and a
  salt; nobody can see, so nobody can copy, a vote. It ends when every member has sealed, or
  `verdict_window_ms` after the draw.
* **revealing**: members open their seals (`RevealVerdict`). It ends when every sealed vote is
  open, or `verdict_reveal_window_ms` after it began.

Then the check settles (`Outcome`):

* ACCEPT when at least a quorum (a strict majority of the drawn committee) revealed *accept*,
  REJECT when a quorum revealed *reject*;
* otherwise the round was silent (a tie, too few votes, or nobody): a fresh committee is drawn
  from the validators not drawn before, while rounds (`max_check_rounds`) and the claim's time
  allow; else UNCHECKED. Nothing is ever accepted without a quorum of accepts, and a committee
  smaller than `committee_min_size` (too few eligible validators) checks nothing: UNCHECKED.

Penalties, taken from the member's validator stake (`Account.stake`) as the check ends:

* a member that never sealed, or sealed and never revealed, pays `verifier_silence_penalty`;
* a member that revealed *accept* on a claim the committee rejected pays
  `verifier_wrong_accept_penalty` (it vouched for a result proven wrong);
* only members who revealed a vote matching a settled outcome are paid a fee (by the caller:
  `Settlement.paid`); a vote against a settled majority earns nothing.

Penalties of a silent round pay, up to one fee each, the members of that round who did reveal
(they checked, and no settled outcome pays them); the rest of every penalty is burned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import IntEnum

from ogpu_node.encoding import pack
from ogpu_node.hashing import digest
from ogpu_node.ledger.errors import BadReveal, NotPermitted, WrongPhase
from ogpu_node.ledger.market.committee import draw_committee
from ogpu_node.ledger.market.records import Check, CheckPhase, Movement, Vote
from ogpu_node.ledger.working import Working
from ogpu_node.types import Address, Hash32


class Outcome(IntEnum):
    ACCEPT = 1
    REJECT = 2
    UNCHECKED = 3
    """No committee settled the claim (too few validators, or every round silent)."""


def verdict_seal(target: bytes, request_id: bytes, attempt: int, round_: int, member: Address,
                 accept: bool, reason: str, salt: bytes) -> Hash32:
    """What a sealed verdict commits to; binding the claim, round and member stops replays and
    copies of another member's seal."""
    return digest(b"verdict", pack([target, request_id, attempt, round_, member, int(accept),
                                    reason, salt]))


@dataclass(frozen=True, slots=True)
class Step:
    """What advancing a check did: the check as it is now, and the outcome once it settled,
    with the members to pay (those whose revealed vote matches it) and the money trail of the
    penalties."""

    check: Check
    outcome: Outcome | None = None
    paid: tuple[Address, ...] = ()
    trail: tuple[Movement, ...] = ()


def start_check(w: Working) -> Check:
    """A check of a claim recorded in this block: its committee is drawn
    `committee_delay_blocks` later."""
    return Check(CheckPhase.DRAWING, draw_height=w.height + w.base.params.committee_delay_blocks)


def seal_vote(w: Working, check: Check, member: Address, round_: int, seal: Hash32) -> Check:
    """Record `member`'s sealed vote (the caller has found the claim and its check)."""
    _check_round(check, round_, CheckPhase.SEALING, w)
    if member not in check.committee:
        raise NotPermitted("the sender is not on this check's committee")
    if check.vote_of(member) is not None:
        raise NotPermitted("this member has sealed its vote")
    return replace(check, votes=(*check.votes, Vote(member, seal)))


def reveal_vote(w: Working, check: Check, member: Address, round_: int, accept: bool,
                reason: str, seal: Hash32) -> Check:
    """Open `member`'s sealed vote; `seal` is what the revealed fields hash to."""
    _check_round(check, round_, CheckPhase.REVEALING, w)
    vote = check.vote_of(member)
    if vote is None or vote.revealed:
        raise NotPermitted("no sealed vote of this sender to reveal")
    if vote.seal != seal:
        raise BadReveal("vote and salt do not match the sealed verdict")
    opened = replace(vote, revealed=True, accept=accept, reason=reason)
    return replace(check, votes=tuple(opened if v.member == member else v for v in check.votes))


def _check_round(check: Check, round_: int, phase: CheckPhase, w: Working) -> None:
    if check.phase != phase or w.timestamp >= check.ends_ms:
        raise WrongPhase(f"the check is {check.phase.name.lower()}, this needs "
                         f"{phase.name.lower()}")
    if round_ != check.round:
        raise WrongPhase(f"vote for round {round_}, the check is at round {check.round}")


def advance(w: Working, item_id: bytes, attempt: int, check: Check, *,
            exclude: Iterable[Address], last_ms: int) -> Step:
    """Move `check` on as far as this block allows: draw its committee, end sealing when every
    member sealed or the window ended, settle when every seal is open or the reveal window
    ended. `exclude`: who may never check this claim (its provider and client); `last_ms`: the
    claim's time limit (no fresh round starts that could not end before it)."""
    params = w.base.params
    if check.phase == CheckPhase.DRAWING:
        if w.height < check.draw_height:
            return Step(check)
        committee = draw_committee(
            w.validators, params.committee_size, item_id=item_id, attempt=attempt,
            round_=check.round, block_hash=w.base.block_hash,
            exclude=(*exclude, *check.earlier))
        if len(committee) < params.committee_min_size:
            return Step(check, Outcome.UNCHECKED)
        check = replace(check, phase=CheckPhase.SEALING, committee=committee,
                        ends_ms=w.timestamp + params.verdict_window_ms)
        return Step(check)
    if check.phase == CheckPhase.SEALING:
        if len(check.votes) < len(check.committee) and w.timestamp < check.ends_ms:
            return Step(check)
        if not check.votes:
            return _silent_round(w, check, last_ms)
        check = replace(check, phase=CheckPhase.REVEALING,
                        ends_ms=w.timestamp + params.verdict_reveal_window_ms)
        return Step(check)
    if any(not v.revealed for v in check.votes) and w.timestamp < check.ends_ms:
        return Step(check)
    return settle(w, check, last_ms)


def settle(w: Working, check: Check, last_ms: int) -> Step:
    """The outcome by the votes revealed: a quorum either way (penalising who was silent or
    accepted a rejected claim), else a silent round (`_silent_round`)."""
    outcome, accepts, rejects = _tally(check)
    if outcome is None:
        return _silent_round(w, check, last_ms)
    trail = _penalise_silent(w, check)
    if outcome == Outcome.ACCEPT:
        return Step(check, outcome, accepts, trail)
    penalty = w.base.params.verifier_wrong_accept_penalty
    for member in accepts:
        taken = _take_stake(w, member, penalty)
        trail = (*trail, Movement("wrong_accept_penalty", member, taken))
        w.burned += taken
    return Step(check, outcome, rejects, trail)


def accepters(check: Check | None) -> tuple[Address, ...]:
    """The members who revealed *accept* in the check's round."""
    return tuple(v.member for v in check.votes if v.revealed and v.accept) if check else ()


def dissenters(check: Check | None) -> tuple[Address, ...]:
    """The members who revealed *reject* in the check's round (against an accepted claim)."""
    return tuple(v.member for v in check.votes if v.revealed and not v.accept) if check else ()


def end_now(check: Check) -> Step:
    """End a check early (its pool closed): the outcome by a quorum of the votes revealed so
    far, else UNCHECKED; nobody is penalised, since the windows were cut short."""
    outcome, accepts, rejects = _tally(check)
    if outcome is None:
        return Step(check, Outcome.UNCHECKED)
    return Step(check, outcome, accepts if outcome == Outcome.ACCEPT else rejects)


def _tally(check: Check) -> tuple[Outcome | None, tuple[Address, ...], tuple[Address, ...]]:
    """(ACCEPT or REJECT when a quorum of the drawn committee revealed it, else None; the
    members who revealed accept; those who revealed reject)."""
    opened = [v for v in check.votes if v.revealed]
    accepts = tuple(v.member for v in opened if v.accept)
    rejects = tuple(v.member for v in opened if not v.accept)
    if check.committee and len(accepts) >= check.quorum:
        return Outcome.ACCEPT, accepts, rejects
    if check.committee and len(rejects) >= check.quorum:
        return Outcome.REJECT, accepts, rejects
    return None, accepts, rejects


def _silent_round(w: Working, check: Check, last_ms: int) -> Step:
    """No quorum: penalise the silent members, pay this round's revealers from their
    penalties, and draw a fresh committee if another round fits (else UNCHECKED)."""
    params = w.base.params
    penalties = _penalties_of_silent(w, check)
    trail = [Movement("silence_penalty", member, taken) for member, taken in penalties]
    pot = sum(taken for _, taken in penalties)
    fee = params.verifier_silence_penalty  # a revealer is paid at most what one silence costs
    for vote in check.votes:
        if vote.revealed and pot:
            pay = min(fee, pot)
            w.credit(vote.member, pay)
            trail.append(Movement("silent_round_fee", vote.member, pay))
            pot -= pay
    w.burned += pot
    one_round = (params.committee_delay_blocks * params.slot_ms + params.verdict_window_ms
                 + params.verdict_reveal_window_ms)
    if check.round < params.max_check_rounds and w.timestamp + one_round <= last_ms:
        fresh = Check(CheckPhase.DRAWING, draw_height=w.height + params.committee_delay_blocks,
                      round=check.round + 1, earlier=(*check.earlier, *check.committee))
        return Step(fresh, None, (), tuple(trail))
    return Step(check, Outcome.UNCHECKED, (), tuple(trail))


def _penalise_silent(w: Working, check: Check) -> tuple[Movement, ...]:
    penalties = _penalties_of_silent(w, check)
    w.burned += sum(taken for _, taken in penalties)
    return tuple(Movement("silence_penalty", member, taken) for member, taken in penalties)


def _penalties_of_silent(w: Working, check: Check) -> list[tuple[Address, int]]:
    """Take the silence penalty from every member that did not reveal a vote; returns what was
    taken from whom (the caller pays or burns it)."""
    taken = []
    for member in check.committee:
        vote = check.vote_of(member)
        if vote is None or not vote.revealed:
            taken.append((member, _take_stake(w, member, w.base.params.verifier_silence_penalty)))
    return taken


def _take_stake(w: Working, member: Address, amount: int) -> int:
    """Take up to `amount` of `member`'s validator stake; returns what was taken."""
    account = w.account(member)
    taken = min(amount, account.stake)
    if taken:
        w.set_account(member, replace(account, stake=account.stake - taken))
    return taken
