"""The local devnet: N validator processes from a generated genesis, on 127.0.0.1 by default.

    up [--nodes N] [--detach]   create (first run), start, wait until every node is healthy
    add-provider                add a provider node to the running devnet (`ogpu-node join`'s
                                code), funded from dev account 0; [--price-floor U]
                                [--benchmark G] [--device cpu|cuda|auto]
    status                      height, peers and health of each node
    down                        stop every node (SIGTERM, then SIGKILL)
    reset                       stop and delete the devnet folder

(run as `scripts/devnet COMMAND` or `python -m ogpu_node.devnet COMMAND`)

State lives in the devnet folder (default ./devnet) and survives restarts until `reset`. Node i
listens on p2p port BASE_P2P+i and RPC port BASE_RPC+i (`--base-p2p`, `--base-rpc` move them);
every node bootstraps from all others. Tests may place each node on an address of its own
(`NodePlace`) and start it inside a network namespace (`start(..., netns=...)`).
Process ids are kept in `<devnet>/pids`, logs in `<devnet>/nodeI/node.log`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gpu.device import BLAS_THREAD_VARIABLES
from ogpu_node.address import address_from_text, address_to_text
from ogpu_node.config import CONFIG_FILE, ConfigError, load_config
from ogpu_node.errors import OgpuError
from ogpu_node.genesis import dev_account_key
from ogpu_node.keys import read_key_file, write_key_file
from ogpu_node.ledger import Transfer
from ogpu_node.market_demo import CLIENT, run_market_demo
from ogpu_node.node_home import check_provider_funds, join_network
from ogpu_node.polling import WaitTimeout, wait_until
from ogpu_node.sdk import RpcCallError
from ogpu_node.sdk.sync_client import rpc_call, send_transaction
from ogpu_node.types import Amount, parse_amount
from p2p.libp2p_host import peer_id_from_seed

BASE_P2P = 26656
BASE_RPC = 8545
DEV_ACCOUNTS = 10
PROVIDERS = 2
STARTUP_TIMEOUT_S = 60.0
LOCALHOST = "127.0.0.1"
FREE_PORTS_FROM = 20_000
EPHEMERAL_PORTS_FROM = 32_768
FREE_PORT_TRIES = 200


@dataclass(frozen=True)
class NodePlace:
    """Where one node listens: its p2p address (IPv4; the others dial it there) and its RPC
    address. A devnet on one machine puts every node on 127.0.0.1; a test network gives each
    node an address of its own, as separate hosts would have."""

    p2p_host: str
    p2p_port: int
    rpc_host: str
    rpc_port: int

    @property
    def p2p_multiaddr(self) -> str:
        return f"/ip4/{self.p2p_host}/tcp/{self.p2p_port}"


def local_places(nodes: int, base_p2p: int = BASE_P2P, base_rpc: int = BASE_RPC
                 ) -> list[NodePlace]:
    """Node i on 127.0.0.1, p2p port `base_p2p` + i and RPC port `base_rpc` + i."""
    return [NodePlace(LOCALHOST, base_p2p + i, LOCALHOST, base_rpc + i) for i in range(nodes)]


def rpc_url(home: Path) -> str:
    """The JSON-RPC URL of the node at `home`, from its config."""
    return "http://" + load_config(home, environ={}).rpc_listen


def node_homes(root: Path) -> list[Path]:
    return sorted((p for p in root.glob("node*") if (p / CONFIG_FILE).exists()),
                  key=lambda p: int(p.name[4:]))


def create(root: Path, nodes: int, base_p2p: int = BASE_P2P, base_rpc: int = BASE_RPC,
           dev_accounts: int = DEV_ACCOUNTS, dev_balance: str = "1000000",
           providers: int = PROVIDERS, node_settings: dict[int, dict[str, object]] | None = None,
           template: Path | None = None, places: Sequence[NodePlace] | None = None) -> None:
    """Make the homes and genesis, then give each node its addresses and bootstrap peers.

    Nodes 1..`providers` also act as GPU providers; `node_settings` adds settings per node
    (used by tests for fault injection). `places` puts node i at `places[i]` (default
    `local_places`), where the others dial it."""
    subprocess.run([sys.executable, "-m", "ogpu_node.cli.node_cli", "genesis", "new",
                    "--validators", str(nodes), "--homes", str(root), "--chain-id", "ogpu-devnet",
                    "--dev-accounts", str(dev_accounts), "--dev-balance", dev_balance, "--json",
                    *(["--template", str(template)] if template else [])],
                   check=True, stdout=subprocess.DEVNULL)
    homes = node_homes(root)
    places = list(places) if places is not None else local_places(nodes, base_p2p, base_rpc)
    if len(places) != len(homes):
        raise ConfigError(f"{len(places)} places given for {len(homes)} nodes")
    ids = [peer_id(home) for home in homes]
    for i, home in enumerate(homes):
        extra: dict[str, object] = {"provider": 1 <= i <= providers}
        extra.update((node_settings or {}).get(i, {}))
        bootstrap = [f"{places[j].p2p_multiaddr}/p2p/{ids[j]}"
                     for j in range(len(homes)) if j != i]
        write_node_config(home, places[i], bootstrap, extra)


def peer_id(home: Path) -> str:
    """The libp2p peer id of the node at `home`, from its node key."""
    config = load_config(home, environ={})
    return peer_id_from_seed(read_key_file(config.path(config.node_key_file)).secret_bytes())


def write_node_config(home: Path, place: NodePlace, bootstrap: list[str],
                      extra: dict[str, object] | None = None) -> None:
    """Point the node at `home` to its addresses and its bootstrap peers; `extra` overrides
    other settings."""
    config = load_config(home, environ={})
    skip = ("p2p_listen", "rpc_listen", "bootstrap_peers", "rpc_rate_limit_per_s", "rpc_uploads",
            *(f"{name} " for name in extra or {}))
    lines = [line for line in config.to_toml().splitlines() if not line.startswith(skip)]
    lines += [f"{name} = {json.dumps(value)}" for name, value in (extra or {}).items()]
    lines += [f"p2p_listen = {json.dumps(place.p2p_multiaddr)}",
              f'rpc_listen = "{place.rpc_host}:{place.rpc_port}"',
              "bootstrap_peers = " + json.dumps(bootstrap),
              # A local devnet serves its own scripts and benchmarks: no RPC rate limit; and
              # uploads on even if their default changes (the demo and `--inputs` use them).
              "rpc_rate_limit_per_s = 0.0", "rpc_uploads = true"]
    (home / CONFIG_FILE).write_text("\n".join(lines) + "\n")


def free_port_base(count: int) -> int:
    """A base port with `count` free consecutive ports on 127.0.0.1 (for test networks).

    Bases are drawn at random below Linux's ephemeral ports (32768 up, which outgoing
    connections take): test processes running at once (CI shards, several checkouts) that
    scanned in one order found the same base and took each other's ports between this check
    and their nodes' binding."""
    for base in random.sample(range(FREE_PORTS_FROM, EPHEMERAL_PORTS_FROM - count),
                              FREE_PORT_TRIES):
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise OSError("no free range of ports on 127.0.0.1")


