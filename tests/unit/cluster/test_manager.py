"""The leader end to end in one process: MemoryStore, the manager's election, cache,
orchestrator and dispatcher, and workers over in-memory streams running a FakeRuntime, all
on trio's MockClock."""

import pytest
import trio
import trio.testing

from orch.cluster import records as r
from orch.cluster.fakes import FakeRuntime
from orch.cluster.manager import Manager, ManagerIdentity
from orch.cluster.memstore import open_memory_store
from orch.cluster import protocol as p
from orch.cluster.state import CLUSTER, NETWORKS, NODES, SERVICES, TASKS, Cache
from orch.cluster.store import Change
from orch.cluster.wire import Framed
from orch.cluster.worker import Worker
from orch.scheduler import fakecluster as fc


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


class Cluster:
    def __init__(self, store, nursery):
        self.store = store
        self.nursery = nursery
        self.managers: dict[str, Manager] = {}
        self.runtimes: dict[str, FakeRuntime] = {}
        self.workers: dict[str, Worker] = {}
        self.cut: set[str] = set()
        self.dead: set[str] = set()  # managers' addresses that refuse connections (their process died)
        self.streams: dict[str, list] = {}

    async def add_manager(self, node_id):
        m = Manager(self.store, ManagerIdentity(node_id, f"{node_id}:2377"), clock=trio.current_time, lease_ttl=5)
        self.managers[f"{node_id}:2377"] = m
        await self.nursery.start(m.run)
        return m

    async def add_worker(self, node_id):
        await self.store.put(NODES, fc.node(node_id, state="unknown"))
        runtime = FakeRuntime()

        async def connect(addr):
            if node_id in self.cut:
                raise OSError("network is unreachable")
            if addr in self.dead:
                raise OSError("connection refused")
            client, server = trio.testing.memory_stream_pair()
            self.streams.setdefault(node_id, []).append((client, server))
            self.nursery.start_soon(self._serve, self.managers[addr], server, node_id)
            return client

        worker = Worker(list(self.managers), connect, runtime, lambda: p.NodeDescription(hostname=node_id))
        self.runtimes[node_id] = runtime
        self.workers[node_id] = worker
        await self.nursery.start(worker.run)

    async def two_managers(self):
        """m1 leading, m2 standing by, and a function that kills m1 as a process killed dies:
        no resign, its lease not revoked (it runs out), its address refusing connections."""
        crashing = Crashing(self.store)
        m1 = Manager(crashing, ManagerIdentity("m1", "m1:2377"), clock=trio.current_time, lease_ttl=5)
        m2 = Manager(self.store, ManagerIdentity("m2", "m2:2377"), clock=trio.current_time, lease_ttl=5)
        self.managers = {"m1:2377": m1, "m2:2377": m2}
        scope = trio.CancelScope()

        async def run_m1(task_status=trio.TASK_STATUS_IGNORED):
            with scope:
                await m1.run(task_status=task_status)

        await self.nursery.start(run_m1)
        await m1.leading.wait()
        await self.nursery.start(m2.run)

        def kill_m1():
            crashing.dead = True
            scope.cancel()
            self.dead.add("m1:2377")

        return m1, m2, kill_m1

    @staticmethod
    async def _serve(manager, stream, node_id):
        # As the node's listener does: the hello is read first, to route the connection.
        framed = Framed(stream)
        try:
            hello = await framed.receive()
        except trio.BrokenResourceError:
            return
        if hello is not None:
            await manager.serve_session(framed, node_id, hello)

    async def cut_node(self, node_id):
        self.cut.add(node_id)
        for client, server in self.streams.pop(node_id, []):
            await client.aclose()
            await server.aclose()

    def running(self):
        return sorted((nid, t) for nid, rt in self.runtimes.items() for t in rt.running_tasks())


async def wait_until(manager, predicate):
    while True:
        cache = manager.cache
        if cache is not None and predicate(cache):
            return
        if cache is None:
            await trio.sleep(0.1)
        else:
            await cache.changed.wait()


