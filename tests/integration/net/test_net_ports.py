"""Published ports on the real kernel: loopback, the host's address, hairpin, UDP, conflicts."""

from __future__ import annotations

import socket
import subprocess

import pytest

from net_helpers import (TCP_CLIENT, TCP_SERVER, UDP_CLIENT, UDP_SERVER, host_address, tcp_from_host,
                         udp_from_host)
from orch.errors import Conflict
from orch.net.endpoint import veth_name
from orch.net.model import PortMapping

pytestmark = pytest.mark.privileged


def _published(env, cid: str, proto: str = "tcp") -> int:
    (pub,) = [p for p in env.networks.publications_of(cid) if p.mapping.proto == proto]
    return pub.mapping.host_port


def test_published_tcp_port_answers_on_loopback_host_address_and_hairpin(env):
    env.networks.create_network("front")
    env.networks.create_network("back")
    env.container("front", "web1", names=("web",), publish=[PortMapping(7000, 0, "tcp")])
    neighbour = env.container("front", "neigh", names=("neigh",))
    env.container("back", "other", names=("other",))
    env.start("web1", TCP_SERVER.format(port=7000, name="web1"))
    port = _published(env, "web1")
    front = env.networks.get("front")
    host = host_address()

    # From the host's loopback: the container sees the gateway (masqueraded 127.0.0.1).
    assert tcp_from_host("127.0.0.1", port).split() == ["web1", front.gateway]
    # From the host's own address: the source stays the host's address.
    assert tcp_from_host(host, port).split() == ["web1", host]
    # Hairpin from a neighbour on the same network, through the host's address.
    out = env.run("neigh", TCP_CLIENT.format(host=host, port=port, timeout=3)).stdout
    assert out.split() == ["web1", front.gateway], out
    assert neighbour.address != front.gateway
    # Hairpin to itself: the container reaches its own published port through the host.
    out = env.run("web1", TCP_CLIENT.format(host=host, port=port, timeout=3)).stdout
    assert out.split() == ["web1", front.gateway], out
    # From a container on another network: a published port is open to everyone.
    out = env.run("other", TCP_CLIENT.format(host=host, port=port, timeout=3)).stdout
    assert out.split()[0] == "web1", out


def test_published_udp_port(env):
    env.networks.create_network("front")
    env.networks.create_network("back")
    env.container("front", "dns1", names=("dns1",), publish=[PortMapping(5300, 0, "udp")])
    env.container("back", "other", names=("other",))
    env.start("dns1", UDP_SERVER.format(port=5300, name="dns1"))
    port = _published(env, "dns1", "udp")

    assert udp_from_host("127.0.0.1", port) == "dns1 ping"
    assert udp_from_host(host_address(), port) == "dns1 ping"
    out = env.run("other", UDP_CLIENT.format(host=host_address(), port=port, timeout=3)).stdout.strip()
    assert out == "dns1 ping"


def test_publish_on_one_host_address_only(env):
    env.networks.create_network("front")
    env.container("front", "web1", names=("web",), publish=[PortMapping(7000, 0, "tcp", "127.0.0.1")])
    env.start("web1", TCP_SERVER.format(port=7000, name="web1"))
    port = _published(env, "web1")
    assert tcp_from_host("127.0.0.1", port).startswith("web1 ")
    assert tcp_from_host(host_address(), port, timeout=1).startswith("FAILED")


def test_port_in_use_is_a_clear_error_before_anything_changes(env):
    env.networks.create_network("front")
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        path = env.networks.create_netns("late")
        before = env.networks.state
        rules_before = subprocess.run(["nft", "list", "table", "ip", env.networks.table],
                                      capture_output=True, text=True).stdout
        with pytest.raises(Conflict, match=f"host port 0.0.0.0:{port}/tcp is already in use"):
            env.networks.connect("front", "late", path, names=("late",),
                                 publish=[PortMapping(81, 0), PortMapping(80, port)])

    assert env.networks.state == before
    assert env.networks.ports.held() == [], "the port reserved before the failing one is released"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert veth_name("late", "front") not in links
    inside = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "link"], capture_output=True, text=True).stdout
    assert [line.split(":")[1].strip() for line in inside.splitlines()] == ["lo"]
    assert subprocess.run(["nft", "list", "table", "ip", env.networks.table],
                          capture_output=True, text=True).stdout == rules_before


def test_a_published_port_is_held_against_other_programs(env):
    env.networks.create_network("front")
    env.container("front", "web1", names=("web",), publish=[PortMapping(7000, 0)])
    port = _published(env, "web1")
    with socket.socket() as s, pytest.raises(OSError, match="in use"):
        s.bind(("0.0.0.0", port))
    env.networks.release_container("web1")
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))  # free again once unpublished
