"""Placement as tables, and its safety properties over generated clusters (hypothesis).

Tables go through `assert_placement`: nodes, the tasks they already run, demands in order ->
for each demand the nodes its tasks went to (in task order) and docker's reason for the rest.
The properties check, whatever the cluster: no node is given more than it has free,
max_replicas_per_node holds, spread branches stay within one task of each other while they
have room, and a task is left pending only when no node could take it.
"""

from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.cluster.records import Placement, PlacementPreference, Platform, Resources, TaskState
from orch.errors import InvalidArgument
from orch.scheduler.fakecluster import CPU, GIB, node, service, task
from orch.scheduler.placement import Demand, Placer, compute_placements, node_matches, parse_constraint, parse_constraints


def demand(service_id="web", n=1, *, constraints=(), spread=(), max_replicas=0, cpus=0.0, memory=0, ports=(), platforms=(), pin=None):
    placement = Placement(
        constraints=list(constraints), preferences=[PlacementPreference(spread=s) for s in spread], max_replicas=max_replicas,
        platforms=[Platform(os=o, architecture=a) for o, a in platforms],
    )
    ids = tuple(f"{service_id}-{i}" for i in range(1, n + 1))
    return Demand(service_id, ids, placement, Resources(nano_cpus=int(cpus * CPU), memory_bytes=memory),
                  tuple(("tcp", p) for p in ports), pin)


@dataclass
class Case:
    name: str
    nodes: list
    demands: list
    placed: list[list[str]]  # per demand: node ids in task order
    reasons: list[str] = field(default_factory=list)  # per demand with unplaced tasks, in order
    tasks: list = field(default_factory=list)


def assert_placement(case: Case) -> None:
    results = compute_placements(case.nodes, case.tasks, case.demands)
    placed = [[node_id for _, node_id in r.assigned] for r in results]
    reasons = [r.reason for r in results if r.unplaced]
    assert placed == case.placed, placed
    assert reasons == case.reasons, reasons
    for r in results:
        assert len(r.assigned) + len(r.unplaced) == len(r.demand.task_ids)


def table(*cases: Case):
    return pytest.mark.parametrize("case", cases, ids=[case.name for case in cases])


N3 = [node("n1"), node("n2"), node("n3")]
WEB = service("web")
OTHER = service("other")
ZONES = [node("a1", labels={"zone": "a"}), node("a2", labels={"zone": "a"}), node("a3", labels={"zone": "a"}),
         node("b1", labels={"zone": "b"}), node("c1", labels={"zone": "c"})]

