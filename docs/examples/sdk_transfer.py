"""docs/sdk.md, "Send a transfer": sign and send 2.5 OGPU from devnet account 0 to a new
address, wait until it is final, and read the receiver's balance."""

import asyncio
import os

from ogpu_node.genesis import dev_account_key
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Transfer
from ogpu_node.sdk import DEFAULT_RPC, Client
from ogpu_node.types import parse_amount


async def main() -> None:
    sender = dev_account_key(0)  # a devnet's well-known key; yours: read_key_file("me.json")
    receiver = PrivateKey.generate().address
    async with Client(os.environ.get("OGPU_RPC", DEFAULT_RPC)) as client:
        receipt = await client.send_transaction(sender, Transfer(receiver, parse_amount("2.5")))
        print(f"{receipt['state']} in block {receipt['height']}: tx {receipt['hash']}")
        account = await client.account_get(receiver)
        print(f"the receiver holds {account['balanceOgpu']} OGPU")


asyncio.run(main())
