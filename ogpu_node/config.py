"""Node configuration: flags > `OGPU_*` environment variables > `config.toml` > defaults.

One table of settings (`SETTINGS`) is the rule for all of them: each has a config key, an
environment variable `OGPU_` + the key in upper case (lists are comma-separated there), a type,
a default, its bounds and a doc. The table is read off the dataclasses that use the values, so
a field added to one of them is a setting at once (and a test fails until it has a doc):

* `Config`'s own fields (paths, listen addresses, blob store, agents): the key is the field;
* `rpc: RpcConfig`: `rpc_` + the field (`rpc_max_batch`);
* `node: NodeSettings`: `node_` + the field (`node_request_timeout_s`), and its nested
  `consensus` (`consensus.params.Parameters`) and `mempool` (`MempoolLimits`) as `consensus_k`,
  `mempool_max_txs`;
* `p2p: ConnectionSettings` (`p2p/connection_settings.py`): `p2p_` + the field
  (`p2p_max_connections`). The frame limits and peer penalties (`p2p/network.py`) and
  GossipSub's mesh and scoring (`p2p/libp2p_host.py`) stay fixed in the code: peers must agree
  on them (a node with smaller frame limits refuses its peers' messages).

Unknown keys in the file, ill-typed values, a value out of its bounds, or a set of values its
dataclass refuses (`RpcConfig.check`, `Parameters.verify`) are `ConfigError`s that name the key
and where the value came from. `docs/configuration.md` is generated from the table
(`python -m ogpu_node.config`), and a test keeps it so.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import math
import os
import textwrap
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any

import tomli_w

from consensus.errors import InvalidParameters
from gpu.cpus import parse_cpu_list
from gpu.errors import GpuError
from ogpu_node.blobs import DEFAULT_GRACE_S, DEFAULT_MAX_STORE_BYTES, DEFAULT_RETENTION_S
from ogpu_node.errors import OgpuError
from ogpu_node.node.mempool import MempoolLimits
from ogpu_node.node.settings import NodeSettings
from ogpu_node.node.settings_checks import InvalidSettings
from ogpu_node.rpc.config import RpcConfig, RpcConfigError
from p2p.connection_settings import ConnectionSettings, InvalidConnectionSettings

CONFIG_FILE = "config.toml"
ENV_PREFIX = "OGPU_"
PROVIDER_FAULTS = ("none", "corrupt", "vanish", "false_report")
CHOICES: dict[str, tuple[str, ...]] = {
    "log_level": ("debug", "info", "warning", "error", "critical"),
    "provider_device": ("auto", "cpu", "cuda"),
    "provider_fault": PROVIDER_FAULTS,
}
"""Settings whose value is one of a fixed set."""
CPU_LISTS = ("cpus", "provider_cpus")
FORMATS = {"p2p_listen": "/ip4/HOST/tcp/PORT", "rpc_listen": "host:port or [v6]:port"}


class ConfigError(OgpuError):
    """A setting that is unknown or has the wrong type."""


@dataclass(frozen=True)
class Config:
    """Settings of one node. Relative paths are relative to `home`."""

    home: Path = field(default_factory=lambda: Path("~/.ogpu").expanduser())
    moniker: str = "node"
    """A name for this node (shown to peers and in `chain_status`)."""
    genesis_file: str = "genesis.json"
    """The chain's genesis file."""
    data_dir: str = "data"
    """Where the chain (LevelDB) and the blob store live."""
    node_key_file: str = "node_key.json"
    """The node's network identity key (its libp2p peer id)."""
    validator_key_file: str = "validator_key.json"
    """The validator key; without it the node follows the chain and runs no agent."""
    p2p_listen: str = "/ip4/127.0.0.1/tcp/26656"
    """The libp2p listen address, `/ip4/HOST/tcp/PORT`."""
    bootstrap_peers: list[str] = field(default_factory=list)
    """Multiaddrs with `/p2p/ID` to stay connected to."""
    rpc: RpcConfig = field(default_factory=RpcConfig)
    """The RPC server: keys `rpc_` + each field of `RpcConfig`."""
    node: NodeSettings = field(default_factory=NodeSettings)
    """Timings and limits: keys `node_`, `consensus_` and `mempool_` + each field."""
    p2p: ConnectionSettings = field(default_factory=ConnectionSettings)
    """The libp2p host's timings and connection counts: keys `p2p_` + each field."""
    # --- blob store (see `blobs.BlobStore`, `blob_retention`) ---
    blob_max_bytes: int = DEFAULT_MAX_STORE_BYTES
    """Bytes the blob store holds; beyond, it evicts what nothing needs, else refuses."""
    blob_grace_s: float = DEFAULT_GRACE_S
    """How long a file stored or read is never evicted (an upload waiting for its task)."""
    blob_retention_s: float = DEFAULT_RETENTION_S
    """How long after a task or pool closes its files are kept (block time), for downloads."""
    log_level: str = "info"
    """How much the node logs."""
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
    """Tasks and pool requests the provider runs at once."""
    provider_device: str = "auto"
    """Where workloads (and checks) run."""
    provider_benchmark: int = 0
    """Declared GFLOP/s; 0 measures the device at start, again `provider_benchmark_settle_s`
    later (start-up over) and then every `provider_benchmark_refresh_s`, registering a score
    that moved by over 20%."""
    provider_benchmark_settle_s: float = 20.0
    """When a measured benchmark is measured the second time, after start."""
    provider_benchmark_refresh_s: float = 1_800.0
    """How often a measured benchmark is measured again while idle (0: at start only)."""
    provider_process: bool = True
    """Run each task's workload in a child process (`gpu/worker_process.py`: killed at once when
    the task stops being ours, a crash cannot take the node down) instead of a thread."""
    provider_cpus: str = ""
    """CPUs the provider's workload processes run on (same form as `cpus`), so that a CPU
    provider's workloads and its node keep off each other's cores; empty: the node's."""
    provider_fault: str = "none"
    """Test-only fault injection (devnet and end-to-end tests, see `agents/provider.py`)."""
    verifier: bool = True
    """Check results when this validator is drawn for a task's committee."""
    verifier_intervals: int = 1
    """Training intervals a verifier replays (plus the final metrics)."""
    verifier_freivalds_rounds: int = 20
    """Freivalds rounds a verifier runs on a matrix product (each halves the odds that a wrong
    one passes)."""
    verifier_samples: int = 8
    """Inference rows a verifier re-executes."""
    verifier_process: bool = True
    """Run each check in a child process (`gpu/worker_process.py`), instead of a thread."""

    @property
    def rpc_listen(self) -> str:
        return self.rpc.listen

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
        """Every setting as `config.toml` lines (`load_config` reads them back)."""
        return tomli_w.dumps({s.key: s.value_of(self) for s in SETTINGS})

    def get(self, key: str) -> Any:
        """The value of the setting `key`."""
        return setting(key).value_of(self)


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting: where its value lives in `Config` and everything said about it."""

    key: str
    path: tuple[str, ...]
    """Attribute names from `Config` down to the value (`("node", "consensus", "k")`)."""
    type: str
    """`str`, `int`, `float`, `bool` or `list[str]`."""
    default: Any
    doc: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()

    @property
    def bounds(self) -> str:
        """What a value must be (the parser's rule; a section's own checks add to it)."""
        if self.key in CHOICES:
            return "one of " + ", ".join(CHOICES[self.key])
        if self.key in CPU_LISTS:
            return "Linux CPU list or empty"
        if self.key in FORMATS:
            return FORMATS[self.key]
        if self.type in ("int", "float") and self._zero_refused():
            return ">= 1" if self.type == "int" else "> 0, finite"
        return {"int": ">= 0", "float": ">= 0, finite", "bool": "true or false",
                "list[str]": "list (comma-separated in the environment)"}.get(self.type, "")

    def _zero_refused(self) -> bool:
        """Whether the section's own checks refuse 0 here (asked of the checks themselves, so
        that the bounds shown are the ones enforced)."""
        try:
            _build(Path("."), {self.key: (0, "a probe")})
        except ConfigError:
            return True
        return False

    def value_of(self, config: Config) -> Any:
        value: Any = config
        for name in self.path:
            value = getattr(value, name)
        return value


SECTIONS: dict[str, str] = {"rpc": "rpc_", "node": "node_", "node.consensus": "consensus_",
                            "node.mempool": "mempool_", "p2p": "p2p_"}
"""Nested dataclasses of `Config`, by path, and the prefix of their keys."""


def _walk(cls: type, instance: Any, path: tuple[str, ...]) -> Iterator[Setting]:
    docs = attribute_docs(cls)
    for f in fields(cls):
        if f.name == "home":
            continue
        here = (*path, f.name)
        value = getattr(instance, f.name)
        if is_dataclass(value) and not isinstance(value, type):
            yield from _walk(type(value), value, here)
            continue
        prefix = SECTIONS.get(".".join(path), "")
        yield Setting(prefix + f.name, here, str(f.type), value, docs.get(f.name, ""))


@cache
def attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings under the fields of dataclass `cls` (a string right after a field), read
    from its source: where the field is declared is where it is explained."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


SETTINGS: tuple[Setting, ...] = tuple(_walk(Config, Config(home=Path(".")), ()))
"""Every setting a node reads, in `config.toml` order."""
_BY_KEY = {s.key: s for s in SETTINGS}


def setting(key: str) -> Setting:
    """The setting named `key` (`ConfigError` when there is none)."""
    found = _BY_KEY.get(key)
    if found is None:
        raise ConfigError(f"unknown setting {key!r}")
    return found


def _convert(item: Setting, value: Any, source: str) -> Any:
    """Check or convert `value` for setting `item`; strings from env/flags are parsed."""
    name, expected = item.key, item.type
    if expected == "list[str]":
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
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
    if name in CHOICES and value not in CHOICES[name]:
        raise ConfigError(f"{name} (from {source}): expected {item.bounds}, got {value!r}")
    if name in CPU_LISTS:
        try:
            parse_cpu_list(value)
        except GpuError as exc:
            raise ConfigError(f"{name} (from {source}): {exc}") from None
    return value


def _with(obj: Any, changes: Mapping[tuple[str, ...], Any]) -> Any:
    """`obj` with the values at the attribute paths of `changes` set, each dataclass replaced
    once with all its changes (its own checks see the final combination, never a half-made
    one)."""
    direct = {path[0]: value for path, value in changes.items() if len(path) == 1}
    nested: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, value in changes.items():
        if len(path) > 1:
            nested.setdefault(path[0], {})[path[1:]] = value
    for name, below in nested.items():
        direct[name] = _with(getattr(obj, name), below)
    return dataclasses.replace(obj, **direct)


def _build(home: Path, values: Mapping[str, tuple[Any, str]]) -> Config:
    """A `Config` of `values` (key -> (value, source)); the sections check themselves, and
    their refusals name the keys and where the values came from."""
    sources = ", ".join(f"{key} from {source}" for key, (_, source) in values.items()
                        if len(setting(key).path) > 1) or "defaults"
    try:
        config: Config = _with(Config(home=home), {
            setting(key).path: value for key, (value, _) in values.items()})
        config.node.consensus.verify()
    except RpcConfigError as exc:
        raise ConfigError(f"{_keys(str(exc), 'rpc_')} ({sources})") from None
    except InvalidParameters as exc:
        raise ConfigError(f"consensus_{exc} ({sources})") from None
    except InvalidConnectionSettings as exc:
        raise ConfigError(f"p2p_{exc} ({sources})") from None
    except InvalidSettings as exc:
        prefix = "mempool_" if exc.owner == MempoolLimits.__name__ else "node_"
        raise ConfigError(f"{prefix}{exc} ({sources})") from None
    return config


def _keys(message: str, prefix: str) -> str:
    """An `RpcConfigError`'s problems with each field named by its key."""
    problems = message.partition(": ")[2]
    return "; ".join(prefix + p for p in problems.split("; "))


