"""The fault tests' harness: a devnet of real node processes whose network the test can cut, the
faults it injects (partition, SIGSTOP, SIGKILL, steady load) and the three criteria every
scenario is judged by:

- **safety** (`assert_one_chain`): at every height, every node that has a block there has the
  same block, and what a node once reported final is still its block at that height;
- **durability** (`assert_store_holds`): a killed node's LevelDB store, read before the node is
  started again (so before it can resync anything), holds every block the node had reported
  final through RPC, with the hash it reported;
- **convergence** (`converge`): after the fault ends every node reaches one height on one chain,
  and a new transfer finalises on all of them.

Nodes are driven over JSON-RPC; what crosses process boundaries is polled until a deadline
(`ogpu_node.polling.wait_until`). A paused or killed node is asked nothing until it is back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from ogpu_node import devnet
from ogpu_node.address import address_to_text
from ogpu_node.config import load_config
from ogpu_node.encoding import decode
from ogpu_node.genesis import dev_account_key
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Block, Transfer, sign_transaction
from ogpu_node.polling import wait_until
from ogpu_node.sdk import RpcCallError
from ogpu_node.sdk.sync_client import rpc_call, send_transaction
from ogpu_node.storage import ChainStore, LevelDBKV
from ogpu_node.types import Amount

RPC_TIMEOUT_S = 5.0
RANGE = 100
"""Blocks per `chain_getBlockRange` call (the RPC's `max_block_range`)."""
RECIPIENT = 15
"""The dev account every test transfer pays; senders are the accounts below it."""
DEV_ACCOUNTS = 16
DEV_BALANCE = "100000"
"""OGPU per dev account (16 of the default million would pass the supply cap)."""
FEE = 1_000
WATCH_INTERVAL_S = 0.02


class Wiring(Protocol):
    """What the test can do to the links between nodes (`netns_topology.Topology`)."""

    def partition(self, sides: Sequence[Sequence[int]]) -> None: ...

    def heal(self) -> None: ...


@dataclass
class Cluster:
    """A running devnet of validators `node0..` and the faults applied to it."""

    root: Path
    wiring: Wiring | None
    """None where the links cannot be cut (nodes on one loopback)."""
    netns: Mapping[str, str] = field(default_factory=dict)
    """Node name -> the network namespace it runs in (empty on loopback)."""
    reported: dict[str, dict[int, str]] = field(default_factory=dict)
    """Per node, every (height -> block hash) it reported final to this test."""
    paused: set[str] = field(default_factory=set)
    killed: set[str] = field(default_factory=set)

    @property
    def absent(self) -> set[str]:
        """Nodes paused or killed: not asked anything until they are back."""
        return self.paused | self.killed

    @property
    def names(self) -> list[str]:
        return [home.name for home in devnet.node_homes(self.root)]

    @property
    def present(self) -> list[str]:
        return [name for name in self.names if name not in self.absent]

    def url(self, name: str) -> str:
        return devnet.rpc_url(self.root / name)

    def call(self, name: str, method: str, params: dict[str, Any] | None = None) -> Any:
        if name in self.absent:
            raise AssertionError(f"{name} is paused or killed: the test must not ask it")
        return rpc_call(self.url(name), method, params, timeout=RPC_TIMEOUT_S)

    def height(self, name: str) -> int:
        """The node's finalised height (recorded, with its head hash, as reported final)."""
        status = self.call(name, "chain_status")
        height = int(status["height"])
        if height:
            self.record(name, height, str(status["headHash"]))
        return height

    def reached(self, name: str, height: int) -> bool:
        return self.height(name) >= height

    def record(self, name: str, height: int, block_hash: str) -> None:
        self.reported.setdefault(name, {})[height] = block_hash

    def chain(self, name: str) -> list[str]:
        """The hashes of the node's finalised blocks, height 1 first."""
        top = self.height(name)
        hashes: list[str] = []
        while len(hashes) < top:
            start = len(hashes) + 1
            blocks = self.call(name, "chain_getBlockRange",
                               {"from": start, "to": min(top, start + RANGE - 1)})
            if not blocks:
                raise AssertionError(f"{name} reports height {top} but has no block {start}")
            hashes += [str(b["hash"]) for b in blocks]
        return hashes

    def transfer(self, via: str, sender: int, amount: int = 1) -> str:
        """Send `amount` from dev account `sender` to the recipient through `via`; the hash."""
        receipt = send_transaction(self.url(via), dev_account_key(sender),
                                   Transfer(dev_account_key(RECIPIENT).address, Amount(amount)),
                                   fee=FEE, wait=False)
        return str(receipt["hash"])

    def finalized_on(self, name: str, tx_hash: str) -> int | None:
        receipt = self.call(name, "tx_status", {"hash": tx_hash})
        return int(receipt["height"]) if receipt["state"] == "finalized" else None

    def wait_final(self, tx_hash: str, names: Iterable[str], timeout: float = 60.0) -> int:
        """Wait until the transaction is final on every node named; the highest height seen."""
        return max(int(wait_until(partial(self.finalized_on, name, tx_hash),
                                  f"{tx_hash[:12]} final on {name}", timeout))
                   for name in names)

    # --- process faults ---

    def pid(self, name: str) -> int:
        return int(json.loads((self.root / "pids").read_text())[name])

    def pause(self, name: str) -> None:
        self.paused.add(name)
        os.kill(self.pid(name), signal.SIGSTOP)

    def resume(self, name: str) -> None:
        os.kill(self.pid(name), signal.SIGCONT)
        self.paused.discard(name)

    def kill(self, name: str) -> None:
        self.killed.add(name)
        devnet.stop(self.root, only=[name], sig=signal.SIGKILL)

    def restart(self, name: str) -> None:
        devnet.start(self.root, only=[name], netns=self.netns)
        self.killed.discard(name)

    def restore(self) -> None:
        """Resume every paused node and start every killed one."""
        for name in list(self.paused):
            self.resume(name)
        for name in list(self.killed):
            self.restart(name)

    def home(self, name: str) -> Path:
        return self.root / name


# --- the criteria ------------------------------------------------------------------------------


def assert_one_chain(cluster: Cluster, names: Sequence[str] | None = None) -> dict[str, int]:
    """Safety, on the nodes named (default: all present): see `check_one_chain`. Returns each
    node's height."""
    chains = {name: cluster.chain(name) for name in names or cluster.present}
    check_one_chain(chains, cluster.reported)
    return {name: len(chain) for name, chain in chains.items()}


def check_one_chain(chains: Mapping[str, Sequence[str]],
                    reported: Mapping[str, Mapping[int, str]]) -> None:
    """Every node's chain (block hashes from height 1) has the same block as every other at
    each height both have, and still has at every height the block it reported final there."""
    for name, chain in chains.items():
        for height, block_hash in reported.get(name, {}).items():
            have = chain[height - 1] if height <= len(chain) else None
            assert have == block_hash, (f"{name} reported {block_hash[:16]} final at height "
                                        f"{height} and now has {have}")
    top = max((len(chain) for chain in chains.values()), default=0)
    for height in range(1, top + 1):
        seen = {name: chain[height - 1] for name, chain in chains.items() if len(chain) >= height}
        assert len(set(seen.values())) == 1, f"two blocks final at height {height}: {seen}"


def assert_store_holds(home: Path, reported: Mapping[int, str]) -> int:
    """Durability: the (stopped) node's store holds every block it reported final, under the
    hash it reported. The store is copied and the copy opened, so that the check leaves the
    node's own files exactly as the kill left them. Returns the store's head height."""
    config = load_config(home, environ={})
    with tempfile.TemporaryDirectory(prefix="ogpu-store-") as scratch:
        copy = Path(scratch) / "chain"
        shutil.copytree(config.path(config.data_dir) / "chain", copy)
        with ChainStore(LevelDBKV(copy)) as store:
            head = store.head()
            top = head.height if head else 0
            for height, block_hash in sorted(reported.items()):
                stored = store.block_hash_at(height)
                assert stored is not None and stored.hex() == block_hash, (
                    f"{home.name} reported {block_hash[:16]} final at height {height}; its "
                    f"store has {stored.hex()[:16] if stored else 'nothing'} (head {top})")
                raw = store.block_by_hash(stored)
                assert raw is not None and decode(Block, raw).hash == stored, (
                    f"{home.name}: the block stored for height {height} is missing or altered")
            return top


def converge(cluster: Cluster, via: str, sender: int, timeout: float = 90.0) -> int:
    """Convergence: every node reaches the highest height any of them had, a new transfer sent
    through `via` finalises on every node, and all agree (`assert_one_chain`). Returns the
    height of that transfer's block."""
    names = cluster.names
    target = max(cluster.height(name) for name in names)
    for name in names:
        wait_until(partial(cluster.reached, name, target), f"{name} reaching {target}", timeout)
    height = cluster.wait_final(cluster.transfer(via, sender), names, timeout)
    assert_one_chain(cluster, names)
    return height


# --- load --------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    sent: list[str] = field(default_factory=list)
    """Hashes of the transfers a node accepted (state pending or final)."""
    last_per_sender: dict[int, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class SteadyLoad:
    """Transfers at a steady total rate from fixed senders, each bound to one node, in a thread;
    bounded by `max_txs` and `max_s`. Nonces are counted here, so a sender can have many
    transfers pending. A sender whose transfer is refused stops (its next nonce would wait
    behind the refused one), and the refusal is kept in `errors`."""

    def __init__(self, cluster: Cluster, senders: Mapping[int, str], rate_per_s: float,
                 max_txs: int, max_s: float) -> None:
        self._cluster = cluster
        self._senders = dict(senders)
        self._interval = 1.0 / rate_per_s
        self._max_txs = max_txs
        self._max_s = max_s
        self._stop = threading.Event()
        self._result = LoadResult()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SteadyLoad:
        self._thread.start()
        return self

    def sent(self) -> int:
        return len(self._result.sent)

    def stop(self) -> LoadResult:
        self._stop.set()
        self._thread.join()
        return self._result

    def _run(self) -> None:
        cluster, result = self._cluster, self._result
        recipient = dev_account_key(RECIPIENT).address
        keys: dict[int, PrivateKey] = {s: dev_account_key(s) for s in self._senders}
        nonces: dict[int, int] = {}
        chain_id = ""
        try:
            chain_id = str(cluster.call(self._senders[min(keys)], "chain_status")["chainId"])
            for sender, via in self._senders.items():
                nonces[sender] = int(cluster.call(
                    via, "account_get",
                    {"address": address_to_text(keys[sender].address)})["nonce"])
        except RpcCallError as exc:
            result.errors.append(f"load setup: {exc}")
            return
        start = time.monotonic()
        deadline = start + self._max_s
        order = list(self._senders)
        while (order and len(result.sent) < self._max_txs and time.monotonic() < deadline
               and not self._stop.is_set()):
            sender = order[len(result.sent) % len(order)]
            tx = sign_transaction(keys[sender], chain_id=chain_id, nonce=nonces[sender],
                                  fee=FEE, payload=Transfer(recipient, Amount(1)))
            try:
                cluster.call(self._senders[sender], "tx_send", {"tx": tx.encoded.hex()})
                result.sent.append(tx.hash.hex())
                result.last_per_sender[sender] = tx.hash.hex()
                nonces[sender] += 1
            except RpcCallError as exc:
                result.errors.append(f"account {sender} via {self._senders[sender]}: {exc}")
                order.remove(sender)
            # pace to the rate (this waits for time to pass, it synchronises nothing)
            self._stop.wait(max(0.0, start + len(result.sent) * self._interval
                                - time.monotonic()))


class HeadWatch:
    """Polls one node's head in a thread, recording each (height, hash) it reports final, until
    stopped: what the node reported up to the moment it was killed."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self._url = cluster.url(name)
        self._reported: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def heights_above(self, height: int) -> int:
        """How many heads above `height` the node has reported so far."""
        with self._lock:
            return sum(h > height for h in self._reported)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status = rpc_call(self._url, "chain_status", timeout=RPC_TIMEOUT_S)
            except RpcCallError:
                self._stop.wait(WATCH_INTERVAL_S)
                continue
            if status["height"]:
                with self._lock:
                    self._reported[int(status["height"])] = str(status["headHash"])
            self._stop.wait(WATCH_INTERVAL_S)

    def stop(self) -> dict[int, str]:
        """Stop polling; every head reported, by height."""
        self._stop.set()
        self._thread.join()
        return dict(self._reported)
