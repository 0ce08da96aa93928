"""`ogpu-node`: the operator's command line (init, keys, genesis)."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import click

from ogpu_node.address import address_to_text
from ogpu_node.cli.common import emit, handle_errors
from ogpu_node.config import (
    SETTINGS,
    Config,
    ConfigError,
    load_config,
    settings_markdown,
)
from ogpu_node.genesis import build_genesis, dev_account_key, load_genesis, load_template
from ogpu_node.keys import PrivateKey, read_key_file, write_key_file
from ogpu_node.node_home import check_provider_funds, init_home, join_network
from ogpu_node.types import format_amount, parse_amount

HOME_OPTION = click.option(
    "--home", type=click.Path(path_type=Path), envvar="OGPU_HOME", default=Path("~/.ogpu"),
    show_default=True, help="Node home folder (env OGPU_HOME).",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


NODE_MODULES = ("trio", "libp2p", "hypercorn", "prometheus_client", "numba", "onnxruntime")
"""What the node imports beyond the SDK's dependencies (the extra `node` installs them)."""
LEVELDB_MODULES = ("plyvel", "plyvel_next")
"""Either LevelDB binding will do (see storage/leveldb_binding.py)."""
NODE_EXTRA = "pip install 'ogpu-node[node]'"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a stub without a spec
        return False


def missing_node_modules() -> list[str]:
    """The node's dependencies that are not installed (the base install has none of them)."""
    missing = [m for m in NODE_MODULES if not _installed(m)]
    if not any(_installed(m) for m in LEVELDB_MODULES):
        missing.append("plyvel")
    return missing


@click.group()
@click.version_option(package_name="ogpu-node")
def main() -> None:
    """ogpu-node: run and manage a node of the OpenGPU Network."""
    missing = missing_node_modules()
    if missing:
        raise click.ClickException(f"the node's dependencies are not installed "
                                   f"({', '.join(missing)}): {NODE_EXTRA}")


# --- init ----------------------------------------------------------------------------------------


@main.command()
@HOME_OPTION
@click.option("--moniker", default="node", help="A name for this node.")
@JSON_OPTION
@handle_errors
def init(home: Path, moniker: str, as_json: bool) -> None:
    """Write a config file, a node key and a validator key into HOME (keeps existing keys)."""
    emit(init_home(home, moniker), as_json)


# --- keys ----------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Create and inspect Ed25519 key files (written with mode 0600, never printed)."""


@keys.command("new")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing key file (the old key is lost).")
@JSON_OPTION
@handle_errors
def keys_new(path: Path, force: bool, as_json: bool) -> None:
    """Generate a key into PATH."""
    key = PrivateKey.generate()
    write_key_file(path, key, overwrite=force)
    emit({"file": str(path), "address": address_to_text(key.address),
          "public_key": key.public_key.raw.hex()}, as_json)


@keys.command("show")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@HOME_OPTION
@click.option("--which", type=click.Choice(["validator", "node"]), default="validator",
              show_default=True, help="Which key of HOME, when no PATH is given.")
@JSON_OPTION
@handle_errors
def keys_show(path: Path | None, home: Path, which: str, as_json: bool) -> None:
    """Show the address and public key of a key file (never the private key)."""
    if path is None:
        config = load_config(home.expanduser())
        path = config.path(config.validator_key_file if which == "validator"
                           else config.node_key_file)
    key = read_key_file(path)
    emit({"file": str(path), "address": address_to_text(key.address),
          "public_key": key.public_key.raw.hex()}, as_json)


# --- genesis -------------------------------------------------------------------------------------


@main.group()
def genesis() -> None:
    """Build and check genesis files."""


@genesis.command("new")
@click.option("--validators", "count", type=click.IntRange(1, 1000), default=4, show_default=True,
              help="Number of validator homes to create (or reuse) under --homes.")
@click.option("--homes", type=click.Path(path_type=Path), required=True,
              help="Folder for the validator homes node0, node1, ... and genesis.json.")
@click.option("--template", type=click.Path(path_type=Path, exists=True), default=None,
              help="Genesis template (default: genesis/devnet.json).")
@click.option("--chain-id", default=None, help="Override the template's chain id.")
@click.option("--dev-accounts", type=click.IntRange(0, 1000), default=10, show_default=True,
              help="Well-known funded dev accounts to add (their keys are public!).")
