"""What each node is told of the overlay networks (orch.cluster.netview): the networks its tasks
need (and the ingress network everywhere once a port is published through the mesh), every
endpoint on them with the node it is on and whether it serves, the services and the nodes."""

from __future__ import annotations

from orch.cluster.netview import NetIndex, serving
from orch.cluster.records import (
    Endpoint,
    IPAMConfig,
    Network,
    NetworkAttachment,
    NetworkAttachmentConfig,
    NetworkSpec,
    NodeStatus,
    PortConfig,
    VirtualIP,
)
from orch.net.overlay import compute_view
from orch.scheduler.fakecluster import node, service, task


def net(nid: str, vni: int, subnet: str, *, ingress: bool = False) -> Network:
    gw = subnet.rsplit(".", 1)[0] + ".1"
    return Network(id=nid, spec=NetworkSpec(name=f"s_{nid}", ingress=ingress), vni=vni, subnets=[IPAMConfig(subnet=subnet, gateway=gw)])


def up(node_id: str, addr: str, state: str = "ready"):
    n = node(node_id)
    return n.model_copy(update={"status": NodeStatus(state=state, addr=addr)})


def build(*, ports=True, web_state="running", n3="ready"):
    nets = {n.id: n for n in (net("front", 4097, "10.0.1.0/24"), net("back", 4098, "10.0.2.0/24"),
                              net("ing", 4096, "10.0.0.0/24", ingress=True), Network(id="new", spec=NetworkSpec(name="new")))}
    web = service("web", replicas=3)
    web = web.model_copy(update={
        "spec": web.spec.model_copy(update={"task_template": web.spec.task_template.model_copy(update={
            "networks": [NetworkAttachmentConfig(target="s_front", aliases=["web"])]})}),
        "endpoint": Endpoint(ports=[PortConfig(target_port=80, published_port=8080)] if ports else [],
                             virtual_ips=[VirtualIP(network_id="front", addr="10.0.1.2/24")])})
    db = service("db")
    db = db.model_copy(update={"spec": db.spec.model_copy(update={"task_template": db.spec.task_template.model_copy(update={
        "networks": [NetworkAttachmentConfig(target="back")]})})})
    tasks = {}
    for i in (1, 2, 3):
        t = task(web, i, f"n{i}", web_state if i == 1 else "running", health="healthy")
        atts = [NetworkAttachment(network_id="front", addresses=[f"10.0.1.{4 + i}/24"])]
        if ports:  # a service publishing through the mesh is on the ingress network too
            atts.append(NetworkAttachment(network_id="ing", addresses=[f"10.0.0.{4 + i}/24"]))
        tasks[t.id] = t.model_copy(update={"networks": atts})
    d = task(db, 1, "n2")
    tasks[d.id] = d.model_copy(update={"networks": [NetworkAttachment(network_id="back", addresses=["10.0.2.5/24"])]})
    nodes = {n.id: n for n in (up("n1", "10.213.0.1"), up("n2", "10.213.0.2"), up("n3", "10.213.0.3", n3))}
    return NetIndex.build(nets, {web.id: web, db.id: db}, tasks, nodes)


def kinds(entries: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in entries:
        out.setdefault(e["kind"], []).append(e["id"])
    return out


def test_a_node_hears_of_the_networks_its_tasks_need_and_the_ingress_network():
    index = build()
    n1 = kinds(index.entries("n1"))
    assert n1["network"] == ["net/front", "net/ing"]  # not back (db runs on n2), not the unallocated one
    assert sorted(n1["endpoint"]) == sorted([f"ep/front/web{i}" for i in (1, 2, 3)] + [f"ep/ing/web{i}" for i in (1, 2, 3)])
    assert n1["service"] == ["svc/web"] and len(n1["node"]) == 3
    n2 = kinds(index.entries("n2"))
    assert n2["network"] == ["net/back", "net/front", "net/ing"] and "ep/back/db1" in n2["endpoint"]
    # A node with no task still has the ingress network: the mesh answers on every node.
    assert kinds(build().entries("n9"))["network"] == ["net/ing"]


def test_without_a_published_port_there_is_no_ingress_anywhere():
    index = build(ports=False)
    assert "net/ing" not in kinds(index.entries("n1"))["network"] and "node" not in kinds(index.entries("n1"))
    assert index.entries("n9") == []


def test_an_endpoint_serves_when_running_healthy_told_to_run_and_its_node_is_up():
    index = build(web_state="starting", n3="down")
    eps = {e["id"]: e for e in index.entries("n2") if e["kind"] == "endpoint"}
    assert [eps[f"ep/front/web{i}"]["serving"] for i in (1, 2, 3)] == [False, True, False]
    assert eps["ep/front/web2"]["vtep"] == "10.213.0.2" and eps["ep/front/web2"]["address"] == "10.0.1.6"


def test_the_node_side_reads_the_entries_it_is_sent():
    view = compute_view(build().entries("n1"), "10.213.0.1")
    assert [n.name for n in view.networks] == ["s_front", "s_ing"] and view.ingress().id == "ing"
    (web,) = view.services
    assert web.networks[0].vip == "10.0.1.2" and web.networks[0].names == ("web",) and web.ports[0].published == 8080
    assert view.nodes == ("10.213.0.1", "10.213.0.2", "10.213.0.3")


def test_serving_needs_every_condition():
    web = service("web")
    assert serving(task(web, 1, "n1", health="healthy"), up("n1", "a"))
    assert not serving(task(web, 1, "n1", health="unhealthy"), up("n1", "a"))
    assert not serving(task(web, 1, "n1", desired="shutdown"), up("n1", "a"))
    assert not serving(task(web, 1, "n1"), None)
