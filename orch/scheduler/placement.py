"""Placement: which node each new task goes to, or why none can take it.

Built as nomad's scheduler (`scheduler/feasible/stack.go`): first filter, then rank. The
semantics are swarm's (moby/swarmkit `manager/scheduler` and `manager/constraint`):

Filters, in swarm's order; a node counts against the first one it fails:
  1. ready: the node's status is ready and its availability active;
  2. resources: the reservations (CPU, memory) fit in what the node has free, that is its
     resources minus the reservations of the tasks it holds (every task on it that has not
     stopped, including those told to shut down);
  3. constraints: every `node.id`, `node.hostname`, `node.role`, `node.ip`, `node.platform.os`,
     `node.platform.arch`, `node.labels.KEY`, `engine.labels.KEY` with `==` or `!=` holds
     (values compare without case; a missing label is ""; `node.ip` takes an address or a
     network);
  4. platform: the node's os/architecture is one of the service's platforms, if it has any;
  5. host ports: a port published in host mode is free on the node;
  6. max replicas: the node runs fewer tasks of the service than max_replicas_per_node.
A task that fits nowhere stays pending with docker's reason, the filters that failed most
first: "no suitable node (scheduling constraints not satisfied on 3 nodes; insufficient
resources on 1 node)".

Ranking: the spread preferences make a tree over label values (node.labels.zone, then
node.labels.rack, ...); each new task goes down the branch that holds the fewest tasks of the
service (counted on every node of the branch, as swarm counts them), so branches stay within
one of each other while they have room. Within a branch, the node with the fewest tasks of
the service wins, then the one with the fewest tasks overall, then the lowest node id.

Cost: the static filters (ready, constraints, platform) run once per node for each distinct
set of constraints, and the ranking is a heap per branch, so placing T tasks of S services on
N nodes costs about S*N + T*log(N), not T*N.
"""

from __future__ import annotations

import heapq
import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

from orch.cluster.records import Node, Placement, PlacementPreference, Resources, Task, TaskState
from orch.errors import InvalidArgument

# Constraint syntax, as swarmkit's manager/constraint/constraint.go has it.
_KEY = re.compile(r"^[a-z_][a-z0-9\-_.]+$", re.IGNORECASE)
_VALUE = re.compile(r"^[a-z0-9:\-_\s.*()?+\[\]\\^$|/]+$", re.IGNORECASE)
_ATTRIBUTES = ("node.id", "node.hostname", "node.role", "node.ip", "node.platform.os", "node.platform.arch")
_LABEL_PREFIXES = ("node.labels.", "engine.labels.")
_KNOWN = "use node.id, node.hostname, node.role, node.ip, node.platform.os, node.platform.arch, node.labels.KEY or engine.labels.KEY"

Filter = Literal["ready", "resources", "constraints", "platform", "host-ports", "max-replicas"]
FILTERS: tuple[Filter, ...] = ("ready", "resources", "constraints", "platform", "host-ports", "max-replicas")


def explain_filter(name: Filter, nodes: int) -> str:
    """swarm's words for `nodes` nodes that failed filter `name`."""
    if name == "max-replicas":
        return "max replicas per node limit exceed"
    what = {
        "ready": "{} not available for new tasks",
        "resources": "insufficient resources on {}",
        "constraints": "scheduling constraints not satisfied on {}",
        "platform": "unsupported platform on {}",
        "host-ports": "host-mode port already in use on {}",
    }[name]
    return what.format("1 node" if nodes == 1 else f"{nodes} nodes")


@dataclass(frozen=True)
class Constraint:
    attribute: str  # node.id, ..., or node.labels / engine.labels
    label: str  # The label's key (case kept) for label constraints, else "".
    equal: bool
    value: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None  # node.ip

    def matches(self, actual: str) -> bool:
        return (self.value.lower() == actual.lower()) == self.equal


