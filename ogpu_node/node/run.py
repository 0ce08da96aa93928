"""Assemble and run a node from its home folder: chain, network, consensus, RPC, metrics.

`run_node(config)` is what `ogpu-node run` calls. Everything is started in one nursery with
`task_status`, and stopped by cancelling it (Ctrl-C or SIGTERM): the network disconnects, the RPC
server closes its sockets, and the LevelDB store is closed last.
"""

from __future__ import annotations

import logging
import math
import re
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from gpu.worker_usage import device_memory
from ogpu_node.agents.provider import ProviderAgent, ProviderPolicy
from ogpu_node.agents.verifier import VerifierAgent, VerifierPolicy
from ogpu_node.blob_retention import ReferencedFiles
from ogpu_node.blobs import BlobStore
from ogpu_node.chain import Chain
from ogpu_node.config import Config, ConfigError
from ogpu_node.genesis import load_genesis
from ogpu_node.keys import read_key_file
from ogpu_node.ledger import Block
from ogpu_node.node.containment import CONTAINED, contained
from ogpu_node.node.messages import FRAME_LIMITS
from ogpu_node.node.node import Node
from ogpu_node.node.settings import NodeSettings
from ogpu_node.rpc.market_metrics import BlobUse, LocalSources
from ogpu_node.rpc.metrics import NodeMetrics
from ogpu_node.rpc.server import serve_rpc
from ogpu_node.storage import ChainStore, LevelDBKV
from p2p.libp2p_host import Libp2pConfig, Libp2pNetwork
from p2p.network import Limits

log = logging.getLogger("ogpu.node")

_LISTEN = re.compile(r"^/ip4/(?P<host>[0-9.]+)/tcp/(?P<port>\d+)$")


@dataclass(frozen=True)
class Endpoints:
    """Where a started node can be reached."""

    rpc: str
    p2p: tuple[str, ...]
    peer_id: str


def parse_listen(multiaddr: str) -> tuple[str, int]:
    """`/ip4/HOST/tcp/PORT` -> (host, port)."""
    match = _LISTEN.match(multiaddr)
    if match is None:
        raise ConfigError(f"p2p_listen must look like /ip4/127.0.0.1/tcp/26656, got {multiaddr!r}")
    return match["host"], int(match["port"])


