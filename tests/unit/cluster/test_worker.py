"""The worker's task set without a session: what an assignment does to the controllers, on
trio's MockClock over the fake runtime, and the wire form of a status update."""

import pytest
import trio
import trio.testing

from orch.cluster import protocol as p
from orch.cluster.fakes import FakeRuntime
from orch.cluster.worker import TaskSet


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


def task(tid: str = "t1", desired: str = "running", **spec) -> dict:
    return {"id": tid, "desired_state": desired, "spec": dict(spec)}


def task_set(nursery, runtime) -> tuple[TaskSet, list[dict]]:
    reports: list[dict] = []
    tasks = TaskSet(runtime, reports.append)
    tasks.nursery = nursery
    return tasks, reports


def states(reports: list[dict], tid: str = "t1") -> list[str]:
    return [u["state"] for u in reports if u["task_id"] == tid]


async def test_the_same_task_again_leaves_its_controller_as_it_was(autojump_clock):
    # A full assignment after a reconnect repeats every task the node has: an equal task is
    # not taken up again, and its controller neither reports nor touches the container.
    runtime = FakeRuntime()
    async with trio.open_nursery() as nursery:
        tasks, reports = task_set(nursery, runtime)
        tasks.apply(p.Assign(full=True, tasks=[task()]))
        await runtime.wait_for(lambda: runtime.running_tasks() == {"t1"})
        await trio.testing.wait_all_tasks_blocked()
        controller = tasks.controllers["t1"]
        held = controller.task
        seen, events = list(reports), list(runtime.events)
        tasks.apply(p.Assign(full=True, tasks=[task()]))
        await trio.testing.wait_all_tasks_blocked()
        assert tasks.controllers["t1"] is controller and controller.task is held
        assert controller.state == "running" and reports == seen and runtime.events == events
        # A changed task is taken up: a desired state of shutdown stops it.
        tasks.apply(p.Assign(tasks=[task(desired="shutdown")]))
        await trio.testing.wait_all_tasks_blocked()
        assert controller.task["desired_state"] == "shutdown"
        assert states(reports)[-1] == "shutdown" and runtime.events[-1] == ("stop", "t1")
        nursery.cancel_scope.cancel()


async def test_a_task_removed_before_its_controller_ran_makes_no_container(autojump_clock):
    # Two frames read at once: the task comes and goes before its controller's trio task runs.
    runtime = FakeRuntime()
    async with trio.open_nursery() as nursery:
        tasks, reports = task_set(nursery, runtime)
        tasks.apply(p.Assign(tasks=[task()]))
        tasks.apply(p.Assign(removed=["t1"]))
        await trio.testing.wait_all_tasks_blocked()
        assert runtime.events == [] and runtime.containers == {} and reports == []
        assert tasks.controllers == {}
        nursery.cancel_scope.cancel()


class GatedRuntime(FakeRuntime):
    """A fake runtime whose start waits for `gate`."""

    def __init__(self):
        super().__init__()
        self.gate = trio.Event()

    async def start(self, cid) -> None:
        await self.gate.wait()
        await super().start(cid)


async def test_a_shutdown_asked_while_the_task_starts_stops_it_once_it_runs(autojump_clock):
    runtime = GatedRuntime()
    async with trio.open_nursery() as nursery:
        tasks, reports = task_set(nursery, runtime)
        tasks.apply(p.Assign(tasks=[task()]))
        await trio.testing.wait_all_tasks_blocked()
        assert states(reports) == ["accepted", "preparing", "starting"]
        tasks.apply(p.Assign(tasks=[task(desired="shutdown")]))
        runtime.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert states(reports) == ["accepted", "preparing", "starting", "running", "shutdown"]
        assert [e for e in runtime.events if e[1] == "t1"] == [("create", "t1"), ("start", "t1"), ("stop", "t1")]
        nursery.cancel_scope.cancel()


async def test_a_removal_ends_a_stop_under_way(autojump_clock):
    # The stop is a trio task beside the controller's: a removal ends both, and the container goes.
    class SlowDrain(FakeRuntime):
        async def drain(self, cid, grace) -> None:
            await super().drain(cid, grace)
            await trio.sleep_forever()

    runtime = SlowDrain()
    on_net = dict(task(), networks=[{"network_id": "n1"}])
    async with trio.open_nursery() as nursery:
        tasks, reports = task_set(nursery, runtime)
        tasks.apply(p.Assign(tasks=[on_net]))
        await runtime.wait_for(lambda: runtime.running_tasks() == {"t1"})
        tasks.apply(p.Assign(tasks=[dict(on_net, desired_state="shutdown")]))
        await runtime.wait_for(lambda: ("drain", "t1") in runtime.events)
        tasks.apply(p.Assign(removed=["t1"]))
        await trio.testing.wait_all_tasks_blocked()
        assert runtime.removed == ["t1"] and ("stop", "t1") not in runtime.events
        assert states(reports)[-1] == "running"  # cancelled, it reports nothing more
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("fields", [
    {},
    {"message": "started", "container_id": "c1", "timestamp": 12.5},
    {"message": "task: non-zero exit", "err": "task: non-zero exit (3)", "exit_code": 3, "container_id": "c1",
     "healthy": False, "timestamp": 3.0},
    {"exit_code": 0, "healthy": True},
])
def test_a_status_update_on_the_wire_is_the_models_dump_without_defaults(fields):
    wire = p.status_update("t1", "running", **fields)
    model = p.TaskStatusUpdate(task_id="t1", state="running", **fields)
    assert wire == model.model_dump(exclude_defaults=True)
    assert p.parse({"op": "status", "updates": [wire]}, p.TO_MANAGER) == p.Status(updates=[model])


async def test_a_task_s_updates_that_wait_together_go_as_its_latest():
    # A task passes four states or more in a moment: the manager reads its latest.
    from orch.cluster.worker import Worker

    worker = Worker(["m:1"], None, None, lambda: None)
    worker._queue_status(p.status_update("t1", "accepted"))
    worker._queue_status(p.status_update("t2", "accepted"))
    worker._queue_status(p.status_update("t1", "starting"))
    worker._queue_status(p.status_update("t1", "running", message="started"))
    sent = []

    class Sent(Exception):
        pass

    class Frames:
        async def send(self, msg):
            sent.append(msg)
            raise Sent  # one frame is enough here

    with pytest.raises(Sent):
        await worker._send_status(Frames())
    assert sent == [{"op": "status", "updates": [{"task_id": "t1", "state": "running", "message": "started"},
                                                 {"task_id": "t2", "state": "accepted"}]}]
    assert not worker._outbox_ready.is_set()
