"""A node's home folder: its config file, its node key and its validator key, and how a new
home joins a running network (`join_network`: the genesis and bootstrap peers fetched from one of
its nodes over JSON-RPC, `chain_genesis`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ogpu_node.address import address_to_text
from ogpu_node.config import CONFIG_FILE, Config, load_config
from ogpu_node.errors import OgpuError
from ogpu_node.genesis import GenesisError, load_genesis, parse_genesis
from ogpu_node.keys import PrivateKey, read_key_file, write_key_file
from ogpu_node.sdk import RpcCallError
from ogpu_node.sdk.sync_client import rpc_call
from ogpu_node.types import format_amount

ANY_HOST = "/ip4/0.0.0.0/"
"""A listen address on every interface: peers dial the host they reached the node at instead."""
PROVIDER_FEE_RESERVE = 10**9
"""Balance a joining provider needs beyond its bond, for the fees of its bids and results
(1 OGPU: a million transactions at the devnet's minimum fee of 1000 base units)."""


MAX_BOOTSTRAP_PEERS = 64
"""Most bootstrap addresses taken from the node a home joins through."""
RPC_NOT_FOUND = -32001
"""The JSON-RPC error code of a thing the node does not have (`rpc.errors.ErrorCode`)."""


class JoinError(OgpuError):
    """A network that cannot be joined as asked (another chain in the home, no funds, ...)."""


def init_home(home: Path, moniker: str) -> dict[str, str]:
    """Create a node home: config file, node key and validator key. Existing keys are kept."""
    home = home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    config = Config(home=home, moniker=moniker)
    config_path = home / CONFIG_FILE
    if not config_path.exists():
        config_path.write_text(config.to_toml())
    keys = {}
    for kind, name in (("node", config.node_key_file), ("validator", config.validator_key_file)):
        path = config.path(name)
        if not path.exists():
            write_key_file(path, PrivateKey.generate())
        keys[kind] = read_key_file(path)
    return {
        "home": str(home),
        "config": str(config_path),
        "node_id": keys["node"].public_key.raw.hex(),
        "validator_address": address_to_text(keys["validator"].address),
        "validator_public_key": keys["validator"].public_key.raw.hex(),
    }


@dataclass(frozen=True)
class Joined:
    """A home set up to join a network (`join_network`)."""

    config: Config
    chain_id: str
    genesis_hash: str
    address: str
    """The address of the home's validator key: the account it signs with (provider, stake)."""
    bootstrap_peers: tuple[str, ...]
    provider_min_stake: int
    """The chain's least provider bond (its genesis value), base units."""

    def provider_funds_needed(self) -> int:
        """The balance a new provider needs: its first bond (the configured stake, at least
        the chain's minimum) and its fees."""
        return max(self.config.provider_stake, self.provider_min_stake) + PROVIDER_FEE_RESERVE


def dialable(multiaddr: str, rpc_url: str) -> str:
    """`multiaddr` with an every-interface host replaced by the host `rpc_url` reached."""
    host = urlsplit(rpc_url).hostname
    if multiaddr.startswith(ANY_HOST) and host:
        return f"/ip4/{host}/" + multiaddr[len(ANY_HOST):]
    return multiaddr


def join_network(rpc_url: str, home: Path, *, moniker: str = "node",
                 key_file: Path | None = None, genesis_hash: str | None = None,
                 settings: Mapping[str, Any] | None = None) -> Joined:
    """Set up `home` to join the network of the node at `rpc_url`: its genesis (checked against
    `genesis_hash` when given, and against a genesis already in `home`), the peers it names as
    bootstrap peers (`chain_genesis`: itself and the peers it dials), the key of `key_file` as
    the validator key (else the home's own, created if missing), and `settings` (config names
    -> values, e.g. `provider`, `p2p_listen`) written to the config file. Starts nothing."""
    answer = rpc_call(rpc_url, "chain_genesis")
    peers_sent = answer.get("bootstrapPeers") if isinstance(answer, dict) else None
    if (not isinstance(peers_sent, list) or not 0 < len(peers_sent) <= MAX_BOOTSTRAP_PEERS
            or not all(isinstance(a, str) for a in peers_sent)):
        raise JoinError(f"{rpc_url} did not answer chain_genesis with 1 to "
                        f"{MAX_BOOTSTRAP_PEERS} bootstrap addresses")
    try:
        genesis = parse_genesis(answer.get("genesis"))
    except GenesisError as exc:
        raise JoinError(f"the genesis {rpc_url} sent is not valid: {exc}") from exc
    if genesis.hash.hex() != answer.get("genesisHash"):
        raise JoinError(f"{rpc_url} sent a genesis whose hash is not the one it claims")
    if genesis_hash is not None and genesis.hash.hex() != genesis_hash.removeprefix("0x"):
        raise JoinError(f"{rpc_url} serves chain {genesis.chain_id} with genesis "
                        f"{genesis.hash.hex()}, not the {genesis_hash} asked for")
    home = home.expanduser()
    config = load_config(home, environ={}) if (home / CONFIG_FILE).exists() else Config(home=home)
    genesis_path = config.path(config.genesis_file)
    if genesis_path.exists() and load_genesis(genesis_path).hash != genesis.hash:
        raise JoinError(f"{home} already holds another chain's genesis ({genesis_path})")
    if key_file is not None:
        _install_key(key_file, config.path(config.validator_key_file))
    init_home(home, moniker)
    genesis.write(genesis_path)
    peers = tuple(dialable(a, rpc_url) for a in peers_sent)
    flags = {"moniker": moniker, "bootstrap_peers": list(peers), **(settings or {})}
    config = load_config(home, flags=flags, environ={})
    (home / CONFIG_FILE).write_text(config.to_toml())
    address = address_to_text(read_key_file(config.path(config.validator_key_file)).address)
    return Joined(config, genesis.chain_id, genesis.hash.hex(), address, peers,
                  genesis.params.provider_min_stake)


def _install_key(source: Path, target: Path) -> None:
    """Use the key of `source` as the home's validator key (never replacing another key)."""
    key = read_key_file(source)
    if target.exists():
        if read_key_file(target).secret_bytes() != key.secret_bytes():
            raise JoinError(f"{target} already holds another key: use another home, or that key")
        return
    write_key_file(target, key)


def check_provider_funds(rpc_url: str, joined: Joined) -> None:
    """Refuse to start a provider whose account cannot pay its first bond (its agent would only
    log refusals): the error names the address and the amount to send it. A provider already
    registered passes (its agent only tops its bond up when it can)."""
    try:
        rpc_call(rpc_url, "provider_get", {"address": joined.address})
        return
    except RpcCallError as exc:
        if exc.code != RPC_NOT_FOUND:
            raise
    account = rpc_call(rpc_url, "account_get", {"address": joined.address})
    needed = joined.provider_funds_needed()
    if int(account["balance"]) < needed:
        raise JoinError(f"the provider account {joined.address} holds "
                        f"{account['balanceOgpu']} OGPU; send it at least "
                        f"{format_amount(needed)} OGPU (bond and fees) before starting it")
