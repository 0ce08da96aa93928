"""The operator and user command lines, driven as a user would (click's runner, real files)."""

from __future__ import annotations

import inspect
import json
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
import trio
import trio.testing
from click.testing import CliRunner

from gpu.inputs import encode_inputs
from ogpu_node import devnet
from ogpu_node.address import address_to_text
from ogpu_node.blobs import MAX_CHUNK_BYTES, file_id
from ogpu_node.cli.market_cli import build_submit, load_task_file, metrics_text
from ogpu_node.cli.node_cli import main as node_cli
from ogpu_node.cli.user_cli import main as user_cli
from ogpu_node.config import load_config
from ogpu_node.genesis import Genesis, build_genesis, load_genesis, load_template
from ogpu_node.keys import PrivateKey, read_key_file, write_key_file
from ogpu_node.ledger.tx import Transfer, decode_transaction
from ogpu_node.node_home import dialable
from ogpu_node.types import Hash32, format_amount
from ogpu_node.types import ogpu as ogpu_units
from ogpu_node.workloads.kinds import decode_spec
from ogpu_node.workloads.spec import InferSpec, MatmulSpec, TrainSpec
from tests.rpc.conftest import serving
from tests.rpc.local_node import LOCAL_P2P_ADDRESS, LocalNode
from tests.rpc.market import OUTPUT, Market


def run(cli: object, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))  # type: ignore[arg-type]
    return result.exit_code, result.output


def test_init_writes_config_and_private_keys_and_never_prints_secrets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, out = run(node_cli, "init", "--home", str(home), "--json")
    assert code == 0, out
    info = json.loads(out)
    for name in ("node_key.json", "validator_key.json"):
        path = home / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secret = json.loads(path.read_text())["private_key"]
        assert secret not in out
    assert (home / "config.toml").exists()
    # Running init again keeps the keys.
    code, again = run(node_cli, "init", "--home", str(home), "--json")
    assert code == 0 and json.loads(again)["validator_address"] == info["validator_address"]
    code, shown = run(node_cli, "keys", "show", "--home", str(home), "--json")
    assert json.loads(shown)["address"] == info["validator_address"]


def test_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    code, out = run(node_cli, "keys", "show", str(tmp_path / "missing.json"))
    assert code == 1
    assert out.startswith("error: cannot read key file") and "Traceback" not in out
    (tmp_path / "g.json").write_text("{}")
    code, out = run(node_cli, "genesis", "validate", str(tmp_path / "g.json"))
    assert code == 1 and "missing" in out


def test_genesis_new_makes_homes_that_share_one_valid_genesis(tmp_path: Path) -> None:
    homes = tmp_path / "devnet"
    code, out = run(node_cli, "genesis", "new", "--validators", "3", "--homes", str(homes),
                    "--dev-accounts", "4", "--json")
    assert code == 0, out
    assert (homes / "node2" / "genesis.json").read_text() == (homes / "genesis.json").read_text()
    code, out = run(node_cli, "genesis", "validate", str(homes / "genesis.json"), "--json")
    assert code == 0 and json.loads(out)["validators"] == "3"


def test_user_cli_signs_a_transfer_offline(tmp_path: Path) -> None:
    key = tmp_path / "me.json"
    code, out = run(user_cli, "account", "new", str(key), "--json")
    assert code == 0, out
    me = json.loads(out)["address"]
    code, out = run(user_cli, "sign", "transfer", "--key", str(key), "--chain-id", "ogpu-devnet",
                    "--nonce", "0", "--to", me, "--amount", "1.5", "--json")
    assert code == 0, out
    payload = decode_transaction(bytes.fromhex(json.loads(out)["tx"])).decode_payload()
    assert isinstance(payload, Transfer) and payload.amount == 1_500_000_000
    code, out = run(user_cli, "sign", "transfer", "--key", str(key), "--chain-id", "ogpu-devnet",
                    "--nonce", "0", "--to", me[:-1] + ("q" if me[-1] != "q" else "p"),
                    "--amount", "1")
    assert code == 1 and "checksum" in out