def parse_constraint(text: str) -> Constraint:
    """One `KEY==VALUE` or `KEY!=VALUE`; a bad one is a one-line InvalidArgument."""
    where = f"placement constraint {text!r}"
    for op in ("==", "!="):
        if op in text:
            key, _, value = text.partition(op)
            key, value = key.strip(), value.strip()
            break
    else:
        raise InvalidArgument(f"{where}: expected one operator from ==, !=")
    if not _KEY.match(key):
        raise InvalidArgument(f"{where}: key {key!r} is invalid")
    if not _VALUE.match(value):
        raise InvalidArgument(f"{where}: value {value!r} is invalid")
    lowered = key.lower()
    for prefix in _LABEL_PREFIXES:
        if lowered.startswith(prefix) and len(key) > len(prefix):
            return Constraint(prefix[:-1], key[len(prefix) :], op == "==", value)
    if lowered not in _ATTRIBUTES:
        raise InvalidArgument(f"{where}: unknown attribute {key!r}; {_KNOWN}")
    network = None
    if lowered == "node.ip":
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise InvalidArgument(f"{where}: {value!r} is not an IP address or network") from None
    if lowered == "node.role" and value.lower() not in ("manager", "worker"):
        raise InvalidArgument(f"{where}: a node's role is manager or worker, not {value!r}")
    return Constraint(lowered, "", op == "==", value, network)


def parse_constraints(texts: Iterable[str]) -> tuple[Constraint, ...]:
    return tuple(parse_constraint(t) for t in texts)


def parse_preference(pref: PlacementPreference) -> tuple[str, str]:
    """`spread=node.labels.zone` -> ("node.labels", "zone"); only labels can be spread over."""
    lowered = pref.spread.lower()
    for prefix in _LABEL_PREFIXES:
        if lowered.startswith(prefix) and len(pref.spread) > len(prefix):
            return prefix[:-1], pref.spread[len(prefix) :]
    raise InvalidArgument(f"placement preference spread={pref.spread}: spread over node.labels.KEY or engine.labels.KEY")


def node_matches(constraints: Sequence[Constraint], node: Node) -> bool:
    """Whether `node` satisfies every constraint (swarm's NodeMatches)."""
    for c in constraints:
        if not _matches(c, node):
            return False
    return True


def _matches(c: Constraint, node: Node) -> bool:
    a = c.attribute
    if a == "node.labels":
        return c.matches(node.spec.labels.get(c.label, ""))
    if a == "engine.labels":
        return c.matches(node.description.engine_labels.get(c.label, ""))
    if a == "node.id":
        return c.matches(node.id)
    if a == "node.hostname":
        return c.matches(node.description.hostname)
    if a == "node.role":
        return c.matches(node.spec.role)
    if a == "node.platform.os":
        return c.matches(node.description.platform.os)
    if a == "node.platform.arch":
        return c.matches(node.description.platform.architecture)
    # node.ip: an address or a network.
    try:
        inside = ipaddress.ip_address(_host_of(node.status.addr)) in c.network
    except ValueError:
        inside = False
    return inside == c.equal


def _host_of(addr: str) -> str:
    """The address of `10.0.0.1`, `10.0.0.1:2377`, `[fd00::1]:2377` or `fd00::1`."""
    if addr.startswith("["):
        return addr[1:].partition("]")[0]
    return addr.rsplit(":", 1)[0] if addr.count(":") == 1 else addr


_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def platform_matches(platforms, node: Node) -> bool:
    if not platforms:
        return True
    os_, arch = node.description.platform.os, _ARCH.get(node.description.platform.architecture, node.description.platform.architecture)
    for p in platforms:
        want = _ARCH.get(p.architecture, p.architecture)
        if (not want or want == arch) and (not p.os or p.os == os_):
            return True
    return False


def node_available(node: Node) -> bool:
    return node.status.state == "ready" and node.spec.availability == "active"


# ---------------------------------------------------------------------------------------------
# Inputs and results


@dataclass(frozen=True)
class Demand:
    """Tasks to place that are alike: the same service, placement and reservations.

    `node_id` pins them to one node (a global service's task for that node): the filters run
    on that node alone. `host_ports` are (protocol, port) pairs published in host mode.
    """

    service_id: str
    task_ids: tuple[str, ...]
    placement: Placement = Placement()
    reservations: Resources = Resources()
    host_ports: tuple[tuple[str, int], ...] = ()
    node_id: str | None = None


