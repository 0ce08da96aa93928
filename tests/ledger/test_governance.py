"""Governance by stake: proposals, votes weighted by stake at the tally, quorum and threshold,
deposits refunded or burned, activation at a known height, and the ways to cheat it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import fields, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ogpu_node.address import address_to_text
from ogpu_node.chain import Chain, load_state, state_changes
from ogpu_node.encoding import decode, encode, pack
from ogpu_node.errors import DecodeError
from ogpu_node.genesis import parse_genesis
from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Params, State, apply_block, apply_tx, make_genesis_state
from ogpu_node.ledger.errors import (
    BadNonce,
    DepositTooLow,
    GovernanceError,
    InsufficientFunds,
    InvalidProposal,
    InvalidTransaction,
    MalformedTransaction,
    NotBonded,
    ParamOutOfBounds,
    TooManyProposals,
    UnknownParam,
    UnknownProposal,
    VotingClosed,
)
from ogpu_node.ledger.governance.bounds import (
    GOVERNABLE,
    MAX_CHANGES,
    MAX_PARAM_NAME_LEN,
    apply_changes,
)
from ogpu_node.ledger.governance.records import (
    MAX_OPEN_PROPOSALS,
    MAX_TITLE_LEN,
    ProposalStatus,
    Propose,
    Vote,
    VoteKey,
    VoteOption,
)
from ogpu_node.ledger.governance.rules import bonded_stake, process_governance
from ogpu_node.ledger.params import BPS, FIRST_LATER_PARAM
from ogpu_node.ledger.tx import Payload, Stake, Transaction, Transfer, Unstake, balance_needed
from ogpu_node.ledger.working import Working
from ogpu_node.storage import ChainStore, LevelDBKV
from ogpu_node.types import Amount, ogpu
from tests.ledger.helpers import (
    CHAIN_ID,
    FEE,
    double_sign,
    make_key,
    next_block,
    parent_header,
    signed,
)

PARAMS = Params(epoch_length=1_000, unbonding_period=50, evidence_max_age=10,
                min_validator_stake=ogpu(10), gov_min_deposit=ogpu(10), gov_voting_period=3,
                gov_activation_delay=2)
BIG, MID, SMALL = (make_key(i) for i in (10, 11, 12))
"""Validators with 50, 30 and 20 of the 100 OGPU bonded."""
STAKES = {BIG: ogpu(50), MID: ogpu(30), SMALL: ogpu(20)}
USER = make_key(13)
"""Funded, never bonded."""
DEPOSIT = ogpu(10)
CHANGE = (("min_fee", 2_000),)
YES, NO, ABSTAIN = VoteOption.YES, VoteOption.NO, VoteOption.ABSTAIN


def genesis(params: Params = PARAMS) -> State:
    return make_genesis_state(
        chain_id=CHAIN_ID, params=params, genesis_hash=digest(b"gov-genesis", b""),
        timestamp=1_000,
        allocations=[(k.address, ogpu(1_000)) for k in (BIG, MID, SMALL, USER)],
        validators=[(k.public_key.raw, stake) for k, stake in STAKES.items()])


class GovChain:
    """A chain of validated blocks, with each sender's next nonce."""

    def __init__(self, state: State | None = None) -> None:
        self.state = state or genesis()
        self.nonces: dict[PrivateKey, int] = {}

    def tx(self, key: PrivateKey, payload: Payload) -> Transaction:
        nonce = self.nonces.get(key, 0)
        self.nonces[key] = nonce + 1
        return signed(key, nonce, payload)

    def block(self, *txs: Transaction) -> State:
        block, _ = next_block(self.state, txs, key=BIG)
        self.state = apply_block(self.state, block)
        return self.state

    def send(self, key: PrivateKey, payload: Payload) -> State:
        return self.block(self.tx(key, payload))

    def reject(self, key: PrivateKey, payload: Payload) -> InvalidTransaction:
        """The typed error `payload` gets as the next block's transaction (nonce not used)."""
        tx = signed(key, self.nonces.get(key, 0), payload)
        with pytest.raises(InvalidTransaction) as info:
            apply_tx(self.state, tx, BIG.address)
        return info.value

    def until(self, height: int) -> State:
        while self.state.height < height:
            self.block()
        return self.state


