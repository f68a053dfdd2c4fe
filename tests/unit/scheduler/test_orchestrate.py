"""The cluster orchestrator as tables: (name, cluster state, now) -> expected plan.

Every case goes through `assert_plan`, as tests/unit/test_reconcile.py does for one node. An
expected change is written `verb name: reason prefix` (or `verb name` alone), a wait
`wait service: reason prefix` or `failed ...`. Changes are compared in plan order. The clock
is an argument: multi-step cases are rows at later `now` values with the state the previous
step would have left.
"""

from dataclasses import dataclass, field

import pytest

from orch.cluster.records import RestartPolicy, TaskState, UpdateConfig, UpdateStatus
from orch.scheduler.clusterplan import ClusterState
from orch.scheduler.fakecluster import GIB, cluster, node, render_change, render_waiting, service, task, updated
from orch.scheduler.orchestrate import plan_cluster


@dataclass
class Case:
    name: str
    state: ClusterState
    changes: list[str]
    waiting: list[str] = field(default_factory=list)
    now: float = 100.0
    next_check_at: float | None = None


def _matches(actual: str, expected: str) -> bool:
    if ":" in expected:
        return actual.startswith(expected)
    return actual.split(":")[0] == expected


def assert_plan(case: Case) -> None:
    plan = plan_cluster(case.state, now=case.now)
    changes = [render_change(c) for c in plan.changes]
    waiting = render_waiting(plan)
    explain = plan.explain(now=case.now)
    assert len(changes) == len(case.changes) and all(map(_matches, changes, case.changes)), explain
    assert len(waiting) == len(case.waiting) and all(map(_matches, waiting, case.waiting)), explain
    if case.next_check_at is None:
        assert plan.next_check_at is None, explain
    else:
        assert plan.next_check_at == pytest.approx(case.next_check_at), explain


def table(*cases: Case):
    return pytest.mark.parametrize("case", cases, ids=[case.name for case in cases])


N3 = [node("n1"), node("n2"), node("n3")]
WEB = service("web", replicas=3)
RUNNING3 = [task(WEB, 1, "n1"), task(WEB, 2, "n2"), task(WEB, 3, "n3")]

