"""What the SDK offers: a method for every RPC method, the same methods blocking and async,
and an import that needs none of the node's heavy dependencies."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import textwrap

from ogpu_node.rpc.methods import METHODS
from ogpu_node.sdk import WEBSOCKET_ONLY, Client, SyncClient

HEAVY = ("libp2p", "plyvel", "numba", "trio", "hypercorn", "prometheus_client", "onnx",
         "onnxruntime", "multiaddr", "cupy")
"""The node's dependencies an SDK user must not need (`pip install ogpu-node` lacks them)."""
BLOCKER = textwrap.dedent(f"""
    import sys
    HEAVY = {HEAVY!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                raise ModuleNotFoundError(f"No module named {{name!r}}")
            return None

    sys.meta_path.insert(0, Blocker())
""")
"""The start of a script run where the heavy packages are not installed: importing one fails
as it does without them."""


def snake(name: str) -> str:
    """`chain_getBlockRange` -> `chain_get_block_range`."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def public_methods(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}


def test_every_rpc_method_has_an_sdk_method() -> None:
    for cls in (Client, SyncClient):
        missing = [f"{name} -> {cls.__name__}.{WEBSOCKET_ONLY.get(name, snake(name))}"
                   for name in METHODS
                   if not hasattr(cls, WEBSOCKET_ONLY.get(name, snake(name)))]
        assert not missing, ("RPC methods with no SDK method (add them to "
                             f"ogpu_node/sdk/client.py and sync_client.py): {missing}")


def test_the_blocking_client_mirrors_the_async_one() -> None:
    renamed = {"aclose": "close"}
    async_names = {renamed.get(n, n) for n in public_methods(Client)}
    assert async_names == public_methods(SyncClient)
    for name in public_methods(Client) - set(renamed):
        async_params = list(inspect.signature(getattr(Client, name)).parameters)
        assert async_params == list(inspect.signature(getattr(SyncClient, name)).parameters), name


def test_importing_the_sdk_loads_no_heavy_dependency() -> None:
    """In a fresh interpreter where the heavy packages cannot be imported at all."""
    script = BLOCKER + textwrap.dedent("""
        from ogpu_node.sdk import Client, SyncClient
        from ogpu_node.sdk.sync_client import rpc_call
        import ogpu_node.cli.user_cli
        SyncClient("http://127.0.0.1:1/").close()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
        print("loaded:", loaded)
        assert not loaded, loaded
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout
