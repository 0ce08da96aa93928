"""Governance over RPC (`gov_params`, `gov_list`, `gov_get`) on a chain built by signed
proposals and votes in real blocks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from ogpu_node.ledger import Stake
from ogpu_node.ledger.governance.bounds import GOVERNABLE
from ogpu_node.ledger.governance.records import Propose, Vote, VoteOption
from ogpu_node.ledger.governance.rules import bonded_stake
from ogpu_node.ledger.working import Working
from ogpu_node.types import Amount, ogpu
from tests.rpc.conftest import Rpc, serving
from tests.rpc.local_node import VALIDATOR, LocalNode, make_genesis
from tests.rpc.market import Market
from tests.rpc.test_market import assert_param_error, text

VOTING_PERIOD = 3
DELAY = 2
DEPOSIT = ogpu(1_000)
CHANGES = (("min_fee", 2_000), ("bid_window_ms", 4_000))


@pytest.fixture
async def gov_rpc() -> AsyncIterator[Rpc]:
    node = LocalNode(genesis=make_genesis(gov_voting_period=VOTING_PERIOD,
                                          gov_activation_delay=DELAY))
    async with serving(node) as client:
        yield client


async def staked_market(rpc: Rpc) -> Market:
    """The validator funded for fees; `market.other` bonded 5,000 OGPU (10,000 + 5,000 in all)."""
    market = Market(rpc.node)
    await market.fund_validator()
    await market.send(market.other, Stake(Amount(ogpu(5_000))))
    return market


def entry(view: dict[str, object], name: str) -> dict[str, object]:
    params = view["params"]
    assert isinstance(params, list)
    return next(p for p in params if p["name"] == name)


async def test_gov_params_lists_every_governable_param_with_its_bounds(gov_rpc: Rpc) -> None:
    view = await gov_rpc.result("gov_params")
    assert view["height"] == gov_rpc.node.state.height
    assert [p["name"] for p in view["params"]] == list(GOVERNABLE)
    assert entry(view, "min_fee") == {"name": "min_fee", "value": "1000", "low": "1",
                                      "high": "1000000000", "unit": "units", "pending": [],
                                      "proposed": []}
    assert entry(view, "gov_voting_period") == {
        "name": "gov_voting_period", "value": VOTING_PERIOD, "low": 10, "high": 1_000_000,
        "unit": "blocks", "pending": [], "proposed": []}


async def test_a_proposal_through_its_life_over_rpc(gov_rpc: Rpc) -> None:
    rpc = gov_rpc
    market = await staked_market(rpc)
    await market.send(market.client, Propose(CHANGES, DEPOSIT, "Raise the minimum fee"))
    submitted = rpc.node.state.height
    end = submitted + VOTING_PERIOD
    view = await rpc.result("gov_get", [1])
    assert {k: view[k] for k in ("id", "title", "proposer", "status", "submittedHeight",
                                 "votingEnd", "activationHeight", "deposit", "failure")} == {
        "id": 1, "title": "Raise the minimum fee", "proposer": text(market.client),
        "status": "voting", "submittedHeight": submitted, "votingEnd": end,
        "activationHeight": None, "deposit": str(DEPOSIT), "failure": None}
    assert view["changes"] == [{"name": "min_fee", "value": "2000"},
                               {"name": "bid_window_ms", "value": 4_000}]
    assert (view["tally"]["final"], view["tally"]["outcome"], view["votes"]) == (
        False, "no_quorum", [])
    proposed = entry(await rpc.result("gov_params"), "min_fee")["proposed"]
    assert proposed == [{"proposalId": 1, "value": "2000", "votingEnd": end}]

    await market.send(VALIDATOR, Vote(1, VoteOption.YES), block=False)
    await market.send(market.other, Vote(1, VoteOption.NO))
    tally = (await rpc.result("gov_get", {"proposalId": 1}))["tally"]
    assert {k: tally[k] for k in ("final", "yes", "no", "abstain", "bonded", "turnoutBps",
                                  "yesBps", "quorumBps", "thresholdBps", "outcome",
                                  "voteCount")} == {
        "final": False, "yes": str(ogpu(10_000)), "no": str(ogpu(5_000)), "abstain": "0",
        "bonded": str(ogpu(15_000)), "turnoutBps": 10_000, "yesBps": 6_666,
        "quorumBps": 3_340, "thresholdBps": 5_000, "outcome": "passed", "voteCount": 2}
    votes = (await rpc.result("gov_get", [1]))["votes"]
    assert [(v["voter"], v["option"], v["stake"]) for v in votes] == [
        (text(VALIDATOR), "yes", str(ogpu(10_000))), (text(market.other), "no", str(ogpu(5_000)))]

    while rpc.node.state.height < end:
        rpc.node.produce_block()
    view = await rpc.result("gov_get", [1])
    assert (view["status"], view["activationHeight"], view["votes"]) == ("passed", end + DELAY, [])
    assert (view["tally"]["final"], view["tally"]["yes"], view["tally"]["outcome"]) == (
        True, str(ogpu(10_000)), "passed")
    params = await rpc.result("gov_params")
    assert entry(params, "min_fee")["pending"] == [
        {"proposalId": 1, "value": "2000", "activationHeight": end + DELAY}]
    assert entry(params, "min_fee")["value"] == "1000"

    while rpc.node.state.height < end + DELAY:
        rpc.node.produce_block()
    params = await rpc.result("gov_params")
    assert (entry(params, "min_fee")["value"], entry(params, "min_fee")["pending"]) == ("2000", [])
    assert entry(params, "bid_window_ms")["value"] == 4_000
    assert (await rpc.result("gov_get", [1]))["status"] == "activated"


async def test_gov_list_is_newest_first_and_filters_by_status(gov_rpc: Rpc) -> None:
    market = await staked_market(gov_rpc)
    for title in ("first", "second", "third"):
        await market.send(market.client, Propose(CHANGES, DEPOSIT, title), block=False)
    gov_rpc.node.produce_block()
    listed = await gov_rpc.result("gov_list")
    assert (listed["total"], listed["maxOpen"]) == (3, 32)
    assert [(p["id"], p["title"]) for p in listed["proposals"]] == [
        (3, "third"), (2, "second"), (1, "first")]
    assert (await gov_rpc.result("gov_list", {"limit": 1}))["proposals"][0]["id"] == 3
    assert (await gov_rpc.result("gov_list", {"status": "voting"}))["total"] == 3
    assert (await gov_rpc.result("gov_list", {"status": "rejected"}))["total"] == 0
    await assert_param_error(gov_rpc, "gov_list", {"status": "bogus"}, "status")
    await assert_param_error(gov_rpc, "gov_list", {"limit": 0}, "limit")


async def test_gov_get_of_an_unknown_proposal(gov_rpc: Rpc) -> None:
    error = await gov_rpc.error("gov_get", [9])
    assert (error["code"], error["data"]) == (-32001, {"what": "proposal", "key": "9"})
    await assert_param_error(gov_rpc, "gov_get", ["x"], "proposalId")
    await assert_param_error(gov_rpc, "gov_get", [-1], "proposalId")


async def test_a_running_tally_scans_the_accounts_once_per_block(
        gov_rpc: Rpc, monkeypatch: pytest.MonkeyPatch) -> None:
    # the governance page asks gov_get for every proposal at every block: each scan of all
    # accounts (bonded stake) blocks the node's loop, so one block pays for one
    from ogpu_node.rpc import gov_methods
    market = await staked_market(gov_rpc)
    for title in ("first", "second"):
        await market.send(market.client, Propose(CHANGES, DEPOSIT, title), block=False)
    gov_rpc.node.produce_block()
    scans: list[int] = []

    def counted(w: Working) -> int:
        scans.append(1)
        return bonded_stake(w)

    monkeypatch.setattr(gov_methods, "bonded_stake", counted)
    for _ in range(3):
        for number in (1, 2):
            tally = (await gov_rpc.result("gov_get", [number]))["tally"]
            assert tally["bonded"] == str(ogpu(15_000))
    assert len(scans) == 1
    await market.send(market.other, Stake(Amount(ogpu(1_000))))
    tally = (await gov_rpc.result("gov_get", [1]))["tally"]
    assert (tally["bonded"], len(scans)) == (str(ogpu(16_000)), 2)


def test_a_change_to_a_name_no_longer_governable_still_shows() -> None:
    from ogpu_node.rpc.gov_methods import param_value
    assert "verifier_fee_bps" not in GOVERNABLE
    assert param_value("verifier_fee_bps", 300) == "300"
    assert param_value("bid_window_ms", 4_000) == 4_000


async def test_gov_params_still_answers_with_a_proposal_of_a_former_name(gov_rpc: Rpc) -> None:
    # a proposal made when a parameter was governable outlives its removal from the table
    market = await staked_market(gov_rpc)
    await market.send(market.client, Propose(CHANGES, DEPOSIT, "before the upgrade"))
    node = gov_rpc.node
    proposal = node.state.proposals[1]
    former = replace(proposal, changes=(("verifier_fee_bps", 300), *proposal.changes))
    node.chain.state = replace(node.state, proposals={**node.state.proposals, 1: former})
    view = await gov_rpc.result("gov_params")
    assert entry(view, "min_fee")["proposed"] == [
        {"proposalId": 1, "value": "2000", "votingEnd": proposal.voting_end}]
    assert "verifier_fee_bps" not in [p["name"] for p in view["params"]]
    changes = (await gov_rpc.result("gov_get", [1]))["changes"]
    assert changes[0] == {"name": "verifier_fee_bps", "value": "300"}
