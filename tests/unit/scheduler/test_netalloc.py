"""The cluster's network allocator (orch.scheduler.netalloc) and its place in the orchestrator's
pass: VNIs and subnets, VIPs and ingress ports, task addresses; what is taken is read from the
records, never twice, and nothing is handed out in a subnet that was not committed."""

from __future__ import annotations

import ipaddress

import pytest

from orch.cluster.records import (
    ClusterSettings,
    Endpoint,
    IPAMConfig,
    Network,
    NetworkAttachment,
    NetworkAttachmentConfig,
    NetworkSpec,
    PortConfig,
    VirtualIP,
)
from orch.scheduler.clusterplan import ClusterState
from orch.scheduler.fakecluster import FakeCluster, node, run_cluster, service, task
from orch.scheduler.netalloc import NetAllocator
from orch.scheduler.orchestrate import plan_cluster


def net(name: str, *, vni: int = 0, subnet: str = "", asked: str = "", ingress: bool = False, created: float = 0.0) -> Network:
    subnets = [IPAMConfig(subnet=subnet, gateway=str(next(ipaddress.IPv4Network(subnet).hosts())))] if subnet else []
    return Network(id=name, spec=NetworkSpec(name=name, ingress=ingress, ipam=[IPAMConfig(subnet=asked)] if asked else []),
                   vni=vni, subnets=subnets, created_at=created)


def on(svc, *networks: str, ports: tuple[PortConfig, ...] = (), mode: str = "vip"):
    template = svc.spec.task_template.model_copy(update={"networks": [NetworkAttachmentConfig(target=n, aliases=["s"]) for n in networks]})
    endpoint = svc.spec.endpoint_spec.model_copy(update={"ports": list(ports), "mode": mode})
    return svc.model_copy(update={"spec": svc.spec.model_copy(update={"task_template": template, "endpoint_spec": endpoint})})


def attached(t, *pairs: tuple[str, str]):
    return t.model_copy(update={"networks": [NetworkAttachment(network_id=n, addresses=[a]) for n, a in pairs]})


def alloc(networks=(), services=(), tasks=(), settings=ClusterSettings()) -> NetAllocator:
    return NetAllocator({n.id: n for n in networks}, {s.id: s for s in services}, {t.id: t for t in tasks}, settings)


# -- networks ---------------------------------------------------------------------------------------

def test_networks_get_the_lowest_free_vni_and_block_of_the_pool_in_creation_order():
    a = alloc([net("old", vni=4096, subnet="10.0.0.0/24"), net("b", created=2), net("a", created=1),
               net("asked", asked="10.0.9.0/24", created=3)])
    changed, errors = a.allocate_networks(now=5.0)
    assert errors == {}
    got = {n.spec.name: (n.vni, n.subnets[0].subnet, n.subnets[0].gateway) for n in changed}
    assert got == {"a": (4097, "10.0.1.0/24", "10.0.1.1"), "b": (4098, "10.0.2.0/24", "10.0.2.1"),
                   "asked": (4099, "10.0.9.0/24", "10.0.9.1")}
    assert all(n.updated_at == 5.0 for n in changed)


def test_the_pool_and_block_size_are_the_clusters_and_a_larger_network_in_the_way_is_skipped():
    settings = ClusterSettings(default_addr_pool=["10.20.0.0/16"], subnet_size=26)
    a = alloc([net("big", vni=4096, subnet="10.20.0.0/25"), net("new", created=1)], settings=settings)
    (new,), _ = a.allocate_networks(now=0)
    assert new.subnets[0].subnet == "10.20.0.128/26"


@pytest.mark.parametrize("asked, message", [
    ("10.0.0.128/25", "subnet 10.0.0.128/25 overlaps network old (10.0.0.0/24)"),
    ("10.0.5.1/24", "invalid subnet 10.0.5.1/24"),
    ("10.0.5.0/30", "too small"),
])
def test_a_bad_requested_subnet_is_reported_and_allocates_nothing(asked, message):
    a = alloc([net("old", vni=4096, subnet="10.0.0.0/24"), net("new", asked=asked, created=1)])
    changed, errors = a.allocate_networks(now=0)
    assert changed == [] and message in errors["new"]


def test_an_exhausted_pool_says_what_to_do():
    settings = ClusterSettings(default_addr_pool=["10.1.0.0/24"], subnet_size=24)
    _, errors = alloc([net("old", vni=4096, subnet="10.1.0.0/24"), net("new", created=1)], settings=settings).allocate_networks(now=0)
    assert "has no free /24 left; remove networks or give --subnet" in errors["new"]


# -- services: VIPs and ports -------------------------------------------------------------------------

def test_a_service_gets_a_vip_per_network_and_its_ingress_ports_but_no_vip_on_ingress():
    web = on(service("web"), "front", "back", ports=(PortConfig(target_port=80, published_port=8080),
                                                    PortConfig(target_port=53, protocol="udp")))
    a = alloc([net("front", vni=4096, subnet="10.0.0.0/24"), net("back", vni=4097, subnet="10.0.1.0/24"),
               net("ingress", vni=4098, subnet="10.255.0.0/24", ingress=True)], [web])
    result = a.service_networks(web)
    assert [n.id for n in result.networks] == ["front", "back", "ingress"]
    assert [(v.network_id, v.addr) for v in result.endpoint.virtual_ips] == [("front", "10.0.0.2/24"), ("back", "10.0.1.2/24")]
    assert [(p.published_port, p.protocol) for p in result.endpoint.ports] == [(8080, "tcp"), (30000, "udp")]


