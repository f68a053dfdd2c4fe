"""The orchestrator and placement driven to convergence on a FakeCluster and a mock clock.

Where the tables check one pass, these run the manager's whole loop (observe, plan, commit
with revision compares, jump to the next event) and check what a user would see over time:
deploy, scale, a node going down and coming back, drain, a rolling update that fails and rolls
back, a global service as nodes join, depends_on across the cluster, a crash loop. Minutes of
simulated time take milliseconds; nothing sleeps.
"""

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from orch.cluster.records import RestartPolicy, TaskState, UpdateConfig
from orch.scheduler.fakecluster import FakeCluster, node, run_cluster, service, updated


def healthy(fake, service_id, image=None):
    return [t for t in fake.running(service_id) if t.status.health in ("healthy", "none")
            and (image is None or t.spec.container_spec.image == image)]


def zones(n=4):
    return [node(f"n{i}", labels={"zone": "a" if i % 2 else "b"}) for i in range(1, n + 1)]


def deployed(*services, nodes=None, **fake_kw):
    fake = FakeCluster(**fake_kw)
    for n in nodes or zones():
        fake.put(n)
    for s in services:
        fake.put(s)
    plan, now = run_cluster(fake)
    assert plan.converged, plan.explain()
    return fake, now


def test_deploy_spreads_replicas_over_zones_and_nodes():
    fake, now = deployed(service("web", replicas=8, spread=("node.labels.zone",)))
    running = fake.running("web")
    assert len(running) == 8 and sorted(t.slot for t in running) == list(range(1, 9))
    assert Counter(t.node_id for t in running) == {"n1": 2, "n2": 2, "n3": 2, "n4": 2}
    assert len(fake.tasks) == 8  # Each task written once, placed in the same pass.
    assert now < 2.0


def test_scale_up_then_down_keeps_the_lowest_slots():
    fake, now = deployed(service("web", replicas=3))
    fake.put(service("web", replicas=7))
    run_cluster(fake, now=now)
    assert len(fake.running("web")) == 7
    fake.put(service("web", replicas=2))
    plan, now = run_cluster(fake, now=now + 1)
    assert plan.converged
    assert sorted(t.slot for t in fake.running("web")) == [1, 2]
    assert len(fake.tasks) == 2  # The scaled-down tasks are deleted once they stopped.


def test_a_node_down_moves_its_tasks_and_its_return_leaves_the_replica_count():
    fake, now = deployed(service("web", replicas=6))
    gone = {t.id for t in fake.tasks.values() if t.node_id == "n2"}
    assert gone
    fake.set_node("n2", state="down")
    plan, now = run_cluster(fake, now=now + 15)
    assert plan.converged
    running = fake.running("web")
    assert len(running) == 6 and "n2" not in {t.node_id for t in running}
    assert all(fake.tasks[t].desired_state == TaskState.SHUTDOWN for t in gone)
    # The node comes back, its containers still running: they stop, and 6 copies remain.
    now += 30
    fake.set_node("n2", now, state="ready")
    seen = []
    plan, now = run_cluster(fake, now=now, check=lambda state, t: seen.append(fake.copies("web")))
    assert plan.converged and fake.copies("web") == 6
    assert max(seen) == 6 + len(gone) and seen[-1] == 6


def test_a_node_that_comes_back_after_its_tasks_were_deleted_stops_them_too():
    fake, now = deployed(service("web", replicas=2), nodes=[node("n1"), node("n2")])
    fake.settings = fake.settings.model_copy(update={"task_history_limit": 0})
    fake.set_node("n2", state="down")
    run_cluster(fake, now=now + 15)
    # With no history kept, the shut-down task on the down node is deleted while its container runs.
    assert all(t.node_id != "n2" for t in fake.tasks.values())
    assert fake.ghosts.get("n2")
    fake.set_node("n2", 60.0, state="ready")
    plan, _ = run_cluster(fake, now=60.0)
    assert fake.copies("web") == 2 and not fake.ghosts["n2"]