def running_tasks(cache: Cache, service_id: str):
    return [t for t in cache.tasks.values() if t.service_id == service_id and t.status.state == r.TaskState.RUNNING
            and t.desired_state == r.TaskState.RUNNING]


async def test_deploy_spreads_and_a_down_node_is_replaced_then_trimmed(autojump_clock):
    async with open_memory_store() as store, trio.open_nursery() as nursery:
        await store.put(CLUSTER, r.Cluster(id="c1", settings=r.ClusterSettings(heartbeat_period=1.0)))
        c = Cluster(store, nursery)
        m = await c.add_manager("m1")
        await m.leading.wait()
        for nid in ("n1", "n2", "n3"):
            await c.add_worker(nid)
        await wait_until(m, lambda cache: all(n.status.state == "ready" for n in cache.nodes.values()))
        await store.put(SERVICES, fc.service("web", replicas=6))
        await wait_until(m, lambda cache: len(running_tasks(cache, "web")) == 6)
        per_node = {nid: len(rt.running_tasks()) for nid, rt in c.runtimes.items()}
        assert per_node == {"n1": 2, "n2": 2, "n3": 2}
        assert {n.status.state for n in m.cache.nodes.values()} == {"ready"}

        # n3 falls off the network: Down after 3 s, its two tasks start elsewhere.
        began = trio.current_time()
        await c.cut_node("n3")
        await wait_until(m, lambda cache: cache.nodes["n3"].status.state == "down")
        assert 2.9 <= trio.current_time() - began <= 4
        await wait_until(m, lambda cache: len([t for t in running_tasks(cache, "web") if t.node_id != "n3"]) == 6)
        assert len(c.runtimes["n3"].running_tasks()) == 2  # a partitioned worker keeps its containers

        # n3 comes back: what it still runs was replaced, so it is stopped; six copies in all.
        c.cut.discard("n3")
        await wait_until(m, lambda cache: cache.nodes["n3"].status.state == "ready")
        await c.runtimes["n3"].wait_for(lambda: not c.runtimes["n3"].running_tasks())
        await wait_until(m, lambda cache: len(running_tasks(cache, "web")) == 6)
        assert len(c.running()) == 6
        nursery.cancel_scope.cancel()


async def test_a_second_manager_takes_over_when_the_leader_dies(autojump_clock):
    async with open_memory_store() as store, trio.open_nursery() as nursery:
        await store.put(CLUSTER, r.Cluster(id="c1", settings=r.ClusterSettings(heartbeat_period=1.0)))
        c = Cluster(store, nursery)
        with trio.CancelScope() as m1_scope:
            pass
        m1 = Manager(store, ManagerIdentity("m1", "m1:2377"), clock=trio.current_time, lease_ttl=5)
        m2 = Manager(store, ManagerIdentity("m2", "m2:2377"), clock=trio.current_time, lease_ttl=5)
        c.managers = {"m1:2377": m1, "m2:2377": m2}

        async def run_m1(task_status=trio.TASK_STATUS_IGNORED):
            with m1_scope:
                await m1.run(task_status=task_status)

        m1_scope = trio.CancelScope()
        await nursery.start(run_m1)
        await m1.leading.wait()
        await nursery.start(m2.run)
        for nid in ("n1", "n2"):
            await c.add_worker(nid)
        await store.put(SERVICES, fc.service("web", replicas=2))
        await wait_until(m1, lambda cache: len(running_tasks(cache, "web")) == 2)
        assert not m2.is_leader()

        # The leader dies (its process is gone: no resign, the lease must run out).
        began = trio.current_time()
        m1_scope.cancel()
        for nid in list(c.streams):
            await c.cut_node(nid)
            c.cut.discard(nid)
        await m2.leading.wait()
        assert trio.current_time() - began <= 10
        # An update issued now completes under the new leader.
        svc = (await store.get(SERVICES, "web"))
        await store.put(SERVICES, fc.updated(svc.record, "busybox:2"), expect=svc.mod_revision)
        await wait_until(m2, lambda cache: len([t for t in running_tasks(cache, "web")
                                                if t.spec.container_spec.image == "busybox:2"]) == 2)
        assert sum(len(rt.running_tasks()) for rt in c.runtimes.values()) == 2
        nursery.cancel_scope.cancel()


class Crashing:
    """A manager's store that says nothing more once the manager is `dead`: its lease is not
    revoked nor its leader key deleted, as when its process is killed (the lease runs out)."""

    def __init__(self, store):
        self._store = store
        self.dead = False

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if name not in ("revoke", "_txn"):
            return attr

        async def unless_dead(*args, **kwargs):
            return None if self.dead else await attr(*args, **kwargs)
        return unless_dead


async def test_nodes_that_lost_the_leader_wait_at_a_follower_and_come_to_the_next_at_once(autojump_clock):
    # Sent back to the dead leader, a node backed off for seconds each time (and a thousand
    # nodes came to the new leader over 5 to 10 s); held by the follower, it is served the
    # moment the follower leads.
    async with open_memory_store() as store, trio.open_nursery() as nursery:
        await store.put(CLUSTER, r.Cluster(id="c1", settings=r.ClusterSettings(heartbeat_period=1.0)))
        c = Cluster(store, nursery)
        m1, m2, kill_m1 = await c.two_managers()
        for nid in ("n1", "n2", "n3"):
            await c.add_worker(nid)
        for worker in c.workers.values():
            await worker.connected.wait()

        kill_m1()
        died = trio.current_time()
        for nid in list(c.streams):
            await c.cut_node(nid)
            c.cut.discard(nid)
        await m2.leading.wait()
        led = trio.current_time()
        assert 4 <= led - died <= 6  # the dead leader's lease ran out
        for nid, worker in c.workers.items():
            while not worker.connected.is_set():
                await trio.sleep(0.01)
            assert trio.current_time() - led < 0.5, f"{nid} came {trio.current_time() - led:.1f} s after m2 led"
            assert nid in m2.dispatcher.sessions
        nursery.cancel_scope.cancel()


async def test_a_new_leader_plans_a_change_at_once_while_its_nodes_come_back(autojump_clock):
    # Every service waits for the nodes to be back (Dispatcher.settle, up to 5 s with a node
    # that never comes); an update issued meanwhile does not.
    async with open_memory_store() as store, trio.open_nursery() as nursery:
        await store.put(CLUSTER, r.Cluster(id="c1", settings=r.ClusterSettings(heartbeat_period=1.0)))
        c = Cluster(store, nursery)
        m1, m2, kill_m1 = await c.two_managers()
        for nid in ("n1", "n2"):
            await c.add_worker(nid)
        await store.put(SERVICES, fc.service("web", replicas=2))
        await wait_until(m1, lambda cache: len(running_tasks(cache, "web")) == 2)

        kill_m1()
        await c.cut_node("n2")  # n2 does not come back
        await c.cut_node("n1")
        c.cut.discard("n1")
        await m2.leading.wait()
        led = trio.current_time()
        svc = await store.get(SERVICES, "web")
        await store.put(SERVICES, fc.updated(svc.record, "busybox:2"), expect=svc.mod_revision)
        await wait_until(m2, lambda cache: any(t.spec.container_spec.image == "busybox:2" for t in cache.tasks.values()))
        assert trio.current_time() - led < 1
        nursery.cancel_scope.cancel()


async def test_a_node_held_by_a_follower_goes_back_to_a_leader_that_lives(autojump_clock):
    # A node whose own trouble made it leave a leader that is alive is not held for ever.
    async with open_memory_store() as store, trio.open_nursery() as nursery:
        await store.put(CLUSTER, r.Cluster(id="c1", settings=r.ClusterSettings(heartbeat_period=1.0)))
        c = Cluster(store, nursery)
        m1 = await c.add_manager("m1")
        await m1.leading.wait()
        m2 = await c.add_manager("m2")
        client, server = trio.testing.memory_stream_pair()
        worker_side = Framed(client)
        hello = p.Hello(description=p.NodeDescription(hostname="n1"), lost="m1:2377").model_dump()
        began = trio.current_time()
        nursery.start_soon(m2.serve_session, Framed(server), "n1", hello)
        reply = p.parse(await worker_side.receive(), {"redirect": p.Redirect})
        assert reply.leader == "m1:2377"
        assert 5 <= trio.current_time() - began <= 6.5  # held a TTL and a second, then sent back
        nursery.cancel_scope.cancel()


