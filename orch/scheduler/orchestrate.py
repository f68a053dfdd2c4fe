"""The cluster's orchestrator: services, tasks and nodes at a time -> a plan of record changes.

`plan_cluster` is the pure core of the leader manager (swarmkit's replicated and global
orchestrators, restart supervisor, updater, constraint enforcer and task reaper in one
level-triggered function, nomad's `reconcile_cluster.go` in shape). Each pass reads the whole
state and returns only the next step; the manager commits it (compare-and-swap on the
revisions it names), its watch cache sees the result, and it calls again, or at
`next_check_at`. A pass never changes its inputs.

The rules are the node's, run over tasks: a task is a replica, its slot the replica's number,
its spec digest the config hash. So scale, missing replicas, rolling updates (update_config
and rollback_config: parallelism, delay, order, failure_action, monitor, max_failure_ratio)
come from `orch.scheduler.rolling`; restart policies (condition, delay, max_attempts, window)
from `orch.scheduler.restart`; depends_on conditions across services from
`orch.scheduler.depends` (swarm ignores depends_on; orch honours it across the cluster). What
is the cluster's own, per service, in this order:

1. A task whose node is Down (or removed) is told to shut down and no longer counts: its slot
   is missing and a new task takes it (not counted as a restart: the task did not fail).
   Global services shut down their tasks on nodes that are down, drained or no longer match
   the constraints, and leave those on paused nodes alone.
2. A task on a drained node, or on a node that no longer satisfies the service's placement, is
   outdated whatever its spec (rolling's `stale`): it is replaced by the update rules, so
   start-first means the replacement runs, and is healthy, before the old task stops.
3. Two live tasks of the current spec in one slot (a node came back with a task the cluster
   had replaced): the best one stays, the others shut down. With (1) this keeps a replicated
   service at its replica count once things settle.
4. A slot's replacement in a stop-first update is created `ready` (prepared, not started) and
   is told to run once the task it replaces has stopped (swarm's delayed start).
5. A task that exited is replaced in its slot by the restart policy, after its delay; the new
   task carries the policy's counters.
6. The UpdateStatus follows the update: updating, paused (it stays paused until the service
   changes), completed; a failure with failure_action rollback swaps the previous spec back
   in (rollback_started) and the next passes roll back with rollback_config; a failed
   rollback pauses (swarm never rolls back a rollback).
7. New and pending tasks are placed (orch.scheduler.placement) in the same pass, so a task is
   written once, assigned or pending with docker's reason; a task placed gets its addresses on
   its service's networks (orch.scheduler.netalloc) in the same change.
8. Dead tasks beyond the cluster's task history limit are deleted, per slot (per node for
   global services); tasks of removed services are removed.

Networks (orch.scheduler.netalloc): a network not allocated yet gets its VNI and subnet in a
change of its own, and its services wait for the next pass (a task never holds an address
in a subnet that was not committed); a service's VIPs and published ports are written into
its record (`endpoint`) in the same group as its tasks.

Hook: `stop_gate(task, now)` is asked before a task the cluster replaces or scales away is
told to stop; it returns None to stop it now, or a time to ask again. The connection-drain
decider (issue 16) plugs in here; the default stops at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Collection, Iterable

from orch.cluster.records import (
    ClusterSettings,
    Node,
    Service,
    Task,
    TaskState,
    TaskStatus,
    UpdateStatus,
    new_id,
    record_key,
)
from orch.errors import InvalidArgument
from orch.scheduler.clusterplan import Change, ClusterPlan, ClusterState
from orch.scheduler.depends import DependencyStatus, classify_gate, compute_levels
from orch.scheduler.netalloc import NetAllocator
from orch.scheduler.model import (
    STARTING_KINDS,
    WAIT_DEPENDENCY,
    WAIT_UPDATE_PAUSED,
    Action,
    Dependency,
    DesiredService,
    DesiredState,
    ObservedContainer,
    Waiting,
)
from orch.scheduler.placement import Demand, GroupResult, Placer, node_matches, parse_constraints, platform_matches
from orch.scheduler.restart import classify_exit
from orch.scheduler.rolling import ServicePass, plan_update
from orch.scheduler.taskindex import TaskIndex
from orch.scheduler.taskview import TaskViews, has_healthcheck, restart_policy, task_view, update_config

StopGate = Callable[[Task, float], "float | None"]
IdSource = Callable[[str], str]

_UNPLACED = (TaskState.NEW, TaskState.ALLOCATED, TaskState.PENDING)
RETRY_HINT = "fix the service and run orch service update (or orch service rollback)"


def stop_now(task: Task, now: float) -> float | None:
    return None


def plan_cluster(
    state: ClusterState,
    *,
    now: float,
    settings: ClusterSettings = ClusterSettings(),
    services: Collection[str] | None = None,
    stop_gate: StopGate = stop_now,
    ids: IdSource = new_id,
    max_new: int | None = None,
) -> ClusterPlan:
    """The next step that brings the cluster's tasks towards its services at time `now`.

    `services` limits the pass to those service ids (the ones whose records changed); the
    placement still sees every task. `ids(seed)` names new tasks: by default a digest of the
    seed (the service, slot, spec and time), so the same pass computes the same plan.
    `max_new` bounds the tasks one pass creates: a service with more to create waits (it is
    planned again in the next pass), so that a deploy of 100,000 replicas is planned and
    committed in steps that each take a fraction of a second, and the first ones start while
    the rest are planned.
    """
    cp = _Pass(state, now, settings, stop_gate, ids, max_new)
    cp.allocate_networks()
    chosen = set(state.services if services is None else services) & set(state.services)
    for service in cp.ordered(chosen):
        if max_new is not None and cp.created >= max_new:
            cp.wait(service.spec.name, f"planned in the next pass (this one created {max_new} tasks)")
            continue
        cp.plan_service(service)
    cp.place()
    cp.reap(chosen if services is not None else None)
    return cp.plan()


# ---------------------------------------------------------------------------------------------


class _ByService:
    """The tasks of each service, from the index, as the pass reads them."""

    def __init__(self, index: TaskIndex):
        self.index = index

    def get(self, service_id: str, default=()):
        tasks = self.index.by_service.get(service_id)
        return tasks.values() if tasks is not None else default

    def items(self):
        return self.index.services()


@dataclass
class _Out:
    """A task's change within the pass (several decisions on one task merge into one)."""

    op: str
    task: Task
    reasons: list[str]
    base: int | None
    reads: set[str]
    verb: str