def add_follower(root: Path, name: str, p2p_port: int, rpc_port: int) -> Path:
    """A non-validator node home in `root` that bootstraps from every existing node."""
    peers: set[str] = set()
    for home in node_homes(root):
        config = load_config(home, environ={})
        peers |= set(config.bootstrap_peers)
    home = root / name
    subprocess.run([sys.executable, "-m", "ogpu_node.cli.node_cli", "init", "--home", str(home),
                    "--moniker", name, "--json"], check=True, stdout=subprocess.DEVNULL)
    shutil.copyfile(root / "genesis.json", home / "genesis.json")
    write_node_config(home, NodePlace(LOCALHOST, p2p_port, LOCALHOST, rpc_port), sorted(peers))
    return home


def next_node_index(root: Path) -> int:
    """The index the next node added to the devnet in `root` gets (its ports: BASE + index)."""
    return max((int(h.name[4:]) for h in node_homes(root)), default=-1) + 1


def add_provider(root: Path, place: NodePlace, *, settings: Mapping[str, object] | None = None,
                 funder: int = 0) -> Path:
    """Add a provider node to the running devnet in `root` and start it: its home is set up as
    `ogpu-node join` does (genesis and bootstrap peers from node0's RPC), its account funded
    from dev account `funder` with its bond, and its agent then registers and bids with no
    other node restarted. `settings` adds config settings (price floor, device, ...)."""
    homes = node_homes(root)
    if not homes:
        raise ConfigError(f"no devnet in {root} (scripts/devnet up first)")
    name = f"node{next_node_index(root)}"
    url = rpc_url(homes[0])
    joined = join_network(url, root / name, moniker=name, settings={
        "provider": True, "p2p_listen": place.p2p_multiaddr,
        "rpc_listen": f"{place.rpc_host}:{place.rpc_port}",
        # as every devnet node: no RPC rate limit, uploads on (`write_node_config`)
        "rpc_rate_limit_per_s": 0.0, "rpc_uploads": True, **(settings or {})})
    receipt = send_transaction(url, dev_account_key(funder), Transfer(
        address_from_text(joined.address), Amount(joined.provider_funds_needed())))
    if receipt["state"] != "finalized":
        raise ConfigError(f"funding the provider {joined.address} failed: {receipt}")
    check_provider_funds(url, joined)
    start(root, only=[name])
    return root / name