def conserved(state: State) -> bool:
    return state.total_held() == state.issued - state.burned


def propose(chain: GovChain, changes: Sequence[tuple[str, int]] = CHANGE,
            key: PrivateKey = USER, deposit: int = DEPOSIT) -> int:
    """Propose `changes` in the next block; returns the proposal's number."""
    state = chain.send(key, Propose(tuple(changes), deposit, "test"))
    (number,) = state.changed_proposals
    return number


def vote_all(chain: GovChain, number: int, votes: dict[PrivateKey, VoteOption]) -> State:
    return chain.block(*(chain.tx(k, Vote(number, option)) for k, option in votes.items()))


# --- the life of a proposal ----------------------------------------------------------------------


def test_a_passed_proposal_changes_the_parameter_at_its_activation_height() -> None:
    chain = GovChain()
    before = chain.state.account(USER.address).balance
    number = propose(chain)
    proposal = chain.state.proposals[number]
    assert (number, proposal.status, proposal.submitted_height, proposal.voting_end) == (
        1, ProposalStatus.VOTING, 1, 1 + PARAMS.gov_voting_period)
    assert chain.state.account(USER.address).balance == before - DEPOSIT - FEE
    assert conserved(chain.state)

    vote_all(chain, number, {BIG: YES, MID: NO, SMALL: ABSTAIN})
    assert len(chain.state.votes) == 3
    state = chain.until(proposal.voting_end)
    tallied = state.proposals[number]
    assert (tallied.status, tallied.yes, tallied.no, tallied.abstain, tallied.bonded) == (
        ProposalStatus.PASSED, ogpu(50), ogpu(30), ogpu(20), ogpu(100))
    assert tallied.activation_height == proposal.voting_end + PARAMS.gov_activation_delay
    assert not state.votes, "the tally keeps the totals and drops the votes"
    assert state.account(USER.address).balance == before - FEE, "the deposit is refunded"
    assert conserved(state)

    state = chain.until(tallied.activation_height - 1)
    assert state.params.min_fee == PARAMS.min_fee
    state = chain.block()
    assert state.params == replace(PARAMS, min_fee=2_000)
    assert state.proposals[number].status == ProposalStatus.ACTIVATED
    assert not state.open_proposals
    # the next block runs under the new minimum fee
    error = chain.reject(USER, Transfer(MID.address, Amount(1)))
    assert error.code == "fee_too_low"


def test_too_little_stake_voting_burns_the_deposit() -> None:
    chain = GovChain()
    before = chain.state.account(USER.address).balance
    number = propose(chain)
    vote_all(chain, number, {SMALL: YES})  # 20 of 100 bonded, quorum 33.4%
    burned = chain.state.burned
    state = chain.until(chain.state.proposals[number].voting_end)
    assert state.proposals[number].status == ProposalStatus.NO_QUORUM
    assert state.burned - burned >= DEPOSIT
    assert state.account(USER.address).balance == before - DEPOSIT - FEE
    assert conserved(state)
    chain.until(state.height + 5)
    assert chain.state.params == PARAMS


def test_a_rejected_proposal_refunds_its_deposit_and_changes_nothing() -> None:
    chain = GovChain()
    before = chain.state.account(USER.address).balance
    number = propose(chain)
    vote_all(chain, number, {BIG: NO, MID: YES, SMALL: YES})  # 50 yes of 100: not MORE than half
    state = chain.until(chain.state.proposals[number].voting_end)
    assert state.proposals[number].status == ProposalStatus.REJECTED
    assert state.account(USER.address).balance == before - FEE
    chain.until(state.height + 5)
    assert chain.state.params == PARAMS


