"""docs/sdk.md, "Run a task": upload two matrices, submit their product as a task, watch it
until it settles, then fetch and open the result and check it here."""

import asyncio
import os

import numpy as np

from gpu.artifacts import decode_arrays
from gpu.inputs import encode_inputs
from ogpu_node.genesis import dev_account_key
from ogpu_node.sdk import DEFAULT_RPC, Client, TaskTerms
from ogpu_node.types import parse_amount
from ogpu_node.workloads.spec import MatmulSpec


async def main() -> None:
    client_key = dev_account_key(5)
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(256, 256)), rng.normal(size=(256, 256))
    spec = MatmulSpec(n=256, seed=0)
    terms = TaskTerms(max_price=parse_amount("0.01"), exec_ms=30_000, ttl_ms=180_000)
    async with Client(os.environ.get("OGPU_RPC", DEFAULT_RPC)) as client:
        task_id = await client.submit_task(client_key, spec, terms,
                                           inputs=encode_inputs(spec, {"A": a, "B": b}))
        print(f"task {task_id}")
        async for view in client.watch_task(task_id, idle_timeout=120):
            print(f"  {view['status']}")
        print(f"closed: {view['closeReason']}, paid {view['paymentOgpu']} OGPU")
        output = await client.fetch_result(task_id, client_key)
    [(name, product)] = decode_arrays(output.data)
    print(f"{name} {product.shape}, matches A @ B: {np.allclose(product, a @ b, atol=1e-2)}")


asyncio.run(main())