_children: dict[int, subprocess.Popen[bytes]] = {}
"""Nodes this process started, kept so that `stop` can reap them."""


def _pids(root: Path) -> dict[str, int]:
    path = root / "pids"
    return json.loads(path.read_text()) if path.exists() else {}


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def node_environment() -> dict[str, str]:
    """This process's environment for a node process, with one BLAS thread unless set: the
    devnet's nodes, their workloads and their checks share this machine's cores
    (`gpu.device.BLAS_THREAD_VARIABLES`)."""
    return {**dict.fromkeys(BLAS_THREAD_VARIABLES, "1"), **os.environ}


def start(root: Path, only: list[str] | None = None,
          netns: Mapping[str, str] | None = None,
          modules: Mapping[str, str] | None = None) -> dict[str, int]:
    """Start every node (or those named in `only`) not already running; returns name -> pid.

    A node named in `netns` runs inside that network namespace (`ip netns exec`, which needs
    root and keeps the process id: signals sent to the pid reach the node itself). A node named
    in `modules` runs that module's command line instead of `ogpu_node.cli.node_cli` (tests
    start a misbehaving node this way, from a test-only module)."""
    pids = {name: pid for name, pid in _pids(root).items() if _alive(pid)}
    for home in node_homes(root):
        if home.name in pids or (only is not None and home.name not in only):
            continue
        namespace = (netns or {}).get(home.name)
        prefix = ["ip", "netns", "exec", namespace] if namespace else []
        with (home / "node.log").open("ab") as log:
            module = (modules or {}).get(home.name, "ogpu_node.cli.node_cli")
            process = subprocess.Popen([*prefix, sys.executable, "-m", module,
                                        "run", "--home", str(home)], stdout=log, stderr=log,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       env=node_environment())
        _children[process.pid] = process
        pids[home.name] = process.pid
    (root / "pids").write_text(json.dumps(pids))
    return pids