REPLICATED = [
    Case("a new service gets its replicas, one per node", cluster([WEB], N3),
         ["create web.1: replica 1 of 3 is missing; assigned to n1", "create web.2: replica 2 of 3 is missing; assigned to n2",
          "create web.3: replica 3 of 3 is missing; assigned to n3"]),
    Case("converged: nothing to do", cluster([WEB], N3, RUNNING3), []),
    Case("scale up takes the lowest free slots, on the least loaded nodes",
         cluster([service("web", replicas=5)], N3, [task(WEB, 1, "n1"), task(WEB, 3, "n3")]),
         ["create web.2: scale 2→5; assigned to n2", "create web.4: scale 2→5; assigned to n1", "create web.5: scale 2→5; assigned to n2"]),
    Case("scale down removes the highest slots first", cluster([service("web", replicas=1)], N3, RUNNING3),
         ["remove web.3: scale 3→1", "remove web.2: scale 3→1"]),
    Case("a task on a down node is shut down and its slot filled elsewhere",
         cluster([WEB], [node("n1"), node("n2", state="down"), node("n3")], RUNNING3),
         ["shutdown web.2: node n2 is down", "create web.2: replaces web.2: node n2 is down; assigned to n1"]),
    Case("a task on a removed node is replaced too",
         cluster([WEB], [node("n1"), node("n3")], RUNNING3),
         ["shutdown web.2: node n2 was removed", "create web.2: replaces web.2: node n2 was removed; assigned to n1"]),
    Case("a task on a node in unknown state (a new leader) is kept",
         cluster([WEB], [node("n1"), node("n2", state="unknown"), node("n3")], RUNNING3), []),
    Case("a node came back with a task the cluster replaced: the older one shuts down",
         cluster([WEB], N3, RUNNING3 + [task(WEB, 2, "n1", task_id="web2b", created=50, started=51)]),
         ["shutdown web.2: slot 2 already has web2b"]),
    Case("the running copy wins over a newer one still starting",
         cluster([WEB], N3, RUNNING3 + [task(WEB, 2, "n1", "starting", task_id="web2b", created=50, started=None)]),
         ["shutdown web.2: slot 2 already has web2"]),
    Case("a task that fits nowhere stays pending with docker's reason",
         cluster([service("web", constraints=("node.labels.zone==z9",))], N3),
         ["create web.1: replica 1 of 1 is missing; pending: no suitable node (scheduling constraints not satisfied on 3 nodes)"],
         ["wait web: 1 task(s) pending: no suitable node (scheduling constraints not satisfied on 3 nodes)"]),
    Case("each node counts against the first filter it fails, the most common first",
         cluster([service("web", constraints=("node.labels.zone==a",), reserve_memory=8 * GIB)],
                 [node("n1", labels={"zone": "a"}, memory=4 * GIB), node("n2"), node("n3"), node("n4", state="down")]),
         ["create web.1: replica 1 of 1 is missing; pending: no suitable node (scheduling constraints not satisfied on 2 nodes; "
          "1 node not available for new tasks; insufficient resources on 1 node)"],
         ["wait web: 1 task(s) pending"]),
    Case("a pending task is assigned once a node fits",
         cluster([WEB], N3, RUNNING3[:2] + [task(WEB, 3, "", "pending", started=None, err="no suitable node (x)")]),
         ["assign web.3: assigned to n3"]),
    Case("a pending task with the same reason is not written again",
         cluster([service("web", constraints=("node.labels.zone==z9",))], N3,
                 [task(service("web", constraints=("node.labels.zone==z9",)), 1, "", "pending", started=None,
                       err="no suitable node (scheduling constraints not satisfied on 3 nodes)")]),
         [], ["wait web: 1 task(s) pending"]),
    Case("max_replicas_per_node holds; the rest waits",
         cluster([service("web", replicas=5, max_replicas=2)], N3[:2]),
         ["create web.1: replica 1 of 5 is missing; assigned to n1", "create web.2: replica 2 of 5 is missing; assigned to n2",
          "create web.3: replica 3 of 5 is missing; assigned to n1", "create web.4: replica 4 of 5 is missing; assigned to n2",
          "create web.5: replica 5 of 5 is missing; pending: no suitable node (max replicas per node limit exceed)"],
         ["wait web: 1 task(s) pending"]),
    Case("a bad constraint stored in a service pends its tasks with the one-line error",
         cluster([service("web", constraints=("node.labels.zone~a",))], N3),
         ["create web.1: replica 1 of 1 is missing; pending: placement constraint 'node.labels.zone~a': expected one operator"],
         ["wait web: 1 task(s) pending: placement constraint"]),
]

