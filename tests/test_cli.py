"""The operator and user command lines, driven as a user would (click's runner, real files)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner

from ogpu_node.cli.node_cli import main as node_cli
from ogpu_node.cli.user_cli import main as user_cli
from ogpu_node.ledger.tx import Transfer, decode_transaction


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