def test_drain_with_start_first_keeps_every_replica_serving():
    start_first = UpdateConfig(parallelism=1, order="start-first", monitor=0)
    fake, now = deployed(service("web", replicas=4, healthcheck=True, update=start_first))
    on_n1 = [t.id for t in fake.running("web") if t.node_id == "n1"]
    assert on_n1
    fake.set_node("n1", availability="drain")
    lowest = []
    plan, end = run_cluster(fake, now=now + 1, check=lambda state, t: lowest.append(len(healthy(fake, "web"))))
    assert plan.converged
    assert min(lowest) >= 4  # Each replacement was healthy before its old task stopped.
    assert {t.node_id for t in fake.running("web")} <= {"n2", "n3", "n4"} and len(fake.running("web")) == 4


def test_drain_with_stop_first_moves_one_task_at_a_time():
    fake, now = deployed(service("web", replicas=4, update=UpdateConfig(parallelism=1, monitor=0)))
    fake.set_node("n1", availability="drain")
    lowest = []
    plan, _ = run_cluster(fake, now=now + 1, check=lambda state, t: lowest.append(len(fake.running("web"))))
    assert plan.converged and min(lowest) >= 3 and len(fake.running("web")) == 4
    assert all(t.node_id != "n1" for t in fake.running("web"))


def test_a_failing_update_rolls_back_across_nodes():
    config = UpdateConfig(parallelism=1, order="start-first", failure_action="rollback", monitor=0)
    v1 = service("web", "app:1", replicas=4, healthcheck=True, update=config, rollback=UpdateConfig(parallelism=2, monitor=0))
    fake, now = deployed(v1, crashes={"app:2": (1.5, 3)})
    fake.put(updated(fake.services["web"], "app:2"))
    lowest = []
    plan, end = run_cluster(fake, now=now + 1, check=lambda state, t: lowest.append(len(healthy(fake, "web", "app:1"))))
    assert plan.converged, plan.explain()
    web = fake.services["web"]
    assert web.update_status.state == "rollback_completed"
    assert web.spec.task_template.container_spec.image == "app:1" and web.previous_spec is None
    assert sorted(t.spec.container_spec.image for t in fake.running("web")) == ["app:1"] * 4
    assert min(lowest) >= 4  # start-first: the old replicas served throughout.
    assert any("update rolled back due to failure or early termination of task web.1" in line for _, line in fake.log)


def test_a_failing_update_with_pause_stays_paused():
    # monitor 2 s: a new task must stay up that long before the next slot is touched; it
    # crashes after 1 s.
    config = UpdateConfig(parallelism=1, order="stop-first", failure_action="pause", monitor=2.0)
    fake, now = deployed(service("web", "app:1", replicas=3, update=config), crashes={"app:2": (1.0, 1)})
    fake.put(updated(fake.services["web"], "app:2"))
    plan, _ = run_cluster(fake, now=now + 1, until=now + 120)
    web = fake.services["web"]
    assert web.update_status.state == "paused" and "exited 1" in web.update_status.message
    images = Counter(t.spec.container_spec.image for t in fake.running("web"))
    assert images["app:1"] == 2  # Only the first slot was touched.
    assert any(w.failed and "update paused" in w.reason for w in plan.waiting)


def test_a_rolling_update_completes_batch_by_batch():
    config = UpdateConfig(parallelism=2, order="stop-first", delay=3.0, monitor=0)
    fake, now = deployed(service("web", "app:1", replicas=6, update=config))
    fake.put(updated(fake.services["web"], "app:2"))
    lowest = []
    plan, end = run_cluster(fake, now=now + 1, check=lambda state, t: lowest.append(len(fake.running("web"))))
    assert plan.converged and fake.services["web"].update_status.state == "completed"
    assert sorted(t.spec.container_spec.image for t in fake.running("web")) == ["app:2"] * 6
    assert min(lowest) >= 4  # At most a batch of two down at once.
    assert end - now >= 2 * 3.0  # Three batches, the delay between them.


