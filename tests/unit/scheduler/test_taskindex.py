"""The orchestrator's task index and the leader's incremental passes.

Every simulated scenario of test_orchestrate_sim.py already runs the leader's incremental pass
beside a full pass and fails when they differ (fakecluster.run_cluster); these cases check the
parts on their own, and that the incremental pass really skips what it may.
"""

from collections import Counter

import pytest

from orch.cluster.records import TaskState
from orch.scheduler.fakecluster import FakeCluster, Incremental, node, run_cluster, service, task
from orch.scheduler.orchestrate import plan_cluster
from orch.scheduler.taskindex import TaskIndex, classify_task_change, services_near_node

WEB = service("web", replicas=3)
DB = service("db", replicas=1)


def moved(t, **status):
    return t.model_copy(update={"status": t.status.model_copy(update=status)})


@pytest.mark.parametrize("old, new, expected", [
    (task(WEB, 1, "n1", "assigned"), moved(task(WEB, 1, "n1", "assigned"), state=TaskState.RUNNING), "progress"),
    (task(WEB, 1, "n1", "assigned"), moved(task(WEB, 1, "n1", "assigned"), state=TaskState.STARTING), "progress"),
    (task(WEB, 1, "n1"), moved(task(WEB, 1, "n1"), message="still running"), "progress"),
    (task(WEB, 1, "n1"), moved(task(WEB, 1, "n1"), state=TaskState.FAILED), "other"),  # an exit
    (task(WEB, 1, "n1"), moved(task(WEB, 1, "n1"), health="healthy"), "other"),
    (task(WEB, 1, "n1", "starting"), moved(task(WEB, 1, "n1", "starting"), state=TaskState.ASSIGNED), "other"),  # backwards
    (task(WEB, 1, "", "pending"), task(WEB, 1, "n1", "assigned"), "other"),  # placed
    (task(WEB, 1, "n1"), task(WEB, 1, "n1", desired="shutdown"), "other"),
    (task(WEB, 1, "n1"), task(WEB, 1, "n2"), "other"),
    (None, task(WEB, 1, "n1"), "other"),
    (task(WEB, 1, "n1"), None, "other"),
], ids=["assigned->running", "assigned->starting", "message", "exit", "health", "backwards", "placed", "told to stop",
        "other node", "created", "deleted"])
def test_only_a_nodes_report_that_moves_a_task_forward_is_progress(old, new, expected):
    assert classify_task_change(old, new) == expected


def test_an_index_kept_change_by_change_is_one_made_at_once():
    a, b = task(WEB, 1, "", "pending", started=None), task(WEB, 2, "n1", health="starting")
    c = task(DB, 1, "n2", desired="shutdown")
    index = TaskIndex()
    for old, new in [(None, a), (None, b), (None, c), (a, task(WEB, 1, "n2", "assigned")), (b, None)]:
        index.put(old, new)
    fresh = TaskIndex([task(WEB, 1, "n2", "assigned"), c])
    assert {s: dict(t) for s, t in index.by_service.items()} == {s: dict(t) for s, t in fresh.by_service.items()}
    assert (index.unplaced, index.health, index.stopping) == (fresh.unplaced, fresh.health, fresh.stopping) == ({}, {}, {"db": 1})


def test_a_node_matters_to_its_tasks_services_global_ones_and_those_waiting_for_a_node():
    glob = service("agent", mode="global")
    tasks = [task(WEB, 1, "n1"), task(DB, 1, "", "pending", started=None)]
    index = TaskIndex(tasks)
    services = {s.id: s for s in (WEB, DB, glob, service("idle"))}
    assert services_near_node(index, services, [tasks[0]]) == {"web", "db", "agent"}
    assert services_near_node(index, services, []) == {"db", "agent"}


def test_the_leader_plans_nothing_for_progress_reports():
    fake = FakeCluster()
    for n in (node("n1"), node("n2")):
        fake.put(n)
    fake.put(WEB)
    leader = Incremental()
    assert leader.dirty(fake.observe(0.0)) is None  # the first pass covers everything
    fake.apply(plan_cluster(fake.state(), now=0.0), 0.0)
    assert leader.dirty(fake.observe(0.001)) == {"web"}  # its tasks were created
    assert leader.dirty(fake.observe(5.0)) == set()  # ...and reported running: no pass


def test_a_pass_creates_at_most_max_new_tasks_and_the_rest_follow():
    fake = FakeCluster()
    for n in (node("n1"), node("n2"), node("n3")):
        fake.put(n)
    for s in (service("web", replicas=8), service("db", replicas=5)):
        fake.put(s)
    plan, _ = run_cluster(fake, max_new=3)
    assert plan.converged, plan.explain()
    creates = Counter(at for at, line in fake.log if line.startswith("create"))
    assert max(creates.values()) == 3 and sum(creates.values()) == 13
    for sid, n in (("web", 8), ("db", 5)):
        assert sorted(t.slot for t in fake.running(sid)) == list(range(1, n + 1))


def test_the_index_counts_each_nodes_usage_as_its_tasks_change():
    from orch.scheduler.placement import node_usage

    def as_dict(usage):
        return {nid: (u.cpus, u.memory, u.ports, u.tasks, u.by_service) for nid, u in usage.items()
                if u.cpus or u.memory or u.ports or u.tasks or u.by_service}

    big = service("big", replicas=2, reserve_cpus=1, reserve_memory=1 << 30, host_ports=(80,))
    a, b, c = task(big, 1, "n1"), task(big, 2, "n2"), task(WEB, 1, "n1")
    index = TaskIndex([a, b, c])
    assert as_dict(index.usage) == as_dict(node_usage([a, b, c]))
    steps = [
        (a, a.model_copy(update={"desired_state": TaskState.SHUTDOWN})),  # still holds, no longer counts
        (b, moved(b, state=TaskState.FAILED)),  # holds nothing any more
        (c, None),  # deleted
        (None, task(WEB, 2, "n2")),
    ]
    tasks = {t.id: t for t in (a, b, c)}
    for old, new in steps:
        index.put(old, new)
        if old is not None:
            del tasks[old.id]
        if new is not None:
            tasks[new.id] = new
        assert as_dict(index.usage) == as_dict(node_usage(tasks.values()))
