"""Bridge networks on the real kernel: reachability, DNS, isolation, egress, tear-down."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from net_helpers import FAKE_UPSTREAM_ADDRESS, RESOLVE, TCP_CLIENT, TCP_SERVER, tcp_from_host
from orch.errors import Conflict
from orch.net import netns
from orch.net.manager import NetState
from orch.net.model import PortMapping

pytestmark = pytest.mark.privileged


def _ip(*args: str, netns_path: str | None = None) -> str:
    argv = (["nsenter", f"--net={netns_path}"] if netns_path else []) + ["ip", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_container_gets_eth0_address_route_mtu_and_lo(env):
    env.networks.create_network("front", options={"com.docker.network.driver.mtu": "1400"})
    ep = env.container("front", "c1", names=("web",))
    path = env.networks.netns_path("c1")
    links = _ip("-o", "link", netns_path=path)
    assert "eth0" in links and "mtu 1400" in links
    assert "lo: <LOOPBACK,UP" in links
    assert f"inet {ep.address}/24" in _ip("-o", "-4", "addr", "show", "eth0", netns_path=path)
    net = env.networks.get("front")
    assert _ip("route", "show", "default", netns_path=path).startswith(f"default via {net.gateway} dev eth0")
    assert f"master {net.bridge}" in _ip("-o", "link", "show", ep.host_ifname)
    assert "mtu 1400" in _ip("-o", "link", "show", ep.host_ifname)
    assert "mtu 1400" in _ip("-o", "link", "show", net.bridge)
    port = subprocess.run(["bridge", "-d", "link", "show", "dev", ep.host_ifname], capture_output=True, text=True).stdout
    assert "hairpin on" in port


def test_fixed_address_and_dns_over_tcp(env):
    env.networks.create_network("front", subnet="10.89.200.0/24", gateway="10.89.200.254")
    db = env.container("front", "db1", names=("db",), ipv4_address="10.89.200.10")
    env.container("front", "cli", names=("cli",))
    assert db.address == "10.89.200.10"
    out = env.run("cli", """
        from dnslib import DNSRecord
        server = open("/etc/resolv.conf").read().split()[1]
        for name in ("db", "upstream.example.test"):
            reply = DNSRecord.parse(DNSRecord.question(name).send(server, 53, tcp=True, timeout=3))
            print(server, name, " ".join(str(rr.rdata) for rr in reply.rr))
    """).stdout.splitlines()
    assert out == ["10.89.200.254 db 10.89.200.10", f"10.89.200.254 upstream.example.test {FAKE_UPSTREAM_ADDRESS}"]


def test_two_containers_talk_by_ip_and_by_name(env):
    env.networks.create_network("front")
    web = env.container("front", "web1", names=("web", "www"))
    env.container("front", "cli1", names=("client",))
    env.start("web1", TCP_SERVER.format(port=7000, name="web1"))

    by_ip = env.run("cli1", TCP_CLIENT.format(host=web.address, port=7000, timeout=3)).stdout
    by_name = env.run("cli1", TCP_CLIENT.format(host="web", port=7000, timeout=3)).stdout
    by_alias = env.run("cli1", TCP_CLIENT.format(host="www.front", port=7000, timeout=3)).stdout
    client = env.networks.endpoints_of("cli1")[0].address
    assert by_ip.split() == ["web1", client]
    assert by_name.split() == ["web1", client]
    assert by_alias.split() == ["web1", client]


def test_replicas_are_answered_round_robin(env):
    env.networks.create_network("front")
    a = env.container("front", "svc-1", names=("svc-1", "svc"))
    b = env.container("front", "svc-2", names=("svc-2", "svc"))
    env.container("front", "cli", names=("cli",))
    # glibc (what programs use) gets every replica.
    assert set(env.run("cli", RESOLVE.format(name="svc")).stdout.split()) == {a.address, b.address}
    # The server rotates the list on every query; glibc may send several queries for one
    # lookup, so the rotation is checked query by query, as a DNS client sees it.
    out = env.run("cli", """
        from dnslib import DNSRecord
        server = open("/etc/resolv.conf").read().split()[1]
        for _ in range(4):
            reply = DNSRecord.parse(DNSRecord.question("svc").send(server, 53, timeout=3))
            print(" ".join(str(rr.rdata) for rr in reply.rr))
    """).stdout.splitlines()
    assert [set(line.split()) for line in out] == [{a.address, b.address}] * 4
    firsts = [line.split()[0] for line in out]
    assert firsts[0] != firsts[1] and firsts[0] == firsts[2] and firsts[1] == firsts[3]


def test_other_names_are_forwarded_to_the_upstream(env):
    env.networks.create_network("front")
    env.container("front", "c1", names=("c1",))
    assert env.run("c1", RESOLVE.format(name="upstream.example.test")).stdout.split() == [FAKE_UPSTREAM_ADDRESS]
    assert env.run("c1", RESOLVE.format(name="nowhere.example.test")).stdout.startswith("FAILED gaierror")


def test_networks_are_isolated_and_do_not_resolve_each_other(env):
    env.networks.create_network("front")
    env.networks.create_network("back")
    web = env.container("front", "web1", names=("web",))
    env.container("back", "spy", names=("spy",))
    env.start("web1", TCP_SERVER.format(port=7000, name="web1"))

    assert env.run("spy", TCP_CLIENT.format(host=web.address, port=7000, timeout=1)).stdout.startswith("FAILED")
    assert env.run("spy", RESOLVE.format(name="web")).stdout.startswith("FAILED gaierror")
    # A container on both networks resolves and reaches both.
    env.container("front", "both", names=("both",))
    env.container("back", "both")
    assert env.run("both", RESOLVE.format(name="spy")).stdout.split() == [env.networks.endpoints_of("spy")[0].address]
    assert env.run("both", TCP_CLIENT.format(host="web", port=7000, timeout=3)).stdout.startswith("web1 ")


def test_egress_is_masqueraded_and_internal_networks_have_none(env, outside):
    env.networks.create_network("front")
    env.networks.create_network("secret", internal=True)
    env.container("front", "out1", names=("out1",))
    env.container("secret", "in1", names=("in1",))
    client = TCP_CLIENT.format(host=outside.address, port=7100, timeout=1)

    # The outside sees the host's address (masquerade), not the container's.
    assert env.run("out1", client).stdout.split() == ["outside", outside.host_address]
    assert env.run("in1", client).stdout.startswith("FAILED")
    # An internal network's DNS does not forward either: no way out at all.
    assert env.run("in1", RESOLVE.format(name="upstream.example.test")).stdout.startswith("FAILED gaierror")
    rules = subprocess.run(["nft", "list", "table", "ip", env.networks.table], capture_output=True, text=True).stdout
    secret = env.networks.get("secret")
    assert f"ip saddr {secret.subnet} oifname != \"{secret.bridge}\" masquerade" not in rules


def test_remove_network_leaves_nothing(env):
    net = env.networks.create_network("front")
    ep = env.container("front", "c1", names=("c1",))
    path = env.networks.netns_path("c1")
    assert netns.is_namespace(path)
    with pytest.raises(Conflict, match="active endpoints"):
        env.networks.remove_network("front")

    env.networks.release_container("c1")
    env.networks.remove_network("front")

    links = _ip("-o", "link")
    assert net.bridge not in links and ep.host_ifname not in links
    assert not netns.is_namespace(path) and not (env.run_dir / "netns" / "c1").exists()
    listed = subprocess.run(["nft", "list", "table", "ip", env.networks.table], capture_output=True, text=True)
    assert listed.returncode != 0, "the nft table must be gone with the last network"
    assert env.networks.dns.listening() == {}
    env.networks.dns.wait_stopped()  # the listeners close in the background
    sockets = subprocess.run(["ss", "-lnu"], capture_output=True, text=True).stdout
    assert f"{net.gateway}:53" not in sockets


def test_restore_after_restart_brings_back_dns_ports_and_drops_dead_containers(env):
    env.networks.create_network("front")
    env.container("front", "c1", names=("c1",), publish=[PortMapping(7000, 0)])
    env.container("front", "c2", names=("c2",))
    saved = json.loads(json.dumps(env.networks.state.to_json()))
    # The agent dies: its DNS threads and held ports go; meanwhile container c2 dies too.
    env.networks.close()
    env.networks.kernel.remove_netns(env.networks.netns_path("c2"))

    env.networks.restore(NetState.from_json(saved))
    assert [e.container_id for e in env.networks.state.endpoints] == ["c1"]
    assert env.run("c1", RESOLVE.format(name="c1")).stdout.split() == [env.networks.endpoints_of("c1")[0].address]
    assert env.run("c1", RESOLVE.format(name="c2")).stdout.startswith("FAILED")
    env.start("c1", TCP_SERVER.format(port=7000, name="c1"))
    port = env.networks.publications_of("c1")[0].mapping.host_port
    assert tcp_from_host("127.0.0.1", port).startswith("c1 ")
    assert env.networks.ports.held() == [("tcp", "", port)]


def test_connect_and_disconnect_a_running_container(env):
    env.networks.create_network("front")
    env.networks.create_network("back")
    env.container("front", "app", names=("app",))
    env.container("back", "db1", names=("db",))
    path = env.networks.netns_path("app")
    server = env.start("app", TCP_SERVER.format(port=7000, name="app"))

    second = env.networks.connect("back", "app", path, names=("app",))
    assert second.ifname == "eth1" and "eth1" in _ip("-o", "link", netns_path=path)
    assert env.run("db1", TCP_CLIENT.format(host="app", port=7000, timeout=3)).stdout.startswith("app ")

    env.networks.disconnect("back", "app")
    assert "eth1" not in _ip("-o", "link", netns_path=path)
    assert second.host_ifname not in _ip("-o", "link")
    assert env.run("db1", RESOLVE.format(name="app")).stdout.startswith("FAILED gaierror")
    assert second.address not in env.networks.state.ipam.networks["back"].allocated
    assert server.poll() is None, "the container's process lives on"


def _links() -> str:
    return _ip("-o", "link")


def test_release_lets_the_kernel_delete_the_veth_and_keeps_the_address_until_then(env):
    env.networks.create_network("front")
    ep = env.container("front", "c1", names=("c1",))
    env.networks.release_container("c1")
    assert not netns.is_namespace(env.networks.netns_path("c1"))
    assert env.networks.state.endpoints == ()
    allocated = lambda: env.networks.state.ipam.networks["front"].allocated  # noqa: E731
    # The kernel destroys the namespace, and the veth with it, in its own time (~0.1 s here).
    deadline = time.monotonic() + 10
    while (left := env.networks.reap()) and time.monotonic() < deadline:
        assert ep.address in allocated()  # reap saw the veth still there
        time.sleep(0.01)
    assert left == 0, "the kernel did not delete the veth of a released namespace"
    assert ep.address not in allocated() and ep.host_ifname not in _links()


def test_a_namespace_someone_still_holds_keeps_its_veth_until_forced(env):
    # A process left in the namespace (as a `--network container:X` joiner) keeps it alive.
    env.networks.create_network("front")
    ep = env.container("front", "c1", names=("c1",))
    holder = env.start("c1", TCP_SERVER.format(port=7000, name="c1"))
    env.networks.release_container("c1")
    assert env.networks.reap() == 1 and ep.host_ifname in _links()
    assert env.networks.reap(force=True) == 0
    assert ep.host_ifname not in _links()
    assert ep.address not in env.networks.state.ipam.networks["front"].allocated
    assert holder.poll() is None  # the process lives on, without the network


QUERY_ONCE = """
    from dnslib import DNSRecord
    server = open("/etc/resolv.conf").read().split()[1]
    try:
        reply = DNSRecord.parse(DNSRecord.question("{name}").send(server, 53, timeout={timeout}))
        print(" ".join(str(rr.rdata) for rr in reply.rr))
    except OSError as err:
        print("FAILED", type(err).__name__, err)
