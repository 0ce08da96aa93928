"""docs/sdk.md's examples, run as a reader runs them against one live devnet (two validators,
one of them a provider, the other its committee), and the guide shows the very code that is
tested here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ogpu_node import devnet
from ogpu_node.genesis import load_template
from ogpu_node.polling import wait_until
from ogpu_node.sdk.sync_client import rpc_call
from tests.integration.node_logs import assert_no_traceback_through_our_code

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "docs" / "examples"
GUIDE = ROOT / "docs" / "sdk.md"
SCRIPTS = ("sdk_read_chain.py", "sdk_transfer.py", "sdk_task.py", "sdk_blocks_asyncio.py",
           "sdk_blocks_trio.py")
EXAMPLE_TIMEOUT_S = 150


def code_of(name: str) -> str:
    """An example script without its module docstring: what the guide shows."""
    return (EXAMPLES / name).read_text().split('"""', 2)[2].lstrip("\n")


def run_example(name: str, url: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OGPU_RPC": url}
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("sdk")
    # Two validators: node1 provides, node0 alone checks its results (a committee of one).
    template = load_template()
    template["params"] = {**template["params"], "committee_size": 1, "committee_min_size": 1}
    template_path = root.parent / f"{root.name}-template.json"
    template_path.write_text(json.dumps(template))
    base = devnet.free_port_base(6)
    devnet.create(root, 2, base_p2p=base, base_rpc=base + 3, providers=1,
                  node_settings={1: {"provider_device": "cpu"}}, template=template_path)
    devnet.start(root)
    try:
        devnet.wait_healthy(root)
        node_url = devnet.rpc_url(root / "node0")
        wait_until(lambda: rpc_call(node_url, "provider_list")["count"] == 1,
                   "the provider registered", timeout=90)
        yield node_url
    finally:
        devnet.stop(root)
        assert_no_traceback_through_our_code(root)


def test_the_guide_shows_the_tested_scripts() -> None:
    guide = GUIDE.read_text()
    for name in SCRIPTS:
        assert f"```python\n{code_of(name)}```" in guide, name


def test_reading_the_chain_and_sending_a_transfer(url: str, tmp_path: Path) -> None:
    out = run_example("sdk_read_chain.py", url, tmp_path)
    assert re.search(r"^chain ogpu-devnet at height \d+$", out, re.M), out
    assert "2 validators stake" in out
    out = run_example("sdk_transfer.py", url, tmp_path)
    assert re.search(r"^finalized in block \d+: tx [0-9a-f]{64}$", out, re.M), out
    assert out.endswith("the receiver holds 2.5 OGPU\n"), out


def test_a_task_is_submitted_watched_and_its_result_checked(url: str, tmp_path: Path) -> None:
    out = run_example("sdk_task.py", url, tmp_path)
    lines = out.splitlines()
    assert re.fullmatch(r"task [0-9a-f]{64}", lines[0]), out
    assert lines[1] == "  bidding" and lines[-3] == "  closed", out
    assert lines[-2].startswith("closed: completed, paid "), out
    assert lines[-1] == "C (256, 256), matches A @ B: True", out


@pytest.mark.parametrize("runner", ["asyncio", "trio"])
def test_blocks_arrive_under_either_event_loop(url: str, tmp_path: Path, runner: str) -> None:
    out = run_example(f"sdk_blocks_{runner}.py", url, tmp_path)
    heights = [int(h) for h in re.findall(r"^block (\d+): \d+ transactions$", out, re.M)]
    assert len(heights) == 2 and heights[1] == heights[0] + 1, out