class _Pass:
    """The bookkeeping of one `plan_cluster` call; local to it, never escapes."""

    def __init__(self, state: ClusterState, now: float, settings: ClusterSettings, stop_gate: StopGate, ids: IdSource,
                 max_new: int | None = None):
        self.state = state
        self.max_new = max_new
        self.now = now
        self.settings = settings
        self.stop_gate = stop_gate
        self.ids = ids
        self.out: dict[str, _Out] = {}
        self.service_out: dict[str, tuple[Service, str]] = {}
        self.waiting: list[Waiting] = []
        self.warnings: list[str] = []
        self.checks: list[float] = []
        self.blocked: dict[str, str] = {}
        self.acted: dict[str, set[str]] = {}
        self.created = 0
        self.created_by_service: dict[str, list[str]] = {}
        self.stopped: set[str] = set()  # services with tasks this pass told to stop
        # Records are frozen, so the tasks this pass creates or assigns share one status value.
        self.new_status = TaskStatus(state=TaskState.NEW, timestamp=now, message="created")
        self.assigned_status = TaskStatus(state=TaskState.ASSIGNED, timestamp=now, message="scheduler assigned task to node")
        # The caller's index (the leader's cache keeps one up to date), or one made here.
        self.index = state.index if state.index is not None else TaskIndex(state.tasks.values())
        self.by_service = _ByService(self.index)
        self.node_keys = {node_id: n.key for node_id, n in state.nodes.items()}
        self.digests = {sid: self.index.digest(s) for sid, s in state.services.items()}
        self.desired = self._desired_state()
        # Live tasks of a service as containers, by service name, for depends_on: made when a
        # dependent first asks, so a pass over a few services does not convert every task.
        self.views = TaskViews(state.services, self.by_service, lambda t: self.live(t) and not self.node_lost(t), self.index.view)
        self.replicas = {name: svc.replicas for name, svc in self.desired.services.items()}
        self.levels: dict[str, int] | None = None
        self.alloc = NetAllocator(state.networks, state.services, state.tasks, settings)
        self.network_out: dict[str, tuple] = {}  # network id -> (its allocated record, why)

    def allocate_networks(self) -> None:
        changed, errors = self.alloc.allocate_networks(self.now)
        for net in changed:
            self.network_out[net.id] = (net, f"allocated VXLAN id {net.vni} and subnet {net.subnets[0].subnet}")
        for net_id, why in errors.items():
            self.warnings.append(f"network {self.state.networks[net_id].spec.name}: {why}")

    # State questions.

    @staticmethod
    def live(task: Task) -> bool:
        return task.desired_state <= TaskState.RUNNING

    def node_of(self, task: Task) -> Node | None:
        return self.state.nodes.get(task.node_id) if task.node_id else None

    def node_lost(self, task: Task) -> bool:
        """The task's node is down or removed: whatever it runs there no longer counts."""
        if not task.node_id:
            return False
        node = self.state.nodes.get(task.node_id)
        return node is None or node.status.state == "down"

    def still_running(self, task: Task) -> bool:
        return not task.status.state.terminal and task.status.state >= TaskState.ASSIGNED and not self.node_lost(task)

    def _desired_state(self) -> DesiredState:
        services = {}
        for sid, s in self.state.services.items():
            spec = s.spec
            reports_health = self.index.health.get(sid, 0) > 0
            replicas = spec.replicas if spec.mode == "replicated" else len(self.global_nodes(s)[0])
            services[spec.name] = DesiredService(
                name=spec.name, config_hash=self.digests[sid], replicas=replicas,
                depends_on={name: Dependency(d.condition, d.required) for name, d in spec.depends_on.items()},
                restart=restart_policy(spec.task_template.restart_policy),
                update=update_config(spec.update_config, rollback=False),
                healthcheck=has_healthcheck(s) or reports_health,
            )
        return DesiredState("cluster", services)

    def global_nodes(self, service: Service) -> tuple[list[Node], list[Node]]:
        """A global service's nodes: (active nodes that should run a task, paused nodes whose
        tasks are left alone). Down, drained and non-matching nodes are neither."""
        placement = service.spec.task_template.placement
        constraints = self.constraints_of(service)
        active, paused = [], []
        for node in sorted(self.state.nodes.values(), key=lambda n: n.id):
            if node.status.state == "down" or node.spec.availability == "drain":
                continue
            if constraints is None or not node_matches(constraints, node) or not platform_matches(placement.platforms, node):
                continue
            (paused if node.spec.availability == "pause" else active).append(node)
        return active, paused

    def constraints_of(self, service: Service):
        try:
            return parse_constraints(service.spec.task_template.placement.constraints)
        except InvalidArgument:
            return None  # Reported when its tasks are placed.

    def ordered(self, chosen: set[str]) -> list[Service]:
        """Services in dependency order (dependencies first), then by name."""
        if self.levels is None:
            try:
                self.levels = compute_levels(self.desired)
            except InvalidArgument as err:  # A cycle: stack deploy refuses them; say so if one got in.
                self.warnings.append(str(err))
                self.levels = {}
        by_name = {self.state.services[sid].spec.name: self.state.services[sid] for sid in chosen}
        return [by_name[n] for n in sorted(by_name, key=lambda n: (self.levels.get(n, 0), n))]

    # Emitting.

    def wait(self, service: str, reason: str, *, failed: bool = False, until: float | None = None, kind: str = "") -> None:
        entry = Waiting(service, reason, failed, kind)
        if entry not in self.waiting:
            self.waiting.append(entry)
        if failed:
            self.blocked.setdefault(service, reason)
        if until is not None:
            self.checks.append(until)

    def gate(self, name: str) -> DependencyStatus:
        svc = self.desired.services[name]
        return classify_gate(svc, self.desired, self.views, now=self.now, replicas=self.replicas, blocked=self.blocked, acted=self.acted)

    def put(self, task: Task, reason: str, verb: str, *, create: bool = False, reads: Iterable[str] = ()) -> None:
        entry = self.out.get(task.id)
        if entry is None:
            base = 0 if create else self.state.revision(task.key)
            entry = self.out[task.id] = _Out("create" if create else "update", task, [], base, set(), verb)
        elif entry.op != "create":
            entry.verb = verb
        entry.task = task
        if reason and reason not in entry.reasons:
            entry.reasons.append(reason)
        entry.reads.update(reads)

    def current(self, task: Task) -> Task:
        """The task as this pass has changed it so far."""
        entry = self.out.get(task.id)
        return entry.task if entry is not None else task

    def set_desired(self, task: Task, desired: TaskState, reason: str) -> None:
        task = self.current(task)
        if task.desired_state == desired or (desired > TaskState.RUNNING and task.desired_state >= desired):
            return  # Desired states only move forward once a task is told to stop.
        reads = [self.state.services[task.service_id].key] if task.service_id in self.state.services else []
        if task.node_id:
            reads.append(record_key("nodes", task.node_id))
        verb = {TaskState.RUNNING: "start", TaskState.SHUTDOWN: "shutdown"}.get(desired, "remove")
        if desired > TaskState.RUNNING:
            self.stopped.add(task.service_id)
        self.put(task.model_copy(update={"desired_state": desired, "updated_at": self.now}), reason, verb, reads=reads)

    def new_task(self, service: Service, *, slot: int, node_id: str, desired: TaskState, reason: str, counters=(0, 0)) -> Task:
        spec = service.spec
        digest = self.digests[service.id]
        self.created += 1
        task_id = self.ids(f"{service.id}/{slot}/{node_id}/{digest}/{self.now!r}/{self.created}")
        task = Task(
            id=task_id, created_at=self.now, updated_at=self.now, service_id=service.id, service_name=spec.name,
            slot=slot, node_id=node_id, spec=spec.task_template, spec_version=service.spec_version, spec_digest=digest,
            endpoint=spec.endpoint_spec, desired_state=desired,
            status=self.new_status,
            restart_count=counters[0], backoff_streak=counters[1],
        )
        self.put(task, reason, "create", create=True, reads=[service.key])
        self.created_by_service.setdefault(service.id, []).append(task_id)
        return task

    # Planning one service.

    def plan_service(self, service: Service) -> None:
        _ServicePlanner(self, service).run()

    # Placement.

    def place(self) -> None:
        """Place every live task that has no node yet (new ones and pending ones)."""
        todo: dict[tuple, list[Task]] = {}
        for service in self.ordered((set(self.index.unplaced) | set(self.created_by_service)) & set(self.state.services)):
            for task in self._unplaced(service):
                pinned = task.node_id if service.spec.mode == "global" else None
                todo.setdefault((service.id, task.spec_digest, pinned), []).append(task)
        if not todo:
            return
        # The nodes' usage as the index keeps it, and the tasks this pass changed so far.
        tasks = self.state.tasks
        changed = [(tasks[tid], entry.task) for tid, entry in self.out.items() if tid in tasks and tasks[tid] is not entry.task]
        placer = Placer(self.state.nodes.values(), usage=self.index.usage, changed=changed)
        for (service_id, _, pinned), group in todo.items():
            first = group[0]
            ports = tuple((p.protocol, p.published_port) for p in first.endpoint.ports if p.publish_mode == "host" and p.published_port)
            demand = Demand(service_id, tuple(t.id for t in group), first.spec.placement, first.spec.resources.reservations, ports, pinned)
            try:
                result = placer.place(demand)
            except InvalidArgument as err:
                result = GroupResult(demand, (), demand.task_ids, str(err))
            self._apply_placement(group, result)

    def _unplaced(self, service: Service) -> list[Task]:
        out = []
        tasks = self.state.tasks
        existing = [self.current(tasks[tid]) for tid in self.index.unplaced.get(service.id, ()) if tid in tasks]
        created = [self.out[tid].task for tid in self.created_by_service.get(service.id, ())]
        for group in (existing, created):
            group = [t for t in group if self.live(t) and t.status.state in _UNPLACED and (service.spec.mode == "global" or not t.node_id)]
            out += sorted(group, key=lambda t: (t.slot, t.created_at, t.id))
        return out

    def _apply_placement(self, group: list[Task], result: GroupResult) -> None:
        by_id = {t.id: t for t in group}
        unplaced = list(result.unplaced)
        reason = result.reason
        for task_id, node_id in result.assigned:
            task = by_id[task_id]
            node = self.state.nodes[node_id]
            service = self.state.services.get(task.service_id)
            attached = self.alloc.attach(task, service) if service is not None else []
            if isinstance(attached, str):
                unplaced.append(task_id)
                reason = attached
                continue
            changed = task.model_copy(update={"node_id": node_id, "status": self.assigned_status, "updated_at": self.now,
                                              "networks": attached})
            self.put(changed, f"assigned to {node.description.hostname or node_id}", "assign", reads=(self.node_keys[node_id],))
        result = GroupResult(result.demand, result.assigned, tuple(unplaced), reason)
        status = TaskStatus(state=TaskState.PENDING, timestamp=self.now, message="pending task scheduling", err=result.reason)
        for task_id in result.unplaced:
            task = by_id[task_id]
            if task.status.state == TaskState.PENDING and task.status.err == result.reason:
                continue  # Already says so: writing it again would only churn etcd.
            self.put(task.model_copy(update={"status": status, "updated_at": self.now}), f"pending: {result.reason}", "pending")
        if result.unplaced:
            self.wait(group[0].service_name, f"{len(result.unplaced)} task(s) pending: {result.reason}")

    # Task history.

    def reap(self, only: set[str] | None) -> None:
        """Delete dead tasks beyond the history limit, and tasks of removed services."""
        limit = max(0, self.settings.task_history_limit)
        for service_id, tasks in self.by_service.items():
            if only is not None and service_id not in only and service_id in self.state.services:
                continue
            if (service_id in self.state.services and not self.index.stopping.get(service_id)
                    and service_id not in self.stopped):
                continue  # Every task of it is live: none is history yet.
            service = self.state.services.get(service_id)
            if service is None:
                for task in tasks:
                    if self._dead(task):
                        self._delete(task, "its service was removed")
                    elif self.live(task):
                        self.set_desired(task, TaskState.REMOVE, "its service was removed")
                continue
            slots: dict[object, list[Task]] = {}
            for task in tasks:
                task = self.current(task)
                if task.desired_state == TaskState.REMOVE and self._dead(task):
                    self._delete(task, "removed by a scale down")
                    continue
                key = task.slot if service.spec.mode == "replicated" else task.node_id
                slots.setdefault(key, []).append(task)
            for group in slots.values():
                live = sum(1 for t in group if self.live(t))
                dead = sorted((t for t in group if not self.live(t) and self._dead(t)), key=lambda t: (t.status.timestamp, t.created_at), reverse=True)
                for task in dead[max(0, limit - live) :]:
                    self._delete(task, f"beyond the task history limit ({limit})")

    def _dead(self, task: Task) -> bool:
        s = task.status.state
        return s.terminal or s < TaskState.ASSIGNED or self.node_lost(task)

    def _delete(self, task: Task, reason: str) -> None:
        if task.id in self.out and self.out[task.id].op == "create":
            return
        self.out[task.id] = _Out("delete", task, [reason], self.state.revision(task.key), set(), "delete")

    # The plan.

    def plan(self) -> ClusterPlan:
        changes = []
        reads: set[str] = set()
        for net, reason in self.network_out.values():
            changes.append(Change("update", net, reason, self.state.revision(net.key), verb="allocate"))
        for service, reason in self.service_out.values():
            changes.append(Change("update", service, reason, self.state.revision(service.key), verb="update"))
        for entry in self.out.values():
            changes.append(Change(entry.op, entry.task, "; ".join(entry.reasons), entry.base, tuple(sorted(entry.reads)), entry.verb))
            reads |= entry.reads
        revisions = {key: rev for key in reads if (rev := self.state.revision(key)) is not None}
        return ClusterPlan(tuple(changes), tuple(self.waiting), tuple(self.warnings), min(self.checks, default=None), revisions)


