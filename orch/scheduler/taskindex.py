"""What a pass of the orchestrator would otherwise work out from every task: kept up to date
one record change at a time by whoever holds the state (the leader's watch-fed cache), so a
pass over a few services costs what those services hold, not what the cluster holds.

`plan_cluster` reads a `TaskIndex` from `ClusterState.index` when there is one and builds one
from the tasks when there is none (tests, one-off passes). The index holds no decision: a
pass with it and a pass without it compute the same plan (tests/unit/scheduler hold that).

Which task changes can change a plan at all is decided here too (`classify_task_change`): a
node's report that only moves a task forward through the states before it stops (assigned,
accepted, preparing, starting, running) changes no decision for a service that did not wait
in its last pass. Why, rule by rule of orchestrate.py:
- the replica rules (rolling.py) read a replica's state and health only to pace an update;
  a service with an update under way that waits for a new task to run says so (it waits),
  and a waiting service is planned again on every pass;
- restarts read exits, which are terminal states (not progress);
- dependents read their dependency's running and healthy tasks; a dependent held by one
  waits, so it is planned again on every pass;
- a replacement prepared in a slot starts once the task before it stops (a terminal state);
- placement and the history limit count tasks by desired state and by terminal or not;
- a task placed by the scheduler changes its node as well (not progress).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Literal

from orch.cluster.records import Service, Task, TaskState, compute_spec_digest
from orch.scheduler.model import ObservedContainer
from orch.scheduler.placement import NodeUsage
from orch.scheduler.taskview import task_view

UNPLACED = frozenset({TaskState.NEW, TaskState.ALLOCATED, TaskState.PENDING})


def _unplaced(task: Task) -> bool:
    """A live task that has not been placed yet (a global service's task names its node but
    waits all the same: the pass filters by mode)."""
    return task.desired_state <= TaskState.RUNNING and task.status.state in UNPLACED


def _reports_health(task: Task) -> bool:
    return task.status.health != "none" and task.desired_state <= TaskState.RUNNING


class TaskIndex:
    """Tasks by service; each service's unplaced tasks; how many live tasks of a service
    report a health status, and how many were told to stop; each service's spec digest,
    worked out once per spec; each task's view as a replica, made once per record; what each
    node's tasks hold of it, as placement counts it."""

    def __init__(self, tasks: Iterable[Task] = ()):
        self.by_service: dict[str, dict[str, Task]] = {}
        self.unplaced: dict[str, dict[str, None]] = {}
        self.health: dict[str, int] = {}
        self.stopping: dict[str, int] = {}  # service id -> its tasks with a desired state past running
        self._digests: dict[str, tuple[object, str]] = {}  # service id -> (its spec, digest)
        self._views: dict[str, tuple[Task, int, str, ObservedContainer]] = {}
        self.usage: dict[str, NodeUsage] = {}  # node id -> what its tasks hold, as placement counts it
        for task in tasks:
            self.put(None, task)

    def put(self, old: Task | None, new: Task | None) -> None:
        """Record that a task changed from `old` to `new` (None: absent)."""
        if old is not None:
            sid = old.service_id
            tasks = self.by_service.get(sid)
            if tasks is not None:
                tasks.pop(old.id, None)
                if not tasks:
                    del self.by_service[sid]
            if _unplaced(old):
                waiting = self.unplaced.get(sid)
                if waiting is not None:
                    waiting.pop(old.id, None)
                    if not waiting:
                        del self.unplaced[sid]
            if _reports_health(old):
                _decrement(self.health, sid)
            if old.desired_state > TaskState.RUNNING:
                _decrement(self.stopping, sid)
            self._views.pop(old.id, None)
            if old.node_id:
                used = self.usage.get(old.node_id)
                if used is not None:
                    used.add(old, -1)
        if new is not None:
            if new.node_id:
                used = self.usage.get(new.node_id)
                if used is None:
                    used = self.usage[new.node_id] = NodeUsage()
                used.add(new)
            sid = new.service_id
            self.by_service.setdefault(sid, {})[new.id] = new
            if _unplaced(new):
                self.unplaced.setdefault(sid, {})[new.id] = None
            if _reports_health(new):
                self.health[sid] = self.health.get(sid, 0) + 1
            if new.desired_state > TaskState.RUNNING:
                self.stopping[sid] = self.stopping.get(sid, 0) + 1

    def tasks_of(self, service_id: str) -> Iterable[Task]:
        tasks = self.by_service.get(service_id)
        return tasks.values() if tasks is not None else ()

    def services(self) -> Iterator[tuple[str, Iterable[Task]]]:
        for sid, tasks in self.by_service.items():
            yield sid, tasks.values()

    def digest(self, service: Service) -> str:
        """compute_spec_digest(service.spec), again only when the spec is another value."""
        hit = self._digests.get(service.id)
        if hit is None or hit[0] is not service.spec:
            hit = self._digests[service.id] = (service.spec, compute_spec_digest(service.spec))
        return hit[1]

    def view(self, task: Task, number: int, service_name: str) -> ObservedContainer:
        """task_view(task, number, service_name), again only when one of them changed (records
        are frozen: the same record object is the same task)."""
        hit = self._views.get(task.id)
        if hit is None or hit[0] is not task or hit[1] != number or hit[2] != service_name:
            hit = self._views[task.id] = (task, number, service_name, task_view(task, number, service_name))
        return hit[3]

    def forget_service(self, service_id: str) -> None:
        """A service is gone: its digest goes (its tasks go one by one, as they are deleted)."""
        self._digests.pop(service_id, None)


def _decrement(counts: dict[str, int], key: str) -> None:
    counts[key] -= 1
    if not counts[key]:
        del counts[key]


def services_near_node(index: TaskIndex, services: Mapping[str, Service], tasks_on_node: Iterable[Task]) -> set[str]:
    """The services a change of a node can matter to: those with tasks on it (down, drained,
    relabelled: their tasks are replaced), the global ones (a task per node), and those with
    tasks waiting for a node (it may take them now). Another replicated service's tasks stay
    where they run (no rebalancing, as in swarm), so a node's change is nothing to it."""
    out = {t.service_id for t in tasks_on_node}
    out.update(sid for sid, s in services.items() if s.spec.mode == "global")
    out.update(index.unplaced)
    return out


TaskChange = Literal["progress", "other"]


def classify_task_change(old: Task | None, new: Task | None) -> TaskChange:
    """"progress" when `new` is `old` moved forward by its node through the states before a
    task stops, with nothing else changed that a pass reads (see the module's docstring for
    why such a change needs no pass of its service); "other" for every other change."""
    if old is None or new is None:
        return "other"
    a, b = old.status, new.status
    if not (TaskState.ASSIGNED <= a.state <= b.state <= TaskState.RUNNING):
        return "other"
    if a.health != b.health:
        return "other"
    same = (old.desired_state == new.desired_state and old.node_id == new.node_id and old.slot == new.slot
            and old.spec_digest == new.spec_digest and old.service_id == new.service_id
            and old.restart_count == new.restart_count and old.backoff_streak == new.backoff_streak
            and old.networks == new.networks and (old.spec is new.spec or old.spec == new.spec)
            and (old.endpoint is new.endpoint or old.endpoint == new.endpoint))
    return "progress" if same else "other"