RANKING = [
    Case("tasks go round the nodes, lowest id first on a tie", N3, [demand(n=5)], [["n1", "n2", "n3", "n1", "n2"]]),
    Case("the service's own tasks count first", N3, [demand(n=2)], [["n2", "n3"]], tasks=[task(WEB, 1, "n1")]),
    Case("then the node's tasks of every service", N3, [demand(n=2)], [["n3", "n2"]],
         tasks=[task(OTHER, 1, "n1"), task(OTHER, 2, "n1"), task(OTHER, 3, "n2")]),
    Case("tasks told to stop do not count, and neither do dead ones", N3, [demand(n=3)], [["n1", "n2", "n3"]],
         tasks=[task(WEB, 1, "n1", desired="shutdown"), task(WEB, 2, "n2", "failed", exit_code=1, finished=5)]),
    Case("spread: each zone gets its share, whatever its size", ZONES, [demand(n=6, spread=["node.labels.zone"])],
         [["a1", "b1", "c1", "a2", "b1", "c1"]]),
    Case("spread counts the service's tasks already in each zone", ZONES, [demand(n=3, spread=["node.labels.zone"])],
         [["b1", "c1", "b1"]], tasks=[task(WEB, 1, "a1"), task(WEB, 2, "a2")]),
    Case("spread counts tasks on nodes that cannot take more", ZONES + [node("a4", labels={"zone": "a"}, state="down")],
         [demand(n=2, spread=["node.labels.zone"])], [["b1", "c1"]], tasks=[task(WEB, 1, "a4")]),
    Case("a node without the label is in the empty-value branch",
         [node("a1", labels={"zone": "a"}), node("x1"), node("x2")], [demand(n=4, spread=["node.labels.zone"])],
         [["x1", "a1", "x2", "a1"]]),
    Case("nested spread: zones, then racks within them",
         [node("a1", labels={"zone": "a", "rack": "1"}), node("a2", labels={"zone": "a", "rack": "1"}),
          node("a3", labels={"zone": "a", "rack": "2"}), node("b1", labels={"zone": "b", "rack": "1"})],
         [demand(n=4, spread=["node.labels.zone", "node.labels.rack"])], [["a1", "b1", "a3", "b1"]]),
    Case("nested spread counts a rack within its zone, not racks of the same name elsewhere",
         [node("a-r1", labels={"zone": "a", "rack": "1"}), node("a-r2", labels={"zone": "a", "rack": "2"}),
          node("b-r1", labels={"zone": "b", "rack": "1"}), node("b-r2", labels={"zone": "b", "rack": "2"})],
         [demand(n=2, spread=["node.labels.zone", "node.labels.rack"])], [["a-r1", "a-r2"]],
         tasks=[task(WEB, 1, "b-r1"), task(WEB, 2, "b-r1")]),
    Case("a full zone leaves the others to take the rest", [node("a1", labels={"zone": "a"}, cpus=1), node("b1", labels={"zone": "b"})],
         [demand(n=4, spread=["node.labels.zone"], cpus=1)], [["a1", "b1", "b1", "b1"]]),
    Case("engine labels can be spread over too",
         [node("n1").model_copy(update={"description": node("n1").description.model_copy(update={"engine_labels": {"dc": "x"}})}),
          node("n2")], [demand(n=2, spread=["engine.labels.dc"])], [["n2", "n1"]]),
    Case("later demands see earlier placements", N3, [demand("a", n=2), demand("b", n=2)], [["n1", "n2"], ["n3", "n1"]]),
    Case("a new service sees what demands with other constraints placed since the last one",
         N3, [demand("a", n=1), demand("b", n=2, constraints=["node.labels.x!=y"]), demand("c", n=1)], [["n1"], ["n2", "n3"], ["n1"]]),
]

FILTERS = [
    Case("only ready, active nodes take new tasks",
         [node("n1", state="down"), node("n2", availability="drain"), node("n3", availability="pause"), node("n4")],
         [demand(n=1)], [["n4"]]),
    Case("no node available", [node("n1", state="down"), node("n2", availability="drain")], [demand(n=2)], [[]],
         ["no suitable node (2 nodes not available for new tasks)"]),
    Case("no node at all", [], [demand(n=1)], [[]], ["no suitable node"]),
    Case("reservations must fit in what is free", [node("n1", cpus=2), node("n2", cpus=1)], [demand(n=4, cpus=1)],
         [["n1", "n2", "n1"]], ["no suitable node (insufficient resources on 2 nodes)"]),
    Case("tasks that have not stopped hold their reservations, even when told to",
         [node("n1", memory=4 * GIB)], [demand(n=2, memory=2 * GIB)], [["n1"]], ["no suitable node (insufficient resources on 1 node)"],
         tasks=[task(service("old", reserve_memory=2 * GIB), 1, "n1", desired="shutdown")]),
    Case("constraints on labels, role and hostname",
         [node("n1", labels={"disk": "ssd"}), node("n2", labels={"disk": "hdd"}), node("m1", role="manager", labels={"disk": "ssd"})],
         [demand(n=2, constraints=["node.labels.disk==ssd", "node.role!=manager"])], [["n1", "n1"]]),
    Case("a host-mode port can be published once per node", N3, [demand(n=4, ports=[8080])], [["n1", "n2", "n3"]],
         ["no suitable node (host-mode port already in use on 3 nodes)"]),
    Case("max replicas per node", N3[:2], [demand(n=5, max_replicas=2)], [["n1", "n2", "n1", "n2"]],
         ["no suitable node (max replicas per node limit exceed)"]),
    Case("platforms: an arm64 image on amd64 nodes",
         [node("n1"), node("n2", arch="aarch64")], [demand(n=1, platforms=[("linux", "arm64")])], [["n2"]]),
    Case("the reason counts each node under the first filter it fails, the most frequent first",
         [node("n1", state="down"), node("n2", labels={"zone": "a"}, cpus=1), node("n3"), node("n4"), node("n5", arch="s390x")],
         [demand(n=1, cpus=2, constraints=["node.labels.zone==a"], platforms=[("linux", "amd64")])], [[]],
         ["no suitable node (scheduling constraints not satisfied on 3 nodes; 1 node not available for new tasks; "
          "insufficient resources on 1 node)"]),
    Case("a pinned demand (a global task) is checked on its node only", N3,
         [demand(n=1, pin="n2"), demand("big", n=1, pin="n3", cpus=9)], [["n2"], []],
         ["no suitable node (insufficient resources on 1 node)"]),
    Case("a pinned demand on a gone node", N3, [demand(n=1, pin="n9")], [[]], ["no suitable node (the node is gone)"]),
]


