"""`ogpu gov ...` driven as a user would against a served node (the real ledger, real blocks):
propose, vote with a key file and a dev account, watch the tally and the activation."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import trio

from ogpu_node.cli.gov_cli import parse_change
from ogpu_node.keys import write_key_file
from ogpu_node.ledger import Stake
from ogpu_node.types import Amount, ogpu
from tests.rpc.conftest import serving
from tests.rpc.local_node import VALIDATOR, LocalNode, make_genesis
from tests.rpc.market import Market
from tests.test_cli import ogpu as run_ogpu
from tests.test_cli import produce_blocks

VOTING_PERIOD = 3
DELAY = 2


async def test_propose_vote_and_watch_a_change_activate(tmp_path: Path) -> None:
    node = LocalNode(genesis=make_genesis(gov_voting_period=VOTING_PERIOD,
                                          gov_activation_delay=DELAY))
    market = Market(node)
    await market.fund_validator()
    await market.send(market.other, Stake(Amount(ogpu(5_000))))  # dev account 3
    write_key_file(tmp_path / "validator.json", VALIDATOR)
    async with serving(node) as rpc, trio.open_nursery() as blocks:
        blocks.start_soon(produce_blocks, node)
        url = rpc.address.http_url

        code, out = await run_ogpu(url, "gov", "params")
        assert code == 0, out
        assert "min_fee" in out and "[0.000000001 OGPU .. 1 OGPU]" in out, out
        assert "epoch_length" not in out

        code, out = await run_ogpu(url, "gov", "propose", "--set", "min_fee=2000", "--set",
                                   "provider_min_stake=50ogpu", "--title", "cheaper providers",
                                   "--dev-account", "0", "--json")
        assert code == 0, out
        made = json.loads(out)
        assert made["proposalId"] == 1 and made["deposit"] == str(ogpu(1_000))
        record = node.state.proposals[1]
        assert record.changes == (("min_fee", 2_000), ("provider_min_stake", ogpu(50)))
        assert record.title == "cheaper providers" and made["votingEnd"] == record.voting_end

        code, out = await run_ogpu(url, "gov", "vote", "1", "yes", "--key",
                                   str(tmp_path / "validator.json"))
        assert code == 0 and "finalized" in out, out
        code, out = await run_ogpu(url, "gov", "vote", "1", "no", "--dev-account", "3")
        assert code == 0, out
        code, out = await run_ogpu(url, "gov", "get", "1")
        assert code == 0, out
        assert "running tally" in out and "yes 10000, no 5000" in out and "-> passed" in out, out

        # refusals: a non-staker's vote (the chain), bad values (here, before sending)
        code, out = await run_ogpu(url, "gov", "vote", "1", "yes", "--dev-account", "1")
        assert code == 1 and "gov_not_bonded" in out, out
        code, out = await run_ogpu(url, "gov", "propose", "--set", "epoch_length=5",
                                   "--dev-account", "0")
        assert code == 2 and "governable NAME" in out, out
        code, out = await run_ogpu(url, "gov", "propose", "--set", "min_fee=0",
                                   "--dev-account", "0")
        assert code == 2 and "outside 1..1000000000" in out, out
        code, out = await run_ogpu(url, "gov", "propose", "--set", "min_fee=2000",
                                   "--deposit", "1", "--dev-account", "0")
        assert code == 1 and "gov_deposit_too_low" in out, out
        code, out = await run_ogpu(url, "gov", "get", "7")
        assert code == 1 and "proposal not found" in out, out

        while node.state.height < record.voting_end + DELAY:
            node.produce_block()
        code, out = await run_ogpu(url, "gov", "list")
        assert code == 0 and "1 of 1 proposal(s)" in out and "activated" in out, out
        code, out = await run_ogpu(url, "gov", "list", "--status", "voting", "--json")
        assert json.loads(out)["total"] == 0
        code, out = await run_ogpu(url, "gov", "params", "--json")
        values = {p["name"]: p["value"] for p in json.loads(out)["params"]}
        assert (values["min_fee"], values["provider_min_stake"]) == ("2000", str(ogpu(50)))
        assert node.state.params.min_fee == 2_000
        blocks.cancel_scope.cancel()


def test_a_set_value_that_is_not_an_ascii_integer_is_a_usage_error() -> None:
    # '²'.isdigit() is true and int('²') raises; 5,000 digits pass Python's int limit
    for text in ("min_fee=²", "min_fee=" + "9" * 5_000, "min_fee=1_000", "min_fee=-1"):
        with pytest.raises(click.BadParameter):
            parse_change(text)
    assert parse_change(" min_fee = 2000 ") == ("min_fee", 2_000)