ON_FAILURE = RestartPolicy(condition="on-failure", delay=5.0, max_attempts=3)
RESTARTS = [
    Case("a failed task is replaced after its restart delay",
         cluster([WEB], N3, RUNNING3[:2] + [task(WEB, 3, "n3", "failed", exit_code=2, started=90, finished=98)]),
         [], ["wait web: web.3 failed (exit 2); restarts in 3s (restart delay)"], next_check_at=103.0),
    Case("once the delay has passed, a new task takes the slot and carries the counter",
         cluster([WEB], N3, RUNNING3[:2] + [task(WEB, 3, "n3", "failed", exit_code=2, started=90, finished=94)]),
         ["shutdown web.3: web.3 failed (exit 2); restarted by its policy (attempt 1)",
          "create web.3: web.3 failed (exit 2); restarted by its policy (attempt 1); assigned to n3"]),
    Case("condition none: a failed task stays failed, and says so",
         cluster([service("web", restart=RestartPolicy(condition="none"))], N3,
                 [task(service("web", restart=RestartPolicy(condition="none")), 1, "n1", "failed", exit_code=1, finished=50)]),
         [], ["failed web: web.1 failed (exit 1); restart policy condition is none"]),
    Case("on-failure: a completed task is done",
         cluster([service("web", restart=ON_FAILURE)], N3, [task(service("web", restart=ON_FAILURE), 1, "n1", "complete", exit_code=0, finished=50)]),
         []),
    Case("on-failure: max_attempts reached, it gives up",
         cluster([service("web", restart=ON_FAILURE)], N3,
                 [task(service("web", restart=ON_FAILURE), 1, "n1", "failed", exit_code=1, finished=50, restarts=3)]),
         [], ["failed web: web.1 failed (exit 1); gave up after 3 restarts (max 3)"]),
    Case("a task its node rejected is restarted too",
         cluster([WEB], N3, RUNNING3[:2] + [task(WEB, 3, "n3", "rejected", started=None, finished=50, err="no such image")]),
         ["shutdown web.3: web.3 rejected (no such image); restarted", "create web.3: web.3 rejected (no such image)"]),
]

STOP_FIRST = UpdateConfig(parallelism=1, order="stop-first", monitor=0)
START_FIRST = UpdateConfig(parallelism=1, order="start-first", monitor=0)
V1 = service("web", "app:1", replicas=2, update=STOP_FIRST)
V2 = updated(V1, "app:2")
S1 = service("web", "app:1", replicas=2, update=START_FIRST, healthcheck=True)
S2 = updated(S1, "app:2")
UPDATING = UpdateStatus(state="updating", started_at=90, message="update in progress")
OLD2 = [task(V2, 1, "n1", spec_of=V1), task(V2, 2, "n2", spec_of=V1)]
SOLD = [task(S2, 1, "n1", spec_of=S1, health="healthy"), task(S2, 2, "n2", spec_of=S1, health="healthy")]


def with_status(svc, status, **changes):
    return svc.model_copy(update={"update_status": status} | changes)