async def test_a_new_leader_plans_everything_a_slice_at_a_time(autojump_clock, monkeypatch):
    # A pass over every service held a new leader's event loop for seconds at 100,000 tasks;
    # the sweep plans about SWEEP_TASKS tasks' services a pass, and reaches every service.
    import orch.cluster.manager as manager_module

    monkeypatch.setattr(manager_module, "SWEEP_TASKS", 2)
    planned: list[set[str]] = []
    real = manager_module.plan_cluster

    def recording(state, **kw):
        planned.append(set(kw["services"]))
        return real(state, **kw)

    monkeypatch.setattr(manager_module, "plan_cluster", recording)
    async with open_memory_store() as store, trio.open_nursery() as nursery:
        await store.put(CLUSTER, r.Cluster(id="c1", settings=r.ClusterSettings(heartbeat_period=1.0)))
        names = [f"s{i}" for i in range(6)]
        for name in names:
            await store.put(SERVICES, fc.service(name, replicas=3))
        c = Cluster(store, nursery)
        for nid in ("n1", "n2"):
            await store.put(NODES, fc.node(nid))
        m = await c.add_manager("m1")
        await m.leading.wait()
        for nid in ("n1", "n2"):
            await c.add_worker(nid)
        await wait_until(m, lambda cache: all(len(running_tasks(cache, n)) == 3 for n in names))
        assert len(planned[0]) == 2  # no tasks yet: a service counts one
        assert set().union(*planned) == set(names)
        nursery.cancel_scope.cancel()


async def test_the_last_service_removed_takes_its_tasks_with_it(autojump_clock):
    # Removing a service plans everything; with no service left the sweep had nothing to plan,
    # no pass ran, and the removed service's tasks (and containers) stayed.
    async with open_memory_store() as store, trio.open_nursery() as nursery:
        await store.put(CLUSTER, r.Cluster(id="c1", settings=r.ClusterSettings(heartbeat_period=1.0)))
        c = Cluster(store, nursery)
        m = await c.add_manager("m1")
        await m.leading.wait()
        await c.add_worker("n1")
        await store.put(SERVICES, fc.service("web", replicas=2))
        await wait_until(m, lambda cache: len(running_tasks(cache, "web")) == 2)
        await store.delete(SERVICES, "web")
        with trio.fail_after(60):
            await wait_until(m, lambda cache: not any(t.service_id == "web" for t in cache.tasks.values()))
            await c.runtimes["n1"].wait_for(lambda: not c.runtimes["n1"].running_tasks())
        nursery.cancel_scope.cancel()


async def test_drain_after_a_node_came_back_moves_its_tasks(autojump_clock):
    async with open_memory_store() as store, trio.open_nursery() as nursery:
        await store.put(CLUSTER, r.Cluster(id="c1", settings=r.ClusterSettings(heartbeat_period=1.0)))
        c = Cluster(store, nursery)
        m = await c.add_manager("m1")
        await m.leading.wait()
        for nid in ("n1", "n2", "n3"):
            await c.add_worker(nid)
        await wait_until(m, lambda cache: all(n.status.state == "ready" for n in cache.nodes.values()))
        await store.put(SERVICES, fc.service("web", replicas=3))
        await store.put(SERVICES, fc.service("pinned", constraints=("node.id==n2",)))
        await wait_until(m, lambda cache: len(running_tasks(cache, "web")) == 3 and len(running_tasks(cache, "pinned")) == 1)
        await c.cut_node("n3")
        await wait_until(m, lambda cache: len([t for t in running_tasks(cache, "web") if t.node_id != "n3"]) == 3)
        c.cut.discard("n3")
        await c.runtimes["n3"].wait_for(lambda: not c.runtimes["n3"].running_tasks())
        node = (await store.get(NODES, "n2"))
        await store.put(NODES, node.record.model_copy(update={"spec": node.record.spec.model_copy(update={"availability": "drain"})}),
                        expect=node.mod_revision)
        await wait_until(m, lambda cache: len([t for t in running_tasks(cache, "web") if t.node_id != "n2"]) == 3)
        await c.runtimes["n2"].wait_for(lambda: not any(x.running and x.task["service_name"] == "web"
                                                         for x in c.runtimes["n2"].containers.values()))
        nursery.cancel_scope.cancel()


