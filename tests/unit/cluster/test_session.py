"""The worker-dispatcher session over in-memory streams on trio's MockClock: assignments
reach containers, status reaches the manager, heartbeats mark a silent node Down, a
follower redirects to the leader, a reconnecting worker says what it runs."""

import pytest
import trio
import trio.testing

from orch.cluster import protocol as p
from orch.cluster.dispatcher import Dispatcher, compute_assign, _Session
from orch.cluster.fakes import FakeBackend, FakeRuntime
from orch.cluster.wire import Framed, FrameError, MAX_FRAME
from orch.cluster.worker import Worker


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


def describe():
    return p.NodeDescription(hostname="h1", addr="10.0.0.1")


class Net:
    """Addresses to dispatchers: connect() makes a memory stream pair and serves one end."""

    def __init__(self, nursery):
        self.nursery = nursery
        self.dispatchers: dict[str, Dispatcher] = {}
        self.cut = False
        self.streams = []

    async def connect(self, addr: str):
        if self.cut or addr not in self.dispatchers:
            raise OSError(f"connect to {addr}: connection refused")
        client, server = trio.testing.memory_stream_pair()
        self.streams.append((client, server))
        self.nursery.start_soon(self.dispatchers[addr].serve, server, "node1")
        return client

    async def break_all(self):
        for client, server in self.streams:
            await client.aclose()
            await server.aclose()
        self.streams.clear()


async def start(nursery, managers=("m1",), leader=True):
    backend = FakeBackend(leader=leader)
    dispatcher = Dispatcher(backend, period=1.0, misses=3)
    backend.dispatcher = dispatcher
    net = Net(nursery)
    net.dispatchers["m1"] = dispatcher
    await nursery.start(dispatcher.run)
    runtime = FakeRuntime()
    worker = Worker(list(managers), net.connect, runtime, describe)
    return backend, dispatcher, net, runtime, worker


async def test_assignments_run_and_report(autojump_clock):
    async with trio.open_nursery() as nursery:
        backend, dispatcher, net, runtime, worker = await start(nursery)
        backend.assign("node1", {"id": "t1", "desired_state": "running", "spec": {}})
        await nursery.start(worker.run)
        await backend.wait_for(lambda: backend.last_state("t1") == "running")
        # Each state it passed, or the latest of those that waited together (the worker sends
        # a task's latest status), in order.
        seen = backend.states("t1")
        every = ["accepted", "preparing", "starting", "running"]
        assert seen[-1] == "running" and seen == [s for s in every if s in seen]
        assert runtime.running_tasks() == {"t1"}
        # A second task arrives as a change, not a full set.
        backend.assign("node1", {"id": "t2", "desired_state": "running", "spec": {"exit_after": 2}})
        await backend.wait_for(lambda: backend.last_state("t2") == "complete")
        assert runtime.running_tasks() == {"t1"}
        # Desired state shutdown stops it; leaving the set removes its container.
        backend.assign("node1", {"id": "t1", "desired_state": "shutdown", "spec": {}})
        await backend.wait_for(lambda: backend.last_state("t1") == "shutdown")
        backend.unassign("node1", "t1")
        await runtime.wait_for(lambda: "t1" in runtime.removed)
        assert backend.downs == []
        nursery.cancel_scope.cancel()


async def test_prepare_failure_rejects_the_task(autojump_clock):
    async with trio.open_nursery() as nursery:
        backend, dispatcher, net, runtime, worker = await start(nursery)
        backend.assign("node1", {"id": "t1", "desired_state": "running", "spec": {"fail_prepare": "no such image: x:1"}})
        await nursery.start(worker.run)
        await backend.wait_for(lambda: backend.last_state("t1") == "rejected")
        update = [u for _, u in backend.updates if u.task_id == "t1"][-1]
        assert update.err == "no such image: x:1"
        assert runtime.containers == {}
        nursery.cancel_scope.cancel()


