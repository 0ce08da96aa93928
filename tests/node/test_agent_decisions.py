"""The provider agent's decision ring: bounded, one entry per change, codes with their texts."""

from __future__ import annotations

from ogpu_node.agents.decisions import (
    AGENT_REASONS,
    Decision,
    DecisionLog,
    reason_text,
    split_reason,
)
from ogpu_node.ledger.market.rules import NO_BID_REASONS


def decision(task: int, code: str, height: int = 1, attempt: int = 1) -> Decision:
    return Decision(bytes([task]) * 32, attempt, "train", height, code, reason_text(code))


def test_a_repeated_decision_is_kept_once_and_a_change_is_kept() -> None:
    log = DecisionLog()
    assert log.record(decision(1, "at_concurrent_limit", height=5))
    assert not log.record(decision(1, "at_concurrent_limit", height=6))  # next block, same
    assert log.record(decision(1, "bid", height=7))
    assert log.record(decision(1, "bid", attempt=2, height=9))  # a new attempt is new
    assert [(d.code, d.height, d.attempt) for d in log.recent()] == [
        ("at_concurrent_limit", 5, 1), ("bid", 7, 1), ("bid", 9, 2)]
    assert [d.is_outcome for d in log.recent()] == [False, True, True]


def test_the_ring_is_bounded_and_closed_tasks_are_forgotten() -> None:
    log = DecisionLog(limit=3)
    for task in range(5):
        log.record(decision(task, "task_full"))
    assert [d.task_id[0] for d in log.recent()] == [2, 3, 4]
    log.forget_closed({bytes([4]) * 32})
    assert log.last_code(bytes([3]) * 32, 1) is None
    assert log.last_code(bytes([4]) * 32, 1) == "task_full"


def test_reasons_split_into_code_and_text() -> None:
    assert split_reason("below_min_benchmark") == (
        "below_min_benchmark", NO_BID_REASONS["below_min_benchmark"])
    assert split_reason("too_slow_for_exec_time") == (
        "too_slow_for_exec_time", AGENT_REASONS["too_slow_for_exec_time"])
    assert split_reason("model_refused: opset 99 is not supported") == (
        "model_refused", "opset 99 is not supported")
    # no code of the chain's and the agent's collides
    assert not set(NO_BID_REASONS) & set(AGENT_REASONS)