class RecordingDispatcher:
    """What the manager asks of its dispatcher when the cache changes, counted."""

    period = 5.0

    def __init__(self):
        self.all_changed_calls = 0
        self.changed_nodes: list[str] = []

    def all_changed(self):
        self.all_changed_calls += 1

    def node_changed(self, node_id):
        self.changed_nodes.append(node_id)

    def known_nodes(self, node_ids):
        pass


async def test_every_node_hears_of_a_change_only_while_some_node_has_overlay_entries():
    """swarm init makes the ingress network, so a cluster always has one: a service or node
    change is told to every node only while some service or task is on an overlay network,
    and once more when the last one goes (so that the nodes drop their entries)."""
    m = Manager(None, ManagerIdentity("m1", "m1:2377"))
    m.cache, m.dispatcher = Cache(), RecordingDispatcher()
    revision = 0

    def change(kind, record_id, record):
        nonlocal revision
        revision += 1
        batch = [Change(kind, record_id, record, revision)]
        m.cache.apply(batch, revision)
        before = m.dispatcher.all_changed_calls
        m._on_changes(batch)
        return m.dispatcher.all_changed_calls - before

    def entries():
        return {nid: m.net_entries(nid) for nid in m.cache.nodes}

    ingress = r.Network(id="ing", spec=r.NetworkSpec(name="ingress", ingress=True), vni=4096,
                        subnets=[r.IPAMConfig(subnet="10.0.0.0/24", gateway="10.0.0.1")])
    front = r.Network(id="front", spec=r.NetworkSpec(name="front"), vni=4097,
                      subnets=[r.IPAMConfig(subnet="10.0.1.0/24", gateway="10.0.1.1")])
    assert change(NETWORKS, ingress.id, ingress) == 0
    assert change(NODES, "n1", fc.node("n1", addr="10.213.0.1")) == 0
    assert change(NODES, "n2", fc.node("n2", addr="10.213.0.2")) == 0
    plain = fc.service("plain", replicas=2)
    assert change(SERVICES, plain.id, plain) == 0
    assert change(TASKS, "plain1", fc.task(plain, 1, "n1")) == 0
    assert m.dispatcher.changed_nodes == ["n1"]  # the node running it still hears of its task
    assert change(NETWORKS, front.id, front) == 0  # a network no task uses: no entries anywhere
    assert entries() == {"n1": [], "n2": []}

    web = fc.service("web")
    web = web.model_copy(update={"spec": web.spec.model_copy(update={"task_template": web.spec.task_template.model_copy(
        update={"networks": [r.NetworkAttachmentConfig(target="front")]})})})
    assert change(SERVICES, web.id, web) == 1
    on_front = fc.task(web, 1, "n2").model_copy(update={
        "networks": [r.NetworkAttachment(network_id="front", addresses=["10.0.1.5/24"])]})
    assert change(TASKS, on_front.id, on_front) == 1
    assert change(NODES, "n1", fc.node("n1", addr="10.213.0.1", state="down")) == 1  # its endpoints stop serving
    assert [e["kind"] for e in entries()["n2"]] == ["network", "endpoint", "service"]

    # The last service on an overlay network goes: every node is told once more, then no more.
    assert change(TASKS, on_front.id, None) == 1
    assert change(SERVICES, web.id, None) == 1
    assert entries() == {"n1": [], "n2": []}
    assert change(NODES, "n1", fc.node("n1", addr="10.213.0.1")) == 0
    assert change(SERVICES, plain.id, fc.service("plain", replicas=3)) == 0


