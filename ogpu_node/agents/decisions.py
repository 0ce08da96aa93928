"""The provider agent's recent decisions about tasks: why it skipped one, that it bid, whether
it won: a bounded ring shown by `agent_status` and `ogpu provider status`.

A decision is recorded when it changes for a task's attempt (the agent looks at every open task
after every block; a skip that holds for 20 blocks is one entry). Codes are stable: the chain's
own (`rules.NO_BID_REASONS`, from `bid_eligibility`), the agent's (`AGENT_REASONS`) and the
outcomes `bid`, `won`, `lost`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ogpu_node.ledger.market.rules import NO_BID_REASONS

MAX_DECISIONS = 200
"""Decisions kept (the oldest are dropped)."""
OUTCOMES = ("bid", "won", "lost")
AGENT_REASONS = {
    "too_slow_for_exec_time": "the work would not fit in half the task's execution time at our "
                              "benchmark",
    "at_concurrent_limit": "already running as many tasks as max_concurrent allows",
    "model_checking": "the model's file is still being fetched and checked",
    "model_refused": "the model's file is refused by the runtime",
    "model_mismatch": "the model's file does not match its registered info",
}
"""The provider agent's own reasons not to bid (after the chain's `NO_BID_REASONS`, which
also explain `price_floor_above_max_price`)."""


@dataclass(frozen=True)
class Decision:
    """What the agent decided about one attempt of a task, at `height`."""

    task_id: bytes
    attempt: int
    kind: str
    height: int
    code: str
    text: str

    @property
    def is_outcome(self) -> bool:
        return self.code in OUTCOMES


def reason_text(code: str) -> str:
    """The explanation of a skip code (the chain's or the agent's)."""
    return NO_BID_REASONS.get(code) or AGENT_REASONS.get(code) or code


def split_reason(reason: str) -> tuple[str, str]:
    """A reason as (code, text): "model_refused: opset 99" has its own text; a bare code gets
    its explanation."""
    code, sep, detail = reason.partition(": ")
    return (code, detail) if sep and code in AGENT_REASONS else (reason, reason_text(reason))


class DecisionLog:
    """The last `limit` decisions, newest last; the same decision again is not repeated."""

    def __init__(self, limit: int = MAX_DECISIONS) -> None:
        self._ring: deque[Decision] = deque(maxlen=limit)
        self._last: dict[tuple[bytes, int], str] = {}

    def record(self, decision: Decision) -> bool:
        """Keep `decision` unless it is what was last decided about its attempt; whether kept."""
        key = (decision.task_id, decision.attempt)
        if self._last.get(key) == decision.code:
            return False
        self._last[key] = decision.code
        self._ring.append(decision)
        return True

    def last_code(self, task_id: bytes, attempt: int) -> str | None:
        return self._last.get((task_id, attempt))

    def forget_closed(self, open_tasks: set[bytes]) -> None:
        """Stop remembering the last decision of tasks no longer open (the ring keeps them)."""
        self._last = {k: v for k, v in self._last.items() if k[0] in open_tasks}

    def recent(self) -> list[Decision]:
        return list(self._ring)
