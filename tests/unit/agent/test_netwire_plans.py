"""The pure deciders of networks and mounts in the agent (netspec.py, mountspec.py), as tables,
and the agent's networking driver over the recording kernel (no privileges)."""

from __future__ import annotations

import json

import pytest

from orch.errors import Conflict, InvalidArgument, NotFound
from orch.net.kernel import RecordingKernel
from orch.net.manager import Networks
from orch.net.model import Endpoint, Network, PortMapping, Publication
from orch.node.agent.mountspec import compute_mount_plan, compute_mounts_view
from orch.node.agent.netspec import compute_net_plan, compute_network_settings, compute_ports_text
from orch.node.agent.networking import NodeNetworking
from orch.node.agent.records import ContainerRecord, Private


def plan(**kw):
    return compute_net_plan(**{"network_mode": None, **kw})


@pytest.mark.parametrize("kw,mode,networks", [
    ({}, "bridge", ["bridge"]),
    ({"network_mode": "default"}, "bridge", ["bridge"]),
    ({"network_mode": "none"}, "none", []),
    ({"network_mode": "host"}, "host", []),
    ({"network_mode": "front", "networks": [{"name": "back"}]}, "bridge", ["front", "back"]),
    ({"network_mode": "front", "networks": [{"name": "back"}, {"name": "front", "aliases": ["a"]}]}, "bridge", ["front", "back"]),
    ({"network_mode": "container:web"}, "container", []),
    ({"networks": [{"name": "front"}, {"name": "back"}]}, "bridge", ["front", "back"]),
    ({"network_mode": "bridge", "networks": [{"name": "back"}]}, "bridge", ["bridge", "back"]),
])
def test_network_modes(kw, mode, networks):
    p = plan(**kw)
    assert (p["mode"], [n["name"] for n in p["networks"]]) == (mode, networks)


def test_primary_network_keeps_its_aliases_and_address():
    p = plan(network_mode="front", networks=[{"name": "front", "aliases": ["api"], "ipv4_address": "10.1.2.3"}])
    assert p["networks"] == [{"name": "front", "aliases": ["api"], "ipv4_address": "10.1.2.3"}]


@pytest.mark.parametrize("kw,message", [
    ({"network_mode": "none", "networks": [{"name": "x"}]}, "cannot be connected to other networks"),
    ({"network_mode": "container:"}, "needs a container name"),
    ({"network_mode": "none", "ports": [{"container_port": "80"}]}, "network mode 'none'"),
    ({"network_mode": "container:web", "ports": [{"container_port": "80"}]}, "network mode 'container:web'"),
    ({"network_mode": "container:web", "dns": ["1.1.1.1"]}, "shares the other one's files"),
    ({"network_mode": "container:web", "hostname": "h"}, "takes the other one's hostname; drop --hostname"),
    ({"ports": [{"container_port": "80", "host_port": "99999"}]}, "ports go from 1 to 65535"),
    ({"ports": [{"container_port": "80", "protocol": "sctp"}]}, "use tcp or udp"),
    ({"ports": [{"container_port": "80", "host_port": "8080"}, {"container_port": "81", "host_port": "8080"}]}, "published twice"),
    ({"ports": [{"container_port": ""}]}, "no container port"),
    ({"dns": ["not-an-ip"]}, "invalid --dns address"),
    ({"extra_hosts": ["nocolon"]}, "use NAME:IP"),
    ({"extra_hosts": ["db:999.1.1.1"]}, "invalid --add-host address"),
    ({"networks": [{"name": "front", "ipv4_address": "10.1"}]}, "invalid --ip address"),
    ({"network_mode": "front", "networks": [{"name": "back"}, {"name": "back"}]}, "given twice"),
    ({"networks": [{"name": "host"}]}, "invalid extra network"),
])
def test_bad_requests_are_one_line_errors(kw, message):
    with pytest.raises(InvalidArgument, match=message):
        plan(**kw)


