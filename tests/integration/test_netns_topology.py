"""The namespace network of the fault tests is isolated as promised (no way out of a node's
namespace, control ports that do not see each other), partitions and heals the p2p plane while
the control plane stays up, and leaves nothing behind. Needs root, like the fault tests."""

from __future__ import annotations

import socket
import subprocess
import sys
from functools import partial

import pytest

from ogpu_node.polling import wait_until
from tests.integration import netns_topology

PROBE_PORT = 9_000
LISTEN_ON_EACH = f"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for host in sys.argv[1:]:
    sel.register(socket.create_server((host, {PROBE_PORT})), selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        key.fileobj.accept()[0].close()
"""
"""Accepts (and closes) connections on PROBE_PORT of each address given."""


def _connects(host: str) -> bool:
    try:
        socket.create_connection((host, PROBE_PORT), timeout=1).close()
    except OSError:
        return False
    return True


def _reaches(topology: netns_topology.Topology, source: int, host: str) -> bool:
    """Whether a TCP connection from node `source`'s namespace to host:PROBE_PORT succeeds."""
    probe = f"import socket; socket.create_connection(('{host}', {PROBE_PORT}), timeout=1)"
    done = subprocess.run(["ip", "netns", "exec", topology.namespace(source), sys.executable,
                           "-c", probe], check=False, capture_output=True, timeout=10)
    return done.returncode == 0


@pytest.mark.integration
def test_the_namespace_network_is_isolated_partitions_and_leaves_nothing() -> None:
    why = netns_topology.unavailable()
    if why:
        pytest.skip(why)
    with netns_topology.topology(3) as net:
        listener = subprocess.Popen(["ip", "netns", "exec", net.namespace(1), sys.executable,
                                     "-c", LISTEN_ON_EACH, net.p2p_ip(1), net.rpc_ip(1)])
        try:
            # this (root) namespace reaches RPC on the control plane
            wait_until(partial(_connects, net.rpc_ip(1)), "node1's listener", timeout=10)
            assert _reaches(net, 0, net.p2p_ip(1))
            assert not _reaches(net, 0, net.rpc_ip(1))  # control ports do not see each other
            for i in range(3):  # no way out: no default route, no forwarding
                routes = subprocess.run(["ip", "-n", net.namespace(i), "route"], check=True,
                                        capture_output=True, text=True).stdout
                assert "default" not in routes and f"{net.p2p_ip(i)}" in routes
                forwarding = subprocess.run(
                    ["ip", "netns", "exec", net.namespace(i), "sysctl", "-n",
                     "net.ipv4.ip_forward"], check=True, capture_output=True, text=True).stdout
                assert forwarding.strip() == "0"
            net.partition([[0], [1, 2]])
            assert not _reaches(net, 0, net.p2p_ip(1))
            assert _reaches(net, 2, net.p2p_ip(1))
            assert _connects(net.rpc_ip(1))  # a partition leaves the control plane alone
            net.heal()
            assert _reaches(net, 0, net.p2p_ip(1))
        finally:
            listener.kill()
            listener.wait()
    left = subprocess.run(["ip", "-o", "link"], check=True, capture_output=True,
                          text=True).stdout + subprocess.run(
        ["ip", "netns", "list"], check=True, capture_output=True, text=True).stdout
    assert net.tag not in left