# --- the GPU market: `ogpu task ...` and `ogpu provider ...` against a served node ---------------


class AgentReportStub:
    """A provider agent's report as `agent_status` gives it (the agent's own content is tested
    in tests/node/test_market_agents.py; this tests how the CLI prints it)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def status_report(self) -> dict[str, Any]:
        def decision(task: str, code: str, text: str, height: int, kind: str,
                     attempt: int) -> dict[str, Any]:
            return {"taskId": task * 32, "attempt": attempt, "kind": kind, "height": height,
                    "code": code, "text": text, "outcome": code in ("bid", "won", "lost")}

        return {"address": self.address, "jobs": [],
                "modelsRefused": [{"fileId": "ef" * 32, "code": "model_refused",
                                   "text": "opset 99"}],
                "decisions": [decision("ab", "lost", "awarded to someone at 7 per unit", 9,
                                       "train", 1),
                              decision("cd", "below_min_benchmark", "too slow", 4, "matmul", 2)]}


async def ogpu(url: str, *args: str) -> tuple[int, str]:
    """`ogpu --rpc URL ARGS` in a worker thread, so that the node keeps serving meanwhile."""
    return await trio.to_thread.run_sync(lambda: run(user_cli, "--rpc", url, *args))


async def produce_blocks(node: LocalNode) -> None:
    """Finalise whatever the CLI sends, one block per arrival."""
    while True:
        await node.wait_until(lambda: bool(node.mempool))
        node.produce_block()


MATMUL_TOML = """
kind = "matmul"
n = 1024
seed = 1
max_price = "1"
exec_s = 20
ttl_s = 200
"""


async def test_task_submit_watch_result_and_provider_commands(tmp_path: Path) -> None:
    node = LocalNode(tmp_path / "blobs")
    market = Market(node)
    async with serving(node) as rpc, trio.open_nursery() as blocks:
        blocks.start_soon(produce_blocks, node)
        url = rpc.address.http_url
        code, out = await ogpu(url, "provider", "register", "--dev-account", "1", "--device",
                               "test-gpu:16000", "--benchmark", "1000", "--floor", "1000u",
                               "--stake", "500")
        assert code == 0 and out.startswith("finalized in block"), out
        (tmp_path / "task.toml").write_text(MATMUL_TOML)
        code, out = await ogpu(url, "task", "submit", "--file", str(tmp_path / "task.toml"),
                               "--dev-account", "0", "--json")
        assert code == 0, out
        submitted = json.loads(out)
        task_id = Hash32(bytes.fromhex(submitted["taskId"]))
        assert (submitted["kind"], submitted["workUnits"], submitted["status"]) == (
            "matmul", 3, "bidding")
        assert node.state.tasks[task_id].client == market.client.address

        watched: dict[str, tuple[int, str]] = {}

        async def watch() -> None:
            watched["out"] = await ogpu(url, "task", "watch", task_id.hex(), "--timeout", "30")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await node.wait_until(lambda: node.task_subscribers == 1)
            await market.fund_validator()
            # A view shows the task when it is sent: let each step reach the watcher before
            # the next (on a real chain blocks are that far apart).
            price = ogpu_units(1) // 4
            for step in (lambda: market.bid(market.provider_a, task_id, price),  # the only
                         # provider: nobody else can bid, so its bid ends the bid window
                         lambda: market.reveal(market.provider_a, task_id, price),  # award
                         lambda: node.report_progress(market.provider_a, task_id, 5_000),
                         lambda: market.commit_result(task_id),
                         lambda: market.vote(task_id, True)):
                outcome = step()
                if inspect.isawaitable(outcome):
                    await outcome
                await trio.testing.wait_all_tasks_blocked()
        code, out = watched["out"]
        assert code == 0, out
        for line in ("attempt 1: bidding, 0 sealed bid(s)", "revealing, 0/1 bid(s) revealed",
                     f"running on {address_to_text(market.provider_a.address)} at",
                     "no progress report yet", "50%", "verifying, committee drawn at height",
                     "closed: completed", "money trail of task", "provider_collateral_locked",
                     "payment", "verifier_fee", "refund", "result metrics: loss 0.001234"):
            assert line in out, (line, out)

        code, out = await ogpu(url, "task", "result", task_id.hex(), "-o",
                               str(tmp_path / "out.bin"), "--json", "--dev-account", "0")
        assert code == 0, out
        assert (tmp_path / "out.bin").read_bytes() == OUTPUT  # opened with the client's key
        result = market.task(task_id).attempt.result
        assert result is not None and json.loads(out)["fileId"] == result.output_id.hex()
        assert json.loads(out)["metrics"] == {"loss_micros": 1234}
        code, out = await ogpu(url, "task", "result", task_id.hex(), "-o",
                               str(tmp_path / "out.bin"), "--dev-account", "0")
        assert code == 0 and "metrics  loss 0.001234" in out, out
        code, out = await ogpu(url, "task", "result", task_id.hex(), "-o",
                               str(tmp_path / "other.bin"), "--dev-account", "1")
        assert code != 0 and "only the task's client" in out, out

        code, out = await ogpu(url, "task", "why", task_id.hex())
        assert code == 0 and "did not end for lack of bids" in out, out
        code, out = await ogpu(url, "task", "list", "--json", "--status", "closed")
        assert [t["id"] for t in json.loads(out)["tasks"]] == [task_id.hex()]
        code, out = await ogpu(url, "task", "list")
        assert code == 0 and task_id.hex() in out and "closed (completed)" in out, out

        payment = node.state.tasks[task_id].payment
        code, out = await ogpu(url, "provider", "status", "--dev-account", "1")
        assert code == 0 and "1 completed, 0 failed" in out and "test-gpu (16000 MB)" in out
        assert "skipped" not in out  # this node runs no provider agent
        node.agents.provider = AgentReportStub(address_to_text(market.provider_a.address))
        code, out = await ogpu(url, "provider", "status", "--dev-account", "1")
        assert code == 0 and (f"lost      {'ab' * 6} (train, attempt 1, block 9): awarded "
                              "to someone at 7 per unit") in out, out
        assert (f"skipped   {'cd' * 6} (matmul, attempt 2, block 4): below_min_benchmark: "
                "too slow") in out, out
        assert f"model     {'ef' * 6} refused: model_refused: opset 99" in out, out
        code, out = await ogpu(url, "provider", "status", "--dev-account", "1", "--json")
        assert json.loads(out)["agent"]["decisions"][0]["code"] == "lost"
        code, out = await ogpu(url, "provider", "earnings",
                               address_to_text(market.provider_a.address), "--json")
        assert code == 0, out
        assert json.loads(out)["earned"] == str(payment)
        code, out = await ogpu(url, "provider", "earnings", "--dev-account", "1")
        assert code == 0 and "from 1 task(s)" in out, out
        code, out = await ogpu(url, "provider", "earnings", "--dev-account", "1", "--by", "day")
        day = time.strftime("%Y-%m-%d", time.gmtime(node.state.timestamp / 1000))
        [row] = [line.split() for line in out.splitlines() if line.startswith(day)]
        assert code == 0 and row == [day, format_amount(payment), "0", "0",
                                     format_amount(payment)], out
        code, out = await ogpu(url, "provider", "earnings", "--dev-account", "3", "--by",
                               "epoch")
        assert code == 0 and "nothing paid to or taken from" in out, out
        blocks.cancel_scope.cancel()


async def test_task_submit_from_flags_cancel_why_and_failures(tmp_path: Path) -> None:
    node = LocalNode(tmp_path / "blobs")
    async with serving(node) as rpc, trio.open_nursery() as blocks:
        blocks.start_soon(produce_blocks, node)
        url = rpc.address.http_url
        code, out = await ogpu(url, "task", "submit", "--kind", "matmul", "--n", "512",
                               "--max-price", "250000u", "--min-benchmark", "99999",
                               "--dev-account", "0", "--json")
        assert code == 0, out
        task_id = json.loads(out)["taskId"]
        task = node.state.tasks[Hash32(bytes.fromhex(task_id))]
        assert (task.max_price, task.min_benchmark, task.exec_ms) == (250_000, 99_999, 60_000)

        code, out = await ogpu(url, "task", "why", task_id, "--json")
        assert json.loads(out)["code"] == "not_a_provider"
        code, out = await ogpu(url, "task", "result", task_id, "-o", str(tmp_path / "x"),
                               "--dev-account", "0")
        assert code == 1 and "has no result" in out

        code, out = await ogpu(url, "task", "cancel", task_id, "--dev-account", "0")
        assert code == 0 and "finalized" in out, out
        code, out = await ogpu(url, "task", "watch", task_id, "--json")
        assert code == 3, out  # closed, but not completed
        assert json.loads(out)["closeReason"] == "cancelled"
        code, out = await ogpu(url, "task", "watch", task_id)
        assert code == 3 and "closed: cancelled" in out and "refund" in out

        code, out = await ogpu(url, "task", "watch", "ab" * 32)
        assert code == 1 and "no task" in out, out
        code, out = await ogpu(url, "task", "watch", "abc")
        assert code == 2 and "64 hex digits" in out
        code, out = await ogpu(url, "provider", "status", "--dev-account", "3")
        assert code == 1 and "provider not found" in out, out
        code, out = await ogpu(url, "task", "cancel", task_id, "--dev-account", "0")
        assert code == 1 and "wrong_phase" in out, out
        blocks.cancel_scope.cancel()


async def test_task_submit_uploads_inputs_chunk_by_chunk_and_names_them(tmp_path: Path) -> None:
    node = LocalNode(tmp_path / "blobs")
    gen = np.random.default_rng(0)
    a, b = gen.normal(size=(512, 512)), gen.normal(size=(512, 512))  # 2 MiB: three chunks
    np.savez(tmp_path / "ab.npz", A=a, B=b)
    np.savez(tmp_path / "wrong.npz", A=a, B=b[:10])
    (tmp_path / "task.toml").write_text('kind = "matmul"\nn = 512\nmax_price = "1"\n'
                                        'inputs = "ab.npz"\n')
    spec = MatmulSpec(512, 0)
    expected = file_id(encode_inputs(spec, {"A": a, "B": b}))
    async with serving(node) as rpc, trio.open_nursery() as blocks:
        blocks.start_soon(produce_blocks, node)
        url = rpc.address.http_url
        code, out = await ogpu(url, "task", "submit", "--kind", "matmul", "--n", "512",
                               "--max-price", "1", "--inputs", str(tmp_path / "ab.npz"),
                               "--dev-account", "0", "--json")
        assert code == 0, out
        task = node.state.tasks[Hash32(bytes.fromhex(json.loads(out)["taskId"]))]
        assert decode_spec(task.kind, task.spec) == replace(spec, inputs=expected)
        assert node.blobs is not None
        uploaded = node.blobs.get_file(expected)
        assert uploaded is not None and len(uploaded) > 2 * MAX_CHUNK_BYTES
        # the task file names its inputs relative to itself
        code, out = await ogpu(url, "task", "submit", "--file", str(tmp_path / "task.toml"),
                               "--dev-account", "0", "--json")
        assert code == 0, out
        view = await rpc.result("task_get", [json.loads(out)["taskId"]])
        assert view["spec"]["inputs"] == expected.hex()
        # inputs that do not fit the spec are refused before anything is sent
        height = node.state.height
        code, out = await ogpu(url, "task", "submit", "--kind", "matmul", "--n", "512",
                               "--max-price", "1", "--inputs", str(tmp_path / "wrong.npz"),
                               "--dev-account", "0")
        assert code == 2 and "this task needs A 512x512, B 512x512" in out, out
        code, out = await ogpu(url, "task", "submit", "--kind", "matmul", "--n", "512",
                               "--max-price", "1", "--inputs", str(tmp_path / "task.toml"),
                               "--dev-account", "0")
        assert code == 2 and "neither an .npz nor an artifact" in out, out
        assert node.state.height == height
        blocks.cancel_scope.cancel()


def test_result_metrics_read_in_their_units() -> None:
    assert metrics_text({"val_loss_micros": 42_760, "val_accuracy_bps": 9_906,
                         "runtime": 7}) == "runtime 7, val_accuracy 99.06%, val_loss 0.042760"


def test_task_files_are_checked_before_anything_is_sent(tmp_path: Path) -> None:
    train = tmp_path / "train.toml"
    train.write_text('kind = "train"\nseed = 3\nn_features = 16\nhidden = [32, 32]\n'
                     'n_classes = 4\nn_samples = 256\nbatch = 32\nsteps = 40\n'
                     'lr_micros = 50000\ncheckpoint_every = 10\nmax_price = "0.001"\n')
    payload = build_submit(load_task_file(train))
    spec = decode_spec(payload.kind, payload.spec)
    assert isinstance(spec, TrainSpec) and spec.hidden == (32, 32)
    assert (payload.max_price, payload.exec_ms, payload.ttl_ms) == (1_000_000, 60_000, 600_000)
    infer = build_submit({"kind": "infer", "model": "mlp-small", "batch": 8,
                          "max_price": "7u", "exec_s": 1.5})
    assert isinstance(decode_spec(infer.kind, infer.spec), InferSpec)
    assert (infer.max_price, infer.exec_ms) == (7, 1_500)

    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "matmul", "n": 8, "max_price": 1}, "give it as text"),
        ({"kind": "matmul", "n": 8}, "missing field(s) for a matmul task: max_price"),
        ({"kind": "matmul", "n": 8, "max_price": "1", "steps": 3}, "unknown field(s)"),
        ({"kind": "matmul", "n": 0, "max_price": "1"}, "n must be within"),
        ({"kind": "video", "max_price": "1"}, "kind: expected one of matmul, train, infer"),
        ({"kind": "matmul", "n": 8, "max_price": "1.0000000001"}, "at most 9 decimals"),
    ]
    for fields, problem in cases:
        with pytest.raises(click.ClickException) as raised:
            build_submit(fields)
        assert problem in raised.value.format_message(), fields
    (tmp_path / "bad.toml").write_text("kind = ")
    code, out = run(user_cli, "--rpc", "http://127.0.0.1:9", "task", "submit", "--file",
                    str(tmp_path / "bad.toml"), "--dev-account", "0")
    assert code == 2 and "cannot read task file" in out


async def test_stake_and_unstake_say_when_they_take_effect(tmp_path: Path) -> None:
    node = LocalNode()
    epoch = node.state.params.epoch_length
    async with serving(node) as rpc, trio.open_nursery() as blocks:
        blocks.start_soon(produce_blocks, node)
        url = rpc.address.http_url
        staker = node.users()[2]
        address = address_to_text(staker.address)
        minimum = node.state.params.min_validator_stake
        code, out = await ogpu(url, "stake", "10000", "--dev-account", "2", "--json")
        assert code == 0, out
        staked = json.loads(out)
        height = staked["height"]
        assert staked["state"] == "finalized"
        assert staked["epochBoundary"] == -(-height // epoch) * epoch
        assert node.state.account(staker.address).stake == ogpu_units(10_000) >= minimum

        code, out = await ogpu(url, "stake", "1", "--dev-account", "3")
        assert code == 0, out
        assert "below the validator minimum of 10000 OGPU" in out, out
        code, out = await ogpu(url, "stake", "1", "--dev-account", "2")
        assert code == 0 and "stake 10001 OGPU counts from the epoch boundary at height" in out

        code, out = await ogpu(url, "unstake", "4000", "--dev-account", "2", "--json")
        assert code == 0, out
        unstaked = json.loads(out)
        release = unstaked["height"] + node.state.params.unbonding_period
        assert unstaked["releaseHeight"] == release
        code, out = await ogpu(url, "balance", address)
        assert code == 0 and "stake      6001 OGPU" in out, out
        assert f"unbonding  4000 OGPU; 4000 OGPU returns at height {release}" in out, out

        code, out = await ogpu(url, "unstake", "7000", "--dev-account", "2")
        assert code == 1 and "stake" in out and "below" in out, out
        code, out = await ogpu(url, "stake", "-1", "--dev-account", "2")
        assert code == 2, out
        blocks.cancel_scope.cancel()


async def test_join_writes_a_home_on_the_served_chain_and_checks_a_providers_funds(
        tmp_path: Path) -> None:
    node = LocalNode()
    async with serving(node) as rpc:
        url = rpc.address.http_url

        async def join(*args: str) -> tuple[int, str]:
            return await trio.to_thread.run_sync(
                lambda: run(node_cli, "join", "--rpc", url, "--no-start", *args))

        home = tmp_path / "joined"
        code, out = await join("--home", str(home), "--moniker", "newcomer",
                               "--p2p-listen", "/ip4/127.0.0.1/tcp/30001", "--json")
        assert code == 0, out
        joined = json.loads(out)
        assert joined["genesis_hash"] == node.genesis.hash.hex()
        assert load_genesis(home / "genesis.json").hash == node.genesis.hash
        config = load_config(home, environ={})
        assert (config.moniker, config.bootstrap_peers, config.p2p_listen, config.provider) == (
            "newcomer", [LOCAL_P2P_ADDRESS], "/ip4/127.0.0.1/tcp/30001", False)
        assert joined["address"] == address_to_text(
            read_key_file(home / "validator_key.json").address)

        # a provider needs its bond first: the message says how much, to which address
        code, out = await join("--home", str(home), "--provider", "--provider-stake", "500")
        assert code == 1 and f"{joined['address']} holds 0 OGPU; send it at least 501 OGPU" in out
        assert load_config(home, environ={}).provider_stake == ogpu_units(500)

        # a funded key of one's own: the home signs with it
        funded = tmp_path / "funded.json"
        write_key_file(funded, node.users()[1])
        provider_home = tmp_path / "provider"
        code, out = await join("--home", str(provider_home), "--key", str(funded), "--provider",
                               "--price-floor", "1000", "--device", "cpu", "--benchmark", "50",
                               "--json")
        assert code == 0, out
        assert json.loads(out)["address"] == address_to_text(node.users()[1].address)
        config = load_config(provider_home, environ={})
        assert (config.provider, config.provider_price_floor, config.provider_device,
                config.provider_benchmark) == (True, 1000, "cpu", 50)
        code, out = await join("--home", str(provider_home),
                               "--key", str(home / "validator_key.json"))
        assert code == 1 and "already holds another key" in out, out

        code, out = await join("--home", str(tmp_path / "other"), "--genesis-hash", "ab" * 32)
        assert code == 1 and "not the " + "ab" * 32 in out, out
        other = make_genesis_for("another-chain")
        other.write(tmp_path / "elsewhere" / "genesis.json")
        code, out = await join("--home", str(tmp_path / "elsewhere"))
        assert code == 1 and "another chain's genesis" in out, out


def make_genesis_for(chain_id: str) -> Genesis:
    validator = PrivateKey.from_seed(b"\x01" * 32).public_key.raw
    return build_genesis(load_template(), [("v", validator)], genesis_time_ms=1,
                         chain_id=chain_id)


def test_a_listen_address_on_every_interface_is_dialled_at_the_rpc_host() -> None:
    addr = "/ip4/0.0.0.0/tcp/26656/p2p/12D3KooWx"
    assert dialable(addr, "http://10.1.2.3:8545") == "/ip4/10.1.2.3/tcp/26656/p2p/12D3KooWx"
    assert dialable("/ip4/127.0.0.1/tcp/1/p2p/x", "http://10.1.2.3:8545") == (
        "/ip4/127.0.0.1/tcp/1/p2p/x")


def test_devnet_add_provider_without_a_devnet_says_so(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert devnet.main(["add-provider", "--dir", str(tmp_path / "none")]) == 1
    assert "no devnet in" in capsys.readouterr().err