@table(*RANKING)
def test_ranking(case):
    assert_placement(case)


@table(*FILTERS)
def test_filters_and_reasons(case):
    assert_placement(case)


# Constraints: swarm's syntax, with one-line errors that say what to write.

@pytest.mark.parametrize("text, message", [
    ("node.labels.zone", "placement constraint 'node.labels.zone': expected one operator from ==, !="),
    ("node.labels.zone=a", "placement constraint 'node.labels.zone=a': expected one operator from ==, !="),
    ("1node==a", "placement constraint '1node==a': key '1node' is invalid"),
    ("node.labels.zone==a<b", "placement constraint 'node.labels.zone==a<b': value 'a<b' is invalid"),
    ("node.lables.zone==a", "placement constraint 'node.lables.zone==a': unknown attribute 'node.lables.zone'; use node.id, "
     "node.hostname, node.role, node.ip, node.platform.os, node.platform.arch, node.labels.KEY or engine.labels.KEY"),
    ("node.ip==10.0.0", "placement constraint 'node.ip==10.0.0': '10.0.0' is not an IP address or network"),
    ("node.role==boss", "placement constraint 'node.role==boss': a node's role is manager or worker, not 'boss'"),
])
def test_a_bad_constraint_is_one_line(text, message):
    with pytest.raises(InvalidArgument) as err:
        parse_constraint(text)
    assert str(err.value) == message


def test_a_bad_spread_preference_is_one_line():
    with pytest.raises(InvalidArgument, match=r"^placement preference spread=node.hostname: spread over node.labels.KEY or engine.labels.KEY$"):
        compute_placements(N3, [], [demand(spread=["node.hostname"])])


LABELLED = node("Node1", hostname="Web-1", labels={"Zone": "East", "tier": "app"}, role="manager", addr="10.0.1.5:2377")


@pytest.mark.parametrize("texts, matches", [
    (["node.id==Node1"], True),
    (["NODE.ID==node1"], True),  # keys and values compare without case, as swarm's EqualFold
    (["node.hostname==web-1"], True),
    (["node.hostname!=web-1"], False),
    (["node.role==manager"], True),
    (["node.role==worker"], False),
    (["node.labels.Zone==east"], True),
    (["node.labels.zone==east"], False),  # a label's key keeps its case: "zone" is missing here
    (["node.labels.zone!=east"], True),  # a missing label is "", so != holds
    (["node.labels.tier==app", "node.role!=worker"], True),
    (["node.labels.tier==app", "node.role==worker"], False),
    (["node.ip==10.0.1.5"], True),
    (["node.ip==10.0.1.0/24"], True),
    (["node.ip!=10.0.0.0/16"], False),
    (["node.platform.os==linux", "node.platform.arch==x86_64"], True),
    (["engine.labels.x!=y"], True),
])
def test_constraints_match_as_swarms(texts, matches):
    assert node_matches(parse_constraints(texts), LABELLED) is matches


# Properties.

LABELS = st.sampled_from(["a", "b", "c"])


