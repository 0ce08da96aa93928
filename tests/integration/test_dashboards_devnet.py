"""The dashboards in a real headless browser (Debian's chromium and chromium-driver, driven by
selenium) against one live devnet shared by the module: each page loads with no console error,
shows what RPC says, follows a finalised block; the customer cancels a task and tops up a pool,
and a validator votes on a proposal, with the key file loaded in the page, signed there. The
provider page shows node1's agent (its decisions, benchmarks, earnings by period). The
browser's transaction and payload encoding is checked against Python's byte for byte. Last,
node1 stops and the network page says why node0 is unhealthy.

Screenshots go to $OGPU_ARTIFACTS, else tests/artifacts/ (git-ignored). Without /usr/bin/chromium
and /usr/bin/chromedriver (scripts/test installs them with apt when it may) the tests skip, or
fail where OGPU_REQUIRE_BROWSER is set (.ci/run). Waits are WebDriverWait on the DOM (polling the
page until a deadline), never sleeps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from ogpu_node import devnet
from ogpu_node.address import address_to_text
from ogpu_node.config import load_config
from ogpu_node.encoding import encode
from ogpu_node.genesis import dev_account_key, load_template
from ogpu_node.keys import PrivateKey, read_key_file, write_key_file
from ogpu_node.ledger.governance.records import Propose, Vote, VoteOption
from ogpu_node.ledger.market.payloads import (
    CancelTask,
    ClosePool,
    OpenPool,
    SubmitTask,
    TopUpPool,
)
from ogpu_node.ledger.tx import Payload, Transfer, sign_transaction
from ogpu_node.market_demo import CLIENT
from ogpu_node.polling import wait_until
from ogpu_node.sdk.sync_client import rpc_call, send_transaction
from ogpu_node.types import UNITS_PER_OGPU, Amount, Hash32, ogpu
from ogpu_node.workloads.spec import MatmulSpec
from tests.integration.node_logs import assert_no_traceback_through_our_code

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PAGE_TIMEOUT_S = 30.0
ONE_OGPU = UNITS_PER_OGPU
BID_WINDOW_MS = 90_000
"""Long enough that a task nobody bids on is still open when the test cancels it."""
GOV_DEPOSIT = ogpu(10)
UNREACHABLE_BENCHMARK = 10**9
"""A task's minimum benchmark no provider here reaches: it stays in bidding, and node1's agent
records why it skipped it."""

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("OGPU_ARTIFACTS") or Path(__file__).parents[1] / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def devnet_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One devnet of 2 validators, node1 a provider."""
    root = tmp_path_factory.mktemp("dash")
    template = load_template()
    template["params"] = {**template["params"], "bid_window_ms": BID_WINDOW_MS,
                          "gov_min_deposit": str(GOV_DEPOSIT)}
    template_path = root.parent / f"{root.name}-template.json"
    template_path.write_text(json.dumps(template))
    base = devnet.free_port_base(4)
    devnet.create(root, 2, base_p2p=base, base_rpc=base + 2, providers=1,
                  node_settings={1: {"provider_device": "cpu", "provider_benchmark": 400}},
                  template=template_path)
    devnet.start(root)
    try:
        devnet.wait_healthy(root)
        url = devnet.rpc_url(root / "node0")
        wait_until(lambda: rpc_call(url, "provider_list")["count"] == 1, "the provider registered",
                   timeout=60)
        yield root
    finally:
        devnet.stop(root)
        assert_no_traceback_through_our_code(root)


@pytest.fixture(scope="module")
def node(devnet_root: Path) -> str:
    """node0's RPC URL."""
    return devnet.rpc_url(devnet_root / "node0")


@pytest.fixture(scope="module")
def provider_node(devnet_root: Path) -> str:
    """node1's RPC URL: node1 runs the provider agent."""
    return devnet.rpc_url(devnet_root / "node1")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
        if os.environ.get("OGPU_REQUIRE_BROWSER"):  # set by .ci/run: CI must run these
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1440,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.set_script_timeout(PAGE_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser: Any, url: str) -> None:
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)


