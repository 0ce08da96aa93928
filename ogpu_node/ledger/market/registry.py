"""The model registry: `REGISTER_MODEL` records a customer's ONNX model so that tasks and pools
can run it.

The chain cannot read the model's file (a blob), so the registered `ModelInfo` is the
registrant's claim: its own limits are checked here (`ModelInfo.problems`), and every provider
and committee member checks the file before it runs the model, refusing one that does not
give the registered info or that the runtime cannot run (`agents/model_files.py`). A model
whose info understates its cost therefore finds nobody to run it, and its tasks close unrun
with the client refunded: nobody is made to run more than a task pays for. The registration
fee is burned: a model record stays in the state for ever.
"""

from __future__ import annotations

from ogpu_node.ledger.errors import InsufficientFunds
from ogpu_node.ledger.market.checks import check_register_model
from ogpu_node.ledger.market.payloads import RegisterModel
from ogpu_node.ledger.market.records import Model
from ogpu_node.ledger.working import Working
from ogpu_node.types import Address, Hash32


def process_register_model(w: Working, model_id: Hash32, sender: Address,
                           p: RegisterModel) -> None:
    """Record the model under `model_id` (the transaction's hash) and burn the fee."""
    check_register_model(p)
    fee = w.base.params.model_registration_fee
    balance = w.account(sender).balance
    if balance < fee:
        raise InsufficientFunds(f"balance {balance} is below the registration fee {fee}")
    w.credit(sender, -fee)
    w.burned += fee
    w.add_model(model_id, Model(owner=sender, name=p.name, file_id=p.file_id, info=p.info,
                                registered_ms=w.timestamp))
