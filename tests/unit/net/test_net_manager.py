"""The Networks facade over a recording kernel: order of steps, rollback, state, layering."""

from __future__ import annotations

import json

import pytest

from orch.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from orch.net.endpoint import veth_name
from orch.net.kernel import RecordingKernel
from orch.net.manager import Networks, NetState
from orch.net.model import PortMapping


@pytest.fixture
def nets(tmp_path):
    n = Networks(RecordingKernel(routes=["192.0.2.0/24", "10.89.0.0/24"]), run_dir=tmp_path, bridge_prefix="orchX")
    yield n
    n.close()


def test_create_network_avoids_host_routes_and_makes_a_bridge(nets):
    net = nets.create_network("front", options={"com.docker.network.driver.mtu": "1400"})
    assert (net.subnet, net.gateway, net.mtu) == ("10.89.1.0/24", "10.89.1.1", 1400)
    assert net.bridge.startswith("orchX") and len(net.bridge) == 15
    k = nets.kernel
    assert k.calls[0] == ("create_bridge", net.bridge, "10.89.1.1", 24, 1400)
    assert k.sysctls == {f"net.ipv4.conf.{net.bridge}.route_localnet": "1", "net.ipv4.ip_forward": "1"}
    assert f'oifname "{net.bridge}" iifname != "{net.bridge}" drop' in k.nft[-1]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"options": {"com.docker.network.driver.mtu": "x"}}, InvalidArgument, "invalid com.docker.network.driver.mtu 'x'"),
    ({"options": {"com.docker.network.driver.mtu": "20"}}, InvalidArgument, "from 68 to 65535"),
    ({"options": {"foo": "1"}}, InvalidArgument, "unknown network option 'foo'"),
    ({"subnet": "10.89.7.0/24", "gateway": "10.89.8.1"}, InvalidArgument, "not a host address"),
])
def test_create_network_errors_touch_nothing(nets, kwargs, error, message):
    with pytest.raises(error, match=message):
        nets.create_network("front", **kwargs)
    assert nets.kernel.calls == []
    assert nets.state == NetState()


def test_duplicate_network_and_unknown_network(nets):
    nets.create_network("front")
    with pytest.raises(AlreadyExists, match="network 'front' already exists"):
        nets.create_network("front")
    with pytest.raises(NotFound, match="no such network: back"):
        nets.remove_network("back")


def test_connect_steps_in_order(nets):
    net = nets.create_network("front")
    path = nets.create_netns("c1")
    nets.kernel.calls.clear()
    ep = nets.connect("front", "c1", path, names=("web",))
    host = veth_name("c1", "front")
    # No rule changes for an endpoint without published ports, so nft is not run again.
    assert nets.kernel.calls == [
        ("delete_link", host),
        ("create_veth", host, net.bridge, 1500, path, "eth0"),
        ("configure_in_netns", path, "eth0", "10.89.1.2", 24, "10.89.1.1", True),
    ]
    assert (ep.ifname, ep.host_ifname, ep.address) == ("eth0", host, "10.89.1.2")


def test_second_network_is_eth1_without_default_route(nets):
    nets.create_network("front")
    nets.create_network("back")
    path = nets.create_netns("c1")
    nets.connect("front", "c1", path)
    nets.kernel.calls.clear()
    ep = nets.connect("back", "c1", path)
    configure = [c for c in nets.kernel.calls if c[0] == "configure_in_netns"]
    assert ep.ifname == "eth1" and configure[0][2] == "eth1" and configure[0][-1] is False
    with pytest.raises(AlreadyExists, match="already connected"):
        nets.connect("back", "c1", path)


def test_connect_failure_rolls_back(nets):
    nets.create_network("front")
    path = nets.create_netns("c1")

    def broken(*args):
        raise OSError("boom")

    nets.kernel.configure_in_netns = broken
    before = nets.state
    with pytest.raises(OSError):
        nets.connect("front", "c1", path, publish=[PortMapping(80, 0, host_ip="127.0.0.1")])
    host = veth_name("c1", "front")
    assert nets.kernel.calls[-1] == ("delete_link", host)
    assert nets.state == before and nets.ports.held() == []


def test_publish_on_internal_network_is_refused(nets):
    nets.create_network("secret", internal=True)
    with pytest.raises(InvalidArgument, match="internal"):
        nets.connect("secret", "c1", nets.create_netns("c1"), publish=[PortMapping(80)])