class ConflictOnce:
    """A store whose next commit, once armed, finds a record changed by another writer, and
    the leader's cache already past that change when the answer comes."""

    def __init__(self, store):
        self._store = store
        self.conflict = None  # async callable, run before the armed commit goes through

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def commit(self, groups, **kw):
        conflict, self.conflict = self.conflict, None
        if conflict is not None:
            await conflict()
        return await self._store.commit(groups, **kw)


async def test_a_status_write_rejected_after_the_cache_saw_why_goes_again(autojump_clock):
    # The rejected write must be retried once the cache has what it was rejected on, even when
    # the cache already had it and nothing in the cluster changes afterwards (waiting for the
    # cache's *next* change waited for ever: a stopped task stayed running in etcd, and a
    # rolling update waited on it).
    async with open_memory_store() as base, trio.open_nursery() as nursery:
        store = ConflictOnce(base)
        await base.put(CLUSTER, r.Cluster(id="c1", settings=r.ClusterSettings(heartbeat_period=1.0)))
        c = Cluster(store, nursery)
        m = await c.add_manager("m1")
        await m.leading.wait()
        await c.add_worker("n1")
        await base.put(SERVICES, fc.service("web", replicas=1))
        await wait_until(m, lambda cache: len(running_tasks(cache, "web")) == 1)
        task = running_tasks(m.cache, "web")[0]

        async def another_writer():
            stored = await base.get(TASKS, task.id)
            revision = await base.put(TASKS, stored.record.model_copy(update={"updated_at": stored.record.updated_at + 1}),
                                      expect=stored.mod_revision)
            await m.cache.wait_revision(revision)

        store.conflict = another_writer
        await m.report("n1", [p.TaskStatusUpdate(task_id=task.id, state="running", container_id="c1", healthy=True)])
        with trio.fail_after(60):
            await wait_until(m, lambda cache: cache.tasks[task.id].status.health == "healthy")
        assert store.conflict is None
        nursery.cancel_scope.cancel()


def test_a_hello_that_lists_a_running_task_without_its_message_writes_nothing():
    # A node's hello says what it runs, without messages: taken as news, it cleared every
    # task's message in etcd each time a node came back (100,000 writes for a new leader).
    from orch.cluster.manager import merge_status

    task = fc.task(fc.service("web", replicas=1), 1, "n1")
    task = task.model_copy(update={"status": task.status.model_copy(update={
        "message": "started", "container_status": r.ContainerStatus(container_id="c1")})})
    hello = p.TaskStatusUpdate(task_id=task.id, state="running", container_id="c1")
    assert merge_status(task, hello, 5.0) is None
    # A new state still lands, with its own message (none here), and news in the same state too.
    done = merge_status(task, p.TaskStatusUpdate(task_id=task.id, state="complete", container_id="c1", exit_code=0), 6.0)
    assert done.status.state == r.TaskState.COMPLETE and done.status.message == "" and done.status.finished_at == 6.0
    healthy = merge_status(task, p.TaskStatusUpdate(task_id=task.id, state="running", container_id="c1", healthy=True), 7.0)
    assert healthy.status.health == "healthy" and healthy.status.message == "started"


def test_a_standby_freezes_what_it_follows_and_a_leader_does_not(monkeypatch):
    # A standby's young collections walked every record it followed twice; a leader makes
    # cyclic garbage (sessions, scopes) that must stay collectable.
    import gc

    import orch.cluster.manager as manager_module

    monkeypatch.setattr(manager_module, "STANDBY_FREEZE", -1)
    m = Manager(None, ManagerIdentity("m1", "m1:2377"))
    try:
        held = [[i] for i in range(1000)]  # young objects
        before = gc.get_freeze_count()
        m._on_standby_changes([])
        assert gc.get_freeze_count() >= before + len(held)
        gc.unfreeze()
        m.cache, m.dispatcher = Cache(), RecordingDispatcher()
        before = gc.get_freeze_count()
        m._on_standby_changes([])
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()