def test_vips_and_auto_ports_stay_what_they_were_and_dnsrr_has_no_vip():
    web = on(service("web"), "front", ports=(PortConfig(target_port=80),))
    web = web.model_copy(update={"endpoint": Endpoint(ports=[PortConfig(target_port=80, published_port=30007)],
                                                      virtual_ips=[VirtualIP(network_id="front", addr="10.0.0.9/24")])})
    nets = [net("front", vni=4096, subnet="10.0.0.0/24"), net("ingress", vni=4097, subnet="10.255.0.0/24", ingress=True)]
    assert alloc(nets, [web]).service_networks(web).endpoint == web.endpoint
    rr = on(service("rr"), "front", mode="dnsrr")
    assert alloc(nets, [rr]).service_networks(rr).endpoint.virtual_ips == []


@pytest.mark.parametrize("svc, networks, failed, waiting", [
    (on(service("web"), "nowhere"), [], "network nowhere not found", ""),
    (on(service("web"), "ingress"), [net("ingress", vni=1, subnet="10.255.0.0/24", ingress=True)], "the routing mesh's", ""),
    (on(service("web"), ports=(PortConfig(target_port=80, published_port=80),)), [], "need the ingress network", ""),
    (on(service("web"), "front"), [net("front")], "", "network front is being allocated"),
])
def test_a_service_whose_networks_are_not_there_waits_or_fails(svc, networks, failed, waiting):
    result = alloc(networks, [svc]).service_networks(svc)
    assert failed in result.failed and waiting in result.waiting and (result.failed or result.waiting)


# -- tasks ----------------------------------------------------------------------------------------------

def test_addresses_are_never_given_twice_and_a_freed_one_is_not_the_next():
    web = on(service("web", replicas=3), "front")
    front = net("front", vni=4096, subnet="10.0.0.0/29")  # hosts .1-.6; .1 the gateway
    web = web.model_copy(update={"endpoint": Endpoint(virtual_ips=[VirtualIP(network_id="front", addr="10.0.0.2/29")])})
    alive = attached(task(web, 1, "n1"), ("front", "10.0.0.3/29"))
    down = attached(task(web, 2, "n2"), ("front", "10.0.0.5/29"))  # on a node that is down: maybe still running
    ended = attached(task(web, 3, "n1", "failed", exit_code=1, task_id="gone"), ("front", "10.0.0.4/29"))
    a = alloc([front], [web], [alive, down, ended])
    got = [a.attach(task(web, 4, task_id=f"t{i}"), web) for i in range(3)]
    # After the highest taken (.5): .6, then around to .4 (ended: free), then nothing is left.
    assert [g[0].addresses for g in got[:2]] == [["10.0.0.6/29"], ["10.0.0.4/29"]]
    assert got[2] == "network front (10.0.0.0/29) has no free address"


def test_an_orchestrator_pass_allocates_a_network_first_then_places_tasks_with_addresses():
    fake = FakeCluster()
    for i in (1, 2):
        fake.put(node(f"n{i}"))
    fake.put(net("front"))
    fake.put(net("ingress", ingress=True))
    fake.put(on(service("web", replicas=2), "front", ports=(PortConfig(target_port=80, published_port=8080),)))
    first = plan_cluster(fake.state(), now=0.0)
    assert sorted(c.verb for c in first.changes) == ["allocate", "allocate"]  # nothing of web yet
    assert [w.reason for w in first.waiting] == ["network front, ingress is being allocated"]
    plan, _ = run_cluster(fake)
    assert plan.converged, plan.explain()
    web = fake.services["web"]
    front, ingress = fake.networks["front"], fake.networks["ingress"]
    assert {front.vni, ingress.vni} == {4096, 4097}
    addrs = {t.id: [(a.network_id, a.addresses[0]) for a in t.networks] for t in fake.tasks.values()}
    assert all([n for n, _ in pairs] == ["front", "ingress"] for pairs in addrs.values())
    every = [a for pairs in addrs.values() for _, a in pairs] + [v.addr for v in web.endpoint.virtual_ips]
    assert len(every) == len(set(every)) == 5
    assert all(ipaddress.IPv4Interface(a).ip in ipaddress.IPv4Network(front.subnets[0].subnet)
               for a in [v.addr for v in web.endpoint.virtual_ips])
    assert [p.published_port for p in web.endpoint.ports] == [8080]


def test_a_task_that_finds_no_address_stays_pending_with_the_reason():
    fake = FakeCluster()
    fake.put(node("n1"))
    fake.put(net("tiny", vni=4096, subnet="10.0.0.0/30"))  # .1 the gateway, .2 the VIP: nothing for tasks
    fake.put(on(service("web"), "tiny"))
    plan, _ = run_cluster(fake, until=5)
    (t,) = fake.tasks.values()
    assert t.status.state.value == "pending" and t.status.err == "network tiny (10.0.0.0/30) has no free address"
    assert any("has no free address" in w.reason for w in plan.waiting)


def test_state_without_networks_plans_as_before():
    state = ClusterState({"web": service("web")}, {"n1": node("n1")}, {})
    plan = plan_cluster(state, now=0.0)
    (created,) = [c.record for c in plan.changes]
    assert created.networks == [] and created.node_id == "n1"
