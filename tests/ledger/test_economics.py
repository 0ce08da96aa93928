"""The economic table of docs/security.md: each cheating strategy played on the ledger with the
default economic parameters, and what it earns next to playing honestly.

Every scenario runs on a chain of 4 validators (10,000 OGPU of stake each, the default minimum)
where providers A (key 1) and B (key 2) bid and a client (key 5) buys a matmul of 3 work units at
up to 10 OGPU per unit. Only the market's windows are shortened; every share, collateral, fee and
penalty is `Params()`'s default. The committee of a result of A is validators 0, 2 and 3 (A and
the client are never drawn). A client's *honest* figure is what it pays for the work; the work's
value to it is not on the ledger (for the withholding client, which gets no work, the honest
figure is cancelling before the award instead). Validator 0 proposes every block (it collects
the fees and rewards), so it is never the actor measured. A strategy's *net* is the change of
the actor's balance and stakes over the scenario, its transaction fees included; the *honest*
column plays the same actor honestly in the same scenario.

`python -m tests.ledger.test_economics` prints the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Params, make_genesis_state
from ogpu_node.ledger.market.payloads import (
    CancelTask,
    CommitResult,
    ReportMissingInputs,
    RevealVerdict,
    SealVerdict,
)
from ogpu_node.ledger.market.records import CheckPhase, CloseReason, TaskStatus
from ogpu_node.ledger.state import State
from ogpu_node.types import Hash32, ogpu
from ogpu_node.workloads.spec import MatmulSpec
from tests.ledger.helpers import CHAIN_ID, KEYS
from tests.ledger.market_helpers import CLIENT, PROVIDER_A, PROVIDER_B, MarketChain, result_for

PARAMS = replace(Params(), epoch_length=100_000, unbonding_period=1_000, bid_window_ms=3_000,
                 reveal_window_ms=3_000, verdict_window_ms=10_000,
                 verdict_reveal_window_ms=5_000)
MATMUL = MatmulSpec(n=1024, seed=1)  # 3 work units
UNITS = 3
MAX_PRICE = ogpu(10)
UPLOADED = MatmulSpec(n=1024, seed=1, inputs=bytes(digest(b"never", b"uploaded")))


def fresh_chain() -> MarketChain:
    state = make_genesis_state(
        chain_id=CHAIN_ID, params=PARAMS, genesis_hash=digest(b"economics", b""),
        timestamp=1_000, allocations=[(k.address, ogpu(1_000_000)) for k in KEYS],
        validators=[(k.public_key.raw, ogpu(10_000)) for k in KEYS[:4]])
    chain = MarketChain(state)
    chain.register(PROVIDER_A)
    chain.register(PROVIDER_B, benchmark=500)
    return chain


def wealth(state: State, key: PrivateKey) -> int:
    account = state.account(key.address)
    provider = state.providers.get(key.address)
    return account.balance + account.stake + (provider.stake if provider else 0)


def awarded_to_a(chain: MarketChain, spec: MatmulSpec = MATMUL) -> Hash32:
    task_id = chain.submit(spec, max_price=MAX_PRICE)
    chain.auction(task_id, {1: ogpu(5), 2: ogpu(8)})
    assert chain.task(task_id).attempt.provider == PROVIDER_A.address
    return task_id


def wrong_result(chain: MarketChain, task_id: Hash32) -> None:
    task = chain.task(task_id)
    bad = replace(result_for(task), output_id=digest(b"wrong", task.spec))
    chain.send(PROVIDER_A, CommitResult(task_id, bad))


def votes(chain: MarketChain, task_id: Hash32, ballot: dict[int, bool | None]) -> None:
    """Members (by key index) seal their vote (None: never votes), then reveal it."""
    members = {k.address for k in chain.committee(task_id)}
    voting = {i: v for i, v in ballot.items() if v is not None}
    assert set(ballot) == {i for i, k in enumerate(KEYS) if k.address in members}
    for i, vote in voting.items():
        chain.seal(KEYS[i], task_id, vote)
    if (check := chain.task(task_id).attempt.check) and check.phase == CheckPhase.SEALING:
        chain.pass_phase(task_id)
    for i, vote in voting.items():
        chain.reveal_vote(KEYS[i], task_id, vote)
    if chain.task(task_id).status == TaskStatus.VERIFYING:
        chain.pass_phase(task_id)


@dataclass(frozen=True)
class Row:
    strategy: str
    actor: str
    net: int
    honest: int
    test: str


def played(actor: PrivateKey, play: Callable[[MarketChain], None]) -> int:
    chain = fresh_chain()
    before = wealth(chain.state, actor)
    play(chain)
    return wealth(chain.state, actor) - before


# --- the strategies -----------------------------------------------------------------------------


def honest_provider(chain: MarketChain) -> None:
    task_id = awarded_to_a(chain)
    chain.commit_result(task_id)
    chain.vote(task_id, accept=True)
    assert chain.task(task_id).close_reason == CloseReason.COMPLETED


def wrong_provider(chain: MarketChain) -> None:
    task_id = awarded_to_a(chain)
    wrong_result(chain, task_id)
    votes(chain, task_id, {0: False, 2: False, 3: False})
    assert chain.task(task_id).why == "rejected"


def provider_with_an_ally(chain: MarketChain) -> None:
    """A wrong result; member 3 is the provider's ally and accepts it."""
    task_id = awarded_to_a(chain)
    wrong_result(chain, task_id)
    votes(chain, task_id, {0: False, 2: False, 3: True})
    assert chain.task(task_id).why == "rejected"