def test_remove_network_with_endpoints_is_a_conflict_then_works(nets):
    net = nets.create_network("front")
    nets.connect("front", "c1", nets.create_netns("c1"), publish=[PortMapping(80, 0, host_ip="127.0.0.1")])
    with pytest.raises(Conflict, match=r"network 'front' has active endpoints \(c1\)"):
        nets.remove_network("front")
    nets.release_container("c1")
    assert nets.ports.held() == []
    nets.remove_network("front")
    k = nets.kernel
    assert net.bridge not in k.links and k.namespaces == {}
    assert k.nft[-1] == f"table ip {nets.table}\ndelete table ip {nets.table}\n"
    assert nets.state == NetState()


def test_container_files(nets):
    nets.create_network("front")
    nets.create_network("back")
    path = nets.create_netns("c1")
    nets.connect("front", "c1", path)
    nets.connect("back", "c1", path)
    files = nets.container_files("c1", "web")
    assert files["hostname"] == "web\n"
    assert files["hosts"].endswith("10.89.1.2\tweb\n10.89.2.2\tweb\n")
    # No DNS service in this manager: the host's servers (none given: docker's fallback).
    assert files["resolv.conf"].startswith("nameserver 8.8.8.8\n")


def test_state_round_trips_and_restore_drops_dead_namespaces(nets, tmp_path):
    nets.create_network("front")
    nets.connect("front", "c1", nets.create_netns("c1"), names=("a",))
    nets.connect("front", "c2", nets.create_netns("c2"), names=("b",), publish=[PortMapping(80, 0, host_ip="127.0.0.1")])
    saved = json.loads(json.dumps(nets.state.to_json()))
    assert NetState.from_json(saved) == nets.state
    kernel = nets.kernel
    nets.close()
    kernel.remove_netns(nets.netns_path("c2"))

    again = Networks(kernel, run_dir=tmp_path, bridge_prefix="orchX")
    again.restore(NetState.from_json(saved))
    assert [e.container_id for e in again.state.endpoints] == ["c1"]
    assert again.state.publications == ()
    assert "10.89.1.3" not in again.state.ipam.networks["front"].allocated
    again.close()


def test_restore_keeps_a_publication_whose_port_was_taken_meanwhile(nets, tmp_path):
    import socket

    nets.create_network("front")
    nets.connect("front", "c1", nets.create_netns("c1"), publish=[PortMapping(80, 0, host_ip="127.0.0.1")])
    saved = nets.state
    port = saved.publications[0].mapping.host_port
    kernel = nets.kernel
    nets.close()
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", port))
        again = Networks(kernel, run_dir=tmp_path, bridge_prefix="orchX")
        again.restore(saved)
        assert again.state.publications == saved.publications
        assert f"dnat to 10.89.1.2:80" in kernel.nft[-1]
        assert len(again.warnings) == 1 and "is already in use" in again.warnings[0]
        again.close()


@pytest.mark.parametrize("name, bridge, error, message", [
    ("bad name", None, InvalidArgument, "invalid network name 'bad name'"),
    ("-x", None, InvalidArgument, "invalid network name"),
    ("ok", "eth0", AlreadyExists, "interface eth0 already exists on this host"),
])
def test_create_network_refuses_bad_names_and_foreign_interfaces(nets, name, bridge, error, message):
    nets.kernel.links.add("eth0")
    with pytest.raises(error, match=message):
        nets.create_network(name, bridge=bridge)
    assert nets.kernel.calls == [] and nets.state == NetState()


def test_prune_removes_unused_networks_but_kept_ones(nets):
    for name in ("bridge", "used", "idle1", "idle2"):
        nets.create_network(name)
    nets.connect("used", "c1", nets.create_netns("c1"))
    assert nets.prune(keep={"bridge"}) == ["idle1", "idle2"]
    assert [n.name for n in nets.list()] == ["bridge", "used"]
    assert [e.container_id for e in nets.endpoints_on("used")] == ["c1"]
    with pytest.raises(NotFound):
        nets.endpoints_on("idle1")


def test_rules_are_loaded_only_when_they_change(nets):
    nets.create_network("front")
    loads = len(nets.kernel.nft)
    nets.connect("front", "c1", nets.create_netns("c1"))
    assert len(nets.kernel.nft) == loads
    nets.connect("front", "c2", nets.create_netns("c2"), publish=[PortMapping(80, 0, host_ip="127.0.0.1")])
    assert len(nets.kernel.nft) == loads + 1 and "dnat to 10.89.1.3:80" in nets.kernel.nft[-1]
    nets.disconnect("front", "c2")
    assert len(nets.kernel.nft) == loads + 2 and "dnat to" not in nets.kernel.nft[-1]