def test_ports_ranges_free_ports_and_publish_all():
    p = plan(ports=[{"host_ip": "127.0.0.1", "host_port": "8000-8001", "container_port": "80-81"},
                    {"container_port": "53", "protocol": "udp"}],
             publish_all=True, exposed={"80/tcp": {}, "443/tcp": {}, "53/udp": {}})
    got = [PortMapping.from_json(m) for m in p["ports"]]
    assert got == [PortMapping(80, 8000, "tcp", "127.0.0.1"), PortMapping(81, 8001, "tcp", "127.0.0.1"),
                   PortMapping(53, 0, "udp"), PortMapping(443, 0, "tcp")]
    # Host networking: every port is the host's already; docker drops -p with a warning.
    assert plan(network_mode="host", ports=[{"container_port": "80"}])["ports"] == []


def test_views():
    net = Network("front", "f" * 64, "orch-fff", "10.89.3.0/24", "10.89.3.1")
    ep = Endpoint("front", "c" * 64, "/run/orch/netns/c", "eth0", "vethc", "10.89.3.2", ("web", "api", "cccccccccccc"))
    pubs = [Publication(PortMapping(80, 8080, "tcp", ""), "c" * 64, "front", "10.89.3.2"),
            Publication(PortMapping(80, 9090, "tcp", "127.0.0.1"), "c" * 64, "front", "10.89.3.2"),
            Publication(PortMapping(53, 5353, "udp", ""), "c" * 64, "front", "10.89.3.2")]
    assert compute_ports_text(pubs) == "0.0.0.0:5353->53/udp, 0.0.0.0:8080->80/tcp, 127.0.0.1:9090->80/tcp"
    p = plan(network_mode="front", ports=[{"container_port": "80", "host_port": "8080"}, {"container_port": "9000"}])
    s = compute_network_settings(p, [ep], {"front": net}, pubs, "/run/orch/netns/c")
    assert s["Networks"]["front"]["Aliases"] == ["api", "cccccccccccc"]
    assert (s["IPAddress"], s["Gateway"], s["IPPrefixLen"]) == ("10.89.3.2", "10.89.3.1", 24)
    assert s["Ports"]["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": "9090"}]
    assert s["Ports"]["9000/tcp"] is None
    stopped = compute_network_settings(p, [], {"front": net}, [], "")
    assert stopped["Networks"]["front"]["IPAddress"] == "" and stopped["Ports"] == {"80/tcp": None, "9000/tcp": None}


def vol(target, source="", **kw):
    return {"type": "volume", "source": source, "target": target, **kw}


def test_mount_plan_order_volumes_from_and_image_volumes():
    theirs = [dict(vol("/shared", "data"), read_only=False, tmpfs_size=None, nocopy=False, anonymous=False),
              {"type": "tmpfs", "source": "", "target": "/tmp", "read_only": False, "tmpfs_size": None, "nocopy": False, "anonymous": False}]
    out = compute_mount_plan([vol("/data/", "db"), {"type": "bind", "source": "/srv//x/", "target": "/x", "read_only": True},
                              {"type": "tmpfs", "target": "/run", "tmpfs_size": 1024}],
                             image_volumes={"/data": {}, "/cache": {}}, volumes_from=[("other:ro", theirs)])
    assert [(e["type"], e["source"], e["target"], e["read_only"], e["anonymous"]) for e in out] == [
        ("volume", "db", "/data", False, False),
        ("bind", "/srv/x", "/x", True, False),
        ("tmpfs", "", "/run", False, False),
        ("volume", "data", "/shared", True, False),  # :ro applied; tmpfs not shared
        ("volume", "", "/cache", False, True),  # the image's VOLUME /data is covered by -v db:/data
    ]


@pytest.mark.parametrize("mounts,message", [
    ([vol("relative")], "absolute path inside the container"),
    ([vol("/")], "cannot replace the container's root"),
    ([{"type": "bind", "source": "rel", "target": "/x"}], "absolute host path"),
    ([{"type": "nfs", "target": "/x"}], "invalid mount type"),
    ([{"type": "tmpfs", "source": "x", "target": "/x"}], "has no source"),
    ([{"type": "volume", "target": "/x", "tmpfs_size": 5}], "tmpfs-size is for tmpfs"),
    ([vol("/x", "a"), vol("/x/", "b")], "duplicate mount point"),
])
def test_bad_mounts(mounts, message):
    with pytest.raises(InvalidArgument, match=message):
        compute_mount_plan(mounts)


