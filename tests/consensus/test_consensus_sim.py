"""The seeded simulator: determinism, honest liveness, faults, Byzantine strategies, CLI."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from consensus.params import Parameters
from consensus.sim.__main__ import main
from consensus.sim.config import STRATEGIES, Partition, SimConfig
from consensus.sim.runner import run

DEEP = os.environ.get("OGPU_DEEP") == "1"
BASE = SimConfig(n=20, seed=3, target_blocks=5, stall_ms=5_000)


def test_same_seed_gives_the_same_trace_hash() -> None:
    config = replace(BASE, byzantine_pct=10, strategy="flipflop", offline_pct=5,
                     loss_ppm=5_000, partitions=(Partition(100, 900),))
    first, second = run(config), run(config)
    assert first.finalized_min > 0
    assert first.trace_hash == second.trace_hash
    assert (first.messages, first.votes, first.finality_ms) == (
        second.messages, second.votes, second.finality_ms)
    assert run(replace(config, seed=4)).trace_hash != first.trace_hash


def test_honest_network_finalises_one_chain_without_conflicts() -> None:
    result = run(BASE)
    assert result.reached_target
    assert result.conflicting_finalizations == 0
    assert result.finality_ms and result.rounds
    assert min(result.rounds) >= Parameters().beta


def test_sampling_mode_with_skewed_stake_finalises() -> None:
    result = run(replace(BASE, n=60, stake="zipf"))
    assert result.reached_target
    assert result.conflicting_finalizations == 0


def test_a_partition_stalls_finality_until_it_heals() -> None:
    # A 50/50 cut leaves neither side the 15/20 needed; the cut heals at 3 s.
    result = run(replace(BASE, partitions=(Partition(0, 3_000, 50),)))
    assert result.reached_target
    assert result.first_finality_at_ms is not None
    assert result.first_finality_at_ms >= 3_000


def test_a_vote_for_genesis_after_finality_does_not_crash_the_run() -> None:
    # A 30 % cut lets the larger side finalise while some cut-off nodes still prefer genesis;
    # their answers make the others fetch genesis, which used to raise KeyError.
    result = run(replace(BASE, seed=2, stake="uniform", target_blocks=4, stall_ms=3_000,
                         partitions=(Partition(0, 500, 30),)))
    assert result.reached_target
    assert result.conflicting_finalizations == 0


def test_loss_and_offline_stake_slow_but_do_not_stop_finality() -> None:
    result = run(replace(BASE, loss_ppm=10_000, offline_pct=10))
    assert result.reached_target
    assert result.offline_stake_pct == 10.0


def test_too_much_offline_stake_stalls_and_reports_it() -> None:
    result = run(replace(BASE, offline_pct=30, stall_ms=3_000))
    assert result.stalled and not result.reached_target
    assert result.finalized_max == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_byzantine_strategies_at_20_percent_never_finalise_conflicts(strategy: str) -> None:
    results = [run(replace(BASE, seed=seed, byzantine_pct=20, strategy=strategy,
                           target_blocks=12)) for seed in range(3, 8)]
    assert all(r.conflicting_finalizations == 0 for r in results)
    if strategy != "silent":
        # Byzantine proposers equivocated and honest nodes turned it into evidence.
        assert sum(r.evidence for r in results) > 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_byzantine_strategies_at_10_percent_do_not_stop_finality(strategy: str) -> None:
    result = run(replace(BASE, byzantine_pct=10, strategy=strategy))
    assert result.reached_target
    assert result.conflicting_finalizations == 0


@pytest.mark.slow
def test_many_seeds_at_the_claimed_bound_finalise_no_conflicts() -> None:
    seeds = 1_000 if DEEP else 20
    for seed in range(seeds):
        result = run(replace(BASE, n=20, seed=seed, byzantine_pct=20, strategy="adaptive"))
        assert result.conflicting_finalizations == 0, seed


def test_cli_prints_a_table_and_writes_json(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim.json"
    status = main(["--n", "8", "--blocks", "3", "--seeds", "2", "--byzantine", "25",
                   "--strategy", "opposite", "--json", str(out)])
    assert status == 0
    table = capsys.readouterr().out
    assert "| n | byz strategy |" in table
    rows = json.loads(out.read_text())
    assert rows[0]["seeds"] == 2
    assert rows[0]["conflicting_finalizations"] == 0
    assert rows[0]["decisions"] >= 6