class _ServicePlanner:
    """One service in one pass: the Emitter the replica rules write into."""

    def __init__(self, cp: _Pass, service: Service):
        self.cp = cp
        self.service = service
        self.name = service.spec.name
        self.global_ = service.spec.mode == "global"
        self.digest = cp.digests[service.id]
        self.warnings: list[str] = []
        self.rollback: str | None = None
        self.paused: str | None = None
        self.slot_tasks: dict[int, Task] = {}  # number -> task, for the actions' targets
        self.node_for: dict[int, str] = {}  # number -> node id (global)
        self.number_of: dict[str, int] = {}  # node id -> number (global)
        self.lost: dict[int, str] = {}  # slot -> why its task no longer counts (node down or gone)
        self.deferred = 0  # replicas left for the next pass (max_new)
        self.tasks = [t for t in cp.by_service.get(service.id, ())]

    # Emitter.

    def add(self, svc: DesiredService, action: Action) -> bool:
        cp = self.cp
        if action.kind == "recreate" and action.clone_from is not None:
            # A node's rollback copies an old container; the cluster swaps the previous spec
            # back in instead (see _update_status), and the next passes roll back.
            return True
        if action.kind in STARTING_KINDS:
            gate = cp.gate(self.name)
            if gate.state != "ok":
                cp.wait(self.name, gate.reason, failed=gate.state == "failed", kind=WAIT_DEPENDENCY)
                return False
        cp.acted.setdefault(self.name, set()).add(action.kind)
        if action.kind == "rollback":
            self.rollback = action.reason
        elif action.kind == "create":
            if cp.max_new is not None and cp.created >= cp.max_new:
                self.deferred += 1
                return False
            self._create(action.number, action.reason)
        elif action.kind == "recreate":
            self._recreate(self.cp.state.tasks[action.target], action.number, action.reason)
        elif action.kind == "remove":
            self._remove(self.cp.state.tasks[action.target], action.reason)
        return True

    def wait(self, service: str, reason: str, *, failed: bool = False, until: float | None = None, kind: str = "") -> None:
        if kind == WAIT_UPDATE_PAUSED and self.paused is None:
            self.paused = reason
        self.cp.wait(service, reason, failed=failed, until=until, kind=kind)

    # Actions on tasks.

    def _create(self, number: int, reason: str, desired: TaskState = TaskState.RUNNING, counters=(0, 0)) -> Task:
        if number in self.lost and reason.startswith(("scale ", "replica ")):
            reason = f"replaces {self.name}.{number}: {self.lost.pop(number)}"
        if self.global_:
            return self.cp.new_task(self.service, slot=0, node_id=self.node_for[number], desired=desired, reason=reason, counters=counters)
        return self.cp.new_task(self.service, slot=number, node_id="", desired=desired, reason=reason, counters=counters)

    def _recreate(self, old: Task, number: int, reason: str) -> None:
        held = self._stop(old, TaskState.SHUTDOWN, reason)
        if held:
            return
        # Stop-first: the replacement is prepared, and started once the old task has stopped.
        running = self.cp.still_running(old)
        self._create(number, reason, TaskState.READY if running else TaskState.RUNNING)

    def _remove(self, task: Task, reason: str) -> None:
        replaced = any(t.id != task.id and self.cp.live(t) and self._number(t) == self._number(task) for t in self.tasks)
        self._stop(task, TaskState.SHUTDOWN if replaced else TaskState.REMOVE, reason)

    def _stop(self, task: Task, desired: TaskState, reason: str) -> bool:
        """Tell `task` to stop, unless the stop gate holds it; True when held."""
        if self.cp.still_running(task):
            until = self.cp.stop_gate(task, self.cp.now)
            if until is not None and until > self.cp.now:
                self.cp.wait(self.name, f"{task.name} is still serving; it stops once drained", until=until)
                return True
        self.cp.set_desired(task, desired, reason)
        return False

    def _number(self, task: Task) -> int:
        if not self.global_:
            return task.slot
        return self.number_of.get(task.node_id, 0)

    # The pass.

    def run(self) -> None:
        cp, service = self.cp, self.service
        if self.global_ and cp.constraints_of(service) is None:
            # Which nodes it belongs on is unknown: leave its tasks alone rather than stop them.
            try:
                parse_constraints(service.spec.task_template.placement.constraints)
            except InvalidArgument as err:
                cp.wait(self.name, str(err), failed=True)
            return
        nets = cp.alloc.service_networks(service)
        if nets.failed or nets.waiting:
            # Its tasks are left as they are until its networks are there.
            cp.wait(self.name, nets.failed or nets.waiting, failed=bool(nets.failed))
            return
        if nets.endpoint != service.endpoint:
            self.service = service = service.model_copy(update={"endpoint": nets.endpoint, "updated_at": cp.now})
            cp.service_out[service.id] = (service, "allocated its virtual IPs and published ports")
        status = service.update_status
        rolling_back = status is not None and status.state in ("rollback_started", "rollback_paused")
        paused = status.message or status.state if status is not None and status.state in ("paused", "rollback_paused") else None
        views, stale, want = self._views()
        svc = replace(
            cp.desired.services[self.name], replicas=want,
            update=update_config(service.spec.rollback_config if rolling_back else service.spec.update_config, rollback=rolling_back),
        )
        sp = ServicePass(
            svc=svc, project="", replicas=want, containers=tuple(views), now=cp.now, stale=stale,
            same_slot=True, paused=paused, retry_hint=RETRY_HINT,
        )
        handled = plan_update(sp, self)
        for view in views:
            if view.id not in handled and view.config_hash == self.digest:
                self._plan_exited(svc, view)
        self._start_prepared()
        self._update_status(views, rolling_back)
        if self.deferred:
            cp.wait(self.name, f"{self.deferred} more replicas are created in the next pass (at most {cp.max_new} a pass)")

    def _views(self) -> tuple[list[ObservedContainer], dict[str, str], int]:
        """The live tasks as containers (numbered by slot, or by node for a global service),
        the stale ones with why, and how many the service wants."""
        cp = self.cp
        live = [t for t in self.tasks if cp.live(t)]
        stale: dict[str, str] = {}
        if self.global_:
            active, paused = cp.global_nodes(self.service)
            self.node_for = {i + 1: n.id for i, n in enumerate(active)}
            self.number_of = number_of = {n.id: i + 1 for i, n in enumerate(active)}
            left_alone = {n.id for n in paused}
            kept = []
            for t in live:
                if t.node_id in number_of:
                    kept.append((number_of[t.node_id], t))
                elif t.node_id not in left_alone:
                    self._shutdown_off_node(t)
            want = len(active)
        else:
            constraints = cp.constraints_of(self.service)
            platforms = self.service.spec.task_template.placement.platforms
            kept = []
            for t in live:
                node = cp.node_of(t)
                if t.node_id and (node is None or node.status.state == "down"):
                    self.lost[t.slot] = self._shutdown_off_node(t)
                    continue
                kept.append((t.slot, t))
                if node is None:
                    continue
                host = node.description.hostname or node.id
                if node.spec.availability == "drain":
                    stale[t.id] = f"node {host} is drained"
                elif constraints is not None and not (node_matches(constraints, node) and platform_matches(platforms, node)):
                    stale[t.id] = f"node {host} no longer satisfies the service's placement"
            want = self.service.spec.replicas
        kept = self._dedupe(kept, stale)
        views = []
        for number, t in sorted(kept, key=lambda item: (item[0], item[1].created_at, item[1].id)):
            views.append(cp.index.view(t, number, self.name))
        return views, stale, want

    def _shutdown_off_node(self, task: Task) -> str:
        node = self.cp.node_of(task)
        if node is None:
            why = f"node {task.node_id} was removed" if task.node_id else "no node"
        elif node.status.state == "down":
            why = f"node {node.description.hostname or node.id} is down"
        elif node.spec.availability == "drain":
            why = f"node {node.description.hostname or node.id} is drained"
        else:
            why = f"node {node.description.hostname or node.id} no longer satisfies the service's placement"
        self.cp.set_desired(task, TaskState.SHUTDOWN, why)
        return why

    def _dedupe(self, kept: list[tuple[int, Task]], stale: dict[str, str]) -> list[tuple[int, Task]]:
        """One live task of the current spec per slot: the best stays, the others shut down.
        A stale task (on a drained node) is being replaced on purpose: not a duplicate."""
        by_slot: dict[int, list[Task]] = {}
        for number, t in kept:
            if t.spec_digest == self.digest and t.id not in stale:
                by_slot.setdefault(number, []).append(t)
        drop: set[str] = set()
        for number, group in by_slot.items():
            if len(group) < 2:
                continue
            best = max(group, key=_task_rank)
            for t in group:
                if t is not best:
                    drop.add(t.id)
                    self.cp.set_desired(t, TaskState.SHUTDOWN, f"slot {number} already has {best.id} (a node came back with a task the cluster replaced)")
        return [(n, t) for n, t in kept if t.id not in drop]

    def _plan_exited(self, svc: DesiredService, view: ObservedContainer) -> None:
        """The restart policy for a task of the current spec that has stopped."""
        cp = self.cp
        if view.state != "exited":
            return
        task = cp.state.tasks[view.id]
        decision = classify_exit(svc.restart, view, now=cp.now)
        what = _ended(task)
        if decision.gave_up:
            cp.wait(self.name, f"{task.name} {what}; gave up after {view.restart_count} restarts (max {svc.restart.max_attempts})", failed=True)
        elif not decision.restart:
            if view.exit_code != 0:
                cp.wait(self.name, f"{task.name} {what}; restart policy condition is {self.service.spec.task_template.restart_policy.condition}", failed=True)
        elif decision.due_at is not None and decision.due_at > cp.now:
            cp.wait(self.name, f"{task.name} {what}; restarts in {decision.due_at - cp.now:.3g}s (restart delay)", until=decision.due_at)
        else:
            gate = cp.gate(self.name)
            if gate.state != "ok":
                cp.wait(self.name, gate.reason, failed=gate.state == "failed", kind=WAIT_DEPENDENCY)
                return
            cp.acted.setdefault(self.name, set()).add("restart")
            reason = f"{task.name} {what}; restarted by its policy (attempt {decision.attempt})"
            cp.set_desired(task, TaskState.SHUTDOWN, reason)
            self._create(view.number, reason, counters=(decision.attempt, decision.streak))

    def _start_prepared(self) -> None:
        """A task created `ready` runs once the task it replaces in its slot has stopped."""
        cp = self.cp
        prepared = [t for t in map(cp.current, self.tasks) if t.desired_state == TaskState.READY]
        if not prepared:
            return
        running_in: dict[object, set[str]] = {}  # slot (node for global) -> tasks still running there
        for t in self.tasks:
            if cp.still_running(t):
                running_in.setdefault(t.node_id if self.global_ else t.slot, set()).add(t.id)
        for task in prepared:
            if running_in.get(task.node_id if self.global_ else task.slot, set()) - {task.id}:
                cp.wait(self.name, f"{task.name} starts once the task it replaces has stopped")
                continue
            cp.set_desired(task, TaskState.RUNNING, "the task it replaces has stopped")

    def _update_status(self, views: list[ObservedContainer], rolling_back: bool) -> None:
        cp, service = self.cp, self.service
        status = service.update_status
        outdated = [v for v in views if v.config_hash != self.digest]
        new = None
        if self.rollback is not None:
            if service.previous_spec is None:
                new = UpdateStatus(state="paused", started_at=_started(status), message=f"update failed and there is no previous spec to roll back to ({self.rollback})")
            else:
                bad = self.rollback.split(";")[0]
                message = f"update rolled back due to failure or early termination of task {bad}"
                changed = service.model_copy(update={
                    "spec": service.previous_spec, "spec_version": service.previous_spec_version or service.spec_version,
                    "previous_spec": None, "previous_spec_version": None, "updated_at": cp.now,
                    "update_status": UpdateStatus(state="rollback_started", started_at=cp.now, message=message),
                })
                cp.service_out[service.id] = (changed, message)
                return
        elif self.paused is not None and (status is None or status.state not in ("paused", "rollback_paused")):
            state = "rollback_paused" if rolling_back else "paused"
            new = UpdateStatus(state=state, started_at=_started(status), message=self.paused.removeprefix("update paused: ").split(";")[0])
        elif outdated and (status is None or status.state in ("completed", "rollback_completed")):
            new = UpdateStatus(state="updating", started_at=cp.now, message="update in progress")
        elif not outdated and status is not None and status.state == "updating":
            new = UpdateStatus(state="completed", started_at=status.started_at, completed_at=cp.now, message="update completed")
        elif not outdated and status is not None and status.state == "rollback_started":
            new = UpdateStatus(state="rollback_completed", started_at=status.started_at, completed_at=cp.now, message="rollback completed")
        if new is not None:
            cp.service_out[service.id] = (service.model_copy(update={"update_status": new, "updated_at": cp.now}), f"update status {new.state}: {new.message}")


def _started(status: UpdateStatus | None) -> float | None:
    return status.started_at if status is not None else None


def _task_rank(task: Task) -> tuple:
    s = task.status
    return (s.state == TaskState.RUNNING, s.health == "healthy", not s.state.terminal, s.state.rank, task.created_at, task.id)


def _ended(task: Task) -> str:
    s = task.status
    if s.state == TaskState.COMPLETE:
        return "completed"
    code = s.container_status.exit_code if s.container_status else None
    if s.state == TaskState.FAILED and code is not None:
        return f"failed (exit {code})"
    return s.state.value + (f" ({s.err})" if s.err else "")