def test_abstain_counts_toward_quorum_but_not_the_threshold() -> None:
    chain = GovChain()
    number = propose(chain)
    vote_all(chain, number, {BIG: ABSTAIN, SMALL: YES})  # 70% voted; 20 yes of 20 yes + no
    state = chain.until(chain.state.proposals[number].voting_end)
    assert state.proposals[number].status == ProposalStatus.PASSED


def test_passed_proposals_changing_one_parameter_activate_in_order() -> None:
    chain = GovChain()
    first = propose(chain, (("min_fee", 2_000),))
    second = propose(chain, (("min_fee", 3_000),), key=MID)
    vote_all(chain, first, {BIG: YES, MID: YES})
    vote_all(chain, second, {BIG: YES, MID: YES})
    state = chain.until(chain.state.proposals[second].voting_end + PARAMS.gov_activation_delay)
    assert state.proposals[first].activation_height < state.proposals[second].activation_height
    assert state.params.min_fee == 3_000
    assert {state.proposals[p].status for p in (first, second)} == {ProposalStatus.ACTIVATED}


def test_changes_that_no_longer_fit_fail_at_activation_and_leave_the_params() -> None:
    """Each proposal is consistent on its own; together they break bid_deposit_min <=
    provider_min_stake, so the second, activating after the first, fails."""
    chain = GovChain()
    first = propose(chain, (("provider_min_stake", ogpu(1)),))
    second = propose(chain, (("bid_deposit_min", ogpu(50)),), key=MID)
    vote_all(chain, first, {BIG: YES, MID: YES})
    vote_all(chain, second, {BIG: YES, MID: YES})
    state = chain.until(chain.state.height + PARAMS.gov_voting_period
                        + PARAMS.gov_activation_delay + 1)
    assert state.proposals[first].status == ProposalStatus.ACTIVATED
    failed = state.proposals[second]
    assert failed.status == ProposalStatus.FAILED
    assert failed.failure.startswith("gov_invalid_proposal: ")
    assert state.params == replace(PARAMS, provider_min_stake=ogpu(1))


def test_the_governance_params_govern_the_next_proposal() -> None:
    chain = GovChain()
    number = propose(chain, (("gov_voting_period", 12), ("gov_min_deposit", ogpu(20))))
    vote_all(chain, number, {BIG: YES})
    state = chain.until(chain.state.proposals[number].voting_end + PARAMS.gov_activation_delay)
    assert (state.params.gov_voting_period, state.params.gov_min_deposit) == (12, ogpu(20))
    assert chain.reject(USER, Propose(CHANGE, DEPOSIT)).code == "gov_deposit_too_low"
    later = propose(chain, deposit=ogpu(20))
    assert chain.state.proposals[later].voting_end == chain.state.height + 12


# --- stake weighting ------------------------------------------------------------------------------


def test_stake_unbonded_after_voting_weighs_only_what_remains_at_the_tally() -> None:
    chain = GovChain()
    number = propose(chain)
    vote_all(chain, number, {BIG: YES, MID: NO})
    chain.send(BIG, Unstake(Amount(ogpu(40))))  # 10 left: yes 10 against no 30
    state = chain.until(chain.state.proposals[number].voting_end)
    tallied = state.proposals[number]
    assert (tallied.status, tallied.yes, tallied.no, tallied.bonded) == (
        ProposalStatus.REJECTED, ogpu(10), ogpu(30), ogpu(60))


def test_stake_bonded_after_voting_counts_once_at_the_tally() -> None:
    chain = GovChain()
    number = propose(chain)
    vote_all(chain, number, {SMALL: YES, MID: NO})
    chain.send(SMALL, Stake(Amount(ogpu(20))))  # 40 yes against 30 no
    state = chain.until(chain.state.proposals[number].voting_end)
    tallied = state.proposals[number]
    assert (tallied.status, tallied.yes, tallied.no, tallied.bonded) == (
        ProposalStatus.PASSED, ogpu(40), ogpu(30), ogpu(120))