def honest_member(chain: MarketChain) -> None:
    task_id = awarded_to_a(chain)
    chain.commit_result(task_id)
    votes(chain, task_id, {0: True, 2: True, 3: True})
    chain.release(task_id)


def silent_member(chain: MarketChain) -> None:
    task_id = awarded_to_a(chain)
    chain.commit_result(task_id)
    votes(chain, task_id, {0: True, 2: True, 3: None})
    chain.release(task_id)


def copying_member(chain: MarketChain) -> None:
    """Member 3 seals a copy of member 2's seal; it cannot open it."""
    task_id = awarded_to_a(chain)
    chain.commit_result(task_id)
    chain.committee(task_id)
    chain.seal(KEYS[2], task_id, True)
    check = chain.task(task_id).attempt.check
    assert check is not None
    copied = next(v.seal for v in check.votes if v.member == KEYS[2].address)
    chain.send(KEYS[3], SealVerdict(task_id, b"", 1, check.round, copied))
    chain.seal(KEYS[0], task_id, True)
    chain.reveal_vote(KEYS[0], task_id, True)
    chain.reveal_vote(KEYS[2], task_id, True)
    with pytest.raises(Exception, match="do not match"):
        chain.check(KEYS[3], RevealVerdict(task_id, b"", 1, check.round, True, "ok",
                                           b"vote-salt"))
    chain.pass_phase(task_id)
    chain.release(task_id)


def honest_client(chain: MarketChain) -> None:
    task_id = chain.submit(UPLOADED, max_price=MAX_PRICE)
    chain.auction(task_id, {1: ogpu(5), 2: ogpu(8)})
    chain.commit_result(task_id)  # it uploaded its inputs: the result is computed and paid
    chain.vote(task_id, accept=True)


def withholding_client(chain: MarketChain) -> None:
    task_id = chain.submit(UPLOADED, max_price=MAX_PRICE)
    chain.auction(task_id, {1: ogpu(5), 2: ogpu(8)})
    chain.send(PROVIDER_A, ReportMissingInputs(task_id, "inputs_missing"))
    votes(chain, task_id, {0: True, 2: True, 3: True})
    assert chain.task(task_id).close_reason == CloseReason.INPUTS_WITHHELD


def rejecting_client_and_ally(chain: MarketChain) -> None:
    """A correct result; member 3 is the client's ally and rejects it."""
    task_id = awarded_to_a(chain)
    chain.commit_result(task_id)
    votes(chain, task_id, {0: True, 2: True, 3: False})
    chain.release(task_id)
    assert chain.task(task_id).close_reason == CloseReason.COMPLETED


def cancelling_client(chain: MarketChain) -> None:
    """What a client that has nothing to send does instead: cancel before the award."""
    task_id = chain.submit(UPLOADED, max_price=MAX_PRICE)
    chain.send(CLIENT, CancelTask(task_id))


