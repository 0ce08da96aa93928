"""Node configuration: flags > `OGPU_*` environment variables > `config.toml` > defaults.

Every setting has an environment variable named `OGPU_` + its name in upper case (lists are
comma-separated there), as the litepaper's environment-driven orchestration expects. Unknown keys
in the file or ill-typed values are errors that name the setting and where it came from.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from gpu.cpus import parse_cpu_list
from gpu.errors import GpuError
from ogpu_node.blobs import DEFAULT_GRACE_S, DEFAULT_MAX_STORE_BYTES, DEFAULT_RETENTION_S
from ogpu_node.errors import OgpuError

CONFIG_FILE = "config.toml"
ENV_PREFIX = "OGPU_"


class ConfigError(OgpuError):
    """A setting that is unknown or has the wrong type."""


@dataclass(frozen=True)
class Config:
    """Settings of one node. Relative paths are relative to `home`."""

    home: Path = field(default_factory=lambda: Path("~/.ogpu").expanduser())
    moniker: str = "node"
    genesis_file: str = "genesis.json"
    data_dir: str = "data"
    node_key_file: str = "node_key.json"
    validator_key_file: str = "validator_key.json"
    p2p_listen: str = "/ip4/127.0.0.1/tcp/26656"
    bootstrap_peers: list[str] = field(default_factory=list)
    rpc_listen: str = "127.0.0.1:8545"
    rpc_rate_limit_per_s: float = 100.0
    """JSON-RPC calls per second per client address (0 turns the limit off)."""
    rpc_uploads: bool = True
    """Serve blob uploads over RPC (`blob_put`, `blob_putChunk`, `blob_putManifest`; the
    CLI's `--inputs` and the demo use them); off, each answers -32011."""
    rpc_upload_quota_bytes: int = 5 * 1024**3
    """Bytes one client address may upload in any `rpc_upload_window_s` (0: no quota)."""
    rpc_upload_window_s: float = 3_600.0
    """The upload quota's rolling window, in seconds."""
    # --- blob store (see `blobs.BlobStore`, `blob_retention`) ---
    blob_max_bytes: int = DEFAULT_MAX_STORE_BYTES
    """Bytes the blob store holds; beyond, it evicts what nothing needs, else refuses."""
    blob_grace_s: float = DEFAULT_GRACE_S
    """How long a file stored or read is never evicted (an upload waiting for its task)."""
    blob_retention_s: float = DEFAULT_RETENTION_S
    """How long after a task or pool closes its files are kept (block time), for downloads."""
    log_level: str = "info"
    cpus: str = ""
    """CPUs this node's process (and the checks it runs) may use, as a Linux CPU list ("0-3,6",
    like `taskset -c`); empty: all."""
    # --- GPU market agents ---
    provider: bool = False
    """Act as a GPU provider: register, bid on tasks this machine can serve, run them."""
    provider_price_floor: int = 1_000_000
    """Lowest price per work unit (GFLOP) this provider bids, in base units (1e-9 OGPU)."""
    provider_stake: int = 1_000 * 10**9
    """Provider bond to register with, in base units."""
    provider_max_concurrent: int = 1
    provider_device: str = "auto"
    """auto | cpu | cuda: where workloads run."""
    provider_benchmark: int = 0
    """Declared GFLOP/s; 0 measures the device at start, again 20 s later (start-up over) and
    then every `provider_benchmark_refresh_s`, registering a score that moved by over 20%."""
    provider_benchmark_refresh_s: float = 1_800.0
    """How often a measured benchmark is measured again while idle (0: at start only)."""
    provider_process: bool = True
    """Run each task's workload in a child process (`gpu/worker_process.py`: killed at once when
    the task stops being ours, a crash cannot take the node down) instead of a thread."""
    provider_cpus: str = ""
    """CPUs the provider's workload processes run on (same form as `cpus`), so that a CPU
    provider's workloads and its node keep off each other's cores; empty: the node's."""
    provider_fault: str = "none"
    """Test-only fault injection (devnet and end-to-end tests): none | corrupt | vanish |
    false_report (see `agents/provider.py`)."""
    verifier: bool = True
    """Check results when this validator is drawn for a task's committee."""
    verifier_intervals: int = 1
    """Training intervals a verifier replays (plus the final metrics)."""
    verifier_freivalds_rounds: int = 20
    verifier_samples: int = 8
    """Inference rows a verifier re-executes."""
    verifier_process: bool = True
    """Run each check in a child process (`gpu/worker_process.py`), instead of a thread."""

    def path(self, relative: str) -> Path:
        """A configured file or folder, resolved against `home`."""
        return self.home / Path(relative).expanduser()

    @property
    def cpu_set(self) -> frozenset[int]:
        return parse_cpu_list(self.cpus)

    @property
    def provider_cpu_set(self) -> frozenset[int]:
        return parse_cpu_list(self.provider_cpus)

    def to_toml(self) -> str:
        return tomli_w.dumps({f.name: getattr(self, f.name) for f in fields(self)
                              if f.name != "home"})


_SETTINGS = {f.name: f for f in fields(Config) if f.name != "home"}
_CPU_LISTS = ("cpus", "provider_cpus")


def _convert(name: str, value: Any, source: str) -> Any:
    """Check or convert `value` for setting `name`; strings from env/flags are parsed."""
    expected = _SETTINGS[name].type
    if expected == "list[str]":
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ConfigError(f"{name} (from {source}): expected a list of strings")
    if expected == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false",
                                                          "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{name} (from {source}): expected true or false")
    if expected == "int":
        try:
            whole = int(value) if isinstance(value, str | int) else -1
        except ValueError:
            whole = -1
        if isinstance(value, bool) or whole < 0:
            raise ConfigError(f"{name} (from {source}): expected a non-negative integer")
        return whole
    if expected == "float":
        try:
            number = float(value) if isinstance(value, str | int | float) else math.nan
        except ValueError:
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number) or number < 0:
            raise ConfigError(f"{name} (from {source}): expected a non-negative number")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{name} (from {source}): expected a string, got {type(value).__name__}")
    if name in _CPU_LISTS:
        try:
            parse_cpu_list(value)
        except GpuError as exc:
            raise ConfigError(f"{name} (from {source}): {exc}") from None
    return value


def load_config(
    home: Path,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The effective configuration of the node at `home`."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    file = home / CONFIG_FILE
    if file.exists():
        try:
            doc = tomllib.loads(file.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError(f"{file}: {exc}") from exc
        for name, value in doc.items():
            if name not in _SETTINGS:
                raise ConfigError(f"{file}: unknown setting {name!r}")
            values[name] = _convert(name, value, str(file))
    for name in _SETTINGS:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = _convert(name, environ[env_name], env_name)
    for name, value in (flags or {}).items():
        if value is not None:
            if name not in _SETTINGS:
                raise ConfigError(f"unknown setting {name!r}")
            values[name] = _convert(name, value, f"--{name.replace('_', '-')}")
    return replace(Config(home=home), **values)
