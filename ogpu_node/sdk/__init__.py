"""The Python SDK of the OpenGPU Network: a typed client of a node's JSON-RPC.

    from ogpu_node.sdk import Client, SyncClient

`Client` is async (asyncio or trio), `SyncClient` blocks; both have one method per RPC method,
subscriptions as iterators, and helpers to send transactions, submit, watch and fetch tasks and
register providers. Importing the SDK loads none of the node's heavy dependencies (libp2p,
LevelDB, numba, trio, ONNX): `pip install ogpu-node` is enough. See docs/sdk.md.
"""

from ogpu_node.rpc_error_codes import ErrorCode
from ogpu_node.sdk.answers import (
    Account,
    Block,
    ChainStatus,
    Health,
    Model,
    Peer,
    Pool,
    Provider,
    Task,
    TxReceipt,
    TxWithReceipt,
    Validators,
)
from ogpu_node.sdk.client import Client, Subscription
from ogpu_node.sdk.errors import FeeRefused, RpcCallError, RpcTimeout
from ogpu_node.sdk.protocol import DEFAULT_RPC
from ogpu_node.sdk.sync_client import SyncClient, SyncSubscription
from ogpu_node.sdk.tasks import MAX_AUTO_FEE, TaskOutput, TaskTerms

WEBSOCKET_ONLY = {"sub_subscribe": "subscribe", "sub_unsubscribe": "subscribe"}
"""RPC methods with no method of their own: a subscription is opened by `subscribe` (and its
`subscribe_*` forms) and ended by leaving its `with` block."""

__all__ = [
    "DEFAULT_RPC", "MAX_AUTO_FEE", "WEBSOCKET_ONLY", "Account", "Block", "ChainStatus", "Client",
    "ErrorCode", "FeeRefused", "Health", "Model", "Peer", "Pool", "Provider", "RpcCallError",
    "RpcTimeout",
    "Subscription", "SyncClient", "SyncSubscription", "Task", "TaskOutput", "TaskTerms",
    "TxReceipt", "TxWithReceipt", "Validators",
]
