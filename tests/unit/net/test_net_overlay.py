"""Overlay networks on one node as values (orch.net.overlay), and `Networks` over a recording
kernel: what the cluster's entries make, program, answer in DNS, and take away again."""

from __future__ import annotations

import json

import pytest

from orch.errors import InvalidArgument
from orch.net.kernel import RecordingKernel
from orch.net.manager import Networks, NetState
from orch.net.model import Network
from orch.net.names import compute_answer
from orch.net.overlay import (
    ClusterView,
    compute_cluster_names,
    compute_fabric,
    compute_lb_ruleset,
    compute_mesh,
    compute_view,
    compute_vips,
    node_mac,
    node_mark,
    task_mac,
)
from orch.net.ports import compute_ruleset

ME, B, C = "10.213.0.1", "10.213.0.2", "10.213.0.3"


def entries(*, web_serving=(True, True, True), ports=True) -> list[dict]:
    """What a leader tells node ME: the stack's network, the ingress network, three web tasks
    (one here), a client here, and the three nodes."""
    out = [
        {"id": "net/front", "kind": "network", "network_id": "front", "name": "s_default", "vni": 4097,
         "subnet": "10.0.1.0/24", "gateway": "10.0.1.1"},
        {"id": "net/ing", "kind": "network", "network_id": "ing", "name": "ingress", "vni": 4096,
         "subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "ingress": True},
        {"id": "svc/web", "kind": "service", "service_id": "web", "name": "s_web", "mode": "vip",
         "networks": [{"network_id": "front", "vip": "10.0.1.2", "names": ["web"]}, {"network_id": "ing"}],
         "ports": [{"protocol": "tcp", "published_port": 8080, "target_port": 80}] if ports else []},
        {"id": "svc/client", "kind": "service", "service_id": "client", "name": "s_client", "mode": "dnsrr",
         "networks": [{"network_id": "front", "names": ["client"]}], "ports": []},
    ]
    for i, (vtep, on) in enumerate(zip((ME, B, C), web_serving)):
        out.append({"id": f"ep/front/w{i}", "kind": "endpoint", "network_id": "front", "task_id": f"w{i}", "service_id": "web",
                    "address": f"10.0.1.{5 + i}", "vtep": vtep, "serving": on})
        out.append({"id": f"ep/ing/w{i}", "kind": "endpoint", "network_id": "ing", "task_id": f"w{i}", "service_id": "web",
                    "address": f"10.0.0.{5 + i}", "vtep": vtep, "serving": on})
        out.append({"id": f"node/n{i}", "kind": "node", "vtep": vtep})
    out.append({"id": "ep/front/c", "kind": "endpoint", "network_id": "front", "task_id": "c", "service_id": "client",
                "address": "10.0.1.9", "vtep": ME, "serving": True})
    return out


def test_macs_and_marks_are_computed_from_addresses():
    assert task_mac("10.0.1.5") == "02:42:0a:00:01:05"
    assert node_mac("10.213.0.2") == "02:4e:0a:d5:00:02" and node_mark("10.213.0.2") == 0x0AD50002


def test_the_view_round_trips_and_ignores_kinds_it_does_not_know():
    view = compute_view(entries() + [{"id": "x/1", "kind": "newer"}], ME)
    assert ClusterView.from_json(json.loads(json.dumps(view.to_json()))) == view
    assert view.ingress().name == "ingress" and view.nodes == (ME, B, C)


def test_the_fabric_programs_only_what_is_remote_and_the_mesh_its_return_paths():
    view = compute_view(entries(), ME)
    front = compute_fabric(view, "front")
    assert front.fdb == {(task_mac("10.0.1.6"), B), (task_mac("10.0.1.7"), C)}
    assert front.neigh == {("10.0.1.6", task_mac("10.0.1.6")), ("10.0.1.7", task_mac("10.0.1.7"))}
    assert not (front.routes or front.returns or front.node_neigh)
    ing = compute_fabric(view, "ing")
    assert (node_mac(B), B) in ing.fdb and (node_mac(C), C) in ing.fdb
    assert ing.node_neigh == {(B, node_mac(B)), (C, node_mac(C))}
    assert ing.routes == {("10.0.0.6", B), ("10.0.0.7", C)} and ing.returns == {B, C}
    assert compute_fabric(view, "unknown") == compute_fabric(ClusterView(), "front")


def test_the_mesh_sends_only_to_serving_tasks_and_keeps_no_rule_without_them():
    mesh = compute_mesh(compute_view(entries(web_serving=(True, False, True)), ME), "br-ing")
    (rule,) = mesh.rules
    assert (rule.protocol, rule.published, rule.target, rule.backends) == ("tcp", 8080, 80, ("10.0.0.5", "10.0.0.7"))
    assert mesh.origins == (B, C) and mesh.vtep == ME and mesh.gateway == "10.0.0.1"
    ingress = Network("ingress", "ing", "br-ing", "10.0.0.0/24", "10.0.0.1", driver="overlay", ingress=True)
    text = compute_ruleset([ingress], [], table="t", mesh=mesh)
    assert "tcp dport 8080 dnat to numgen inc mod 2 map { 0 : 10.0.0.5, 1 : 10.0.0.7 } : 80" in text
    assert f'iifname "br-ing" ct state new ct mark set ether saddr map {{ {node_mac(B)} : 0x0ad50002, {node_mac(C)} : 0x0ad50003 }}' in text
    assert 'iifname "br-ing" ct direction reply ct mark != 0 meta mark set ct mark' in text
    assert f'oifname "br-ing" ct status dnat ip saddr {{ 127.0.0.0/8, 10.0.0.1, {B}, {C} }} snat ip to {ME}' in text
    # What the mesh sends into the ingress network is not masqueraded by the network's rules.
    assert text.index("snat ip to") < text.index('oifname "br-ing" return') < text.index("masquerade")
    none = compute_ruleset([], [], table="t", mesh=compute_mesh(compute_view(entries(web_serving=(False,) * 3), ME), "br-ing"))
    assert "dport 8080" not in none  # no serving task: the held port refuses
    assert compute_mesh(compute_view(entries(), ME), None).rules == ()


def test_a_containers_vips_balance_over_serving_tasks_and_an_empty_one_refuses():
    view = compute_view(entries(web_serving=(True, False, True)), ME)
    vips = compute_vips(view, {"front"})
    assert vips == [("10.0.1.2", ("10.0.1.5", "10.0.1.7"))]  # dnsrr services have no VIP
    text = compute_lb_ruleset(vips)
    assert "ip daddr 10.0.1.2 dnat to numgen inc mod 2 map { 0 : 10.0.1.5, 1 : 10.0.1.7 }" in text
    empty = compute_lb_ruleset(compute_vips(compute_view(entries(web_serving=(False,) * 3), ME), {"front"}))
    assert "ip daddr { 10.0.1.2 } reject" in empty and "dnat" not in empty
    assert compute_lb_ruleset(compute_vips(view, {"elsewhere"})) is None


def test_service_names_on_overlays():
    view = compute_view(entries(web_serving=(True, False, True)), ME)
    names = compute_cluster_names(view, {"front": "s_default", "ing": "ingress"})
    assert set(names) == {"s_default"}  # nothing named on the ingress network
    table = names["s_default"]
    assert table["s_web"] == table["web"] == ("10.0.1.2",)
    assert table["tasks.web"] == table["tasks.s_web"] == ("10.0.1.5", "10.0.1.7")
    assert table["client"] == table["tasks.client"] == ("10.0.1.9",)  # dnsrr: the tasks themselves


# -- Networks over a recording kernel ----------------------------------------------------------

@pytest.fixture
def nets(tmp_path):
    n = Networks(RecordingKernel(routes=["10.213.0.0/24"]), run_dir=tmp_path, table="orchT", bridge_prefix="orchT-")
    yield n
    n.close()


def test_the_cluster_makes_its_overlays_with_a_vxlan_each_and_programs_them(nets):
    warnings = nets.set_cluster(compute_view(entries(), ME))
    assert warnings == []
    k = nets.kernel
    front, ing = nets.get("s_default"), nets.get("ingress")
    assert (front.driver, front.vni, front.mtu, front.cluster_id) == ("overlay", 4097, 1450, "front")
    assert ("create_bridge", front.bridge, "10.0.1.1", 24, 1450) in k.calls and k.macs[front.bridge] == node_mac(ME)
    assert ("create_vxlan", front.vxlan, 4097, ME, front.bridge, 1450) in k.calls
    assert k.sysctls[f"net.ipv4.conf.{front.bridge}.rp_filter"] == "2"
    assert k.fdb[front.vxlan] == compute_fabric(nets.state.cluster, "front").fdb
    assert k.routes_via[ing.bridge] == {("10.0.0.6", B), ("10.0.0.7", C)}
    assert k.return_rules == {B, C} and k.return_dev == ing.bridge
    assert "dport 8080 dnat to numgen" in k.nft[-1]


def test_a_task_joins_an_overlay_with_its_address_its_mac_and_its_vips(nets):
    nets.set_cluster(compute_view(entries(), ME))
    path = nets.create_netns("c")
    with pytest.raises(InvalidArgument, match="addresses come from the cluster's managers"):
        nets.connect("s_default", "c", path)
    ep = nets.connect("s_default", "c", path, names=("s_client.1.c",), ipv4_address="10.0.1.9")
    ing = nets.connect("ingress", "c", path, ipv4_address="10.0.0.9")
    k = nets.kernel
    assert k.macs[f"{path}:eth0"] == task_mac("10.0.1.9") and ep.address == "10.0.1.9"
    assert ("source_route_in_netns", path, "eth1", "10.0.0.9", "10.0.0.1", 200) in k.calls and ing.ifname == "eth1"
    assert "ip daddr 10.0.1.2 dnat to numgen inc mod 3" in k.nft_in[path]
    answer = compute_answer(nets.dns.table if nets.dns else _table(nets), "s_default", "10.0.1.9", "tasks.web")
    assert sorted(answer.addresses) == ["10.0.1.5", "10.0.1.6", "10.0.1.7"]
    # A task leaves the balancer: the VIP's table in the client's namespace follows.
    nets.set_cluster(compute_view(entries(web_serving=(True, False, True)), ME))
    assert "mod 2 map { 0 : 10.0.1.5, 1 : 10.0.1.7 }" in k.nft_in[path]


def _table(nets):
    from orch.net.names import compute_name_table
    from orch.net.overlay import compute_cluster_names

    local = {n.cluster_id: n.name for n in nets.state.networks.values() if n.overlay}
    return compute_name_table(list(nets.state.endpoints), frozenset(), frozenset(), compute_cluster_names(nets.state.cluster, local))


def test_an_overlay_goes_when_the_cluster_no_longer_needs_it_and_nothing_uses_it(nets):
    nets.set_cluster(compute_view(entries(), ME))
    front = nets.get("s_default")
    path = nets.create_netns("c")
    nets.connect("s_default", "c", path, ipv4_address="10.0.1.9")
    nets.set_cluster(ClusterView(vtep=ME))  # the stack was removed; the container still runs
    assert nets.get("s_default") == front and "ingress" not in {n.name for n in nets.list()}
    assert nets.kernel.return_rules == frozenset()
    nets.release_container("c")
    nets.reap(force=True)
    nets.prune_overlays()
    assert nets.list() == [] and front.vxlan not in nets.kernel.links and front.bridge not in nets.kernel.links


def test_a_local_network_with_an_overlays_name_is_a_warning_not_a_takeover(nets):
    nets.create_network("s_default")
    warnings = nets.set_cluster(compute_view(entries(), ME))
    assert any("a local bridge network has this name" in w for w in warnings)
    assert nets.get("s_default").driver == "bridge"


def test_restore_programs_the_same_fabric_and_removes_overlay_links_a_crash_left(nets, tmp_path):
    nets.set_cluster(compute_view(entries(), ME))
    saved = NetState.from_json(json.loads(json.dumps(nets.state.to_json())))
    assert saved.cluster == nets.state.cluster
    again = Networks(RecordingKernel(routes=["10.213.0.0/24"]), run_dir=tmp_path, table="orchT", bridge_prefix="orchT-")
    again.kernel.links |= {"orchTv999", "orchTostale"}
    again.restore(saved)
    assert {"orchTv999", "orchTostale"} & again.kernel.links == set()
    assert again.kernel.fdb == nets.kernel.fdb and again.kernel.return_rules == {B, C}
    # Not needed any more and unused: gone at restore too.
    assert {n.name for n in again.list()} == {"s_default", "ingress"}
    again.close()


def test_a_bridge_network_is_stored_as_before_overlays():
    data = Network("b", "1", "orch-b", "10.89.0.0/24", "10.89.0.1").to_json()
    assert "driver" not in data and "vni" not in data
    assert "cluster" not in NetState().to_json()


def test_restore_removes_mesh_rules_a_crash_left_when_the_ingress_network_is_gone(tmp_path):
    without_ingress = [e for e in entries(ports=False) if e.get("network_id") != "ing" and e["kind"] != "node"]
    first = Networks(RecordingKernel(routes=["10.213.0.0/24"]), run_dir=tmp_path, table="orchT", bridge_prefix="orchT-")
    first.set_cluster(compute_view(without_ingress, ME))
    again = Networks(RecordingKernel(routes=["10.213.0.0/24"]), run_dir=tmp_path, table="orchT", bridge_prefix="orchT-")
    again.kernel.return_rules = frozenset({B})  # left by an agent killed while the mesh was in use
    again.restore(NetState.from_json(first.state.to_json()))
    assert again.kernel.return_rules == frozenset()
    first.close()
    again.close()


def _renamed(old: list[dict]) -> list[dict]:
    """The same entries with the stack's network removed and another made on its subnet (the
    managers gave the freed subnet to the next stack's network)."""
    out = []
    for e in old:
        e = dict(e)
        if e.get("network_id") == "front":
            e["network_id"] = "back"
            if e["kind"] == "network":
                e.update(id="net/back", name="t_default", vni=4099)
        if e["kind"] == "service":
            e["networks"] = [dict(n, network_id="back") if n["network_id"] == "front" else n for n in e["networks"]]
        out.append(e)
    return out


def test_a_stale_overlay_goes_before_a_new_one_takes_its_subnet(nets):
    nets.set_cluster(compute_view(entries(), ME))
    old = nets.get("s_default")
    assert nets.set_cluster(compute_view(_renamed(entries()), ME)) == []
    new = nets.get("t_default")
    assert (new.subnet, new.vni) == ("10.0.1.0/24", 4099) and "s_default" not in {n.name for n in nets.list()}
    assert old.vxlan not in nets.kernel.links and new.vxlan in nets.kernel.links


def test_a_new_overlay_waiting_for_a_stale_ones_subnet_is_made_when_that_one_goes(nets):
    nets.set_cluster(compute_view(entries(), ME))
    path = nets.create_netns("c")
    nets.connect("s_default", "c", path, ipv4_address="10.0.1.9")
    warnings = nets.set_cluster(compute_view(_renamed(entries()), ME))  # the old one's container still runs
    assert any("overlay network t_default" in w for w in warnings) and "t_default" not in {n.name for n in nets.list()}
    nets.release_container("c")
    nets.reap(force=True)
    nets.prune_overlays()
    assert {n.name for n in nets.list()} == {"t_default", "ingress"} and nets.get("t_default").subnet == "10.0.1.0/24"