UPDATES = [
    Case("stop-first: the old task shuts down and its replacement is prepared",
         cluster([V2], N3, OLD2),
         ["update web: update status updating", "shutdown web.1: config changed", "create web.1: config changed"]),
    Case("the prepared replacement starts once the old task has stopped",
         cluster([with_status(V2, UPDATING)], N3, [task(V2, 1, "n1", "shutdown", desired="shutdown", spec_of=V1, finished=99),
                                                   task(V2, 1, "n3", "ready", desired="ready", task_id="web1b", started=None),
                                                   task(V2, 2, "n2", spec_of=V1)]),
         ["start web.1: the task it replaces has stopped"], ["wait web: waiting for web.1 to be ready (not running yet)"]),
    Case("the next task is updated once the first runs",
         cluster([with_status(V2, UPDATING)], N3, [task(V2, 1, "n1", "shutdown", desired="shutdown", spec_of=V1, finished=99),
                                                   task(V2, 1, "n3", task_id="web1b", started=99.5), task(V2, 2, "n2", spec_of=V1)]),
         ["shutdown web.2: config changed", "create web.2: config changed"]),
    Case("an update with nothing outdated left is completed",
         cluster([with_status(V2, UPDATING)], N3, [task(V2, 1, "n1"), task(V2, 2, "n2")]),
         ["update web: update status completed: update completed"]),
    Case("start-first: the replacement starts beside the old one, in its slot",
         cluster([S2], N3, SOLD),
         ["update web: update status updating", "create web.1: config changed (hash"]),
    Case("start-first: the old task stays until the new one is healthy",
         cluster([with_status(S2, UPDATING)], N3, SOLD + [task(S2, 1, "n3", task_id="web1b", health="starting", started=99)]),
         [], ["wait web: waiting for web.1 to be ready (not healthy yet)"]),
    Case("start-first: then it shuts down, and the next one starts",
         cluster([with_status(S2, UPDATING)], N3, SOLD + [task(S2, 1, "n3", task_id="web1b", health="healthy", started=99, health_at=99.5)]),
         ["shutdown web.1: replaced by an updated replica", "create web.2: config changed"]),
    Case("failure_action pause: a failed new task pauses the update",
         cluster([with_status(V2, UPDATING)], N3, [task(V2, 1, "n3", "failed", task_id="web1b", exit_code=1, started=95, finished=96),
                                                   task(V2, 2, "n2", spec_of=V1)]),
         ["update web: update status paused: web.1 exited 1 (failure_action pause)"],
         ["failed web: update paused: web.1 exited 1 (failure_action pause)", "wait web: web.1 failed (exit 1); restarts in"],
         next_check_at=101.0),
    Case("a paused update stays paused after the failure is gone",
         cluster([with_status(V2, UpdateStatus(state="paused", message="web.1 exited 1"))], N3,
                 [task(V2, 1, "n3", task_id="web1b", started=99), task(V2, 2, "n2", spec_of=V1)]),
         [], ["failed web: update paused: web.1 exited 1; fix the service and run orch service update"]),
    Case("failure_action rollback swaps the previous spec back in",
         cluster([with_status(updated(service("web", "app:1", replicas=2, update=UpdateConfig(failure_action="rollback", monitor=0)), "app:2"), UPDATING)], N3,
                 [task(V2, 1, "n3", "failed", task_id="web1b", exit_code=3, started=95, finished=96), task(V2, 2, "n2", spec_of=V1)]),
         ["update web: update rolled back due to failure or early termination of task web.1 exited 3"]),
    Case("max_failure_ratio lets that share of the replicas fail",
         cluster([with_status(updated(service("web", "app:1", replicas=2, update=UpdateConfig(max_failure_ratio=0.5, monitor=0)), "app:2"), UPDATING)], N3,
                 [task(V2, 1, "n3", "failed", task_id="web1b", exit_code=1, started=95, finished=96), task(V2, 2, "n2", spec_of=V1)]),
         ["shutdown web.2: config changed", "create web.2: config changed"], ["wait web: web.1 failed (exit 1); restarts in"],
         next_check_at=101.0),
    Case("a failing rollback pauses: never a rollback of a rollback",
         cluster([with_status(service("web", "app:1", replicas=2, rollback=UpdateConfig(failure_action="rollback", monitor=0)),
                              UpdateStatus(state="rollback_started", started_at=90))], N3,
                 [task(V1, 1, "n3", "failed", task_id="web1b", exit_code=1, started=95, finished=96), task(V1, 2, "n2", spec_of=V2)]),
         ["update web: update status rollback_paused"], ["failed web: update paused", "wait web: web.1 failed"], next_check_at=101.0),
    Case("a rollback with nothing outdated left is completed",
         cluster([with_status(V1, UpdateStatus(state="rollback_started", started_at=90))], N3, [task(V1, 1, "n1"), task(V1, 2, "n2")]),
         ["update web: update status rollback_completed"]),
    Case("a changed placement alone leaves tasks whose nodes still fit",
         cluster([service("web", "app:1", replicas=2, update=STOP_FIRST, constraints=("node.role==worker",))], N3,
                 [task(V1, 1, "n1"), task(V1, 2, "n2")]), []),
]

