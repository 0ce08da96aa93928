"""The ledger state machine: pure functions from (state, input) to a new state or a typed error."""

from ogpu_node.ledger.block import Block, BlockHeader
from ogpu_node.ledger.errors import InvalidBlock, InvalidTransaction, LedgerError
from ogpu_node.ledger.genesis_state import make_genesis_state
from ogpu_node.ledger.params import Params
from ogpu_node.ledger.state import Account, State, Validator
from ogpu_node.ledger.transition import apply_block, apply_tx, build_block
from ogpu_node.ledger.tx import Stake, Transaction, Transfer, TxKind, Unstake, sign_transaction

__all__ = [
    "Account", "Block", "BlockHeader", "InvalidBlock", "InvalidTransaction", "LedgerError",
    "Params", "Stake", "State", "Transaction", "Transfer", "TxKind", "Unstake", "Validator",
    "apply_block", "apply_tx", "build_block", "make_genesis_state", "sign_transaction",
]