@dataclass(frozen=True)
class GroupResult:
    demand: Demand
    assigned: tuple[tuple[str, str], ...]  # (task id, node id)
    unplaced: tuple[str, ...]
    reason: str = ""  # "no suitable node (...)" when some are unplaced


class _Load:
    """One node's usage during a placement pass (private to a Placer)."""

    __slots__ = ("node", "free_cpus", "free_memory", "tasks", "by_service", "ports")

    def __init__(self, node: Node):
        self.node = node
        self.free_cpus = node.description.resources.nano_cpus
        self.free_memory = node.description.resources.memory_bytes
        self.tasks = 0
        self.by_service: dict[str, int] = {}
        self.ports: set[tuple[str, int]] = set()


class NodeUsage:
    """What a node's tasks hold of it, as a Placer counts it (its resources held by tasks that
    have not ended, the host ports they publish, its live tasks of each service): kept task by
    task (`add`, with -1 to take a task away) by whoever holds the tasks (TaskIndex), so that a
    Placer needs no walk over every task of the cluster (half a second at 100,000 tasks, on
    every pass that places a task)."""

    __slots__ = ("cpus", "memory", "ports", "tasks", "by_service")

    def __init__(self):
        self.cpus = 0
        self.memory = 0
        self.ports: dict[tuple[str, int], int] = {}
        self.tasks = 0
        self.by_service: dict[str, int] = {}

    def copy(self) -> NodeUsage:
        other = NodeUsage()
        other.cpus, other.memory, other.tasks = self.cpus, self.memory, self.tasks
        other.ports, other.by_service = dict(self.ports), dict(self.by_service)
        return other

    def add(self, task: Task, sign: int = 1) -> None:
        if _holds_resources(task):
            reserved = task.spec.resources.reservations
            self.cpus += sign * reserved.nano_cpus
            self.memory += sign * reserved.memory_bytes
            for port in _host_ports(task):
                left = self.ports.get(port, 0) + sign
                if left:
                    self.ports[port] = left
                else:
                    del self.ports[port]
        if _counts(task):
            self.tasks += sign
            left = self.by_service.get(task.service_id, 0) + sign
            if left:
                self.by_service[task.service_id] = left
            else:
                del self.by_service[task.service_id]


def node_usage(tasks: Iterable[Task]) -> dict[str, NodeUsage]:
    """Each node's usage by `tasks` (those with a node)."""
    usage: dict[str, NodeUsage] = {}
    for t in tasks:
        if t.node_id:
            usage.setdefault(t.node_id, NodeUsage()).add(t)
    return usage


def _holds_resources(task: Task) -> bool:
    return bool(task.node_id) and not task.status.state.terminal


def _counts(task: Task) -> bool:
    """An active task of its service on its node: one the cluster wants to run."""
    return task.desired_state <= TaskState.RUNNING and not task.status.state.terminal