DRAIN = [
    Case("drain, stop-first: the task is replaced elsewhere in its slot",
         cluster([V1], [node("n1", availability="drain"), node("n2"), node("n3")], [task(V1, 1, "n1"), task(V1, 2, "n2")]),
         ["shutdown web.1: node n1 is drained", "create web.1: node n1 is drained; stop-first update, batch of 1; assigned to n3"]),
    Case("drain, start-first: the replacement runs beside the old task first",
         cluster([S1], [node("n1", availability="drain"), node("n2"), node("n3")], [task(S1, 1, "n1", health="healthy"), task(S1, 2, "n2", health="healthy")]),
         ["create web.1: node n1 is drained; start-first update of web.1; assigned to n3"]),
    Case("drain, start-first: the old task stops once the replacement is healthy",
         cluster([S1], [node("n1", availability="drain"), node("n2"), node("n3")],
                 [task(S1, 1, "n1", health="healthy"), task(S1, 1, "n3", task_id="web1b", health="healthy", health_at=99),
                  task(S1, 2, "n2", health="healthy")]),
         ["shutdown web.1: replaced by an updated replica (node n1 is drained)"]),
    Case("a node that no longer satisfies the constraints: its task moves",
         cluster([service("web", "app:1", replicas=1, constraints=("node.labels.disk==ssd",), update=STOP_FIRST)],
                 [node("n1"), node("n2", labels={"disk": "ssd"})],
                 [task(service("web", "app:1", constraints=("node.labels.disk==ssd",)), 1, "n1")]),
         ["shutdown web.1: node n1 no longer satisfies the service's placement",
          "create web.1: node n1 no longer satisfies the service's placement; stop-first update, batch of 1; assigned to n2"]),
    Case("a paused node keeps its tasks and gets no new ones",
         cluster([service("web", replicas=3)], [node("n1", availability="pause"), node("n2")], [task(WEB, 1, "n1")]),
         ["create web.2: scale 1→3; assigned to n2", "create web.3: scale 1→3; assigned to n2"]),
]

AGENT = service("agent", mode="global", constraints=("node.role==worker",))
GLOBAL = [
    Case("global: one task per eligible node, pinned to it",
         cluster([AGENT], [node("m1", role="manager"), node("n1"), node("n2", availability="drain"), node("n3")]),
         ["create agent.n1: replica 1 of 2 is missing; assigned to n1", "create agent.n3: replica 2 of 2 is missing; assigned to n3"]),
    Case("global: a node joins, a task goes there",
         cluster([AGENT], [node("n1"), node("n3"), node("n4")], [task(AGENT, 0, "n1"), task(AGENT, 0, "n3")]),
         ["create agent.n4: scale 2→3; assigned to n4"]),
    Case("global: a task on a drained node shuts down and is not replaced",
         cluster([AGENT], [node("n1", availability="drain"), node("n3")], [task(AGENT, 0, "n1"), task(AGENT, 0, "n3")]),
         ["shutdown agent.n1: node n1 is drained"]),
    Case("global: a task on a down node shuts down",
         cluster([AGENT], [node("n1", state="down"), node("n3")], [task(AGENT, 0, "n1"), task(AGENT, 0, "n3")]),
         ["shutdown agent.n1: node n1 is down"]),
    Case("global: a paused node's task is left alone",
         cluster([updated(AGENT, "agent:2")], [node("n1", availability="pause")], [task(AGENT, 0, "n1")]), []),
    Case("global: a node without room for the reservation pends its task",
         cluster([service("agent", mode="global", reserve_cpus=8)], [node("n1", cpus=4)]),
         ["create agent.n1: replica 1 of 1 is missing; pending: no suitable node (insufficient resources on 1 node)"],
         ["wait agent: 1 task(s) pending"]),
    Case("global: a bad constraint stored in the service leaves its tasks alone",
         cluster([service("agent", mode="global", constraints=("node.labels.x~1",))], [node("n1"), node("n2")], [task(AGENT, 0, "n1")]),
         [], ["failed agent: placement constraint 'node.labels.x~1': expected one operator from ==, !="]),
    Case("global: a stop-first update replaces the task on its node",
         cluster([updated(service("agent", mode="global", update=STOP_FIRST), "agent:2")], [node("n1")],
                 [task(service("agent", mode="global"), 0, "n1")]),
         ["update agent: update status updating", "shutdown agent.n1: config changed", "create agent.n1: config changed"]),
]