@click.option("--dev-balance", default="1000000", show_default=True, help="OGPU per dev account.")
@click.option("--stake", default=None, help="OGPU staked per validator (default: minimum stake).")
@click.option("--validator-balance", default="10000", show_default=True,
              help="OGPU in each validator's account (fees, a provider bond).")
@JSON_OPTION
@handle_errors
def genesis_new(count: int, homes: Path, template: Path | None, chain_id: str | None,
                dev_accounts: int, dev_balance: str, stake: str | None, validator_balance: str,
                as_json: bool) -> None:
    """Create COUNT validator homes and a genesis that makes them the validators."""
    validators = []
    for i in range(count):
        info = init_home(homes / f"node{i}", f"node{i}")
        validators.append((f"node{i}", bytes.fromhex(info["validator_public_key"])))
    try:
        balance, stake_units = parse_amount(dev_balance), parse_amount(stake) if stake else None
        validator_units = parse_amount(validator_balance)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    doc = build_genesis(
        load_template(template), validators, genesis_time_ms=int(time.time() * 1000),
        chain_id=chain_id, dev_accounts=dev_accounts, dev_balance=balance,
        validator_stake=stake_units, validator_balance=validator_units,
    )
    out = homes / "genesis.json"
    doc.write(out)
    for i in range(count):
        shutil.copyfile(out, homes / f"node{i}" / "genesis.json")
    emit({
        "genesis": str(out), "chain_id": doc.chain_id, "genesis_hash": doc.hash.hex(),
        "validators": ", ".join(address_to_text(v.address) for v in doc.validators),
        "dev_accounts": ", ".join(address_to_text(dev_account_key(i).address)
                                  for i in range(dev_accounts)),
    }, as_json)


@genesis.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
@JSON_OPTION
@handle_errors
def genesis_validate(path: Path, as_json: bool) -> None:
    """Check a genesis file and summarise it."""
    doc = load_genesis(path)
    state = doc.state()
    emit({
        "chain_id": doc.chain_id, "genesis_hash": doc.hash.hex(),
        "state_root": state.root.hex(), "validators": str(len(doc.validators)),
        "allocated_ogpu": format_amount(state.issued),
    }, as_json)


@main.command()
@HOME_OPTION
@click.option("--moniker", default=None, help="Name of this node (env OGPU_MONIKER).")
@click.option("--rpc-listen", default=None, help="host:port of JSON-RPC (env OGPU_RPC_LISTEN).")
@click.option("--p2p-listen", default=None,
              help="/ip4/HOST/tcp/PORT to listen on (env OGPU_P2P_LISTEN).")
@click.option("--bootstrap-peers", default=None,
              help="Comma-separated multiaddrs with /p2p/ID (env OGPU_BOOTSTRAP_PEERS).")
@click.option("--log-level", default=None, help="debug, info, warning (env OGPU_LOG_LEVEL).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any setting (`ogpu-node config --docs` lists them); repeatable.")
@handle_errors
def run(home: Path, settings: tuple[str, ...], **flags: str | None) -> None:
    """Run the node of HOME until Ctrl-C or SIGTERM."""
    _run_node(load_config(home.expanduser(), flags={**parse_set(settings), **flags}))


def _run_node(config: Config) -> None:
    import trio

    from gpu.cpus import pin_to_cpus
    from ogpu_node.node.run import run_until_signalled

    pin_to_cpus(config.cpu_set)  # before any thread starts: they all inherit it
    trio.run(run_until_signalled, config)


def parse_set(items: tuple[str, ...]) -> dict[str, str]:
    """`--set KEY=VALUE` options as flags (checked by `load_config` like any other value)."""
    flags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        flags[key.strip()] = value
    return flags


@main.command("config")
@HOME_OPTION
@click.option("--docs", is_flag=True, help="Print every setting's key, environment variable, "
                                           "type, default, bounds and doc (Markdown).")
@JSON_OPTION
@handle_errors
def config_command(home: Path, docs: bool, as_json: bool) -> None:
    """The effective settings of the node of HOME (flags aside): each key, its value, and the
    environment variable that sets it."""
    if docs:
        click.echo(settings_markdown(), nl=False)
        return
    config = load_config(home.expanduser())
    if as_json:
        emit({s.key: config.get(s.key) for s in SETTINGS}, True)
        return
    width = max(len(s.key) for s in SETTINGS)
    for s in SETTINGS:
        value = config.get(s.key)
        mark = "" if value == s.default else "  (changed)"
        click.echo(f"{s.key.ljust(width)}  {value!r}  [{s.env}]{mark}")


