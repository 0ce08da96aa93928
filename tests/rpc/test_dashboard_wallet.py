"""The dashboards' signer (`dashboard/static/wallet.js`) run in Node.js against a scripted node:
the fee it signs follows the chain's `min_fee` (a vote may raise it: with a fixed fee every
button of every page would be refused) and a node cannot make it pay more than governance's
ceiling."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ogpu_node.encoding import decode
from ogpu_node.ledger.governance.bounds import GOVERNABLE
from ogpu_node.ledger.tx import Transaction

STATIC = Path(__file__).parents[2] / "ogpu_node" / "dashboard" / "static"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")

SCRIPT = """
import { Wallet } from "./wallet.js";
import { signerFromSeed, TX_KIND, cancelTaskPayload } from "./tx.js";
const minFee = process.argv[2];
const rpc = { async call(method) {
  if (method === "chain_status") return { chainId: "ogpu-test" };
  if (method === "account_get") return { nonce: 4 };
  if (method === "gov_params") return { params: [{ name: "min_fee", value: minFee }] };
  if (method === "tx_send") return {};
  throw new Error(method);
} };
const wallet = new Wallet(rpc);
wallet.signer = await signerFromSeed(new Uint8Array(32).fill(7));
const sent = [];
const call = rpc.call;
rpc.call = async (method, params) => {
  if (method === "tx_send") sent.push(params.tx);
  return call(method, params);
};
try {
  await wallet.send(TX_KIND.CANCEL_TASK, cancelTaskPayload("11".repeat(32)));
  console.log(JSON.stringify({ tx: sent[0] }));
} catch (error) {
  console.log(JSON.stringify({ error: String(error.message) }));
}
"""


@pytest.fixture
def page(tmp_path: Path) -> Path:
    """The shipped scripts, as ES modules for Node.js, with the probe beside them."""
    page = tmp_path / "static"
    shutil.copytree(STATIC, page)
    (page / "package.json").write_text('{"type": "module"}')
    (page / "probe.js").write_text(SCRIPT)
    return page


def run_wallet(page: Path, min_fee: str) -> dict[str, str]:
    """What the wallet does when the node says `min_fee`: {tx: hex} or {error}."""
    assert NODE is not None
    done = subprocess.run([NODE, "probe.js", min_fee], cwd=page, capture_output=True,
                          text=True, timeout=60, check=True)
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_page_pays_the_fee_a_vote_raised(page: Path) -> None:
    tx = decode(Transaction, bytes.fromhex(run_wallet(page, "2000")["tx"]))
    assert (tx.fee, tx.nonce, tx.chain_id) == (2_000, 4, "ogpu-test")


def test_a_node_cannot_make_the_page_pay_more_than_the_ceiling(page: Path) -> None:
    ceiling = GOVERNABLE["min_fee"].high
    assert "error" in run_wallet(page, str(ceiling + 1))
    tx = decode(Transaction, bytes.fromhex(run_wallet(page, str(ceiling))["tx"]))
    assert tx.fee == ceiling