def spamming_bidder(chain: MarketChain) -> None:
    """B seals a bid and never reveals it; A reveals and wins."""
    task_id = chain.submit(MATMUL, max_price=MAX_PRICE)
    chain.bid(PROVIDER_A, task_id, ogpu(5))
    chain.bid(PROVIDER_B, task_id, ogpu(8))
    chain.end_bidding(task_id)
    chain.reveal(PROVIDER_A, task_id, ogpu(5))
    chain.pass_phase(task_id)  # the reveal window ends with B's bid sealed
    assert chain.task(task_id).attempt.provider == PROVIDER_A.address


def honest_losing_bidder(chain: MarketChain) -> None:
    task_id = chain.submit(MATMUL, max_price=MAX_PRICE)
    chain.auction(task_id, {1: ogpu(5), 2: ogpu(8)})


def table() -> list[Row]:
    member = KEYS[3]
    rows = [
        Row("provider returns a wrong or lazy result", "provider",
            played(PROVIDER_A, wrong_provider), played(PROVIDER_A, honest_provider),
            "test_a_wrong_result_costs_the_provider_its_collateral"),
        Row("provider colludes with a committee minority", "provider + ally",
            played(PROVIDER_A, provider_with_an_ally) + played(member, provider_with_an_ally),
            played(PROVIDER_A, honest_provider) + played(member, honest_member),
            "test_a_colluding_minority_loses_more_than_the_provider"),
        Row("copying verifier", "member", played(member, copying_member),
            played(member, honest_member), "test_copying_and_silence_cost_the_member"),
        Row("silent verifier", "member", played(member, silent_member),
            played(member, honest_member), "test_copying_and_silence_cost_the_member"),
        Row("bid spammer (seals, never reveals)", "provider",
            played(PROVIDER_B, spamming_bidder), played(PROVIDER_B, honest_losing_bidder),
            "test_a_bid_never_revealed_costs_its_deposit"),
        Row("client withholds its inputs", "client", played(CLIENT, withholding_client),
            played(CLIENT, cancelling_client), "test_withholding_inputs_costs_the_client"),
        Row("client colludes with a minority to reject", "client + ally",
            played(CLIENT, rejecting_client_and_ally) + played(member, rejecting_client_and_ally),
            played(CLIENT, honest_provider) + played(member, honest_member),
            "test_a_client_and_a_minority_cannot_reject_a_correct_result"),
    ]
    return rows


def ogpu_text(units: int) -> str:
    return f"{units / 10**9:+,.3f}"


def test_a_wrong_result_costs_the_provider_its_collateral() -> None:
    net = played(PROVIDER_A, wrong_provider)
    assert net < 0 < played(PROVIDER_A, honest_provider)


def test_a_colluding_minority_loses_more_than_the_provider() -> None:
    provider, ally = played(PROVIDER_A, provider_with_an_ally), played(KEYS[3],
                                                                        provider_with_an_ally)
    assert provider < 0 and ally <= -PARAMS.verifier_wrong_accept_penalty


def test_copying_and_silence_cost_the_member() -> None:
    honest = played(KEYS[3], honest_member)
    assert honest > 0
    for strategy in (copying_member, silent_member):
        assert played(KEYS[3], strategy) <= -PARAMS.verifier_silence_penalty


def test_a_bid_never_revealed_costs_its_deposit() -> None:
    deposit = max(PARAMS.bid_deposit_min, MAX_PRICE * UNITS * PARAMS.bid_deposit_bps // 10_000)
    assert played(PROVIDER_B, spamming_bidder) <= -deposit
    assert played(PROVIDER_B, honest_losing_bidder) > -deposit


def test_withholding_inputs_costs_the_client() -> None:
    """It gets no work, and pays more than cancelling would have cost."""
    assert played(CLIENT, withholding_client) < played(CLIENT, cancelling_client) < 0


def test_a_client_and_a_minority_cannot_reject_a_correct_result() -> None:
    client = played(CLIENT, rejecting_client_and_ally)
    assert client == played(CLIENT, honest_provider)  # it pays as an honest client does
    assert played(KEYS[3], rejecting_client_and_ally) < played(KEYS[3], honest_member)


def test_no_strategy_of_the_table_earns_more_than_honesty() -> None:
    for row in table():
        assert row.net < row.honest and row.net < 0, row


if __name__ == "__main__":
    print("| strategy | who | net (OGPU) | honest (OGPU) | test |")
    print("|---|---|---|---|---|")
    for row in table():
        print(f"| {row.strategy} | {row.actor} | {ogpu_text(row.net)} | "
              f"{ogpu_text(row.honest)} | `{row.test}` |")
