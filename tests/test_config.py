"""Configuration precedence: flags > OGPU_* environment > config.toml > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from ogpu_node.blobs import BlobStore
from ogpu_node.config import CONFIG_FILE, Config, ConfigError, load_config
from ogpu_node.devnet import LOCALHOST, NodePlace, write_node_config
from ogpu_node.rpc import RpcConfig


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
    for bad in ("x", "3-1", "1-", "-1", "0.5"):
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
    (tmp_path / CONFIG_FILE).write_text("rpc_upload_quota_bytes = 1048576\n")
    env = {"OGPU_RPC_UPLOADS": "off", "OGPU_RPC_UPLOAD_WINDOW_S": "600"}
    config = load_config(tmp_path, environ=env)
    assert (config.rpc_uploads, config.rpc_upload_quota_bytes, config.rpc_upload_window_s) == (
        False, 1_048_576, 600.0)
    with pytest.raises(ConfigError, match=r"rpc_uploads \(from OGPU_RPC_UPLOADS\)"):
        load_config(tmp_path, environ={"OGPU_RPC_UPLOADS": "maybe"})
    with pytest.raises(ConfigError, match="rpc_upload_quota_bytes"):
        load_config(tmp_path, environ={"OGPU_RPC_UPLOAD_QUOTA_BYTES": "-1"})
    defaults, rpc = Config(), RpcConfig()
    assert (defaults.rpc_uploads, defaults.rpc_upload_quota_bytes,
            defaults.rpc_upload_window_s) == (rpc.uploads, rpc.upload_quota_bytes,
                                              rpc.upload_window_s)


def test_a_devnet_node_serves_uploads_whatever_its_home_said(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("rpc_uploads = false\nrpc_upload_quota_bytes = 0\n")
    write_node_config(tmp_path, NodePlace(LOCALHOST, 26656, LOCALHOST, 8545), [])
    config = load_config(tmp_path, environ={})
    assert config.rpc_uploads and config.rpc_rate_limit_per_s == 0
    assert config.rpc_upload_quota_bytes == 0  # other settings are kept
