"""docs/sdk.md, "Read the chain": the blocking client reads status, a block, an account and
the validators of the node at $OGPU_RPC."""

import os

from ogpu_node.genesis import dev_account_key
from ogpu_node.sdk import DEFAULT_RPC, SyncClient

with SyncClient(os.environ.get("OGPU_RPC", DEFAULT_RPC)) as client:
    status = client.chain_status()
    print(f"chain {status['chainId']} at height {status['height']}")
    block = client.chain_get_block("latest")
    print(f"block {block['height']} by {block['proposer']}: {block['txCount']} transactions")
    account = client.account_get(dev_account_key(0).address)
    print(f"dev account 0 holds {account['balanceOgpu']} OGPU, nonce {account['nonce']}")
    validators = client.validators_list()
    print(f"{validators['count']} validators stake {validators['totalStakeOgpu']} OGPU")
