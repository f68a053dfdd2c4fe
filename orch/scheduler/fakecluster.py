"""A fake cluster on a mock clock, and short builders of cluster records, for tests.

`FakeCluster` holds what a leader's cache would (services, nodes, tasks, with a mod revision
per key, like etcd's) and plays the workers: a task assigned to a ready node starts after
`start_delay`, turns healthy `health_delay` later if its service has a healthcheck, exits if
its image is in `crashes`, and stops `stop_delay` after it is told to. A node that is down
reports nothing and keeps its containers running (a partition); when it comes back its worker
stops what the cluster no longer wants, including tasks whose records were deleted meanwhile
(`ghosts`). `apply` commits a plan as etcd would: every compared revision must still hold.

With `run_cluster` a test drives `plan_cluster` + placement through minutes of simulated time
in milliseconds, as `orch.scheduler.testing.run_until_converged` does for one node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from orch.cluster.records import (
    ClusterSettings,
    ContainerSpec,
    ContainerStatus,
    EndpointSpec,
    HealthConfig,
    Network,
    Node,
    NodeDescription,
    NodeSpec,
    NodeStatus,
    Placement,
    PlacementPreference,
    PortConfig,
    Resources,
    ResourceRequirements,
    RestartPolicy,
    Service,
    ServiceDependency,
    ServiceSpec,
    Task,
    TaskSpec,
    TaskState,
    TaskStatus,
    UpdateConfig,
    compute_spec_digest,
)
from orch.scheduler.clusterplan import ClusterPlan, ClusterState

GIB = 1 << 30
CPU = 1_000_000_000

# ---------------------------------------------------------------------------------------------
# Builders: ids are readable names (node "n1", service "web", task "web1"), so expected plans
# in tables read as `service ps` would print them.


def node(
    node_id: str,
    *,
    hostname: str | None = None,
    labels: dict[str, str] | None = None,
    role: str = "worker",
    availability: str = "active",
    state: str = "ready",
    cpus: float = 4,
    memory: int = 16 * GIB,
    addr: str = "",
    os: str = "linux",
    arch: str = "x86_64",
) -> Node:
    return Node(
        id=node_id,
        spec=NodeSpec(role=role, availability=availability, labels=labels or {}),
        description=NodeDescription(
            hostname=hostname or node_id, resources=Resources(nano_cpus=int(cpus * CPU), memory_bytes=memory),
            platform={"os": os, "architecture": arch},
        ),
        status=NodeStatus(state=state, addr=addr),
    )


def service(
    name: str,
    image: str = "busybox:1",
    *,
    replicas: int = 1,
    mode: str = "replicated",
    constraints: tuple[str, ...] = (),
    spread: tuple[str, ...] = (),
    max_replicas: int = 0,
    reserve_cpus: float = 0,
    reserve_memory: int = 0,
    restart: RestartPolicy | None = None,
    update: UpdateConfig | None = None,
    rollback: UpdateConfig | None = None,
    healthcheck: bool = False,
    depends: dict[str, str] | None = None,
    host_ports: tuple[int, ...] = (),
    spec_version: int = 1,
    previous: Service | None = None,
    update_status=None,
) -> Service:
    """A service whose id is its name. `previous` gives the previous spec (for rollback)."""
    container = ContainerSpec(image=image, healthcheck=HealthConfig(test=["CMD", "true"]) if healthcheck else None)
    template = TaskSpec(
        container_spec=container,
        resources=ResourceRequirements(reservations=Resources(nano_cpus=int(reserve_cpus * CPU), memory_bytes=reserve_memory)),
        restart_policy=restart or RestartPolicy(),
        placement=Placement(
            constraints=list(constraints), preferences=[PlacementPreference(spread=s) for s in spread], max_replicas=max_replicas,
        ),
    )
    spec = ServiceSpec(
        name=name, task_template=template, mode=mode, replicas=replicas,
        update_config=update or UpdateConfig(monitor=0.0), rollback_config=rollback or UpdateConfig(monitor=0.0),
        endpoint_spec=EndpointSpec(ports=[PortConfig(target_port=p, published_port=p, publish_mode="host") for p in host_ports]),
        depends_on={k: ServiceDependency(condition=v) for k, v in (depends or {}).items()},
    )
    return Service(
        id=name, spec=spec, spec_version=spec_version, update_status=update_status,
        previous_spec=previous.spec if previous else None, previous_spec_version=previous.spec_version if previous else None,
    )


def updated(old: Service, image: str, **changes) -> Service:
    """`orch service update --image`: a new spec version, the old spec kept for rollback."""
    spec = old.spec.model_copy(update={"task_template": old.spec.task_template.model_copy(update={
        "container_spec": old.spec.task_template.container_spec.model_copy(update={"image": image})})} | changes)
    return old.model_copy(update={
        "spec": spec, "spec_version": old.spec_version + 1, "previous_spec": old.spec,
        "previous_spec_version": old.spec_version, "update_status": None,
    })


def task(
    svc: Service,
    slot: int,
    node_id: str = "",
    state: str = "running",
    *,
    desired: str = "running",
    task_id: str | None = None,
    health: str = "none",
    exit_code: int | None = None,
    created: float = 0.0,
    started: float | None = 0.0,
    finished: float | None = None,
    health_at: float | None = None,
    restarts: int = 0,
    streak: int = 0,
    spec_of: Service | None = None,
    err: str = "",
) -> Task:
    """A task of `svc` in `slot` (0 for global: named by its node). `spec_of` gives the service
    version whose spec the task runs (an outdated task), by default `svc` itself."""
    source = spec_of or svc
    st = TaskState(state)
    status = TaskStatus(
        state=st, timestamp=finished if finished is not None else (started or created), health=health,
        health_changed_at=health_at, started_at=started if st >= TaskState.RUNNING else None,
        finished_at=finished if st.terminal else None, err=err,
        container_status=ContainerStatus(exit_code=exit_code) if exit_code is not None else None,
    )
    return Task(
        id=task_id or f"{svc.spec.name}{slot or node_id}", created_at=created, updated_at=created, service_id=svc.id,
        service_name=svc.spec.name, slot=slot, node_id=node_id, spec=source.spec.task_template, spec_version=source.spec_version,
        spec_digest=compute_spec_digest(source.spec), endpoint=source.spec.endpoint_spec, desired_state=TaskState(desired),
        status=status, restart_count=restarts, backoff_streak=streak,
    )


def cluster(services=(), nodes=(), tasks=()) -> ClusterState:
    return ClusterState({s.id: s for s in services}, {n.id: n for n in nodes}, {t.id: t for t in tasks})


# ---------------------------------------------------------------------------------------------


class PlanConflict(AssertionError):
    """A plan compared a revision that no longer holds: a bug in the plan's bookkeeping here,
    where nothing else writes between planning and committing."""


@dataclass
class FakeCluster:
    services: dict[str, Service] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    start_delay: float = 1.0
    health_delay: float = 2.0
    stop_delay: float = 0.5
    crashes: dict[str, tuple[float, int]] = field(default_factory=dict)  # image -> (run time, exit code)
    settings: ClusterSettings = field(default_factory=ClusterSettings)
    revisions: dict[str, int] = field(default_factory=dict)
    revision: int = 1
    ghosts: dict[str, dict[str, float]] = field(default_factory=dict)  # node -> deleted task id -> stop time
    back_at: dict[str, float] = field(default_factory=dict)  # node -> when it last came back
    log: list[tuple[float, str]] = field(default_factory=list)  # (time, `verb name: reason`) per change

    # The user's and the dispatcher's writes.

    def put(self, record) -> None:
        store = {"services": self.services, "nodes": self.nodes, "tasks": self.tasks, "networks": self.networks}[record.KIND]
        store[record.id] = record
        self._bump(record.key)

    def remove_service(self, service_id: str) -> None:
        del self.services[service_id]
        self._bump(f"v1/services/{service_id}", deleted=True)

    def set_node(self, node_id: str, now: float = 0.0, **spec_or_status) -> None:
        """`node update --availability drain` (spec fields) or the dispatcher marking a node
        down or ready (status `state=`) at time `now`: a node's worker does nothing while it
        is away, so its tasks move on from when it is back."""
        n = self.nodes[node_id]
        if spec_or_status.get("state") == "ready" and n.status.state != "ready":
            self.back_at[node_id] = now
        status = {k: v for k, v in spec_or_status.items() if k == "state"}
        spec = {k: v for k, v in spec_or_status.items() if k != "state"}
        self.put(n.model_copy(update={
            "spec": n.spec.model_copy(update=spec), "status": n.status.model_copy(update=status),
        }))

    def _bump(self, key: str, deleted: bool = False) -> None:
        self.revision += 1
        if deleted:
            self.revisions.pop(key, None)
        else:
            self.revisions[key] = self.revision

    def state(self) -> ClusterState:
        return ClusterState(dict(self.services), dict(self.nodes), dict(self.tasks), dict(self.revisions), networks=dict(self.networks))

    # Committing a plan.

    def apply(self, plan: ClusterPlan, now: float) -> None:
        for batch in plan.batches(self.settings.max_txn_ops):
            for key, rev in batch.compares.items():
                if self.revisions.get(key, 0) != rev:
                    raise PlanConflict(f"{key}: plan read revision {rev}, store has {self.revisions.get(key, 0)}")
            for change in batch.changes:
                self.log.append((now, render_change(change)))
                record = change.record
                if change.op == "delete":
                    task = self.tasks.pop(record.id)
                    self._bump(record.key, deleted=True)
                    node = self.nodes.get(task.node_id)
                    if node is not None and node.status.state != "ready" and task.status.state == TaskState.RUNNING:
                        self.ghosts.setdefault(task.node_id, {})[task.id] = float("inf")
                else:
                    self.put(record)

    # The workers.

    def up(self, task: Task) -> bool:
        node = self.nodes.get(task.node_id)
        return node is not None and node.status.state == "ready"

    def observe(self, now: float) -> ClusterState:
        for t in list(self.tasks.values()):
            if self.up(t):
                played = self._play(t, now)
                if played is not t:
                    self.put(played)
        for node_id, ghosts in self.ghosts.items():
            if self.nodes[node_id].status.state == "ready":
                for tid, at in list(ghosts.items()):
                    if at == float("inf"):
                        ghosts[tid] = now + self.stop_delay  # Its worker sees it is no longer assigned.
                    elif now >= at:
                        del ghosts[tid]
        return self.state()

    def next_event(self, now: float) -> float | None:
        times = [t for t in (self._next(t) for t in self.tasks.values() if self.up(t)) if t is not None]
        times += [at for n, g in self.ghosts.items() for at in g.values() if at != float("inf")]
        later = [t for t in times if t > now]
        return min(later, default=None)

    def _next(self, t: Task) -> float | None:
        s = t.status
        if s.state.terminal:
            return None
        since = max(s.timestamp, t.updated_at, self.back_at.get(t.node_id, 0.0))
        if t.desired_state > TaskState.RUNNING:
            return since + (self.stop_delay if s.state == TaskState.RUNNING else 0.0)
        if s.state < TaskState.ASSIGNED:
            return None
        if s.state < TaskState.RUNNING:
            if t.desired_state == TaskState.READY and s.state == TaskState.READY:
                return None
            return since + self.start_delay
        crash = self.crashes.get(t.spec.container_spec.image)
        times = []
        if crash is not None:
            times.append(s.started_at + crash[0])
        if self._checked(t) and s.health == "starting":
            times.append(s.started_at + self.health_delay)
        return min(times, default=None)

    def _checked(self, t: Task) -> bool:
        return t.spec.container_spec.healthcheck is not None

    def _play(self, t: Task, now: float) -> Task:
        """Move `t` forward to `now`, one transition at a time."""
        while True:
            at = self._next(t)
            if at is None or at > now:
                return t
            t = self._step(t, at)

    def _step(self, t: Task, at: float) -> Task:
        s = t.status
        if t.desired_state > TaskState.RUNNING:
            status = s.model_copy(update={"state": TaskState.SHUTDOWN, "timestamp": at, "finished_at": at, "message": "shutdown",
                                          "container_status": ContainerStatus(exit_code=0 if s.state == TaskState.RUNNING else None)})
            return t.model_copy(update={"status": status})
        if s.state < TaskState.RUNNING:
            if t.desired_state == TaskState.READY:
                return t.model_copy(update={"status": s.model_copy(update={"state": TaskState.READY, "timestamp": at, "message": "prepared"})})
            health = "starting" if self._checked(t) else "none"
            status = s.model_copy(update={"state": TaskState.RUNNING, "timestamp": at, "started_at": at, "message": "started", "health": health})
            return t.model_copy(update={"status": status})
        crash = self.crashes.get(t.spec.container_spec.image)
        if crash is not None and at >= s.started_at + crash[0]:
            state = TaskState.COMPLETE if crash[1] == 0 else TaskState.FAILED
            status = s.model_copy(update={"state": state, "timestamp": at, "finished_at": at, "health": "none",
                                          "container_status": ContainerStatus(exit_code=crash[1])})
            return t.model_copy(update={"status": status})
        return t.model_copy(update={"status": s.model_copy(update={"health": "healthy", "health_changed_at": at})})

    # What a user would see.

    def running(self, service_id: str, *, spec_of: Service | None = None) -> list[Task]:
        """Tasks of the service that run on a ready node, whatever the cluster wants of them."""
        digest = compute_spec_digest(spec_of.spec) if spec_of else None
        return [
            t for t in self.tasks.values()
            if t.service_id == service_id and t.status.state == TaskState.RUNNING and self.up(t)
            and (digest is None or t.spec_digest == digest)
        ]

    def copies(self, service_id: str) -> int:
        """Running copies on ready nodes, including containers whose records were deleted."""
        ghosts = sum(1 for n, g in self.ghosts.items() if self.nodes[n].status.state == "ready" for tid in g)
        return len(self.running(service_id)) + ghosts


def run_cluster(
    fake: FakeCluster,
    *,
    now: float = 0.0,
    until: float = 600.0,
    check: Callable[[ClusterState, float], None] | None = None,
    stop_gate=None,
    max_new: int | None = None,
) -> tuple[ClusterPlan, float]:
    """The manager's loop on a mock clock: plan, commit, and jump to the next event, until the
    plan is empty and nothing more will happen (or `until`). Returns the last plan and time.

    Each step also plans the way the leader does (`Incremental`: only the services that
    changed or waited, with an index kept up to date change by change) and fails unless that
    plan is the full pass's: every simulated scenario checks that skipping services is safe."""
    from orch.scheduler.orchestrate import plan_cluster, stop_now

    leader = Incremental()
    while True:
        state = fake.observe(now)
        if check is not None:
            check(state, now)
        plan = plan_cluster(state, now=now, settings=fake.settings, stop_gate=stop_gate or stop_now, max_new=max_new)
        leader.check(plan, state, now, settings=fake.settings, stop_gate=stop_gate or stop_now, max_new=max_new)
        if plan.changes:
            fake.apply(plan, now)
            now += 0.001  # The manager needs a moment to commit.
            continue
        wake = [t for t in (plan.next_check_at, fake.next_event(now)) if t is not None]
        if not wake or now >= until:
            return plan, now
        now = min(wake)