def test_a_later_vote_replaces_the_earlier_one() -> None:
    chain = GovChain()
    number = propose(chain)
    vote_all(chain, number, {BIG: YES})
    vote_all(chain, number, {BIG: NO, MID: YES})
    assert chain.state.votes[(number, BIG.address)] == NO
    state = chain.until(chain.state.proposals[number].voting_end)
    tallied = state.proposals[number]
    assert (tallied.yes, tallied.no, tallied.status) == (
        ogpu(30), ogpu(50), ProposalStatus.REJECTED)


def test_a_vote_twice_in_one_block_counts_once() -> None:
    chain = GovChain()
    number = propose(chain)
    chain.block(chain.tx(BIG, Vote(number, YES)), chain.tx(BIG, Vote(number, YES)))
    state = chain.until(chain.state.proposals[number].voting_end)
    assert state.proposals[number].yes == ogpu(50)


# --- refusals -------------------------------------------------------------------------------------


def test_an_account_without_stake_may_not_vote() -> None:
    chain = GovChain()
    number = propose(chain)
    assert isinstance(chain.reject(USER, Vote(number, YES)), NotBonded)


def test_a_validator_that_unbonds_everything_votes_with_no_weight() -> None:
    chain = GovChain()
    number = propose(chain)
    vote_all(chain, number, {SMALL: YES, MID: NO})
    chain.send(SMALL, Unstake(Amount(ogpu(20))))
    state = chain.until(chain.state.proposals[number].voting_end)
    assert (state.proposals[number].yes, state.proposals[number].status) == (
        0, ProposalStatus.REJECTED)


def test_a_validator_tombstoned_after_voting_weighs_nothing_and_may_not_vote_again() -> None:
    chain = GovChain()
    number = propose(chain)
    vote_all(chain, number, {SMALL: YES, MID: NO})
    evidence = double_sign(SMALL, parent_header(chain.state.height - 1, chain.state.timestamp))
    chain.send(USER, evidence)
    assert SMALL.address in chain.state.tombstones
    assert isinstance(chain.reject(SMALL, Vote(number, YES)), NotBonded)
    state = chain.until(chain.state.proposals[number].voting_end)
    tallied = state.proposals[number]
    slashed_stake = state.account(SMALL.address).stake
    assert slashed_stake > 0, "slashed in part, still bonded: yet its vote counts nothing"
    assert (tallied.yes, tallied.no, tallied.bonded, tallied.status) == (
        0, ogpu(30), ogpu(80), ProposalStatus.REJECTED)


def test_votes_outside_the_voting_period_are_refused() -> None:
    chain = GovChain()
    assert isinstance(chain.reject(BIG, Vote(1, YES)), UnknownProposal)
    number = propose(chain)
    chain.until(chain.state.proposals[number].voting_end)
    assert isinstance(chain.reject(BIG, Vote(number, YES)), VotingClosed)


def test_a_vote_in_the_last_block_of_the_period_counts() -> None:
    chain = GovChain()
    number = propose(chain)
    chain.until(chain.state.proposals[number].voting_end - 1)
    state = vote_all(chain, number, {BIG: YES})
    assert state.proposals[number].status == ProposalStatus.PASSED


@pytest.mark.parametrize(("changes", "error"), [
    ((), InvalidProposal),
    ((("min_fee", 0),), ParamOutOfBounds),
    ((("gov_threshold_bps", 4_999),), ParamOutOfBounds),
    ((("fee_burn_bps", BPS + 1),), ParamOutOfBounds),
    ((("epoch_length", 5),), UnknownParam),
    ((("chain_id", 1),), UnknownParam),
    ((("no_such_param", 1),), UnknownParam),
    ((("min_fee", 2_000), ("min_fee", 3_000)), InvalidProposal),
    ((("committee_min_size", 5),), InvalidProposal),  # above committee_size (3)
])
def test_bad_changes_are_refused_when_proposed(changes: tuple[tuple[str, int], ...],
                                                error: type[InvalidTransaction]) -> None:
    chain = GovChain()
    assert isinstance(chain.reject(USER, Propose(changes, DEPOSIT)), error)


