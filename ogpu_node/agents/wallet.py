"""Sending transactions signed by the node's own key, with nonces that follow the mempool."""

from __future__ import annotations

from collections import OrderedDict

from ogpu_node.errors import OgpuError
from ogpu_node.ledger import sign_transaction
from ogpu_node.ledger.tx import Payload
from ogpu_node.node.node import Node
from ogpu_node.node_api import TxState
from ogpu_node.types import Hash32

MAX_REMEMBERED = 4_096


class NodeWallet:
    """Signs payloads with the node's key at the next free nonce and the chain's minimum fee."""

    def __init__(self, node: Node) -> None:
        if node.key is None:
            raise OgpuError("agents need a node with a key")
        self.node = node
        self.key = node.key
        self._sent: OrderedDict[object, Hash32] = OrderedDict()

    @property
    def address(self) -> bytes:
        return self.key.address

    async def send(self, payload: Payload) -> Hash32:
        """Admit a transaction carrying `payload`; raises `InvalidTransaction` when refused."""
        state = self.node.chain.state
        tx = sign_transaction(self.key, chain_id=state.chain_id,
                              nonce=self.node.next_nonce(self.key.address),
                              fee=state.params.min_fee, payload=payload)
        await self.node.submit_tx(tx)
        return tx.hash

    async def send_once(self, action: object, payload: Payload) -> bool:
        """Send `payload` for `action` unless a transaction for it is pending or final; returns
        whether one was sent now (one that was refused or dropped may be sent again)."""
        previous = self._sent.get(action)
        if previous is not None and self.node.tx_receipt(previous).state in (TxState.PENDING,
                                                                             TxState.FINALIZED):
            return False
        self._sent[action] = await self.send(payload)
        self._sent.move_to_end(action)
        while len(self._sent) > MAX_REMEMBERED:  # the oldest actions settled long ago
            self._sent.popitem(last=False)
        return True