DB = service("db", healthcheck=True)
APP = service("app", depends={"db": "service_healthy"})
JOB = service("migrate", restart=RestartPolicy(condition="none"))
API = service("api", depends={"migrate": "service_completed_successfully"})
DEPENDS = [
    Case("a dependent waits until its dependency is healthy, wherever it runs",
         cluster([DB, APP], N3, [task(DB, 1, "n2", health="starting")]), [], ["wait app: dependency db is not healthy yet"]),
    Case("then it is created", cluster([DB, APP], N3, [task(DB, 1, "n2", health="healthy")]),
         ["create app.1: replica 1 of 1 is missing; assigned to n1"]),
    Case("a new stack starts with its first level",
         cluster([DB, APP], N3), ["create db.1: replica 1 of 1 is missing"], ["wait app: dependency db is not healthy yet"]),
    Case("service_completed_successfully waits for the job to finish",
         cluster([JOB, API], N3, [task(JOB, 1, "n1")]), [], ["wait api: dependency migrate has not completed yet"]),
    Case("and starts after it", cluster([JOB, API], N3, [task(JOB, 1, "n1", "complete", exit_code=0, finished=99)]),
         ["create api.1"]),
    Case("a failed job fails its dependents",
         cluster([JOB, API], N3, [task(JOB, 1, "n1", "failed", exit_code=1, finished=99)]), [],
         ["failed migrate: migrate.1 failed (exit 1); restart policy condition is none",
          "failed api: dependency migrate failed (migrate.1 exited 1)"]),
]

HISTORY_SVC = service("web")
HISTORY = [
    Case("dead tasks beyond the history limit are deleted, oldest first",
         cluster([HISTORY_SVC], N3, [task(HISTORY_SVC, 1, "n1", started=99)] + [
             task(HISTORY_SVC, 1, "n1", "failed", desired="shutdown", task_id=f"old{i}", exit_code=1, started=i, finished=i + 0.5)
             for i in range(6)]),
         ["delete web.1: beyond the task history limit (5)", "delete web.1: beyond the task history limit (5)"]),
    Case("a scaled-down task is deleted once it has stopped",
         cluster([HISTORY_SVC], N3, [task(HISTORY_SVC, 1, "n1"), task(HISTORY_SVC, 2, "n2", "shutdown", desired="remove", finished=99)]),
         ["delete web.2: removed by a scale down"]),
    Case("tasks of a removed service are told to go, then deleted",
         cluster([], N3, [task(HISTORY_SVC, 1, "n1"), task(HISTORY_SVC, 2, "n2", "shutdown", desired="shutdown", finished=99)]),
         ["remove web.1: its service was removed", "delete web.2: its service was removed"]),
]


@table(*REPLICATED)
def test_replicated(case):
    assert_plan(case)


@table(*RESTARTS)
def test_restart_policy(case):
    assert_plan(case)


@table(*UPDATES)
def test_rolling_updates(case):
    assert_plan(case)


@table(*DRAIN)
def test_drain_and_placement_changes(case):
    assert_plan(case)


@table(*GLOBAL)
def test_global_services(case):
    assert_plan(case)


@table(*DEPENDS)
def test_depends_on_across_the_cluster(case):
    assert_plan(case)


@table(*HISTORY)
def test_task_history(case):
    assert_plan(case)


