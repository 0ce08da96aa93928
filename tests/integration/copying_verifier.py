"""Test-only: a validator node whose verifier copies another member's sealed verdict instead of
checking.

`python -m tests.integration.copying_verifier run --home HOME` is `ogpu-node run` with the
verifier agent's check replaced: drawn to a committee, it waits block by block until another
member's seal is on chain and sends the same seal as its own. It cannot open it (the seal binds
the member who made it, and the salt is not its own), so it never reveals. Everything else is
the real node. The fault lives here, not in production code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gpu.verify import Verdict
from ogpu_node.agents.verifier import Claim, VerifierAgent
from ogpu_node.cli import node_cli
from ogpu_node.ledger import State
from ogpu_node.ledger.market.payloads import SealVerdict
from ogpu_node.ledger.market.records import Check, CheckPhase

log = logging.getLogger("ogpu.copying_verifier")


def _check_now(state: State, claim: Claim) -> Check | None:
    if claim.request_id:
        pool = state.pools.get(claim.target)
        request = pool.request(claim.request_id) if pool else None
        return request.check if request else None
    task = state.tasks.get(claim.target)
    return task.attempt.check if task and task.attempt.number == claim.attempt else None


async def _copy_a_seal(self: VerifierAgent, claim: Claim,
                       check: Callable[[Claim], Awaitable[Verdict]]) -> None:
    me = self.wallet.address
    try:
        async with self.node.subscribe_blocks() as blocks:
            while True:
                now = _check_now(self.node.chain.state, claim)
                if now is None or now.round != claim.check.round or (
                        now.phase != CheckPhase.SEALING):
                    return
                other = next((v for v in now.votes if v.member != me), None)
                if other is not None:
                    log.warning("copying the seal of %s on %s", other.member.hex()[:8], claim)
                    await self.wallet.send_once(("seal", claim.key), SealVerdict(
                        claim.target, claim.request_id, claim.attempt, claim.check.round,
                        other.seal))
                    return
                await blocks.receive()
    finally:
        self.checking.discard(claim.key)


if __name__ == "__main__":
    VerifierAgent._check_and_seal = _copy_a_seal  # type: ignore[method-assign]
    node_cli.main()
