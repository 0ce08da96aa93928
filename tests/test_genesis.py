"""Genesis files: a good one loads; each bad one is refused with a reason naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ogpu_node.address import address_to_text
from ogpu_node.genesis import (
    GenesisError,
    build_genesis,
    dev_account_key,
    load_genesis,
    load_template,
    parse_genesis,
)
from ogpu_node.keys import PrivateKey
from ogpu_node.types import MAX_SUPPLY, ogpu

VALIDATOR_KEYS = [PrivateKey.from_seed(bytes([i]) * 32) for i in range(1, 5)]


def good_doc() -> dict[str, Any]:
    genesis = build_genesis(load_template(), [(f"node{i}", k.public_key.raw)
                                              for i, k in enumerate(VALIDATOR_KEYS)],
                            genesis_time_ms=1_700_000_000_000, dev_accounts=3)
    doc: dict[str, Any] = json.loads(genesis.to_json())
    return doc


def test_devnet_template_builds_a_valid_genesis_that_round_trips() -> None:
    doc = good_doc()
    genesis = parse_genesis(doc)
    assert len(genesis.validators) == 4
    assert json.loads(genesis.to_json()) == doc
    assert parse_genesis(json.loads(genesis.to_json())).hash == genesis.hash
    state = genesis.state()
    assert state.height == 0 and len(state.validators) == 4
    assert state.issued == state.total_held()
    assert state.account(dev_account_key(0).address).balance == ogpu(1_000_000)


def test_the_hash_changes_with_any_content() -> None:
    doc = good_doc()
    other = good_doc()
    other["allocations"][0]["amount"] = str(int(other["allocations"][0]["amount"]) + 1)
    assert parse_genesis(doc).hash != parse_genesis(other).hash


def mutate(change: str) -> dict[str, Any]:
    doc = good_doc()
    if change == "bad-checksum":
        address = doc["allocations"][0]["address"]
        doc["allocations"][0]["address"] = address[:-1] + ("q" if address[-1] != "q" else "p")
    elif change == "stake-below-minimum":
        doc["validators"][0]["stake"] = "1"
    elif change == "over-cap":
        doc["allocations"][0]["amount"] = str(MAX_SUPPLY)
    elif change == "unknown-field":
        doc["surprise"] = 1
    elif change == "missing-field":
        del doc["params"]
    elif change == "address-key-mismatch":
        doc["validators"][0]["address"] = doc["validators"][1]["address"]
    elif change == "duplicate-validator":
        doc["validators"].append(doc["validators"][0])
    elif change == "no-validators":
        doc["validators"] = []
    elif change == "float-amount":
        doc["allocations"][0]["amount"] = 1.5
    elif change == "bad-chain-id":
        doc["chain_id"] = "Has Spaces"
    elif change == "bad-param":
        doc["params"]["fee_burn_bps"] = 20_000
    elif change == "evidence-outlives-unbonding":
        doc["params"]["evidence_max_age"] = doc["params"]["unbonding_period"]
    elif change == "zero-slot":
        doc["params"]["slot_ms"] = 0
    elif change == "duplicate-allocation":
        doc["allocations"].append(doc["allocations"][0])
    return doc


@pytest.mark.parametrize(("change", "reason"), [
    ("bad-checksum", "checksum"),
    ("stake-below-minimum", "below the minimum validator stake"),
    ("over-cap", "cap"),
    ("unknown-field", "unknown field"),
    ("missing-field", "missing params"),
    ("address-key-mismatch", "does not match the public key"),
    ("duplicate-validator", "listed twice"),
    ("no-validators", "validators"),
    ("float-amount", "decimal string"),
    ("bad-chain-id", "chain_id"),
    ("bad-param", "fee_burn_bps"),
    ("zero-slot", "slot_ms must be within"),
    ("evidence-outlives-unbonding", "evidence_max_age must be below unbonding_period"),
    ("duplicate-allocation", "allocated twice"),
])
def test_bad_genesis_is_refused_with_its_reason(change: str, reason: str) -> None:
    with pytest.raises(GenesisError) as info:
        parse_genesis(mutate(change))
    assert any(reason in p for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_at_once() -> None:
    doc = mutate("stake-below-minimum")
    doc["chain_id"] = ""
    with pytest.raises(GenesisError) as info:
        parse_genesis(doc)
    assert len(info.value.problems) >= 2


def test_unreadable_and_non_json_files_are_genesis_errors(tmp_path: Path) -> None:
    with pytest.raises(GenesisError, match="No such file"):
        load_genesis(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GenesisError, match="not valid JSON"):
        load_genesis(bad)


def test_dev_accounts_are_well_known_and_distinct() -> None:
    addresses = {address_to_text(dev_account_key(i).address) for i in range(20)}
    assert len(addresses) == 20
    assert dev_account_key(3).address == dev_account_key(3).address