def test_a_plan_names_the_revisions_it_read():
    state = cluster([WEB], [node("n1"), node("n2", state="down")], [task(WEB, 1, "n1"), task(WEB, 2, "n2")])
    revisions = {"v1/services/web": 7, "v1/nodes/n1": 3, "v1/nodes/n2": 4, "v1/tasks/web1": 11, "v1/tasks/web2": 12}
    state = ClusterState(state.services, state.nodes, state.tasks, revisions)
    plan = plan_cluster(state, now=100)
    by = {(c.verb, c.name): c for c in plan.changes}
    shutdown = by[("shutdown", "web.2")]
    assert shutdown.base_revision == 12 and set(shutdown.reads) == {"v1/services/web", "v1/nodes/n2"}
    created = [c for c in plan.changes if c.verb == "create"]
    assert [c.name for c in created] == ["web.2", "web.3"] and [c.base_revision for c in created] == [0, 0]
    assert {"v1/services/web", "v1/nodes/n1"} <= set(created[0].reads)
    assert plan.revisions == {"v1/services/web": 7, "v1/nodes/n1": 3, "v1/nodes/n2": 4}
    (batch,) = plan.batches(128)
    assert batch.compares["v1/tasks/web2"] == 12 and batch.compares["v1/services/web"] == 7
    assert all(batch.compares[c.key] == 0 for c in created)


def test_batches_fit_the_transaction_limit_and_keep_a_service_together():
    state = cluster([service("a", replicas=5), service("b", replicas=3)], N3)
    plan = plan_cluster(state, now=100)
    batches = plan.batches(6)
    assert [len(b.changes) for b in batches] == [5, 3]
    assert all(len(b.compares) <= 6 for b in batches)
    small = plan.batches(3)
    assert sum(len(b.changes) for b in small) == 8 and all(len(b.changes) <= 3 and len(b.compares) <= 3 for b in small)


def test_a_services_record_commits_after_its_tasks_when_cut():
    state = cluster([V2], N3, OLD2)
    plan = plan_cluster(state, now=100)
    order = [c.verb for b in plan.batches(2) for c in b.changes]
    assert order[-1] == "update" and order.count("update") == 1


def test_the_stop_gate_holds_a_replaced_task_until_it_is_drained_and_the_update_goes_on():
    state = cluster([with_status(S2, UPDATING)], N3, SOLD + [task(S2, 1, "n3", task_id="web1b", health="healthy", started=99, health_at=99.5)])
    asked = []

    def gate(t, now):
        asked.append(t.id)
        return now + 4.0

    plan = plan_cluster(state, now=100, stop_gate=gate)
    assert asked == ["web1"]
    # web.1 keeps running while it drains; its replacement is ready, so the next slot goes on.
    assert [render_change(c).split(" (")[0] for c in plan.changes] == ["create web.2: config changed"], plan.explain()
    assert plan.next_check_at == 104.0
    assert "web.1 is still serving" in plan.explain()


def test_a_pass_changes_none_of_its_inputs():
    state = cluster([V2], [node("n1", state="down"), node("n2"), node("n3")], OLD2)
    before = {k: t.model_dump() for k, t in state.tasks.items()}
    plan_cluster(state, now=100)
    assert {k: t.model_dump() for k, t in state.tasks.items()} == before


def test_the_same_state_gives_the_same_plan():
    state = cluster([WEB], N3)
    one, two = plan_cluster(state, now=100), plan_cluster(state, now=100)
    assert [c.record for c in one.changes] == [c.record for c in two.changes]
    assert len({c.record.id for c in one.changes}) == 3


def test_new_tasks_carry_the_service_spec_and_docker_names():
    plan = plan_cluster(cluster([WEB], N3), now=100)
    t = plan.changes[0].record
    assert t.spec == WEB.spec.task_template and t.spec_version == 1 and t.status.state == TaskState.ASSIGNED
    assert t.name == "web.1" and t.container_name == f"web.1.{t.id}" and len(t.id) == 25


def test_a_pass_can_be_limited_to_the_services_that_changed():
    a, b = service("a", replicas=2), service("b", replicas=2)
    state = cluster([a, b], N3, [task(a, 1, "n1")])
    plan = plan_cluster(state, now=100, services=["b"])
    assert sorted(c.name for c in plan.changes) == ["b.1", "b.2"]
    # Placement still sees the tasks of services outside the pass: n1 runs a.1.
    assert [c.record.node_id for c in plan.changes] == ["n2", "n3"]