class Placer:
    """The state of one placement pass: nodes with their usage, updated as tasks are placed.

    Local to one pass of the orchestrator (like reconcile's `_Pass`): it is made from the
    records, places demands one after the other so each sees the ones before, and is thrown
    away. The records given are not changed.
    """

    def __init__(self, nodes: Iterable[Node], tasks: Iterable[Task] = (), *, shared_order: bool = True,
                 usage: dict[str, NodeUsage] | None = None, changed: Iterable[tuple[Task | None, Task | None]] = ()):
        self.loads: dict[str, _Load] = {n.id: _Load(n) for n in sorted(nodes, key=lambda n: n.id)}
        # A service that no node runs yet ranks the nodes of a branch by their task count
        # alone, the same order for every such service: one heap per branch, kept across
        # demands, serves them all (see _Branch). False ranks from scratch for each demand
        # (the same decisions, slower; tests compare the two).
        self.shared_order = shared_order
        self._orders: dict[tuple, list] = {}
        self.order = list(self.loads.values())
        self._static: dict[tuple, tuple[list[_Load], dict[str, Filter]]] = {}
        self._values: dict[tuple[str, str], dict[str, str]] = {}
        self._trees: dict[tuple, object] = {}
        # The nodes that run tasks of each service, so spread counts look at those alone.
        self.holders: dict[str, dict[_Load, None]] = {}
        for t in tasks:
            load = self.loads.get(t.node_id) if t.node_id else None
            if load is None:
                continue
            if _holds_resources(t):
                reserved = t.spec.resources.reservations
                load.free_cpus -= reserved.nano_cpus
                load.free_memory -= reserved.memory_bytes
                load.ports.update(_host_ports(t))
            if _counts(t):
                self.add_count(load, t.service_id)
        # What the nodes' tasks hold, counted beforehand (node_usage), instead of or besides
        # `tasks`; with `changed`, tasks as they were counted there and as they are now.
        usage = usage or {}
        mine: dict[str, NodeUsage] = {}
        for before, now in changed:
            for task, sign in ((before, -1), (now, 1)):
                if task is not None and task.node_id:
                    used = mine.get(task.node_id)
                    if used is None:
                        base = usage.get(task.node_id)
                        used = mine[task.node_id] = base.copy() if base is not None else NodeUsage()
                    used.add(task, sign)
        for node_id, used in (usage | mine).items():
            load = self.loads.get(node_id)
            if load is None:
                continue
            load.free_cpus -= used.cpus
            load.free_memory -= used.memory
            load.ports.update(used.ports)
            load.tasks += used.tasks
            for service_id, count in used.by_service.items():
                load.by_service[service_id] = load.by_service.get(service_id, 0) + count
                self.holders.setdefault(service_id, {})[load] = None

    def add_count(self, load: _Load, service_id: str) -> None:
        load.tasks += 1
        load.by_service[service_id] = load.by_service.get(service_id, 0) + 1
        self.holders.setdefault(service_id, {})[load] = None

    def values(self, kind: str, label: str) -> dict[str, str]:
        """Each node's value of a label (node.labels or engine.labels), "" when it has none."""
        values = self._values.get((kind, label))
        if values is None:
            values = self._values[(kind, label)] = {load.node.id: _label(load.node, kind, label) for load in self.order}
        return values

    def tree(self, placement: Placement, prefs: tuple[tuple[str, str], ...]):
        """The nodes that pass the static filters, grouped by each spread label in turn:
        nested dicts of label value, with lists of nodes at the bottom; once per placement.
        Returns the tree and its key."""
        key = (tuple(placement.constraints), tuple((p.os, p.architecture) for p in placement.platforms), prefs)
        tree = self._trees.get(key)
        if tree is None:
            tree = self._trees[key] = self._group(self.static(placement)[0], prefs)
        return tree, key

    def shared_heap(self, key: tuple, loads: list[_Load]) -> list:
        """The shared heap of a branch's nodes by (task count, node id), made on first use.
        An entry whose count is out of date (another demand placed there) is fixed when it
        comes to the top; each node has exactly one entry except while a demand holds it."""
        heap = self._orders.get(key)
        if heap is None:
            heap = self._orders[key] = [[load.tasks, load.node.id, load] for load in loads]
            heapq.heapify(heap)
        return heap

    def _group(self, loads: list[_Load], prefs: tuple[tuple[str, str], ...]):
        if not prefs:
            return loads
        values = self.values(*prefs[0])
        groups: dict[str, list[_Load]] = {}
        for load in loads:
            groups.setdefault(values[load.node.id], []).append(load)
        return {value: self._group(members, prefs[1:]) for value, members in groups.items()}

    def tasks_of(self, node_id: str, service_id: str) -> int:
        load = self.loads.get(node_id)
        return load.by_service.get(service_id, 0) if load else 0

    # Filters.

    def static(self, placement: Placement) -> tuple[list[_Load], dict[str, Filter]]:
        """Nodes that pass the filters that do not change during a pass (ready, constraints,
        platform), and the first failure of the others; once per distinct placement."""
        key = (tuple(placement.constraints), tuple((p.os, p.architecture) for p in placement.platforms))
        cached = self._static.get(key)
        if cached is None:
            constraints = parse_constraints(placement.constraints)
            passed, failed = [], {}
            for load in self.order:
                node = load.node
                if not node_available(node):
                    failed[node.id] = "ready"
                elif constraints and not node_matches(constraints, node):
                    failed[node.id] = "constraints"
                elif not platform_matches(placement.platforms, node):
                    failed[node.id] = "platform"
                else:
                    passed.append(load)
            cached = self._static[key] = (passed, failed)
        return cached

    def dynamic_failure(self, demand: Demand, load: _Load) -> Filter | None:
        """The first filter that changes with placements (resources, ports, max replicas) that
        `load` fails for one more task of `demand`."""
        r = demand.reservations
        if r.nano_cpus > load.free_cpus or r.memory_bytes > load.free_memory:
            return "resources"
        if demand.host_ports and not load.ports.isdisjoint(demand.host_ports):
            return "host-ports"
        limit = demand.placement.max_replicas
        if limit and load.by_service.get(demand.service_id, 0) >= limit:
            return "max-replicas"
        return None

    def take(self, demand: Demand, load: _Load) -> None:
        load.free_cpus -= demand.reservations.nano_cpus
        load.free_memory -= demand.reservations.memory_bytes
        load.ports.update(demand.host_ports)
        self.add_count(load, demand.service_id)

    def explain(self, demand: Demand, only: str | None = None) -> str:
        """docker's reason for tasks of `demand` that fit nowhere, from the load as it is now:
        each node counts against the first filter it fails, in swarm's order."""
        _, failed = self.static(demand.placement)
        counts: dict[Filter, int] = {}
        loads = [self.loads[only]] if only is not None else self.order
        for load in loads:
            static = failed.get(load.node.id)
            if static == "ready":
                name = static
            else:
                dynamic = self.dynamic_failure(demand, load)
                name = "resources" if dynamic == "resources" else (static or dynamic)
            if name is not None:
                counts[name] = counts.get(name, 0) + 1
        parts = sorted(counts.items(), key=lambda item: (-item[1], FILTERS.index(item[0])))
        text = "; ".join(explain_filter(name, n) for name, n in parts)
        return f"no suitable node ({text})" if text else "no suitable node"

    # Placing.

    def place(self, demand: Demand) -> GroupResult:
        if demand.node_id is not None:
            return self._place_pinned(demand)
        prefs = tuple(parse_preference(p) for p in demand.placement.preferences)
        tree, key = self.tree(demand.placement, prefs)
        root = _Branch(self, demand, tree, prefs, (), key)
        assigned = []
        ids = list(demand.task_ids)
        try:
            for i, task_id in enumerate(ids):
                load = root.pick()
                if load is None:
                    unplaced = tuple(ids[i:])
                    return GroupResult(demand, tuple(assigned), unplaced, self.explain(demand))
                assigned.append((task_id, load.node.id))
            return GroupResult(demand, tuple(assigned), ())
        finally:
            root.release()

    def _place_pinned(self, demand: Demand) -> GroupResult:
        load = self.loads.get(demand.node_id)
        _, failed = self.static(demand.placement)
        assigned = []
        ids = list(demand.task_ids)
        for i, task_id in enumerate(ids):
            if load is None or demand.node_id in failed or self.dynamic_failure(demand, load) is not None:
                reason = self.explain(demand, only=demand.node_id) if load is not None else "no suitable node (the node is gone)"
                return GroupResult(demand, tuple(assigned), tuple(ids[i:]), reason)
            self.take(demand, load)
            assigned.append((task_id, load.node.id))
        return GroupResult(demand, tuple(assigned), ())