async def test_silent_node_is_down_after_the_grace_period_and_back_on_hello(autojump_clock):
    async with trio.open_nursery() as nursery:
        backend, dispatcher, net, runtime, worker = await start(nursery)
        backend.assign("node1", {"id": "t1", "desired_state": "running", "spec": {}})
        await nursery.start(worker.run)
        await backend.wait_for(lambda: backend.last_state("t1") == "running")
        began = trio.current_time()
        net.cut = True
        await net.break_all()
        await backend.wait_for(lambda: backend.downs)
        assert backend.downs[0][0] == "node1"
        assert 2.9 <= trio.current_time() - began <= 3.5  # period 1 s x 3 misses
        # The containers went on running, and the next hello says so.
        assert runtime.running_tasks() == {"t1"}
        net.cut = False
        await backend.wait_for(lambda: len(backend.hellos) == 2)
        assert [(u.task_id, u.state) for u in backend.hellos[1][2]] == [("t1", "running")]
        assert "node1" not in dispatcher.down
        nursery.cancel_scope.cancel()


async def test_heartbeats_keep_a_quiet_node_up(autojump_clock):
    async with trio.open_nursery() as nursery:
        backend, dispatcher, net, runtime, worker = await start(nursery)
        await nursery.start(worker.run)
        await worker.connected.wait()
        await trio.sleep(60)
        assert backend.downs == []
        nursery.cancel_scope.cancel()


async def test_follower_redirects_to_the_leader(autojump_clock):
    async with trio.open_nursery() as nursery:
        backend, dispatcher, net, runtime, worker = await start(nursery, managers=("m2",))
        follower = FakeBackend(leader=False, leader_addr="m1")
        net.dispatchers["m2"] = Dispatcher(follower)
        backend.assign("node1", {"id": "t1", "desired_state": "running", "spec": {}})
        await nursery.start(worker.run)
        await backend.wait_for(lambda: backend.last_state("t1") == "running")
        assert follower.hellos == [] and len(backend.hellos) == 1
        nursery.cancel_scope.cancel()


async def test_a_manager_that_stops_leading_ends_its_sessions_and_its_nodes_find_the_new_leader(autojump_clock):
    # The old leader's sessions must not outlive its term: one left open goes on answering
    # heartbeats, its node never looks for the new leader, and the new leader marks it Down.
    async with trio.open_nursery() as nursery:
        old = FakeBackend(leader=True)
        first = Dispatcher(old, period=1.0, misses=3)
        old.dispatcher = first
        net = Net(nursery)
        net.dispatchers["m1"] = first
        term = trio.CancelScope()

        async def lead(task_status=trio.TASK_STATUS_IGNORED):
            with term:
                await first.run(task_status=task_status)

        await nursery.start(lead)
        new = FakeBackend(leader=False, leader_addr="m1")
        second = Dispatcher(new, period=1.0, misses=3)
        new.dispatcher = second
        net.dispatchers["m2"] = second
        runtime = FakeRuntime()
        worker = Worker(["m1", "m2"], net.connect, runtime, describe)
        task = {"id": "t1", "desired_state": "running", "spec": {}}
        old.assign("node1", task)
        await nursery.start(worker.run)
        await old.wait_for(lambda: old.last_state("t1") == "running")
        # m1's term ends and m2 leads.
        old.leader, old._leader_addr = False, "m2"
        new.leader = True
        new.assign("node1", task)
        await nursery.start(second.run)
        term.cancel()
        with trio.fail_after(30):
            await new.wait_for(lambda: new.hellos)
        assert first.sessions == {}
        assert [(u.task_id, u.state) for u in new.hellos[0][2]] == [("t1", "running")]
        await trio.sleep(10)
        assert new.downs == [] and "node1" in second.sessions
        nursery.cancel_scope.cancel()