@main.command()
@HOME_OPTION
@click.option("--rpc", "rpc_url", required=True,
              help="JSON-RPC URL of a running node of the network to join.")
@click.option("--moniker", default="node", show_default=True, help="A name for this node.")
@click.option("--key", "key_file", type=click.Path(path_type=Path, exists=True), default=None,
              help="Sign with this key file (validator and provider account; default: a new "
                   "key in HOME).")
@click.option("--genesis-hash", default=None,
              help="Refuse a network whose genesis hash is not this one.")
@click.option("--p2p-listen", default=None, help="/ip4/HOST/tcp/PORT to listen on.")
@click.option("--rpc-listen", default=None, help="host:port of this node's JSON-RPC.")
@click.option("--provider", is_flag=True,
              help="Act as a GPU provider: register, bid on tasks, run them.")
@click.option("--provider-stake", default=None,
              help="Provider bond in OGPU (default 1000; at least the chain's minimum).")
@click.option("--price-floor", type=click.IntRange(0), default=None,
              help="Lowest price per work unit (GFLOP), base units (1e-9 OGPU).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where workloads run (default auto).")
@click.option("--benchmark", type=click.IntRange(0), default=None,
              help="Declared GFLOP/s (default: measured at start).")
@click.option("--no-start", is_flag=True, help="Write HOME and return (`ogpu-node run` later).")
@JSON_OPTION
@handle_errors
def join(home: Path, rpc_url: str, moniker: str, key_file: Path | None,
         genesis_hash: str | None, p2p_listen: str | None, rpc_listen: str | None,
         provider: bool, provider_stake: str | None, price_floor: int | None,
         device: str | None, benchmark: int | None, no_start: bool, as_json: bool) -> None:
    """Join the network of the node at --rpc: fetch its genesis and bootstrap peer, write HOME,
    and run the node (as a provider with --provider: its agent registers with the bond and
    terms given and bids; the account must hold the bond first)."""
    settings: dict[str, object] = {"p2p_listen": p2p_listen, "rpc_listen": rpc_listen,
                                   "provider_price_floor": price_floor,
                                   "provider_device": device, "provider_benchmark": benchmark}
    if provider:
        settings["provider"] = True
    if provider_stake is not None:
        try:
            settings["provider_stake"] = parse_amount(provider_stake)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--provider-stake") from exc
    joined = join_network(rpc_url, home, moniker=moniker, key_file=key_file,
                          genesis_hash=genesis_hash,
                          settings={k: v for k, v in settings.items() if v is not None})
    emit({"home": str(joined.config.home), "chain_id": joined.chain_id,
          "genesis_hash": joined.genesis_hash, "address": joined.address,
          "bootstrap_peers": ", ".join(joined.bootstrap_peers),
          "provider": str(joined.config.provider).lower()}, as_json)
    if joined.config.provider:
        check_provider_funds(rpc_url, joined)
    if no_start:
        return
    _run_node(load_config(joined.config.home))  # the environment applies, as to `run`


@main.command()
@HOME_OPTION
@click.option("--rpc", default=None, help="RPC URL (default: from HOME's config).")
@JSON_OPTION
@handle_errors
def status(home: Path, rpc: str | None, as_json: bool) -> None:
    """Height, peers, sync and health of the node of HOME (through its RPC)."""
    from ogpu_node.sdk.sync_client import rpc_call

    url = rpc or "http://" + load_config(home.expanduser()).rpc_listen
    info = rpc_call(url, "chain_status")
    health = rpc_call(url, "node_health")
    info["healthy"] = health.get("healthy")
    info["healthReasons"] = health.get("reasons")
    if as_json:
        emit(info, True)
        return
    reasons = info.pop("healthReasons") or []
    emit({k: str(v) for k, v in info.items()}, False)
    for reason in reasons:  # one line each, with the code monitoring matches on
        click.echo(f"unhealthy: {reason['message']} [{reason['code']}]")


if __name__ == "__main__":
    main()