@st.composite
def clusters(draw):
    nodes = []
    for i in range(draw(st.integers(1, 8))):
        state = draw(st.sampled_from(["ready"] * 4 + ["down"]))
        availability = draw(st.sampled_from(["active"] * 4 + ["drain", "pause"]))
        labels = {"zone": draw(LABELS)} if draw(st.booleans()) else {}
        nodes.append(node(f"n{i}", labels=labels, state=state, availability=availability, cpus=draw(st.integers(1, 4)),
                          memory=draw(st.integers(1, 8)) * GIB, role=draw(st.sampled_from(["worker", "manager"]))))
    existing = []
    for k in range(draw(st.integers(0, 6))):
        target = draw(st.sampled_from(nodes))
        svc = service(draw(st.sampled_from(["web", "db"])), reserve_memory=GIB // 2)
        existing.append(task(svc, k + 1, target.id, task_id=f"old{k}"))
    demands = []
    limits = {}  # One max_replicas per service: a limit holds for the demands that carry it.
    for k in range(draw(st.integers(1, 6))):
        constraints = draw(st.sampled_from([[], ["node.role==worker"], ["node.labels.zone==a"], ["node.labels.zone!=b"]]))
        spread = draw(st.sampled_from([[], ["node.labels.zone"]]))
        name = draw(st.sampled_from(["web", "db", "cache"])) + str(k) if draw(st.booleans()) else "web"
        limit = limits.setdefault(name, draw(st.sampled_from([0, 1, 2, 3])))
        demands.append(demand(
            name, n=draw(st.integers(1, 12)), constraints=constraints, spread=spread, max_replicas=limit,
            cpus=draw(st.sampled_from([0, 0.5, 1])), memory=draw(st.sampled_from([0, GIB // 2, GIB])),
            ports=draw(st.sampled_from([(), (80,)])),
        ))
        demands[-1] = Demand(demands[-1].service_id, tuple(f"d{k}-{i}" for i in range(len(demands[-1].task_ids))),
                             demands[-1].placement, demands[-1].reservations, demands[-1].host_ports)
    return nodes, existing, demands


def usage(nodes, existing, results):
    """Independently of the placer: what each node holds once the results are applied."""
    held = {n.id: [0, 0] for n in nodes}
    per_service = Counter()
    ports = Counter()
    for t in existing:
        held[t.node_id][0] += t.spec.resources.reservations.nano_cpus
        held[t.node_id][1] += t.spec.resources.reservations.memory_bytes
        per_service[(t.node_id, t.service_id)] += 1
    for r in results:
        for _, node_id in r.assigned:
            held[node_id][0] += r.demand.reservations.nano_cpus
            held[node_id][1] += r.demand.reservations.memory_bytes
            per_service[(node_id, r.demand.service_id)] += 1
            for p in r.demand.host_ports:
                ports[(node_id, p)] += 1
    return held, per_service, ports


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_placement_is_safe_and_complete(data):
    nodes, existing, demands = data
    results = compute_placements(nodes, existing, demands)
    held, per_service, ports = usage(nodes, existing, results)
    by_id = {n.id: n for n in nodes}
    existing_before = usage(nodes, existing, [])[0]
    for node_id, (cpus, memory) in held.items():
        n = by_id[node_id]
        before = existing_before[node_id]
        # Never over what a node has (beyond what it already held before the pass).
        assert cpus <= max(n.description.resources.nano_cpus, before[0])
        assert memory <= max(n.description.resources.memory_bytes, before[1])
    for r in results:
        for _, node_id in r.assigned:
            n = by_id[node_id]
            assert n.status.state == "ready" and n.spec.availability == "active"
            assert node_matches(parse_constraints(r.demand.placement.constraints), n)
            limit = r.demand.placement.max_replicas
            assert not limit or per_service[(node_id, r.demand.service_id)] <= max(limit, _existing(existing, node_id, r.demand.service_id))
        assert all(count == 1 for count in ports.values())
    # A task left pending is one no node could take once the pass was over.
    final = Placer(nodes, existing)
    for r in results:
        for _, node_id in r.assigned:
            final.take(r.demand, final.loads[node_id])
    for r in results:
        if r.unplaced:
            passed, _ = final.static(r.demand.placement)
            assert all(final.dynamic_failure(r.demand, load) is not None for load in passed), r.reason
            assert r.reason.startswith("no suitable node")


def _existing(existing, node_id, service_id):
    return sum(1 for t in existing if t.node_id == node_id and t.service_id == service_id)


@settings(max_examples=200, deadline=None)
@given(st.lists(LABELS, min_size=1, max_size=12), st.integers(1, 40), st.lists(st.tuples(st.integers(0, 11), st.integers(0, 3)), max_size=6))
def test_spread_stays_within_one_while_every_branch_has_room(zones, n, existing):
    nodes = [node(f"n{i:02}", labels={"zone": z}, cpus=64) for i, z in enumerate(zones)]
    svc = service("web")
    tasks = [task(svc, k + 1, nodes[i % len(nodes)].id, task_id=f"old{k}") for k, (i, _) in enumerate(existing)]
    (result,) = compute_placements(nodes, tasks, [demand(n=n, spread=["node.labels.zone"])])
    assert not result.unplaced
    zone_of = {x.id: x.spec.labels["zone"] for x in nodes}
    counts = Counter(zone_of[t.node_id] for t in tasks)
    for _, node_id in result.assigned:
        counts[zone_of[node_id]] += 1
    zones_present = set(zone_of.values())
    before = Counter(zone_of[t.node_id] for t in tasks)
    # Branches that got new tasks end within one of the least loaded branch.
    low = min(counts.get(z, 0) for z in zones_present)
    for z in zones_present:
        if counts[z] > before[z]:
            assert counts[z] <= low + 1, (counts, before)


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_the_shared_order_for_new_services_decides_as_ranking_from_scratch(data):
    nodes, existing, demands = data
    fast = [(r.assigned, r.unplaced, r.reason) for r in map(Placer(nodes, existing).place, demands)]
    slow = [(r.assigned, r.unplaced, r.reason) for r in map(Placer(nodes, existing, shared_order=False).place, demands)]
    assert fast == slow


def _loads(placer):
    return {nid: (load.free_cpus, load.free_memory, sorted(load.ports), load.tasks, dict(load.by_service))
            for nid, load in placer.loads.items()}, {sid: sorted(l.node.id for l in loads) for sid, loads in placer.holders.items()}


@settings(max_examples=200, deadline=None)
@given(clusters(), st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["shutdown", "failed", "moved", "ports"])), max_size=4))
def test_a_placer_from_counted_usage_and_a_pass_s_changes_decides_as_one_from_every_task(data, edits):
    # The leader's pass builds its Placer from what its index counted (node_usage, kept task
    # by task) and the tasks the pass changed, not from a walk over every task.
    from orch.scheduler.placement import node_usage

    nodes, existing, demands = data
    existing = [t if i % 2 else task(service(t.service_id, host_ports=(80,)), t.slot, t.node_id, task_id=t.id)
                for i, t in enumerate(existing)]
    now = {t.id: t for t in existing}
    for i, how in edits:
        if not existing:
            break
        old = existing[i % len(existing)]
        if how == "shutdown":
            now[old.id] = old.model_copy(update={"desired_state": TaskState.SHUTDOWN})
        elif how == "failed":
            now[old.id] = old.model_copy(update={"status": old.status.model_copy(update={"state": TaskState.FAILED})})
        elif how == "moved":
            now[old.id] = old.model_copy(update={"node_id": nodes[i % len(nodes)].id})
        else:
            now[old.id] = task(service(old.service_id, host_ports=(8080,)), old.slot, old.node_id, task_id=old.id)
    changed = [(t, now[t.id]) for t in existing if now[t.id] is not t]
    whole = Placer(nodes, list(now.values()))
    counted = Placer(nodes, usage=node_usage(existing), changed=changed)
    assert _loads(counted) == _loads(whole)
    again = Placer(nodes, usage=node_usage(existing), changed=changed)
    assert [(r.assigned, r.unplaced, r.reason) for r in map(again.place, demands)] == \
        [(r.assigned, r.unplaced, r.reason) for r in map(Placer(nodes, list(now.values())).place, demands)]
