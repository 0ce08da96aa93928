"""Configuration precedence: flags > OGPU_* environment > config.toml > defaults."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner

from consensus.params import Parameters
from ogpu_node.agents.provider import FAULTS, ProviderPolicy
from ogpu_node.agents.verifier import VerifierPolicy
from ogpu_node.blobs import BlobStore
from ogpu_node.cli.node_cli import main as node_cli
from ogpu_node.cli.node_cli import parse_set
from ogpu_node.config import (
    CHOICES,
    CONFIG_FILE,
    CPU_LISTS,
    SETTINGS,
    Config,
    ConfigError,
    Setting,
    load_config,
    settings_markdown,
)
from ogpu_node.devnet import LOCALHOST, NodePlace, write_node_config
from ogpu_node.node.mempool import MempoolLimits
from ogpu_node.node.run import provider_policy, verifier_policy
from ogpu_node.node.settings import NodeSettings
from ogpu_node.rpc.config import RpcConfig
from p2p.connection_settings import ConnectionSettings


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text('moniker = "from-file"\nrpc_listen = "127.0.0.1:1"\n'
                                        'log_level = "debug"\n')
    env = {"OGPU_RPC_LISTEN": "127.0.0.1:2", "OGPU_LOG_LEVEL": "warning"}
    config = load_config(tmp_path, flags={"log_level": "error", "moniker": None}, environ=env)
    assert config.moniker == "from-file"          # file beats default; a None flag is unset
    assert config.rpc_listen == "127.0.0.1:2"     # env beats file
    assert config.log_level == "error"            # flag beats env
    assert config.p2p_listen == Config().p2p_listen  # default


def test_every_setting_has_an_environment_variable(tmp_path: Path) -> None:
    env = {"OGPU_BOOTSTRAP_PEERS": "/ip4/127.0.0.1/tcp/1/p2p/A, /ip4/127.0.0.1/tcp/2/p2p/B",
           "OGPU_DATA_DIR": "elsewhere"}
    config = load_config(tmp_path, environ=env)
    assert config.bootstrap_peers == ["/ip4/127.0.0.1/tcp/1/p2p/A", "/ip4/127.0.0.1/tcp/2/p2p/B"]
    assert config.path(config.data_dir) == tmp_path / "elsewhere"


def test_written_config_reads_back(tmp_path: Path) -> None:
    config = Config(home=tmp_path, moniker="n1", bootstrap_peers=["x"])
    (tmp_path / CONFIG_FILE).write_text(config.to_toml())
    assert load_config(tmp_path, environ={}) == config


@pytest.mark.parametrize("text", ['unknown_setting = "x"\n', "moniker = 5\n", "moniker = \n"])
def test_bad_config_files_are_refused_with_the_setting_named(tmp_path: Path, text: str) -> None:
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(ConfigError):
        load_config(tmp_path, environ={})


def test_cpu_lists_are_read_like_taskset_and_bad_ones_name_the_setting(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text('cpus = "0-2, 5"\n')
    config = load_config(tmp_path, environ={"OGPU_PROVIDER_CPUS": "7"})
    assert config.cpu_set == {0, 1, 2, 5} and config.provider_cpu_set == {7}
    assert load_config(tmp_path / "none", environ={}).cpu_set == frozenset()  # default: all
    for bad in ("x", "3-1", "1-", "-1", "0.5", "²", "0-36000000000", "8192", "0-" + "9" * 5000):
        with pytest.raises(ConfigError, match=r"provider_cpus \(from OGPU_PROVIDER_CPUS\)"):
            load_config(tmp_path, environ={"OGPU_PROVIDER_CPUS": bad})


def test_blob_store_settings_parse_and_start_where_the_store_does(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("blob_grace_s = 60\n")
    env = {"OGPU_BLOB_MAX_BYTES": "1000000", "OGPU_BLOB_RETENTION_S": "7200.5"}
    config = load_config(tmp_path, environ=env)
    assert (config.blob_max_bytes, config.blob_grace_s, config.blob_retention_s) == (
        1_000_000, 60.0, 7_200.5)
    with pytest.raises(ConfigError, match=r"blob_max_bytes \(from OGPU_BLOB_MAX_BYTES\)"):
        load_config(tmp_path, environ={"OGPU_BLOB_MAX_BYTES": "-1"})
    store = BlobStore(tmp_path / "blobs")
    assert (Config().blob_max_bytes, Config().blob_grace_s) == (store.max_bytes, store.grace_s)


def test_upload_settings_parse_and_start_where_the_rpc_server_does(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("rpc_upload_quota_bytes = 16777216\n")
    env = {"OGPU_RPC_UPLOADS": "off", "OGPU_RPC_UPLOAD_WINDOW_S": "600"}
    config = load_config(tmp_path, environ=env)
    assert (config.rpc.uploads, config.rpc.upload_quota_bytes, config.rpc.upload_window_s) == (
        False, 16_777_216, 600.0)
    # a quota under one upload cannot work: refused when the settings are read
    with pytest.raises(ConfigError, match=r"rpc_upload_quota_bytes must be 0 \(off\) or at "):
        load_config(tmp_path, environ={"OGPU_RPC_UPLOAD_QUOTA_BYTES": "1048576"})
    with pytest.raises(ConfigError, match=r"rpc_uploads \(from OGPU_RPC_UPLOADS\)"):
        load_config(tmp_path, environ={"OGPU_RPC_UPLOADS": "maybe"})
    with pytest.raises(ConfigError, match="rpc_upload_quota_bytes"):
        load_config(tmp_path, environ={"OGPU_RPC_UPLOAD_QUOTA_BYTES": "-1"})
    assert Config().rpc == RpcConfig()


def test_a_devnet_node_serves_uploads_whatever_its_home_said(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("rpc_uploads = false\nrpc_upload_quota_bytes = 0\n")
    write_node_config(tmp_path, NodePlace(LOCALHOST, 26656, LOCALHOST, 8545), [])
    config = load_config(tmp_path, environ={})
    assert config.rpc.uploads and config.rpc.rate_limit_per_s == 0
    assert config.rpc.upload_quota_bytes == 0  # other settings are kept


# --- the table of settings: every setting has a key and a variable, and both set it ---------


def other_value(item: Setting) -> tuple[Any, str, Any]:
    """A valid value unlike the default: (as TOML, as the environment has it, as parsed)."""
    default = item.default
    if item.key in CHOICES:
        choice = next(c for c in CHOICES[item.key] if c != default)
        return choice, choice, choice
    if item.key in CPU_LISTS:
        return "0", "0", "0"
    if item.key == "rpc_listen":
        return "127.0.0.1:9", "127.0.0.1:9", "127.0.0.1:9"
    if item.key == "p2p_listen":
        return "/ip4/127.0.0.1/tcp/9", "/ip4/127.0.0.1/tcp/9", "/ip4/127.0.0.1/tcp/9"
    if item.type == "bool":
        return not default, str(not default).lower(), not default
    if item.type == "int":
        # alpha_preference must stay at most alpha_confidence: one lower there, else one higher
        other = default - 1 if item.key == "consensus_alpha_preference" else default + 1
        return other, str(other), other
    if item.type == "float":
        return default + 1.5, str(default + 1.5), default + 1.5
    if item.type == "list[str]":
        return ["a", "b"], "a, b", ["a", "b"]
    assert item.type == "str", item
    return default + "-x", default + "-x", default + "-x"


SECTION_CLASSES = {"rpc_": RpcConfig, "node_": NodeSettings, "consensus_": Parameters,
                   "mempool_": MempoolLimits, "p2p_": ConnectionSettings}
NESTED = {"consensus", "mempool"}  # NodeSettings' own sections


def test_every_field_of_every_settings_dataclass_has_a_key() -> None:
    keys = {s.key for s in SETTINGS}
    for prefix, cls in SECTION_CLASSES.items():
        for f in fields(cls):
            if not (cls is NodeSettings and f.name in NESTED):
                assert prefix + f.name in keys, f"{cls.__name__}.{f.name} has no key"
    for f in fields(Config):
        assert f.name in keys or f.name in ("home", "rpc", "node", "p2p"), f.name
    # the agents' policies: `provider_`/`verifier_` + the field (one alias each)
    for f in fields(ProviderPolicy):
        assert "provider_" + f.name in keys, f"ProviderPolicy.{f.name} has no key"
    for f in fields(VerifierPolicy):
        assert {"device": "provider_device"}.get(f.name, "verifier_" + f.name) in keys, f.name
    # the blob store's
    assert {"blob_max_bytes", "blob_grace_s", "blob_retention_s"} <= keys
    assert len(SETTINGS) == len(keys) >= 60
    assert all(s.doc and s.env == "OGPU_" + s.key.upper() for s in SETTINGS), [
        s.key for s in SETTINGS if not s.doc]


@pytest.mark.parametrize("item", SETTINGS, ids=[s.key for s in SETTINGS])
def test_the_config_key_and_the_environment_variable_each_set_it(tmp_path: Path,
                                                                 item: Setting) -> None:
    in_toml, in_env, parsed = other_value(item)
    assert parsed != item.default
    (tmp_path / CONFIG_FILE).write_text(tomli_w.dumps({item.key: in_toml}))
    from_file = load_config(tmp_path, environ={})
    from_env = load_config(tmp_path / "empty", environ={item.env: in_env})
    for config in (from_file, from_env):
        assert config.get(item.key) == parsed
        value: Any = config
        for name in item.path:  # where the node reads it
            value = getattr(value, name)
        assert value == parsed
    assert from_file.get(item.key) == from_env.get(item.key)
    # every other setting keeps its default
    assert [s.key for s in SETTINGS if from_env.get(s.key) != s.default] == [item.key]


def test_the_agents_policies_read_their_settings(tmp_path: Path) -> None:
    for item in SETTINGS:
        if not item.key.startswith(("provider_", "verifier_")):
            continue
        _, in_env, parsed = other_value(item)
        config = load_config(tmp_path, environ={item.env: in_env})
        field_name = item.key.partition("_")[2]
        if item.key.startswith("verifier_"):
            assert getattr(verifier_policy(config), field_name) == parsed, item.key
        elif field_name == "cpus":
            assert provider_policy(config).cpus == {0}
        else:
            assert getattr(provider_policy(config), field_name) == parsed, item.key
    device = load_config(tmp_path, environ={"OGPU_PROVIDER_DEVICE": "cuda"})
    assert verifier_policy(device).device == "cuda"  # one device for both agents


@pytest.mark.parametrize("env,message", [
    ({"OGPU_RPC_MAX_BATCH": "-1"},
     r"rpc_max_batch \(from OGPU_RPC_MAX_BATCH\): expected a non-negative integer"),
    ({"OGPU_RPC_MAX_BATCH": "0"},
     r"rpc_max_batch must be at least 1 \(rpc_max_batch from OGPU_RPC_MAX_BATCH\)"),
    ({"OGPU_RPC_SEND_AND_WAIT_DEFAULT_S": "500"}, r"rpc_send_and_wait_default_s must be"),
    ({"OGPU_CONSENSUS_ALPHA_CONFIDENCE": "30"},
     r"consensus_alpha_confidence=30 must be <= k \(consensus_alpha_confidence from "),
    ({"OGPU_NODE_REQUEST_TIMEOUT_S": "0"},
     r"node_request_timeout_s must be positive, got 0.0 \(node_request_timeout_s from "
     r"OGPU_NODE_REQUEST_TIMEOUT_S\)"),
    ({"OGPU_MEMPOOL_MAX_TXS": "0"}, r"mempool_max_txs must be positive"),
    ({"OGPU_P2P_MAX_CONNECTIONS": "0"}, r"p2p_max_connections must be above 0 \(p2p_max_"),
    ({"OGPU_P2P_MIN_CONNECTIONS": "200"},
     r"p2p_min_connections must not exceed max_connections \(p2p_min_connections from "),
    ({"OGPU_PROVIDER_DEVICE": "tpu"},
     r"provider_device \(from OGPU_PROVIDER_DEVICE\): expected one of auto, cpu, cuda"),
    ({"OGPU_NODE_HEALTHY_FINALITY_S": "soon"}, r"node_healthy_finality_s \(from OGPU_NODE_"),
    # values that only work together are set together, whatever their order
    ({"OGPU_RPC_SEND_AND_WAIT_DEFAULT_S": "130", "OGPU_RPC_SEND_AND_WAIT_MAX_S": "200"}, None),
])
def test_a_bad_value_is_refused_naming_its_key_and_variable(tmp_path: Path, env: dict[str, str],
                                                            message: str | None) -> None:
    if message is None:
        assert load_config(tmp_path, environ=env).rpc.send_and_wait_default_s == 130
        return
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, environ=env)


def test_bounds_shown_are_the_ones_enforced() -> None:
    by_key = {s.key: s for s in SETTINGS}
    assert by_key["rpc_max_batch"].bounds == ">= 1"  # RpcConfig.check refuses 0
    assert by_key["rpc_rate_limit_per_s"].bounds == ">= 0, finite"  # 0 turns it off
    assert by_key["node_request_timeout_s"].bounds == "> 0, finite"
    assert by_key["blob_max_bytes"].bounds == ">= 0"
    assert by_key["p2p_dial_timeout_s"].bounds == "> 0, finite"
    assert by_key["provider_fault"].bounds == "one of none, corrupt, vanish, false_report"
    assert CHOICES["provider_fault"] == FAULTS


def test_the_configuration_doc_is_the_table() -> None:
    doc = Path(__file__).parent.parent / "docs" / "configuration.md"
    assert doc.read_text() == settings_markdown(), (
        "docs/configuration.md is stale: python -m ogpu_node.config > docs/configuration.md")
    for item in SETTINGS:
        assert f"| `{item.key}` | `{item.env}` |" in settings_markdown()


def test_the_config_command_shows_values_and_docs(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("rpc_max_batch = 7\n")
    result = CliRunner().invoke(node_cli, ["config", "--home", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["rpc_max_batch"] == 7 and set(shown) == {s.key for s in SETTINGS}
    result = CliRunner().invoke(node_cli, ["config", "--home", str(tmp_path)])
    line = next(x for x in result.output.splitlines() if x.startswith("rpc_max_batch "))
    assert line.split() == ["rpc_max_batch", "7", "[OGPU_RPC_MAX_BATCH]", "(changed)"]
    result = CliRunner().invoke(node_cli, ["config", "--docs"])
    assert result.output == settings_markdown()
    assert parse_set(("rpc_max_batch=9", "moniker=a=b")) == {"rpc_max_batch": "9",
                                                              "moniker": "a=b"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(("rpc_max_batch",))