def wait_healthy(root: Path, timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Return once every node answers /health with 200; exit with the log's name otherwise."""
    deadline = time.monotonic() + timeout
    for home in node_homes(root):
        while True:
            try:
                if httpx.get(rpc_url(home) + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{home.name} is not healthy after {timeout:.0f} s; "
                                 f"see {home / 'node.log'}")
            pid = _pids(root).get(home.name)
            if pid is not None and not _alive(pid):
                raise SystemExit(f"{home.name} exited; see {home / 'node.log'}")
            time.sleep(0.2)


def stop(root: Path, timeout: float = 10.0, only: list[str] | None = None,
         sig: int = signal.SIGTERM) -> None:
    """Stop the nodes (or those named in `only`): `sig`, then SIGKILL after `timeout`."""
    everyone = _pids(root)
    pids = {n: p for n, p in everyone.items() if only is None or n in only}
    for pid in pids.values():
        if _alive(pid):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    for pid in pids.values():
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
            _reap(pid)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        child = _children.pop(pid, None)
        if child is not None:
            child.wait()
    remaining = {n: p for n, p in everyone.items() if n not in pids}
    (root / "pids").write_text(json.dumps(remaining))


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _children[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def print_status(root: Path) -> None:
    print(f"{'node':<6} {'height':>7} {'peers':>5}  {'health':<8} rpc")
    for home in node_homes(root):
        url = rpc_url(home)
        try:
            status = rpc_call(url, "chain_status")
            health = httpx.get(url + "/health", timeout=2)
            print(f"{home.name:<6} {status['height']:>7} {status['peers']:>5}  "
                  f"{'ok' if health.status_code == 200 else 'NOT OK':<8} {url}")
        except (httpx.HTTPError, RpcCallError, KeyError):
            print(f"{home.name:<6} {'-':>7} {'-':>5}  {'down':<8} {url}")


def print_welcome(root: Path) -> None:
    print("\nEndpoints")
    for home in node_homes(root):
        url = rpc_url(home)
        print(f"  {home.name}: rpc {url}  ws {url.replace('http', 'ws')}/ws  "
              f"health {url}/health  metrics {url}/metrics")
    print("\nDev accounts (well-known keys: for this local devnet only)")
    for i in range(DEV_ACCOUNTS):
        key = dev_account_key(i)
        print(f"  ({i}) {address_to_text(key.address)}  private key {key.secret_bytes().hex()}")
    url = rpc_url(node_homes(root)[0])
    print(f"\nDashboards (node0): network {url}/dashboard/  customer {url}/dashboard/customer  "
          f"provider {url}/dashboard/provider  governance {url}/dashboard/governance")
    print(f"  key files of the dev accounts, to load in the customer page: "
          f"{write_dev_key_files(root)}/account<N>.json (the demo's client is account {CLIENT})")


def write_dev_key_files(root: Path) -> Path:
    """Write each dev account's key file (as `ogpu account new` does) under `root/dev-keys`,
    for the customer dashboard and `--key`; returns the folder."""
    folder = root / "dev-keys"
    for i in range(DEV_ACCOUNTS):
        path = folder / f"account{i}.json"
        if not path.exists():
            write_key_file(path, dev_account_key(i))
    return folder


def demo_transfer(root: Path) -> None:
    """Send 1.5 OGPU from dev account 0 to dev account 1 through node0 and wait for finality."""
    nodes = node_homes(root)
    url = rpc_url(nodes[0])
    sender, recipient = dev_account_key(0), dev_account_key(1)
    print("\nDemo: dev account 0 sends 1.5 OGPU to dev account 1 through node0 ...")
    start = time.monotonic()
    receipt = send_transaction(url, sender, Transfer(recipient.address, parse_amount("1.5")))
    elapsed = (time.monotonic() - start) * 1000
    print(f"  tx {receipt['hash'][:16]}... {receipt['state']} in block {receipt['height']} "
          f"({elapsed:.0f} ms)")
    for home in nodes:
        seen = _tx_status_once_final(rpc_url(home), receipt["hash"])
        balance = rpc_call(rpc_url(home), "account_get",
                           {"address": address_to_text(recipient.address)})["balanceOgpu"]
        print(f"  {home.name}: {seen['state']} at height {seen['height']}, "
              f"account 1 holds {balance} OGPU")


def _tx_status_once_final(url: str, tx_hash: str, timeout: float = 10.0) -> dict[str, Any]:
    """The transaction's status at `url` once that node has finalised it (each node finalises a
    block on its own, a loaded one a moment later), or as it is after `timeout` seconds."""

    def final() -> dict[str, Any] | None:
        status: dict[str, Any] = rpc_call(url, "tx_status", {"hash": tx_hash})
        return status if status["state"] == "finalized" else None

    try:
        return dict(wait_until(final, "the transaction to be final", timeout))
    except WaitTimeout:
        return dict(rpc_call(url, "tx_status", {"hash": tx_hash}))


def market_demo(root: Path) -> bool:
    """A training task and an inference pool through the providers of this devnet."""
    homes = node_homes(root)
    names, providers = {}, 0
    for home in homes:
        config = load_config(home, environ={})
        key_file = config.path(config.validator_key_file)
        if key_file.exists():
            role = "provider" if config.provider else "validator"
            names[address_to_text(read_key_file(key_file).address)] = f"{home.name} ({role})"
            providers += config.provider
    if not providers:
        print("\n(no providers on this devnet: market demo skipped)")
        return True
    return run_market_demo(rpc_url(homes[0]), names, providers)


def _add_provider_command(root: Path, args: argparse.Namespace) -> int:
    index = next_node_index(root)
    place = local_places(index + 1, args.base_p2p, args.base_rpc)[index]
    settings = {name: value for name, value in (
        ("provider_price_floor", args.price_floor), ("provider_benchmark", args.benchmark),
        ("provider_device", args.device)) if value is not None}
    try:
        home = add_provider(root, place, settings=settings)
        wait_healthy(root)
    except OgpuError as exc:  # no devnet, no funds, a node that does not answer ...
        print(f"error: {exc}", file=sys.stderr)
        return 1
    address = address_to_text(read_key_file(home / "validator_key.json").address)
    print(f"{home.name} started as a provider ({address}); rpc {rpc_url(home)}, "
          f"log {home / 'node.log'}. It registers and bids by itself: "
          f"`ogpu --rpc {rpc_url(home)} provider status {address}`")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/devnet")
    parser.add_argument("command", nargs="?", default="up",
                        choices=["up", "status", "down", "reset", "add-provider"])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("OGPU_DEVNET_DIR",
                                                                         "devnet")))
    parser.add_argument("--detach", action="store_true",
                        help="Start in the background and return (stop with `down`).")
    parser.add_argument("--no-demo", action="store_true", help="Skip the demo transfer.")
    parser.add_argument("--base-p2p", type=int, default=BASE_P2P)
    parser.add_argument("--base-rpc", type=int, default=BASE_RPC)
    parser.add_argument("--price-floor", type=int, default=None,
                        help="add-provider: lowest price per work unit, base units.")
    parser.add_argument("--benchmark", type=int, default=None,
                        help="add-provider: declared GFLOP/s (default: measured).")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                        help="add-provider: where its workloads run.")
    args = parser.parse_args(argv)
    root: Path = args.dir
    if args.command == "add-provider":
        return _add_provider_command(root, args)
    if args.command == "status":
        print_status(root)
        return 0
    if args.command in ("down", "reset"):
        stop(root)
        if args.command == "reset":
            shutil.rmtree(root, ignore_errors=True)
            print(f"removed {root}")
        else:
            print("devnet stopped")
        return 0
    if not (root / "genesis.json").exists():
        print(f"creating a {args.nodes}-validator devnet in {root}")
        create(root, args.nodes, args.base_p2p, args.base_rpc)
    else:
        print(f"reusing the devnet in {root} (scripts/devnet reset to start over)")
    start(root)
    try:
        wait_healthy(root)
        print_status(root)
        print_welcome(root)
        if not args.no_demo:
            demo_transfer(root)
            if not market_demo(root):
                raise SystemExit("the market demo did not complete; see devnet/node*/node.log")
        if args.detach:
            return 0
        print("\nnodes running; Ctrl-C (or `scripts/devnet down`) stops them", flush=True)
        # Block the signals so that sigwait receives them instead of Python's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and exc.code:
            print(exc.code, file=sys.stderr)
            stop(root)
            return 1
    if not args.detach:
        stop(root)
        print("devnet stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