class PlanMismatch(AssertionError):
    """The leader's incremental pass planned otherwise than a full pass."""


class Incremental:
    """The leader's way of planning (orch.cluster.manager: the cache's TaskIndex, the services
    touched by a change other than a node's progress report, the services near a changed node,
    and those that waited in the last pass), fed the fake's states one after the other."""

    def __init__(self):
        from orch.scheduler.taskindex import TaskIndex

        self.index = TaskIndex()
        self.seen: ClusterState | None = None
        self.waiting: set[str] = set()

    def dirty(self, state: ClusterState) -> set[str] | None:
        """The services the leader would plan for `state` (None: all), the index brought up to date."""
        from orch.scheduler.taskindex import classify_task_change, services_near_node

        prev, self.seen = self.seen, state
        before = prev.tasks if prev is not None else {}
        dirty: set[str] = set()
        for tid in before.keys() | state.tasks.keys():
            old, new = before.get(tid), state.tasks.get(tid)
            if old is new:
                continue
            self.index.put(old, new)
            if classify_task_change(old, new) != "progress":
                dirty.update(t.service_id for t in (old, new) if t is not None)
        if prev is None:
            return None
        full = False
        for sid in prev.services.keys() | state.services.keys():
            if prev.services.get(sid) is not state.services.get(sid):
                dirty.add(sid)
                if sid not in state.services:
                    self.index.forget_service(sid)
                    full = True  # the leader plans everything when a service is deleted
        for nid in prev.nodes.keys() | state.nodes.keys():
            if prev.nodes.get(nid) is not state.nodes.get(nid):
                dirty |= services_near_node(self.index, state.services, (t for t in state.tasks.values() if t.node_id == nid))
        return None if full else dirty

    def check(self, full: ClusterPlan, state: ClusterState, now: float, **kw) -> None:
        from orch.scheduler.orchestrate import plan_cluster

        dirty = self.dirty(state)
        # A check that falls due concerns services that wait (every check comes with a wait):
        # the pass over those covers it.
        services = None if dirty is None else dirty | self.waiting
        if services is not None and not services:
            changes, waiting = [], []  # no pass
        else:
            indexed = ClusterState(state.services, state.nodes, state.tasks, state.revisions, index=self.index, networks=state.networks)
            plan = plan_cluster(indexed, now=now, services=services, **kw)
            names = {w.service for w in plan.waiting}
            self.waiting = {sid for sid, s in state.services.items() if s.spec.name in names}
            changes, waiting = [render_change(c) for c in plan.changes], render_waiting(plan)
        # The same changes and waits; their order may differ (the index keeps a service's tasks
        # in the order they changed, a full pass in the order of the table).
        expected = [render_change(c) for c in full.changes]
        if sorted(changes) != sorted(expected) or sorted(waiting) != sorted(render_waiting(full)):
            raise PlanMismatch(f"at {now}: the leader's pass over {sorted(services) if services is not None else 'all'} "
                               f"planned {changes} waiting {waiting}; a full pass planned {expected} waiting "
                               f"{render_waiting(full)}")


def render_change(change) -> str:
    """`verb name: reason`, the form expected plans are written in."""
    return f"{change.verb or change.op} {change.name}: {change.reason}"


def render_waiting(plan: ClusterPlan) -> list[str]:
    return [f"{'failed' if w.failed else 'wait'} {w.service}: {w.reason}" for w in plan.waiting]