async def test_full_assignment_after_reconnect_removes_what_the_cluster_replaced(autojump_clock):
    async with trio.open_nursery() as nursery:
        backend, dispatcher, net, runtime, worker = await start(nursery)
        backend.assign("node1", {"id": "t1", "desired_state": "running", "spec": {}})
        await nursery.start(worker.run)
        await backend.wait_for(lambda: backend.last_state("t1") == "running")
        net.cut = True
        await net.break_all()
        await backend.wait_for(lambda: backend.downs)
        # Meanwhile the cluster replaced t1 elsewhere: the node's set no longer has it.
        backend.tasks["node1"] = {}
        net.cut = False
        await runtime.wait_for(lambda: "t1" in runtime.removed)
        assert runtime.running_tasks() == set()
        nursery.cancel_scope.cancel()


async def test_overlay_entries_come_before_the_tasks_that_need_them_and_a_task_drains_before_it_stops(autojump_clock):
    async with trio.open_nursery() as nursery:
        backend, dispatcher, net, runtime, worker = await start(nursery)
        entry = {"id": "net/n1", "kind": "network", "network_id": "n1"}
        backend.net["node1"] = [entry]
        on_net = {"id": "t1", "desired_state": "running", "spec": {}, "networks": [{"network_id": "n1", "addresses": ["10.0.0.5/24"]}]}
        backend.assign("node1", on_net)
        await nursery.start(worker.run)
        await backend.wait_for(lambda: backend.last_state("t1") == "running")
        assert runtime.events[:2] == [("net", "net/n1"), ("create", "t1")]
        # A change of entries alone reaches the runtime as the whole set.
        backend.set_net("node1", [entry, {"id": "ep/n1/t9", "kind": "endpoint"}])
        await runtime.wait_for(lambda: "ep/n1/t9" in runtime.net)
        assert set(runtime.net) == {"net/n1", "ep/n1/t9"}
        backend.assign("node1", dict(on_net, desired_state="shutdown"))
        await backend.wait_for(lambda: backend.last_state("t1") == "shutdown")
        assert [e for e in runtime.events if e[1] == "t1"][-2:] == [("drain", "t1"), ("stop", "t1")]
        nursery.cancel_scope.cancel()


def test_compute_assign_sends_overlay_entries_by_difference_in_the_first_frame():
    s = _Session("n", "sid", framed=None)
    tasks = [{"id": f"t{i}"} for i in range(600)]
    net = [{"id": "net/a", "vni": 1}, {"id": "ep/a/t1", "serving": True}]
    first = compute_assign(s, tasks, [], [], full=True, net=net)
    assert first[0].net == net and first[1].net == []
    assert compute_assign(s, tasks, [], [], full=False, net=net) == []
    changed = compute_assign(s, tasks, [], [], full=False, net=[net[0], {"id": "ep/a/t1", "serving": False}])
    assert len(changed) == 1 and changed[0].net == [{"id": "ep/a/t1", "serving": False}] and changed[0].tasks == []
    gone = compute_assign(s, tasks, [], [], full=False, net=[net[0]])
    assert gone[0].net_removed == ["ep/a/t1"] and gone[0].net == []


def test_compute_assign_sends_differences_in_bounded_frames():
    s = _Session("n", "sid", framed=None)
    tasks = [{"id": f"t{i}", "desired_state": "running"} for i in range(1200)]
    first = compute_assign(s, tasks, [{"id": "s1"}], [], full=True)
    assert [len(m.tasks) for m in first] == [500, 500, 200]
    assert [m.full for m in first] == [True, False, False] and first[0].secrets == [{"id": "s1"}]
    assert compute_assign(s, tasks, [{"id": "s1"}], [], full=False) == []
    tasks[3] = dict(tasks[3], desired_state="shutdown")
    changed = compute_assign(s, tasks[:-1], [{"id": "s1"}], [], full=False)
    assert len(changed) == 1 and [t["id"] for t in changed[0].tasks] == ["t3"]
    assert changed[0].removed == ["t1199"] and changed[0].secrets == []