def test_huge_proposals_do_not_decode() -> None:
    chain = GovChain()
    names = sorted(GOVERNABLE)[:MAX_CHANGES + 1]
    many = tuple((name, GOVERNABLE[name].low) for name in names)
    assert isinstance(chain.reject(USER, Propose(many, DEPOSIT)), MalformedTransaction)
    long_title = Propose(CHANGE, DEPOSIT, "x" * (MAX_TITLE_LEN + 1))
    assert isinstance(chain.reject(USER, long_title), MalformedTransaction)
    long_name = Propose((("x" * (MAX_PARAM_NAME_LEN + 1), 1),), DEPOSIT)
    assert isinstance(chain.reject(USER, long_name), MalformedTransaction)


def test_the_most_changes_a_proposal_may_carry_are_accepted() -> None:
    names = ["min_fee", "fee_burn_bps", "proposer_reward_bps", "bid_deposit_bps",
             "bid_window_ms", "reveal_window_ms", "max_task_attempts", "max_check_rounds"]
    assert len(names) == MAX_CHANGES
    chain = GovChain()
    propose(chain, [(name, GOVERNABLE[name].high) for name in names])


def test_the_deposit_must_reach_the_minimum_and_be_there() -> None:
    chain = GovChain()
    assert isinstance(chain.reject(USER, Propose(CHANGE, DEPOSIT - 1)), DepositTooLow)
    poor = make_key(14)
    chain.send(USER, Transfer(poor.address, Amount(DEPOSIT)))
    assert isinstance(chain.reject(poor, Propose(CHANGE, DEPOSIT)), InsufficientFunds)
    assert chain.state.account(poor.address).nonce == 0


def test_open_proposals_are_bounded() -> None:
    chain = GovChain()
    chain.block(*(chain.tx(USER, Propose(CHANGE, DEPOSIT)) for _ in range(MAX_OPEN_PROPOSALS)))
    assert len(chain.state.open_proposals) == MAX_OPEN_PROPOSALS
    assert isinstance(chain.reject(USER, Propose(CHANGE, DEPOSIT)), TooManyProposals)
    assert conserved(chain.state)


def test_a_refused_proposal_leaves_nothing_behind() -> None:
    chain = GovChain()
    tx = signed(USER, 0, Propose((("min_fee", 0),), DEPOSIT))
    with pytest.raises(ParamOutOfBounds):
        apply_tx(chain.state, tx, BIG.address)
    tx = signed(USER, 1, Propose(CHANGE, DEPOSIT))
    with pytest.raises(BadNonce):
        apply_tx(chain.state, tx, BIG.address)
    assert balance_needed(tx, Propose(CHANGE, DEPOSIT), PARAMS) == FEE + DEPOSIT


# --- the bounds table and the params' encoding -------------------------------------------------


def test_every_governable_name_is_a_param_and_its_default_is_within_bounds() -> None:
    defaults = Params()
    names = {f.name for f in fields(Params)}
    for name, bounds in GOVERNABLE.items():
        assert name in names
        assert bounds.low <= bounds.high
        assert bounds.contains(getattr(defaults, name)), name
    # the chain's identity and consensus safety are not up for a vote
    assert not {"epoch_length", "slot_ms", "min_validator_stake", "unbonding_period",
                "evidence_max_age", "committee_delay_blocks", "max_block_bytes",
                "max_block_txs", "initial_block_reward", "halving_interval"} & set(GOVERNABLE)


def test_apply_changes_returns_the_changed_params() -> None:
    assert apply_changes(PARAMS, CHANGE) == replace(PARAMS, min_fee=2_000)