def console_errors(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(browser: Any, condition: Any, what: str) -> Any:
    """Poll `condition(browser)` until truthy. The pages rebuild their rows as data arrives, so an
    element found a moment ago may be gone: that counts as not yet."""
    return WebDriverWait(browser, PAGE_TIMEOUT_S,
                         ignored_exceptions=(NoSuchElementException,
                                             StaleElementReferenceException)
                         ).until(condition, message=what)


def read(browser: Any, css: str, attribute: str | None = None) -> str:
    """An element's text or attribute, read in one go (see `wait_for`)."""
    def value(d: Any) -> list[str]:
        found = d.find_element(By.CSS_SELECTOR, css)
        return [found.text if attribute is None else found.get_attribute(attribute)]
    return str(wait_for(browser, value, f"to read {css}")[0])


def text(browser: Any, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def screenshot(browser: Any, name: str, scroll_to: str | None = None) -> None:
    """The window as it is, or scrolled to the element `scroll_to` (an id) first."""
    if scroll_to is not None:
        browser.execute_script("document.getElementById(arguments[0]).scrollIntoView()",
                               scroll_to)
    browser.save_screenshot(str(artifacts_dir() / f"dashboard-{name}.png"))


# --- the transaction encoding -------------------------------------------------------------------

SEED = bytes(range(32))
JS_SIGN = """
const [done, cases] = [arguments[arguments.length - 1], arguments[0]];
(async () => {
  const { signerFromSeed, signTransaction, hexToBytes } = await import("/dashboard/static/tx.js");
  const { pack } = await import("/dashboard/static/msgpack.js");
  const signer = await signerFromSeed(hexToBytes(cases.seed));
  const txs = [];
  for (const c of cases.txs) {
    txs.push(await signTransaction(signer, { chainId: c.chainId, nonce: BigInt(c.nonce),
      fee: BigInt(c.fee), kind: c.kind, payload: hexToBytes(c.payload) }));
  }
  const values = cases.values.map((v) => pack(JSON.parse(v, (k, x) =>
    typeof x === "string" && x.startsWith("n:") ? BigInt(x.slice(2))
      : typeof x === "string" && x.startsWith("b:") ? hexToBytes(x.slice(2)) : x)));
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  done({ address: signer.address, txs: txs.map((t) => ({ hex: t.hex, hash: t.hash })),
         values: values.map(hex) });
})().catch((e) => done({ error: String(e) }));
"""

VALUES: list[Any] = [0, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**53 - 1, 2**64 - 1,
                     "", "a" * 31, "b" * 32, "é" * 200, "c" * 70_000, b"", b"\x01" * 255,
                     b"\x02" * 256, b"\x03" * 70_000, [], list(range(15)), list(range(16)),
                     [[1, [b"x", "y"]], 2]]


def as_js(value: Any) -> Any:
    """A value in the JSON the page's reviver turns back into BigInt / Uint8Array."""
    if isinstance(value, int):
        return f"n:{value}"
    if isinstance(value, bytes):
        return f"b:{value.hex()}"
    if isinstance(value, list):
        return [as_js(v) for v in value]
    return value


POOL = Hash32(bytes(range(32)))
CHANGES = (("min_fee", 2_000), ("provider_min_stake", 2**40 + 1), ("bid_window_ms", 4_000))
JS_PAYLOADS = """
const [done, c] = [arguments[arguments.length - 1], arguments[0]];
(async () => {
  const tx = await import("/dashboard/static/tx.js");
  const parse = (a) => {
    try { return String(tx.parseOgpu(a)); } catch (e) {
      return e instanceof tx.AmountError ? "refused" : String(e);
    }
  };
  done({
    cancel: tx.bytesToHex(tx.cancelTaskPayload(c.task)),
    close: tx.bytesToHex(tx.closePoolPayload(c.pool)),
    topUp: c.topUps.map((a) => tx.bytesToHex(tx.topUpPoolPayload(c.pool, BigInt(a)))),
    propose: tx.bytesToHex(tx.proposePayload(c.changes.map(([n, v]) => [n, BigInt(v)]),
      BigInt(c.deposit), c.title)),
    vote: c.votes.map(([id, option]) => tx.bytesToHex(tx.votePayload(id, option))),
    amounts: c.amounts.map(parse),
  });
})().catch((e) => done({ error: String(e) }));
"""


def test_the_browser_encodes_and_signs_transactions_as_python_does(node: str,
                                                                   browser: Any) -> None:
    key = PrivateKey.from_seed(SEED)
    payloads: list[Payload] = [CancelTask(Hash32(bytes([0xAB]) * 32)), ClosePool(POOL),
                               Transfer(dev_account_key(1).address, Amount(2**40 + 5)),
                               TopUpPool(POOL, 2**63 + 7), Propose(CHANGES, GOV_DEPOSIT, "é" * 40),
                               Vote(2**32, VoteOption.ABSTAIN)]
    nonces = [0, 300, 2**33, 1, 2, 3]
    expected = [sign_transaction(key, chain_id="ogpu-devnet", nonce=n, fee=1_000 + n, payload=p)
                for p, n in zip(payloads, nonces, strict=True)]
    cases = {"seed": SEED.hex(),
             "txs": [{"chainId": t.chain_id, "nonce": str(t.nonce), "fee": str(t.fee),
                      "kind": t.kind, "payload": t.payload.hex()} for t in expected],
             "values": [json.dumps(as_js(v)) for v in VALUES]}
    open_page(browser, node + "/dashboard/")
    result = browser.execute_async_script(JS_SIGN, cases)
    assert "error" not in result, result
    assert result["address"] == address_to_text(key.address)
    assert [t["hex"] for t in result["txs"]] == [t.encoded.hex() for t in expected]
    assert [t["hash"] for t in result["txs"]] == [t.hash.hex() for t in expected]
    assert result["values"] == [msgpack.packb(v, use_bin_type=True).hex() for v in VALUES]


def test_the_pages_build_each_payload_as_python_does(node: str, browser: Any) -> None:
    """The payload builders the pages call (tx.js), and the OGPU amounts typed in a page."""
    top_ups = [1, 127, 2**32, 2**64 - 1]
    votes = [(1, "yes"), (300, "no"), (2**33, "abstain")]
    cases = {"task": "ab" * 32, "pool": POOL.hex(), "topUps": [str(a) for a in top_ups],
             "changes": [[n, str(v)] for n, v in CHANGES], "deposit": str(GOV_DEPOSIT),
             "title": "raise the fee", "votes": votes,
             "amounts": ["2.5", "0.000000001", "10", " 3 ", "1.", "1.0000000001", "-1", "1e3",
                         "", "9999999999.999999999", "10000000000"]}
    open_page(browser, node + "/dashboard/")
    result = browser.execute_async_script(JS_PAYLOADS, cases)
    assert "error" not in result, result
    assert result["cancel"] == encode(CancelTask(Hash32(bytes([0xAB]) * 32))).hex()
    assert result["close"] == encode(ClosePool(POOL)).hex()
    assert result["topUp"] == [encode(TopUpPool(POOL, a)).hex() for a in top_ups]
    assert result["propose"] == encode(
        Propose(CHANGES, GOV_DEPOSIT, "raise the fee")).hex()
    assert result["vote"] == [encode(Vote(i, VoteOption[o.upper()])).hex()
                              for i, o in votes]
    assert result["amounts"] == [str(25 * ONE_OGPU // 10), "1", str(10 * ONE_OGPU),
                                 str(3 * ONE_OGPU), "refused", "refused", "refused", "refused",
                                 "refused", str(10**19 - 1), "refused"]


# --- the pages ----------------------------------------------------------------------------------


def test_the_network_page_shows_the_chain_and_follows_finalised_blocks(node: str,
                                                                        browser: Any) -> None:
    open_page(browser, node + "/dashboard/")
    validators = rpc_call(node, "validators_list")
    wait_for(browser, lambda d: text(d, "validator-count") == str(validators["count"]),
             "the validator count")
    stake = browser.find_element(By.ID, "total-stake").get_attribute("data-units")
    assert stake == validators["totalStake"]
    shown = int(wait_for(browser, lambda d: d.find_element(By.ID, "height")
                         .get_attribute("data-height"), "the height"))
    assert shown <= rpc_call(node, "chain_status")["height"]
    # A block finalised while the page is open: the head moves, the block is listed with the
    # latency this page saw, and the histogram has its first sample.
    wait_for(browser, lambda d: int(d.find_element(By.ID, "height").get_attribute("data-height"))
             > shown, "a newly finalised block")
    wait_for(browser, lambda d: text(d, "latency-median") not in ("—", "waiting…"),
             "a finality latency sample")
    newest = read(browser, "#blocks tr", "data-height")
    block = rpc_call(node, "chain_getBlock", {"block": int(newest)})
    assert block["height"] == int(newest)
    health = rpc_call(node, "node_health")
    assert health["healthy"] is True, health  # a healthy devnet: no reason to list
    assert read(browser, "#health", "data-healthy") == "true"
    assert text(browser, "health") == "healthy"
    assert browser.find_element(By.ID, "health-section").get_attribute("hidden") is not None
    screenshot(browser, "network")
    assert console_errors(browser) == []


def test_a_customer_sees_their_task_and_pool_and_cancels_and_closes_them(node: str, browser: Any,
                                                                  tmp_path: Path) -> None:
    client = dev_account_key(4)
    key_file = tmp_path / "client.json"
    write_key_file(key_file, client)
    assert read_key_file(key_file).address == client.address
    # No provider reaches this benchmark: the task stays in bidding (a long bid window) until
    # its client cancels it.
    spec = MatmulSpec(n=64, seed=5)
    receipt = send_transaction(node, client, SubmitTask(spec.KIND, encode(spec), 1_000_000,
                                                        10**9, 20_000, 180_000))
    task_id = receipt["hash"]
    assert receipt["state"] == "finalized", receipt
    task = rpc_call(node, "task_get", {"taskId": task_id})
    assert task["status"] == "bidding"
    # A pool whose budget pays 5 requests: under the page's low-balance line.
    pool_id = send_transaction(node, client, OpenPool("mlp-small", 64, ONE_OGPU, 5 * ONE_OGPU, 2, 0,
                                                      ONE_OGPU, 5_000, 600_000))["hash"]

    open_page(browser, node + "/dashboard/customer")
    wait_for(browser, lambda d: d.find_element(By.ID, "connection").text == "live", "the socket")
    browser.find_element(By.ID, "key-file").send_keys(str(key_file))
    wait_for(browser, lambda d: text(d, "address") == address_to_text(client.address),
             "the key's address")
    row = f'tr[data-task="{task_id}"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the task's row")
    assert read(browser, f"{row} [data-phase]", "data-phase") == "bidding"
    assert read(browser, f"{row} .budget", "data-units") == task["budget"]
    pool_row = f'tr[data-pool="{pool_id}"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, pool_row), "the pool's row")
    assert read(browser, f"{pool_row} .requests-left") == "5 — low balance"
    assert "warn" in read(browser, f"{pool_row} .requests-left", "class")
    screenshot(browser, "customer")

    # Top up 2.5 OGPU, signed in the page: the escrow on chain grows by exactly that.
    before = int(rpc_call(node, "pool_get", {"poolId": pool_id})["escrow"])
    added = 25 * ONE_OGPU // 10

    def type_and_top_up(d: Any) -> bool:
        field = d.find_element(By.ID, f"topup-amount-{pool_id}")
        field.clear()
        field.send_keys("2.5")
        if field.get_attribute("value") != "2.5":  # the row was rebuilt while typing
            return False
        d.find_element(By.ID, f"topup-{pool_id}").click()
        return True

    wait_for(browser, type_and_top_up, "a top-up of 2.5 OGPU typed and sent")
    wait_for(browser, lambda d: read(d, f"{pool_row} .escrow", "data-units") == str(before + added),
             "the pool's budget grown on the page")
    assert int(rpc_call(node, "pool_get", {"poolId": pool_id})["escrow"]) == before + added
    assert read(browser, f"{pool_row} .requests-left") == "7 — low balance"
    screenshot(browser, "customer-topped-up")

    wait_for(browser, lambda d: d.find_element(By.ID, f"close-{pool_id}").click() or True,
             "a click on Close")
    wait_for(browser, lambda d: read(d, f"{pool_row} .requests-left") == "closed",
             "the pool closed on the page")
    assert rpc_call(node, "pool_get", {"poolId": pool_id})["closed"] is True
    wait_for(browser, lambda d: d.find_element(By.ID, f"cancel-{task_id}").click() or True,
             "a click on Cancel")
    wait_for(browser, lambda d: read(d, f"{row} [data-phase]", "data-phase") == "closed",
             "the task closed on the page")
    closed = rpc_call(node, "task_get", {"taskId": task_id})
    assert closed["status"] == "closed" and closed["closeReason"] == "cancelled"
    assert rpc_call(node, "account_get", {"address": address_to_text(client.address)})[
        "nonce"] == 5  # submit and open here, top up, close and cancel signed in the page
    screenshot(browser, "customer-cancelled")
    assert console_errors(browser) == []


def agent_decision(url: str, task_id: str) -> dict[str, Any] | None:
    """The newest decision the node's provider agent recorded about `task_id`, if any."""
    provider = rpc_call(url, "agent_status")["provider"]
    return next((d for d in provider["decisions"] if d["taskId"] == task_id), None)


def test_the_provider_page_shows_the_providers_record_and_its_agent(
        node: str, provider_node: str, browser: Any) -> None:
    provider = rpc_call(node, "provider_list")["providers"][0]
    view = rpc_call(node, "provider_get", {"address": provider["address"]})
    # A task the provider cannot take: its agent records why it skipped it.
    spec = MatmulSpec(n=64, seed=11)
    task_id = send_transaction(node, dev_account_key(5), SubmitTask(
        spec.KIND, encode(spec), 1_000_000, UNREACHABLE_BENCHMARK, 20_000, 180_000))["hash"]
    wait_until(lambda: agent_decision(provider_node, task_id) is not None,
               "node1's agent decided about the task")

    # node1 runs the agent: its page defaults to the agent's provider
    open_page(browser, f"{provider_node}/dashboard/provider")
    wait_for(browser, lambda d: text(d, "provider-active") == "active", "the provider's status")
    assert browser.find_element(By.ID, "provider-address").get_attribute("value") == \
        provider["address"]
    assert text(browser, "benchmark") == f"{view['benchmark']:,}"
    assert text(browser, "reputation") == f"{view['reputationBps'] / 100:.1f} %"
    assert read(browser, "#devices tr td:first-child") == view["devices"][0]["model"]

    row = f'#decisions tr[data-task="{task_id}"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the skip on the page")
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#decisions tr[data-task]')].map((r) => "
        "[r.dataset.task, r.dataset.code, Number(r.dataset.height), r.cells[5].textContent])")
    agent = rpc_call(provider_node, "agent_status")["provider"]
    recorded = [[d["taskId"], d["code"], d["height"], d["text"]] for d in agent["decisions"]]
    # the page shows the newest decisions in the agent's order (newer ones may have come since)
    assert shown and shown[0] in recorded, (shown, recorded)
    assert shown == recorded[recorded.index(shown[0]):][:len(shown)], (shown, recorded)
    skip = agent_decision(provider_node, task_id)
    assert skip is not None and skip["code"] == "below_min_benchmark" and not skip["outcome"]
    assert read(browser, f"{row} td:nth-child(5)") == "skip: below_min_benchmark"
    assert read(browser, f"{row} td:nth-child(6)") == skip["text"]
    # benchmark history: the agent's measures (none for a declared benchmark)
    benchmarks = browser.execute_script(
        "return [...document.querySelectorAll('#benchmark-rows tr')].map((r) => "
        "[Number(r.dataset.height), Number(r.dataset.gflops)])")
    assert benchmarks == [[b["height"], b["gflops"]] for b in reversed(agent["benchmarks"])]
    device = agent["device"]
    assert device["name"] in text(browser, "agent-device")
    assert ("measured" if agent["benchmarkMeasured"] else "declared") in text(browser,
                                                                              "agent-device")

    # earnings by period: the page's buckets are the RPC's, for each period asked
    for period in ("hour", "epoch", "day"):
        wait_for(browser, lambda d, p=period: d.find_element(By.ID, f"period-{p}").click()
                 or True, f"a click on {period}")
        wait_for(browser, lambda d, p=period: d.find_element(By.ID, "earnings-periods")
                 .get_attribute("data-period") == p, f"earnings by {period}")
        earned = rpc_call(provider_node, "provider_earnings",
                          {"address": provider["address"], "period": period})
        nets = browser.execute_script(
            "return [...document.querySelectorAll('#earnings-periods tr[data-net]')]"
            ".map((r) => r.dataset.net)")
        assert nets == [b["net"] for b in earned["buckets"]]
    screenshot(browser, "provider")
    screenshot(browser, "provider-agent", scroll_to="earnings-periods")
    assert console_errors(browser) == []

    # node0 runs no provider agent: its page says so for the same provider
    open_page(browser, f"{node}/dashboard/provider?address={provider['address']}")
    assert rpc_call(node, "agent_status")["provider"] is None
    wait_for(browser, lambda d: "runs no provider agent" in text(d, "agent-state"),
             "the agent section on a node without an agent")
    assert browser.find_element(By.ID, "agent-body").get_attribute("hidden") is not None
    screenshot(browser, "provider-no-agent")
    assert console_errors(browser) == []


JS_BARS = """
const [done, buckets] = [arguments[arguments.length - 1], arguments[0]];
import("/dashboard/static/earnings_bars.js").then(({ netBars, bucketLabel }) => {
  const plot = netBars(buckets);
  const bars = [...plot.querySelectorAll("rect")];
  const zero = Number(plot.querySelector("line.axis").getAttribute("y1"));
  done({ labels: buckets.map(bucketLabel),
         bars: bars.map((b) => ({ neg: b.classList.contains("neg"),
           top: Number(b.getAttribute("y")),
           bottom: Number(b.getAttribute("y")) + Number(b.getAttribute("height")) })),
         zero });
}).catch((e) => done({ error: String(e) }));
"""


def test_the_earnings_plot_draws_a_negative_net_below_the_line(node: str, browser: Any) -> None:
    """A period whose slashes outweigh its pay (not reachable on this devnet in a minute)."""
    day_ms = 86_400_000
    buckets = [{"startMs": 2 * day_ms, "endMs": 3 * day_ms, "net": str(-ONE_OGPU // 2)},
               {"startMs": day_ms, "endMs": 2 * day_ms, "net": str(2 * ONE_OGPU)}]
    open_page(browser, node + "/dashboard/")
    result = browser.execute_async_script(JS_BARS, buckets)
    assert "error" not in result, result
    assert result["labels"] == ["1970-01-03", "1970-01-02"]
    older, newer = result["bars"]  # drawn oldest first
    assert (older["neg"], newer["neg"]) == (False, True)
    assert older["bottom"] == pytest.approx(result["zero"]) and older["top"] < result["zero"]
    assert newer["top"] == pytest.approx(result["zero"]) and newer["bottom"] > result["zero"]
    # 2 OGPU up is four times 0.5 OGPU down
    assert result["zero"] - older["top"] == pytest.approx(4 * (newer["bottom"] - result["zero"]))


def test_the_governance_page_shows_the_parameters_and_a_vote_cast_in_it(
        devnet_root: Path, node: str, browser: Any, tmp_path: Path) -> None:
    proposer = dev_account_key(6)
    receipt = send_transaction(node, proposer, Propose((("min_fee", 2_000),), GOV_DEPOSIT,
                                                       "double the minimum fee"))
    assert receipt["state"] == "finalized", receipt
    (proposal,) = [v for v in rpc_call(node, "gov_list")["proposals"]
                   if v["proposer"] == address_to_text(proposer.address)]
    number = proposal["id"]
    home = devnet_root / "node0"
    validator = read_key_file(home / load_config(home, environ={}).validator_key_file)
    key_file = tmp_path / "validator.json"
    write_key_file(key_file, validator)

    open_page(browser, f"{node}/dashboard/governance?proposal={number}")
    row = f'#proposals tr[data-proposal="{number}"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the proposal's row")
    params = rpc_call(node, "gov_params")["params"]
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#gov-params tr[data-param]')].map((r) => [r.dataset"
        ".param, r.querySelector('.value').dataset.value, r.querySelector('.bounds').dataset.low,"
        " r.querySelector('.bounds').dataset.high])")
    assert shown == [[prm["name"], str(prm["value"]), str(prm["low"]), str(prm["high"])]
                     for prm in params]
    assert "#" + str(number) in read(browser, '#gov-params tr[data-param="min_fee"] .proposed')
    assert read(browser, row, "data-status") == "voting"
    tally = rpc_call(node, "gov_get", {"proposalId": number})["tally"]
    assert read(browser, f"{row} .turnout", "data-bps") == str(tally["turnoutBps"])
    assert tally["voteCount"] == 0
    screenshot(browser, "governance")

    # the validator loads its key and votes yes in the page
    browser.find_element(By.ID, "key-file").send_keys(str(key_file))
    voter = address_to_text(validator.address)
    wait_for(browser, lambda d: text(d, "address") == voter, "the validator's address")
    wait_for(browser, lambda d: d.find_element(By.ID, f"vote-{number}-yes").click() or True,
             "a click on yes")
    wait_for(browser, lambda d: read(d, f"{row} .votes", "data-count") == "1",
             "the vote counted on the page")
    counted = rpc_call(node, "gov_get", {"proposalId": number})
    assert [(v["voter"], v["option"]) for v in counted["votes"]] == [(voter, "yes")]
    assert counted["tally"]["yes"] == counted["votes"][0]["stake"] != "0"
    wait_for(browser, lambda d: read(d, f'#votes tr[data-voter="{voter}"]', "data-option")
             == "yes", "the vote in the proposal's detail")
    assert read(browser, f"{row} .yes", "data-bps") == str(counted["tally"]["yesBps"])
    screenshot(browser, "governance-voted")
    screenshot(browser, "governance-params", scroll_to="gov-params")
    assert console_errors(browser) == []


def test_the_dashboard_answers_carry_a_strict_policy(node: str) -> None:
    page = httpx.get(node + "/dashboard/customer")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = httpx.get(node + "/dashboard/static/tx.js")
    assert script.headers["content-type"].startswith("text/javascript")
    again = httpx.get(node + "/dashboard/static/tx.js",
                      headers={"if-none-match": script.headers["etag"]})
    assert again.status_code == 304
    assert httpx.get(node + "/dashboard/static/../../keys.py").status_code == 404


def test_the_welcome_text_names_the_dashboards_and_writes_loadable_key_files(
        devnet_root: Path, node: str, capsys: pytest.CaptureFixture[str]) -> None:
    devnet.print_welcome(devnet_root)
    out = capsys.readouterr().out
    for path in ("/dashboard/", "/dashboard/customer", "/dashboard/provider",
                 "/dashboard/governance"):
        assert f"{node}{path}" in out.split()
        assert httpx.get(node + path).status_code == 200
    key_file = devnet_root / "dev-keys" / f"account{CLIENT}.json"
    assert str(key_file.parent) in out
    assert read_key_file(key_file).address == dev_account_key(CLIENT).address


def health_codes(url: str) -> list[str]:
    return [r["code"] for r in rpc_call(url, "node_health")["reasons"]]


def test_the_network_page_says_why_its_node_is_unhealthy(devnet_root: Path, node: str,
                                                          browser: Any) -> None:
    """Last in the module: it stops node1, so node0 sees no peer and not enough stake."""
    open_page(browser, node + "/dashboard/")
    wait_for(browser, lambda d: read(d, "#health", "data-healthy") == "true", "a healthy node0")
    devnet.stop(devnet_root, only=["node1"])
    wait_until(lambda: rpc_call(node, "node_health")["healthy"] is False, "node0 unhealthy")

    def page_codes(d: Any) -> list[str]:
        return list(d.execute_script(
            "return [...document.querySelectorAll('#health-reasons tr[data-code]')]"
            ".map((r) => r.dataset.code)"))

    # the page polls health every few seconds; reasons can still change, so compare to RPC
    wait_for(browser, lambda d: page_codes(d) and page_codes(d) == health_codes(node),
             "the reasons on the page equal node_health's")
    assert text(browser, "health") == "unhealthy"
    assert "no_peers" in page_codes(browser)
    messages = {r["code"]: r["message"] for r in rpc_call(node, "node_health")["reasons"]}
    assert read(browser, '#health-reasons tr[data-code="no_peers"] td:nth-child(2)') == \
        messages["no_peers"]
    screenshot(browser, "network-unhealthy")
    assert console_errors(browser) == []