async def test_frames_over_the_limit_are_refused_before_they_are_read():
    a, b = trio.testing.memory_stream_pair()
    sender, receiver = Framed(a), Framed(b, max_frame=1024)
    await a.send_all((MAX_FRAME * 2).to_bytes(4, "big"))
    with pytest.raises(FrameError, match="over the limit of 1024"):
        await receiver.receive()
    with pytest.raises(FrameError, match="in batches"):
        await Framed(a, max_frame=10).send({"op": "status", "updates": ["x" * 100]})
    await sender.send({"op": "heartbeat"})
    c, d = trio.testing.memory_stream_pair()
    await c.send_all(b"\x00\x00\x00\x02[]")
    with pytest.raises(FrameError, match="without an"):
        await Framed(d).receive()


async def test_a_tasks_log_comes_from_its_node_and_a_follow_ends_with_the_container(autojump_clock):
    async with trio.open_nursery() as nursery:
        backend, dispatcher, net, runtime, worker = await start(nursery)
        backend.assign("node1", {"id": "t1", "desired_state": "running", "spec": {}})
        runtime.log_lines["t1"] = [f'{{"log": "line {i}\\n", "stream": "stdout", "time": ""}}' for i in range(600)]
        await nursery.start(worker.run)
        await backend.wait_for(lambda: backend.last_state("t1") == "running")
        lines = [line async for line in dispatcher.logs("node1", "t1")]
        assert len(lines) == 600 and lines[0].startswith('{"log": "line 0')
        assert [line async for line in dispatcher.logs("node1", "t1", tail=2)] == runtime.log_lines["t1"][-2:]
        got = []

        async def follow():
            async for line in dispatcher.logs("node1", "t1", tail=1, follow=True):
                got.append(line)

        async with trio.open_nursery() as inner:
            inner.start_soon(follow)
            await trio.sleep(5)
            assert len(got) == 1  # the follow is open while the container runs
            cid = next(iter(runtime.containers))
            runtime.exit(cid, 0)
        assert got == runtime.log_lines["t1"][-1:]
        with pytest.raises(Exception, match="not connected"):
            [line async for line in dispatcher.logs("node9", "t1")]
        nursery.cancel_scope.cancel()


class SlowClose(trio.abc.Stream):
    """A server side whose close waits for `gate` (a manager too busy to close at once)."""

    def __init__(self, inner: trio.abc.Stream, gate: trio.Event):
        self.inner, self.gate, self.closed = inner, gate, False

    async def send_all(self, data) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes=None):
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        self.closed = True
        await self.gate.wait()
        await self.inner.aclose()


async def test_a_node_that_comes_back_twice_at_once_keeps_exactly_one_live_session():
    # A worker gives up on a slow manager and tries again while the manager is still closing
    # the session before: whatever order the sessions finish in, the node ends with one live
    # session, and it is the one the dispatcher pushes to (not one it forgot, heartbeating).
    backend = FakeBackend(leader=True)
    dispatcher = Dispatcher(backend, period=60.0, misses=3)
    hello = p.Hello(description=describe(), tasks=[]).model_dump()
    gate = trio.Event()
    servers = {}
    async with trio.open_nursery() as nursery:
        for name in "ABC":
            _client, server = trio.testing.memory_stream_pair()
            servers[name] = SlowClose(server, gate)
        nursery.start_soon(dispatcher.serve, servers["A"], "node1", hello)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(dispatcher.serve, servers["B"], "node1", hello)
        nursery.start_soon(dispatcher.serve, servers["C"], "node1", hello)
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        live = [name for name, s in servers.items() if not s.closed]
        assert len(live) == 1, f"live sessions: {live}"
        assert dispatcher.sessions["node1"].framed.stream is servers[live[0]]
        nursery.cancel_scope.cancel()