def load_config(
    home: Path,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The effective configuration of the node at `home`."""
    environ = os.environ if environ is None else environ
    values: dict[str, tuple[Any, str]] = {}
    file = home / CONFIG_FILE
    if file.exists():
        try:
            doc = tomllib.loads(file.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError(f"{file}: {exc}") from exc
        for name, value in doc.items():
            if name not in _BY_KEY:
                raise ConfigError(f"{file}: unknown setting {name!r}")
            values[name] = (_convert(_BY_KEY[name], value, str(file)), str(file))
    for item in SETTINGS:
        if item.env in environ:
            values[item.key] = (_convert(item, environ[item.env], item.env), item.env)
    for name, value in (flags or {}).items():
        if value is not None:
            flag = f"--{name.replace('_', '-')}"
            values[name] = (_convert(setting(name), value, flag), flag)
    return _build(home, values)


def settings_markdown() -> str:
    """docs/configuration.md: the table of every setting."""
    lines = [
        "# Configuration",
        "",
        "<!-- generated by `python -m ogpu_node.config > docs/configuration.md`; "
        "tests/test_config.py checks it -->",
        "",
        "A node reads its settings from, in order of precedence: flags of `ogpu-node run` "
        "(`--set KEY=VALUE` for any key), the environment (`OGPU_` + the key in upper case; "
        "lists comma-separated), `HOME/config.toml` (`ogpu-node init` writes every key with its "
        "default), and the defaults below. A value of the wrong type or out of bounds, an "
        "unknown key in the file, or values the RPC server or consensus refuse together are "
        "errors naming the key and where the value came from. `ogpu-node config` shows the "
        "effective values; `ogpu-node config --docs` prints this table.",
        "",
        f"{len(SETTINGS)} settings. Keys `rpc_*` set `RpcConfig`, `node_*` set `NodeSettings`, "
        "`consensus_*` its `Parameters` (Snowman's k, alphas, beta, in ms; change them on every "
        "node alike), `mempool_*` its `MempoolLimits` and `p2p_*` the libp2p host's "
        "`ConnectionSettings`.",
        "",
        "| key | environment | type | default | bounds | what it does |",
        "|-----|-------------|------|---------|--------|--------------|",
    ]
    for s in SETTINGS:
        default = tomli_w.dumps({"v": s.default}).partition("=")[2].strip()
        lines.append(f"| `{s.key}` | `{s.env}` | {s.type} | `{default}` | {s.bounds} | "
                     f"{s.doc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