def test_later_params_at_their_defaults_are_not_encoded() -> None:
    """Chains made before governance keep their genesis hash and state roots."""
    later = [f.name for f in fields(Params)].index(FIRST_LATER_PARAM)
    assert len(Params().to_fields()) == later
    assert Params.from_fields(Params().to_fields()) == Params()
    changed = Params(gov_voting_period=7)
    assert len(changed.to_fields()) == later + 2
    assert Params.from_fields(changed.to_fields()) == changed
    with pytest.raises(DecodeError):
        Params.from_fields([*Params().to_fields(), Params().gov_min_deposit])
    with pytest.raises(DecodeError):
        Params.from_fields(Params().to_fields()[:-1])


def test_a_genesis_file_may_leave_out_the_governance_params() -> None:
    doc = {"chain_id": "ogpu-gov", "genesis_time_ms": 0,
           "params": {f.name: getattr(Params(), f.name) for f in fields(Params)
                      if not f.name.startswith("gov_")},
           "allocations": [],
           "validators": [{"name": "v", "address": address_to_text(BIG.address),
                           "public_key": BIG.public_key.raw.hex(),
                           "stake": str(Params().min_validator_stake)}]}
    assert parse_genesis(doc).params == Params()
    doc["params"]["gov_voting_period"] = 5  # type: ignore[index]
    assert parse_genesis(doc).params == Params(gov_voting_period=5)


def test_payloads_round_trip() -> None:
    propose_ = Propose(CHANGE, DEPOSIT, "title")
    assert decode(Propose, encode(propose_)) == propose_
    assert decode(Vote, encode(Vote(9, ABSTAIN))) == Vote(9, ABSTAIN)
    with pytest.raises(DecodeError):
        decode(Vote, pack([9, 4]))


# --- persistence ---------------------------------------------------------------------------------


def test_proposals_votes_and_changed_params_survive_a_reload(tmp_path: Path) -> None:
    chain = GovChain()
    store = ChainStore(LevelDBKV(str(tmp_path / "db")))
    store.commit_block(height=0, block_hash=chain.state.block_hash, block_bytes=b"gov genesis",
                       tx_hashes=(), state_changes=state_changes(chain.state),
                       meta=chain.state.root)
    persisted = Chain(store, chain.state)
    first = chain.tx(USER, Propose((("reveal_window_ms", 4_000),), DEPOSIT))
    blocks = []
    for txs in ([first], [chain.tx(BIG, Vote(1, YES)), chain.tx(MID, Vote(1, NO))], [], [], [],
                [], [chain.tx(USER, Propose((("bid_window_ms", 4_000),), DEPOSIT, "open"))],
                [chain.tx(SMALL, Vote(2, ABSTAIN))]):
        block, _ = next_block(persisted.state, txs, key=BIG)
        blocks.append(block)
        persisted.apply_and_commit(block)
    state = persisted.state
    assert state.params.reveal_window_ms == 4_000
    assert state.votes and state.open_proposals == {2}
    store.close()
    with ChainStore(LevelDBKV(str(tmp_path / "db"))) as reopened:
        reloaded = load_state(reopened)
    assert reloaded.root == state.root
    assert reloaded.params == state.params
    assert dict(reloaded.proposals) == dict(state.proposals)
    assert dict(reloaded.votes) == dict(state.votes)
    assert reloaded.open_proposals == state.open_proposals


# --- properties ----------------------------------------------------------------------------------

_OPTIONS = st.sampled_from([None, YES, NO, ABSTAIN])


@given(options=st.tuples(_OPTIONS, _OPTIONS, _OPTIONS),
       unstaked=st.tuples(*(st.integers(0, 10) for _ in range(3))),
       quorum=st.integers(1_000, BPS), threshold=st.integers(5_000, 9_000))