async def run_node(config: Config, *, task_status: Any = trio.TASK_STATUS_IGNORED,
                   settings: NodeSettings | None = None) -> None:
    """Run the node configured by `config` until cancelled; reports its `Endpoints` when ready."""
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    genesis = load_genesis(config.path(config.genesis_file))
    node_key = read_key_file(config.path(config.node_key_file))
    validator_path = config.path(config.validator_key_file)
    validator_key = read_key_file(validator_path) if validator_path.exists() else None
    host, port = parse_listen(config.p2p_listen)
    rpc_config = config.rpc  # checked when the configuration was loaded
    network = Libp2pNetwork.from_seed(node_key.secret_bytes(), Libp2pConfig(
        listen_host=host, listen_port=port, bootstrap=tuple(config.bootstrap_peers),
        limits=Limits(frame_limits=FRAME_LIMITS), connection=config.p2p))
    data = config.path(config.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    store = ChainStore(LevelDBKV(str(data / "chain")))
    try:
        chain = Chain.open(store, genesis)
        metrics = NodeMetrics()
        metrics.set_height(chain.state.height)

        def finalized(block: Block, latency_s: float) -> None:
            metrics.set_height(block.height)
            if not math.isnan(latency_s):
                metrics.observe_finality(latency_s)

        # the store asks what the chain still needs only when it must make room
        blobs = BlobStore(data / "blobs", config.blob_max_bytes, grace_s=config.blob_grace_s,
                          referenced=ReferencedFiles(lambda: chain.state,
                                                     config.blob_retention_s))
        node = Node(chain=chain, network=network, genesis_hash=genesis.hash,
                    validator_key=validator_key, settings=settings or config.node,
                    moniker=config.moniker, on_finalized=finalized, blobs=blobs,
                    bootstrap_peers=config.bootstrap_peers)
        async with trio.open_nursery() as nursery:
            await nursery.start(network.serve)
            await nursery.start(node.serve)
            rpc = await nursery.start(serve_rpc, node, rpc_config, metrics)
            nursery.start_soon(_update_gauges, node, metrics)
            metrics.watch(local_sources(node))
            start_agents(nursery, node, config)
            endpoints = Endpoints(rpc=f"http://{rpc.host}:{rpc.port}",
                                  p2p=tuple(network.listen_addrs), peer_id=network.peer_id)
            log.info("node %s up: rpc %s, p2p %s, height %d", config.moniker, endpoints.rpc,
                     ", ".join(endpoints.p2p), chain.state.height)
            task_status.started(endpoints)
    finally:
        store.close()


def provider_policy(config: Config) -> ProviderPolicy:
    """The provider agent's policy: each field from the setting `provider_` + its name."""
    return ProviderPolicy(
        price_floor=config.provider_price_floor, stake=config.provider_stake,
        max_concurrent=max(1, config.provider_max_concurrent),
        device=config.provider_device, benchmark=config.provider_benchmark,
        benchmark_settle_s=config.provider_benchmark_settle_s,
        benchmark_refresh_s=config.provider_benchmark_refresh_s,
        fault=config.provider_fault, process=config.provider_process,
        cpus=config.provider_cpu_set)


def verifier_policy(config: Config) -> VerifierPolicy:
    """The verifier agent's policy: each field from `verifier_` + its name (the device is the
    provider's, `provider_device`: both run on this machine's device)."""
    return VerifierPolicy(
        intervals=config.verifier_intervals, freivalds_rounds=config.verifier_freivalds_rounds,
        samples=config.verifier_samples, device=config.provider_device,
        process=config.verifier_process)


def start_agents(nursery: trio.Nursery, node: Node, config: Config) -> None:
    """The market agents this node's configuration asks for (both need a validator key)."""
    if node.key is None:
        if config.provider:
            log.warning("provider = true needs a validator key: not acting as a provider")
        return
    if config.provider:
        nursery.start_soon(supervised, "provider",
                           ProviderAgent(node, provider_policy(config)).serve, node)
    if config.verifier:
        nursery.start_soon(supervised, "verifier",
                           VerifierAgent(node, verifier_policy(config)).serve, node)


AGENT_RESTART_S = 5.0
"""Pause before an agent that failed unexpectedly is started again."""


async def supervised(name: str, serve: Callable[[], Awaitable[None]], node: Node) -> None:
    """Run the `name` agent; an unexpected exception is contained (logged, counted) and the
    agent is started again after `AGENT_RESTART_S`, so a task no agent foresaw cannot end the
    node. Meanwhile `node_health` reports it not running."""
    while True:
        node.agents.set_running(name, True)
        with contained(f"{name} agent"):
            await serve()
            return
        node.agents.set_running(name, False)
        await trio.sleep(AGENT_RESTART_S)


def local_sources(node: Node) -> LocalSources:
    """Where `/metrics` reads the market, the blob store, the workers and the device."""

    def blobs() -> BlobUse | None:
        store = node.blobs
        return None if store is None else BlobUse(store.used_bytes, store.chunk_count,
                                                  store.max_bytes)

    def device() -> tuple[str, str, tuple[int, int] | None] | None:
        used = node.agents.device
        return None if used is None else (used.kind, used.name, device_memory(used.xp))

    return LocalSources(state=lambda: node.chain.state, blobs=blobs,
                        workers=lambda: dict(node.agents.workers), device=device)


async def _update_gauges(node: Node, metrics: NodeMetrics) -> None:
    engine, counted = node.consensus.engine, 0
    while True:
        if node.consensus.engine is not engine:  # rebuilt after a sync or an epoch: a new counter
            engine, counted = node.consensus.engine, 0
        metrics.count_poll("finished", engine.polls_applied - counted)
        counted = engine.polls_applied
        metrics.set_peers(len(node.network.peers()))
        metrics.set_mempool_size(len(node.mempool))
        metrics.set_network_stats(node.network.stats())
        metrics.set_outstanding_polls(node.consensus.engine.outstanding_polls)
        metrics.set_contained_errors(CONTAINED)
        await trio.sleep(1)


async def run_until_signalled(config: Config) -> None:
    """Run the node until SIGINT or SIGTERM, then shut down cleanly."""
    async with trio.open_nursery() as nursery:
        endpoints: Endpoints = await nursery.start(run_node, config)
        print(f"rpc {endpoints.rpc}  p2p {' '.join(endpoints.p2p)}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                log.info("shutting down")
                nursery.cancel_scope.cancel()
                break
