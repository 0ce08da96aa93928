"""An isolated network of Linux network namespaces for the fault tests: one namespace per node,
each with an address of its own, joined by bridges in a "switch" namespace that the test can
rewire to partition the nodes.

    node namespace  <tag>n<i>   lo; `p2p` 10.250.0.<i+1>/24; `ctl` 10.250.<C>.<i+1>/24
    switch          <tag>sw     bridges `side0` .. `side<n-1>` (the p2p plane: a node's port
                                sits on the bridge of its side; healed, all are on side0) and
                                `ctl` (the control plane: every node's RPC and the host leg)
    host leg        <tag>h      in this (the root) namespace, 10.250.<C>.254/24 on `ctl`

Two planes, so that a partition cuts the nodes' p2p traffic and never the test's view of them:
nodes listen for p2p on their `p2p` address only and dial only p2p addresses, and the control
bridge carries only RPC between the test and each node. There is no default route anywhere,
forwarding is off in every namespace and nothing is translated: a node can reach the other
nodes' addresses on its side and the host leg, nothing else. The p2p subnet exists only inside
these namespaces; the control subnet's third byte C is picked free on this host (it is the one
route this module adds to the root namespace).

`<tag>` is `ogft` + this process's id, so concurrent runs do not collide; `clean_leftovers`
removes what runs that are gone left behind (their node processes included). Needs root and
iproute2; `unavailable()` says why when it cannot work, and the tests then skip with it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

PREFIX = "ogft"
"""Every namespace and root-namespace link this module makes is named PREFIX + pid + role."""
P2P_NET = "10.250.0"
CONTROL_NET = "10.250"
HOST_LEG = 254
CONTROL_BRIDGE = "ctl"
IP_TIMEOUT_S = 10.0
_TAG = re.compile(rf"^{PREFIX}(\d+)")


class TopologyError(RuntimeError):
    """An `ip` command failed while building, rewiring or removing the test network."""


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], check=False, capture_output=True, text=True,
                          timeout=IP_TIMEOUT_S)
    if check and done.returncode != 0:
        raise TopologyError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _in(namespace: str, *command: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", namespace, *command], check=False,
                          capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if done.returncode != 0:
        raise TopologyError(f"{' '.join(command)} in {namespace}: {done.stderr.strip()}")


@functools.cache
def unavailable() -> str | None:
    """Why network namespaces cannot be made here (not root, no iproute2, refused), or None
    (asked once per run)."""
    if os.geteuid() != 0:
        return f"network namespaces need root (this test runs as uid {os.geteuid()})"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"{PREFIX}{os.getpid()}probe"
    try:
        _ip("netns", "add", probe)
    except (TopologyError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {exc}"
    _ip("netns", "del", probe, check=False)
    return None


def _pid_gone(name: str) -> bool:
    """Whether `name` is ours and the run that made it has exited."""
    match = _TAG.match(name)
    if match is None:
        return False
    try:
        os.kill(int(match[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a live process of another user: not ours to clean
        return False
    return False


def clean_leftovers() -> list[str]:
    """Remove the namespaces and host legs of earlier runs whose process is gone, after killing
    the node processes still inside them; returns what was removed."""
    removed = []
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX) and _pid_gone(name):
            _kill_inside(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    for line in _ip("-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX) and _pid_gone(name):
            _ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _kill_inside(namespace: str) -> None:
    """SIGKILL what runs in one of our namespaces (node processes of a run that died)."""
    for pid in _ip("netns", "pids", namespace, check=False).split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def _free_control_net() -> int:
    used = set(re.findall(rf"\b{re.escape(CONTROL_NET)}\.(\d+)\.",
                          _ip("-4", "addr", "show") + _ip("-4", "route", "show", "table", "all")))
    start = os.getpid() % 250
    for offset in range(250):
        third = 1 + (start + offset) % 250
        if str(third) not in used:
            return third
    raise TopologyError(f"every {CONTROL_NET}.X.0/24 is in use on this host")


@dataclass
class Topology:
    """The namespaces of one run; `build` makes them, `remove` takes them all away."""

    nodes: int
    tag: str
    control: int
    """The third byte of the control subnet."""

    @property
    def switch(self) -> str:
        return f"{self.tag}sw"

    @property
    def host_leg(self) -> str:
        return f"{self.tag}h"

    def namespace(self, i: int) -> str:
        return f"{self.tag}n{i}"

    def p2p_ip(self, i: int) -> str:
        return f"{P2P_NET}.{i + 1}"

    def rpc_ip(self, i: int) -> str:
        return f"{CONTROL_NET}.{self.control}.{i + 1}"

    def partition(self, sides: Sequence[Sequence[int]]) -> None:
        """Put each side's nodes on a bridge of their own: only nodes of one side reach each
        other. Established connections across sides go silent (no reset), as on a real cut."""
        seen = sorted(i for side in sides for i in side)
        if seen != list(range(self.nodes)) or len(sides) > self.nodes:
            raise TopologyError(f"sides {sides} do not split nodes 0..{self.nodes - 1}")
        for k, side in enumerate(sides):
            for i in side:
                _ip("-n", self.switch, "link", "set", f"p{i}", "master", f"side{k}")

    def heal(self) -> None:
        """Every node back on one bridge."""
        self.partition([range(self.nodes)])

    def remove(self) -> None:
        """Delete the host leg and every namespace (killing anything still inside)."""
        _ip("link", "del", self.host_leg, check=False)
        for name in [*(self.namespace(i) for i in range(self.nodes)), self.switch]:
            _kill_inside(name)
            _ip("netns", "del", name, check=False)


def _build(topology: Topology) -> None:
    sw = topology.switch
    _ip("netns", "add", sw)
    _in(sw, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
    for bridge in [CONTROL_BRIDGE, *(f"side{k}" for k in range(topology.nodes))]:
        _ip("-n", sw, "link", "add", bridge, "type", "bridge")
        _ip("-n", sw, "link", "set", bridge, "up")
    for i in range(topology.nodes):
        ns = topology.namespace(i)
        _ip("netns", "add", ns)
        _in(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
        _ip("-n", ns, "link", "set", "lo", "up")
        for inside, port, bridge, address in (
                ("p2p", f"p{i}", "side0", f"{topology.p2p_ip(i)}/24"),
                ("ctl", f"c{i}", CONTROL_BRIDGE, f"{topology.rpc_ip(i)}/24")):
            _ip("link", "add", inside, "netns", ns, "type", "veth", "peer", "name", port,
                "netns", sw)
            _ip("-n", sw, "link", "set", port, "master", bridge)
            if bridge == CONTROL_BRIDGE:  # control ports reach the host leg, not each other
                _ip("-n", sw, "link", "set", port, "type", "bridge_slave", "isolated", "on")
            _ip("-n", sw, "link", "set", port, "up")
            _ip("-n", ns, "addr", "add", address, "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
    _ip("link", "add", topology.host_leg, "type", "veth", "peer", "name", "hostleg", "netns", sw)
    _ip("-n", sw, "link", "set", "hostleg", "master", CONTROL_BRIDGE)
    _ip("-n", sw, "link", "set", "hostleg", "up")
    _ip("addr", "add", f"{CONTROL_NET}.{topology.control}.{HOST_LEG}/24", "dev",
        topology.host_leg)
    _ip("link", "set", topology.host_leg, "up")
    route = _ip("route", "get", topology.rpc_ip(0))
    if f"dev {topology.host_leg} " not in route:
        raise TopologyError(f"the control subnet is not routed to {topology.host_leg}: {route}")


@contextlib.contextmanager
def topology(nodes: int) -> Iterator[Topology]:
    """A fresh isolated network for `nodes` nodes, removed on exit even when building failed."""
    clean_leftovers()
    built = Topology(nodes, f"{PREFIX}{os.getpid()}", _free_control_net())
    try:
        _build(built)
        yield built
    finally:
        built.remove()