def test_the_tally_is_the_rule_on_stake_at_the_end(
    options: tuple[VoteOption | None, ...], unstaked: tuple[int, ...], quorum: int,
    threshold: int,
) -> None:
    """Any votes, then some stake unbonded before the tally: the outcome is the quorum and
    threshold rule applied to the stake each voter holds at the end, and value is conserved."""
    chain = GovChain(genesis(replace(PARAMS, gov_quorum_bps=quorum, gov_threshold_bps=threshold)))
    number = propose(chain)
    keys = list(STAKES)
    vote_all(chain, number, {k: o for k, o in zip(keys, options, strict=True) if o is not None})
    chain.block(*(chain.tx(k, Unstake(Amount(ogpu(n)))) for k, n in zip(keys, unstaked,
                                                                       strict=True) if n))
    burned = chain.state.burned
    state = chain.until(chain.state.proposals[number].voting_end)
    end = {k: STAKES[k] - ogpu(n) for k, n in zip(keys, unstaked, strict=True)}
    totals = {o: sum(end[k] for k, v in zip(keys, options, strict=True) if v == o)
              for o in VoteOption}
    yes, no, abstain = totals[YES], totals[NO], totals[ABSTAIN]
    bonded = sum(end.values())
    if (yes + no + abstain) * BPS < quorum * bonded:
        expected = ProposalStatus.NO_QUORUM
    elif yes * BPS > threshold * (yes + no):
        expected = ProposalStatus.PASSED
    else:
        expected = ProposalStatus.REJECTED
    tallied = state.proposals[number]
    assert (tallied.status, tallied.yes, tallied.no, tallied.abstain, tallied.bonded) == (
        expected, yes, no, abstain, bonded)
    assert (state.burned - burned >= DEPOSIT) == (expected == ProposalStatus.NO_QUORUM)
    assert conserved(state)
    assert not state.votes


def test_every_governance_rejection_has_a_test_here() -> None:
    tested = {InvalidProposal, ParamOutOfBounds, UnknownParam, DepositTooLow, TooManyProposals,
              UnknownProposal, VotingClosed, NotBonded}
    assert set(GovernanceError.__subclasses__()) == tested


def test_a_block_tallying_many_proposals_scans_the_accounts_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # bonded stake is a scan of every account: 32 tallies in one block must not make it 32 scans
    from ogpu_node.ledger.governance import rules
    chain = GovChain()
    chain.block(*(chain.tx(USER, Propose(CHANGE, DEPOSIT)) for _ in range(MAX_OPEN_PROPOSALS)))
    end = chain.state.proposals[1].voting_end
    chain.until(end - 1)
    scans: list[int] = []

    def counted(w: Working) -> int:
        scans.append(1)
        return bonded_stake(w)

    monkeypatch.setattr(rules, "bonded_stake", counted)
    state = chain.block()
    assert all(state.proposals[i].status == ProposalStatus.NO_QUORUM
               and state.proposals[i].bonded == ogpu(100)
               for i in range(1, MAX_OPEN_PROPOSALS + 1))
    assert len(scans) == 2  # once to build the block, once to apply it (32 each before)
    assert conserved(state)


class CountedVotes(dict[VoteKey, VoteOption]):
    """The state's votes, counting the full scans of them."""

    scans = 0

    def __iter__(self) -> Iterator[VoteKey]:
        CountedVotes.scans += 1
        return super().__iter__()


def test_a_block_tallying_many_proposals_scans_the_votes_once() -> None:
    chain = GovChain()
    chain.block(*(chain.tx(USER, Propose(CHANGE, DEPOSIT)) for _ in range(MAX_OPEN_PROPOSALS)))
    numbers = range(1, MAX_OPEN_PROPOSALS + 1)
    chain.block(*(chain.tx(key, Vote(n, YES)) for n in numbers for key in (BIG, MID)))
    end = chain.state.proposals[1].voting_end
    state = chain.until(end - 1)
    counted = replace(state, votes=CountedVotes(state.votes))
    CountedVotes.scans = 0
    w = Working(counted, state.timestamp + 1_000)
    process_governance(w)
    assert CountedVotes.scans == 1
    assert all(w.proposals[n].status == ProposalStatus.PASSED and w.proposals[n].yes == ogpu(80)
               for n in numbers)
