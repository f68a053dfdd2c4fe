"""A plan of the orchestrator committed on the store (the in-memory one, which keeps etcd's
compare semantics): it applies, and a plan made from state that changed meanwhile is
rejected group by group, as the leader's commit must be."""

from orch.cluster.memstore import open_memory_store
from orch.cluster.planops import KINDS, compute_ops, kind_and_id, read_state
from orch.cluster.records import Task, TaskState
from orch.cluster.store import Check, Put
from orch.scheduler.fakecluster import node, service
from orch.scheduler.orchestrate import plan_cluster


def test_kinds_follow_the_records_layout():
    assert KINDS["tasks"].path == "v1/tasks/" and KINDS["cluster"].singleton
    kind, record_id = kind_and_id("v1/nodes/n1")
    assert kind is KINDS["nodes"] and record_id == "n1"


async def test_a_plan_commits_and_a_stale_one_is_rejected():
    async with open_memory_store() as store:
        for n in (node("n1"), node("n2"), node("n3")):
            await store.put(KINDS["nodes"], n)
        await store.put(KINDS["services"], service("web", replicas=3))
        await store.put(KINDS["services"], service("db", replicas=1))
        state = await read_state(store)
        plan = plan_cluster(state, now=1.0)
        groups = compute_ops(plan)
        assert len(groups) == 2
        web = next(g for g in groups if any(isinstance(op, Put) and op.record.service_id == "web" for op in g))
        assert {op.id for op in web if isinstance(op, Check)} == {"web", "n1", "n2", "n3"}
        result = await store.commit(groups)
        assert result.applied == [0, 1] and not result.rejected
        tasks = (await store.list(KINDS["tasks"])).items
        assert sorted(t.record.name for t in tasks) == ["db.1", "web.1", "web.2", "web.3"]
        assert all(isinstance(t.record, Task) and t.record.status.state == TaskState.ASSIGNED for t in tasks)

        # n2 goes down; the orchestrator plans from that state, but meanwhile n2 is also
        # drained (its record changes): the web group, which read n2, is rejected.
        await store.put(KINDS["nodes"], node("n2", state="down"))
        state = await read_state(store)
        plan = plan_cluster(state, now=2.0)
        assert any(c.verb == "shutdown" and c.name.startswith("web.") for c in plan.changes)
        await store.put(KINDS["nodes"], node("n2", state="down", availability="drain"))
        result = await store.commit(compute_ops(plan))
        assert result.applied == [] and list(result.rejected.values()) == [["v1/nodes/n2"]]

        # Planned again from what is there now, it commits.
        plan = plan_cluster(await read_state(store), now=3.0)
        result = await store.commit(compute_ops(plan))
        assert result.applied and not result.rejected
        running = [t.record for t in (await store.list(KINDS["tasks"])).items if t.record.desired_state == TaskState.RUNNING]
        assert len([t for t in running if t.service_id == "web"]) == 3 and all(t.node_id != "n2" for t in running)
