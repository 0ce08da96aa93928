"""docs/sdk.md, "Subscribe to blocks": the next two finalised blocks, under asyncio."""

import asyncio
import os

from ogpu_node.sdk import DEFAULT_RPC, Client


async def main() -> None:
    client = Client(os.environ.get("OGPU_RPC", DEFAULT_RPC))
    async with client, client.subscribe_blocks(idle_timeout=30) as blocks:
        seen = 0
        async for block in blocks:
            print(f"block {block['height']}: {block['txCount']} transactions")
            seen += 1
            if seen == 2:
                break


asyncio.run(main())