def test_a_global_service_follows_the_nodes():
    agent = service("agent", mode="global", constraints=("node.role==worker",))
    fake, now = deployed(agent, nodes=[node("m1", role="manager"), node("n1"), node("n2")])
    assert sorted(t.node_id for t in fake.running("agent")) == ["n1", "n2"]
    fake.put(node("n3"))
    plan, now = run_cluster(fake, now=now + 1)
    assert sorted(t.node_id for t in fake.running("agent")) == ["n1", "n2", "n3"]
    fake.set_node("n1", availability="drain")
    plan, now = run_cluster(fake, now=now + 1)
    assert sorted(t.node_id for t in fake.running("agent")) == ["n2", "n3"]
    fake.set_node("n1", availability="active")
    plan, now = run_cluster(fake, now=now + 1)
    assert plan.converged and sorted(t.node_id for t in fake.running("agent")) == ["n1", "n2", "n3"]


def test_depends_on_holds_across_the_cluster():
    db = service("db", healthcheck=True)
    app = service("app", replicas=3, depends={"db": "service_healthy"})
    fake, _ = deployed(db, app, health_delay=5.0)
    created = {line.split(":")[0].split()[-1]: t for t, line in fake.log if line.startswith("create")}
    db_task = next(t for t in fake.tasks.values() if t.service_id == "db")
    assert db_task.status.health == "healthy"
    assert created["app.1"] >= db_task.status.health_changed_at
    assert len(fake.running("app")) == 3


def test_a_crash_loop_restarts_on_its_delay_and_keeps_a_bounded_history():
    crashing = service("web", "bad:1", restart=RestartPolicy(condition="any", delay=5.0))
    fake = FakeCluster(crashes={"bad:1": (0.5, 1)})
    fake.put(node("n1"))
    fake.put(crashing)
    run_cluster(fake, until=120.0)
    starts = sorted(t for t, line in fake.log if line.startswith("create web.1"))
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) >= 15 and all(g >= 5.0 for g in gaps)
    assert len(fake.tasks) <= fake.settings.task_history_limit + 1
    latest = max(fake.tasks.values(), key=lambda t: t.created_at)
    assert latest.restart_count == len(starts) - 1


def test_max_attempts_gives_up_and_says_so():
    policy = RestartPolicy(condition="on-failure", delay=1.0, max_attempts=2)
    fake = FakeCluster(crashes={"bad:1": (0.5, 2)})
    fake.put(node("n1"))
    fake.put(service("web", "bad:1", restart=policy))
    plan, _ = run_cluster(fake)
    assert sum(1 for _, line in fake.log if line.startswith("create web.1")) == 3
    assert [w.reason for w in plan.failed] == ["web.1 failed (exit 2); gave up after 2 restarts (max 2)"]


EVENTS = st.lists(st.tuples(
    st.sampled_from(["down", "up", "drain", "activate", "pause", "scale"]), st.integers(1, 4), st.integers(0, 7),
), max_size=6)


@settings(max_examples=25, deadline=None)
@given(EVENTS, st.sampled_from(["stop-first", "start-first"]))
def test_any_sequence_of_node_events_settles_on_the_replica_count(events, order):
    """Whatever happens to the nodes, once it settles a replicated service runs exactly its
    replica count, on ready nodes, while any node can take a task."""
    web = service("web", replicas=4, healthcheck=True, update=UpdateConfig(parallelism=1, order=order, monitor=0))
    fake, now = deployed(web)
    replicas = 4
    for kind, which, count in events:
        node_id = f"n{which}"
        if kind == "down":
            fake.set_node(node_id, now, state="down")
        elif kind == "up":
            fake.set_node(node_id, now, state="ready")
        elif kind in ("drain", "pause"):
            fake.set_node(node_id, availability=kind)
        elif kind == "activate":
            fake.set_node(node_id, availability="active")
        else:
            replicas = count
            fake.put(fake.services["web"].model_copy(update={"spec": fake.services["web"].spec.model_copy(update={"replicas": count})}))
        _, now = run_cluster(fake, now=now + 3, until=now + 300)
    for n in list(fake.nodes):
        fake.set_node(n, now, state="ready")
        fake.set_node(n, availability="active")
    plan, now = run_cluster(fake, now=now + 3, until=now + 600)
    assert plan.converged, plan.explain()
    assert fake.copies("web") == replicas
    assert sorted(t.slot for t in fake.running("web")) == list(range(1, replicas + 1))