def _host_ports(task: Task) -> set[tuple[str, int]]:
    return {(p.protocol, p.published_port) for p in task.endpoint.ports if p.publish_mode == "host" and p.published_port}


class _Branch:
    """A node of the spread tree: a leaf ranks its nodes, an inner node its children by the
    service's task count. Built once per demand.

    A leaf ranks by (the service's tasks on the node, the node's tasks, node id). For a service
    no node runs yet the first number is 0 everywhere, so its first round of picks goes through
    the nodes in (tasks, id) order: the leaf takes them from the Placer's shared heap for the
    branch instead of ranking every node again (O(k log n) for k tasks, not O(n)). The nodes it
    takes are held aside until the demand is done (`release`); if it needs more than one round,
    it ranks the nodes it took, as the regular path would, and goes on from there.
    """

    def __init__(self, placer: Placer, demand: Demand, tree, prefs: tuple[tuple[str, str], ...], path: tuple, key: tuple):
        self.placer = placer
        self.demand = demand
        self.shared = None
        service = demand.service_id
        if not prefs:
            self.children = None
            if placer.shared_order and service not in placer.holders:
                self.shared = placer.shared_heap((key, path), tree)
                self.aside: list[_Load] = []
                self.failed: set[str] = set()
                self.heap = None
            else:
                self.heap = [(load.by_service.get(service, 0), load.tasks, load.node.id, load) for load in tree]
                heapq.heapify(self.heap)
            return
        # The service's tasks per branch, counted on every node of this branch (feasible or
        # not), as swarm counts them; `path` is the label values that lead here.
        values = placer.values(*prefs[0])
        outer = [(placer.values(kind, label), value) for kind, label, value in path]
        counts: dict[str, int] = {}
        for load in placer.holders.get(service, ()):
            node_id = load.node.id
            if all(vals[node_id] == value for vals, value in outer):
                value = values[node_id]
                counts[value] = counts.get(value, 0) + load.by_service[service]
        self.children = [
            [counts.get(value, 0), value, _Branch(placer, demand, subtree, prefs[1:], path + (prefs[0] + (value,),), key)]
            for value, subtree in tree.items()
        ]
        self.everyone = [entry[2] for entry in self.children]
        heapq.heapify(self.children)

    def pick(self) -> _Load | None:
        """Place one task in this subtree: the chosen node, or None when the subtree is full."""
        if self.children is None:
            return self._pick_node()
        while self.children:
            entry = self.children[0]
            load = entry[2].pick()
            if load is None:
                heapq.heappop(self.children)  # No room left in that branch.
                continue
            entry[0] += 1
            heapq.heapreplace(self.children, entry)
            return load
        return None

    def _pick_node(self) -> _Load | None:
        placer, demand = self.placer, self.demand
        if self.heap is None:
            load = self._pick_first_round()
            if load is not None:
                return load
            service = demand.service_id
            self.heap = [(load.by_service.get(service, 0), load.tasks, load.node.id, load)
                         for load in self.aside if load.node.id not in self.failed]
            heapq.heapify(self.heap)
        heap = self.heap
        while heap:
            load = heap[0][3]
            if placer.dynamic_failure(demand, load) is not None:
                heapq.heappop(heap)  # Full for this demand: reservations and counts only grow.
                continue
            placer.take(demand, load)
            heapq.heapreplace(heap, (load.by_service[demand.service_id], load.tasks, load.node.id, load))
            return load
        return None

    def _pick_first_round(self) -> _Load | None:
        placer, demand, shared = self.placer, self.demand, self.shared
        while shared:
            entry = shared[0]
            load = entry[2]
            if entry[0] != load.tasks:
                heapq.heapreplace(shared, [load.tasks, entry[1], load])  # Out of date: put it where it belongs.
                continue
            heapq.heappop(shared)
            self.aside.append(load)
            if placer.dynamic_failure(demand, load) is not None:
                self.failed.add(load.node.id)
                continue
            placer.take(demand, load)
            return load
        return None

    def release(self) -> None:
        """Give the nodes this demand took back to the shared heaps."""
        if self.children is None:
            if self.shared is not None:
                for load in self.aside:
                    heapq.heappush(self.shared, [load.tasks, load.node.id, load])
                self.aside = []
            return
        for branch in self.everyone:
            branch.release()


def _label(node: Node, kind: str, label: str) -> str:
    labels = node.spec.labels if kind == "node.labels" else node.description.engine_labels
    return labels.get(label, "")


def compute_placements(nodes: Iterable[Node], tasks: Iterable[Task], demands: Sequence[Demand]) -> list[GroupResult]:
    """Place `demands` in order on `nodes` that already run `tasks`; one result per demand."""
    placer = Placer(nodes, tasks)
    return [placer.place(d) for d in demands]


__all__ = [
    "Constraint", "Demand", "GroupResult", "NodeUsage", "Placer", "compute_placements", "node_usage", "explain_filter", "node_matches",
    "parse_constraint", "parse_constraints", "parse_preference", "platform_matches",
]  # fmt: skip
