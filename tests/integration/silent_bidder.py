"""Test-only: a provider node that seals bids and never reveals them.

`python -m tests.integration.silent_bidder run --home HOME` is `ogpu-node run` with the provider
agent's reveal left out: it bids on every task it may, as an honest provider does, and then lets
the reveal window pass (the bid spammer of issue 15). Everything else is the real node. The
fault lives here, not in production code.
"""

from __future__ import annotations

import trio

from ogpu_node.agents.provider import ProviderAgent
from ogpu_node.cli import node_cli
from ogpu_node.ledger import State
from ogpu_node.ledger.market.records import Task, TaskStatus
from ogpu_node.types import Hash32

_act_on = ProviderAgent._act_on


async def _never_reveal(self: ProviderAgent, nursery: trio.Nursery, state: State,
                        task_id: Hash32, task: Task) -> None:
    if task.status == TaskStatus.REVEALING:
        return
    await _act_on(self, nursery, state, task_id, task)


if __name__ == "__main__":
    ProviderAgent._act_on = _never_reveal  # type: ignore[method-assign]
    node_cli.main()