"""


def _mac(ifname: str) -> str:
    with open(f"/sys/class/net/{ifname}/address") as f:
        return f.read().strip()


def test_the_gateway_keeps_its_mac_when_containers_come_and_go(env):
    # Linux gives a bridge without an address of its own the lowest MAC among its ports, so
    # the gateway's MAC changed as veths came and went. A container that had cached the old one
    # (its ARP entry for the gateway stays valid for 15-45 s) sent its DNS queries into the void
    # until the entry expired: glibc's two tries of 5 s, then "bad address" (issue 16's 10 s).
    env.networks.create_network("front")
    net = env.networks.get("front")
    env.container("front", "client", names=("client",))
    mac = _mac(net.bridge)
    old = env.container("front", "old", names=("app",))
    # The replica's host end gets the lowest unicast MAC there is: a bridge that takes its
    # ports' lowest would take this one.
    _ip("link", "set", old.host_ifname, "address", "02:00:00:00:00:01")
    assert _mac(net.bridge) == mac
    # The client talks to the gateway now (its ARP entry is fresh), then the replica goes.
    assert env.run("client", QUERY_ONCE.format(name="app", timeout=2)).stdout.split() == [old.address]
    env.networks.release_container("old")
    deadline = time.monotonic() + 10
    while old.host_ifname in _links() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert old.host_ifname not in _links()
    assert _mac(net.bridge) == mac
    # One try, two seconds: the answer (no name left) comes at once, not after an ARP timeout.
    assert env.run("client", QUERY_ONCE.format(name="client", timeout=2)).stdout.split() == [env.networks.endpoints_of("client")[0].address]


def test_a_bridge_an_earlier_orch_made_gets_its_mac_pinned(env):
    # Bridges made before the MAC was set at creation are pinned when the agent finds them.
    from pyroute2 import IPRoute

    name = env.prefix + "-old"
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
    try:
        with open(f"/sys/class/net/{name}/addr_assign_type") as f:
            assert f.read().strip() != "3"  # the kernel's pick, which it may change
        mac = _mac(name)
        env.networks.kernel.pin_link_address(name)
        with open(f"/sys/class/net/{name}/addr_assign_type") as f:
            assert f.read().strip() == "3"
        assert _mac(name) == mac
    finally:
        env.networks.kernel.delete_link(name)