def test_bad_volumes_from_mode():
    with pytest.raises(InvalidArgument, match="ro or rw"):
        compute_mount_plan([], volumes_from=[("x:rx", [])])


def test_mounts_view():
    entries = compute_mount_plan([vol("/d", "db", read_only=True), {"type": "tmpfs", "target": "/t"}])
    assert compute_mounts_view(entries, {"db": "/var/lib/orch/volumes/db/_data"}) == [
        {"Type": "volume", "Name": "db", "Source": "/var/lib/orch/volumes/db/_data", "Destination": "/d", "Driver": "local",
         "Mode": "ro", "RW": False, "Propagation": ""},
        {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": True, "Propagation": ""},
    ]


# -- the driver over the recording kernel ---------------------------------------------------------
def record(cid, name, net_plan):
    return ContainerRecord({"Id": cid, "Name": "/" + name, "Config": {"Hostname": cid[:12]}, "State": {"Running": True}},
                           Private(net=net_plan))


@pytest.fixture
def networking(tmp_path):
    kernel = RecordingKernel()
    nets = Networks(kernel, run_dir=tmp_path / "run", table="t")
    n = NodeNetworking(tmp_path / "root", tmp_path / "run", networks=nets)
    yield n, kernel, tmp_path
    n.close()  # no reaper timer outlives the test


def test_setup_release_and_persisted_state(networking):
    n, kernel, tmp = networking
    cid = "a" * 64
    (tmp / "root" / "containers" / cid).mkdir(parents=True)
    rec = record(cid, "web", plan(network_mode=None, ports=[{"container_port": "80"}]))
    n.setup(rec)
    # The default bridge was made on first use; the endpoint carries name, short id.
    assert [x.name for x in n.nets.list()] == ["bridge"]
    (ep,) = n.nets.endpoints_of(cid)
    assert ep.names == ("web", cid[:12])
    hosts = (tmp / "root" / "containers" / cid / "hosts").read_text()
    assert f"{ep.address}\t{cid[:12]}" in hosts
    saved = json.loads((tmp / "root" / "networks" / "state.json").read_text())
    assert [e["container_id"] for e in saved["endpoints"]] == [cid]
    n.setup(rec)  # idempotent: the namespace exists
    assert len(n.nets.endpoints_of(cid)) == 1
    n.nets.ports.close()  # the recording kernel's ports are real sockets; release before reconcile
    n.reconcile(keep=set())
    assert n.nets.endpoints_of(cid) == [] and not kernel.netns_exists(n.netns_path(cid))
    assert json.loads((tmp / "root" / "networks" / "state.json").read_text())["endpoints"] == []


def test_none_mode_leaves_the_namespace_to_the_container_and_unknown_network_is_not_found(networking):
    n, kernel, tmp = networking
    cid = "b" * 64
    cdir = tmp / "root" / "containers" / cid
    cdir.mkdir(parents=True)
    rec = record(cid, "quiet", plan(network_mode="none"))
    # The container unshares its own network namespace (its init brings lo up): the agent
    # makes none, holds none, and has nothing to release; it only writes the files.
    assert n.config_parts(rec.orch.net, cid, cdir, None)[:2] == ((), None)
    n.setup(rec)
    assert not kernel.netns_exists(n.netns_path(cid)) and kernel.calls == []
    assert "localhost" in (cdir / "hosts").read_text()
    n.release(cid)
    assert kernel.calls == []
    with pytest.raises(NotFound, match="network nosuch not found"):
        n.setup(record("c" * 64, "x", plan(network_mode="nosuch")))
    # A failed setup leaves no namespace behind.
    assert not kernel.netns_exists(n.netns_path("c" * 64))


def test_remove_network_in_use_names_the_containers(networking):
    n, _, _ = networking
    n.create_network("front")
    with pytest.raises(Conflict, match=r"network front has active endpoints \(web\)"):
        n.remove_network("front", ["web"])
    n.remove_network("front", [])
    assert n.nets.list() == []


def test_each_node_root_has_its_own_prefix(tmp_path):
    from orch.node.agent.networking import default_prefix

    assert default_prefix("/var/lib/orch") == "orch"
    a, b = default_prefix(tmp_path / "a"), default_prefix(tmp_path / "b")
    assert a != b and a.startswith("orch") and len(a) == 8
    assert default_prefix(tmp_path / "a") == a


def test_a_clean_stop_without_containers_leaves_no_bridge_or_table(networking):
    n, kernel, tmp = networking
    n.create_network("front")
    bridge = n.nets.get("front").bridge
    n.close()
    assert bridge not in kernel.links and kernel.nft[-1] == "table ip t\ndelete table ip t\n"
    # The next agent makes them again from the persisted state.
    again = NodeNetworking(tmp / "root", tmp / "run", networks=Networks(kernel, run_dir=tmp / "run", table="t"))
    again.open()
    assert bridge in kernel.links and "chain forward" in kernel.nft[-1]


def test_a_clean_stop_with_containers_keeps_everything(networking):
    n, kernel, tmp = networking
    cid = "d" * 64
    (tmp / "root" / "containers" / cid).mkdir(parents=True)
    n.setup(record(cid, "web", plan()))
    calls = len(kernel.calls)
    n.close()
    assert kernel.calls[calls:] == [] and n.nets.get("bridge").bridge in kernel.links


def test_a_subnet_whose_dns_port_is_held_elsewhere_is_skipped(networking):
    n, kernel, tmp = networking

    class BusyFirst:
        """A DNS service whose first listener finds its port taken (as by a stale aardvark-dns)."""

        def __init__(self):
            self.started = []

        def start(self, network, address):
            if not self.started:
                self.started.append(None)
                raise Conflict(f"dns for network {network!r}: {address}:53 is already in use")
            self.started.append(address)

        def set_table(self, table):
            pass

        def stop(self, network):
            pass

        def close(self):
            pass

    n.nets.dns = BusyFirst()
    net = n.create_network("front")
    assert net.subnet != "10.89.0.0/24" and n.nets.dns.started[-1] == net.gateway
    assert [x.name for x in n.nets.list()] == ["front"] and len(kernel.links) == 1
    with pytest.raises(Conflict):  # a subnet the user asked for is not silently changed
        n.nets.dns = BusyFirst()
        n.create_network("back", subnet="10.77.0.0/24")


def test_release_is_written_by_the_reaper_and_a_drain_is_kept_until_removal(networking):
    n, kernel, tmp = networking
    cid = "d" * 64
    cdir = tmp / "root" / "containers" / cid
    cdir.mkdir(parents=True)
    n.setup(record(cid, "app", plan(network_mode=None)))
    state_file = tmp / "root" / "networks" / "state.json"
    n.hide(cid)
    assert json.loads(state_file.read_text())["hidden"] == [cid]
    n.release(cid)  # the container exited: its mark stays (a restart keeps it drained)
    assert n.nets.is_hidden(cid) and n._reaper is not None
    # Not written at once (restore would repair a state that missed it); the reaper writes it.
    assert [e["container_id"] for e in json.loads(state_file.read_text())["endpoints"]] == [cid]
    n.reap()
    saved = json.loads(state_file.read_text())
    assert saved["endpoints"] == [] and saved["retiring"] == [] and saved["hidden"] == [cid]
    cdir.rename(tmp / "gone")  # removed: the store took its directory away
    n.release(cid)
    assert not n.nets.is_hidden(cid)
    n.close()
    assert n._reaper is None and json.loads(state_file.read_text())["hidden"] == []


def test_a_container_created_start_drained_is_never_named_until_shown(networking):
    from orch.api.labels import START_DRAINED

    n, kernel, tmp = networking
    cid = "e" * 64
    (tmp / "root" / "containers" / cid).mkdir(parents=True)
    rec = record(cid, "app-2", plan(network_mode=None))
    rec["Config"]["Labels"] = {START_DRAINED: "true"}
    rec["State"] = {"Status": "created"}
    n.setup(rec)
    # Hidden before its endpoint existed: no name table ever named it.
    assert n.nets.is_hidden(cid) and n.nets.endpoints_of(cid)
    n.show(cid)
    n.release(cid)
    rec["State"] = {"Status": "exited"}  # restarted by its policy after it was shown
    n.setup(rec)
    assert not n.nets.is_hidden(cid)
