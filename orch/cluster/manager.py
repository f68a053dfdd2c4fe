"""The control plane of a manager node: leadership, the leader's reconcile loop, and the
dispatcher's backend.

Every manager runs `Manager.run`: it keeps an etcd session (a lease) and campaigns for the
leader key. The one that wins leads until its term is lost (election.py cancels the work
before another manager can win); the others wait, answer workers with a redirect, and serve
the CLI's reads and writes straight from etcd.

The leader, in one nursery:
- follows the cluster through a watch-fed cache (state.Cache);
- plans with the pure orchestrator (orch.scheduler.orchestrate.plan_cluster) whenever the
  cache changes or a plan asked to be looked at again, and commits each plan as etcd
  transactions that compare the revisions the plan was computed from plus the leader key's
  create revision (a stale leader's commit fails; a racing one is planned again);
- writes what workers report (task status, node up and down), coalesced per task and
  batched into few transactions;
- serves workers' sessions (dispatcher.py), whose assignments it answers from the cache.

The leader is the only writer of tasks; the CLI writes services, nodes' specs, secrets.
"""

from __future__ import annotations

import base64
import gc
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from orch.cluster import protocol as p
from orch.cluster import records as r
from orch.cluster.dispatcher import Dispatcher
from orch.cluster.election import Term, open_leadership, open_session
from orch.cluster.netview import NetIndex, holds_address, on_overlay
from orch.cluster.state import LEADER, NODES, TASKS, Cache, LeaderRecord, id_of_key, kind_of_key
from orch.cluster.store import Change, Check, Delete, Put, Store
from orch.errors import OrchError, Unavailable
from orch.scheduler.clusterplan import ClusterPlan
from orch.scheduler.orchestrate import plan_cluster
from orch.scheduler.taskindex import services_near_node

LEASE_TTL = 5  # seconds: a dead leader is replaced within about this long (keepalives every TTL/3, from their own thread)
STATUS_BATCH = 1000
SLOW_PASS = 1.0  # seconds: a pass that holds the event loop longer is logged
REPORT_SLICE = 5000  # reports merged between two turns of the event loop
# How long a worker's hello waits at most for a leader to serve it: one that likely died to be
# replaced, a manager that just won to start serving (under the worker's own 10 s wait for an
# answer).
SESSION_WAIT = 8.0
# At most this many tasks are created by one pass: a pass takes a fraction of a second (0.3
# to 0.6 s here at 10,000), so heartbeats and sessions are served in between, and the first
# tasks of a large deploy start while the rest are planned. At 100,000 tasks in one pass the
# leader held the event loop for over 10 s and lost its lease, again and again; at 5,000 a
# pass a 100,000-task deploy took twenty passes, each with its own fixed costs.
PASS_NEW_TASKS = 10_000
# A plan over every service goes this many tasks a pass (about 0.15 s of planning here).
SWEEP_TASKS = 10_000
# Python's cyclic collector, tuned for a manager's heap (hold_gc below).
GC_THRESHOLDS = (200_000, 10, 10)
STANDBY_FREEZE = 100_000  # a standby freezes what it follows after this many net allocations




def assignment_of(task: r.Task, service: r.Service | None = None, spec_json: dict | None = None) -> dict:
    """What a worker is told of a task: what to run and whether to, not the status it reports
    itself (so that its own reports do not come back to it as changes)."""
    return {
        "service_labels": dict(service.spec.labels) if service is not None else {},
        "id": task.id, "service_id": task.service_id, "service_name": task.service_name, "slot": task.slot,
        "node_id": task.node_id, "desired_state": str(task.desired_state), "spec_digest": task.spec_digest,
        "spec": spec_json if spec_json is not None else task.spec.model_dump(mode="json", exclude_defaults=True),
        "endpoint": task.endpoint.model_dump(mode="json", exclude_defaults=True),
        "networks": [n.model_dump(mode="json") for n in task.networks],
        "name": task.name, "container_name": task.container_name,
    }


def merge_status(task: r.Task, update: p.TaskStatusUpdate, now: float) -> r.Task | None:
    """The task with what its node reported, or None when the report changes nothing or would
    move the task's state backwards (a late report from before a newer one)."""
    try:
        state = r.TaskState(update.state)
    except ValueError:
        return None
    old = task.status
    if state < old.state:
        return None
    health = "none" if update.healthy is None else ("healthy" if update.healthy else "unhealthy")
    container = r.ContainerStatus(container_id=update.container_id, exit_code=update.exit_code)
    # A node's hello lists what it runs without messages: in the same state, no message is no
    # news. (Taken as news, every task's message was cleared in etcd each time its node came
    # back: a new leader rewrote all 100,000 tasks, and its own work waited behind them.)
    message = update.message if update.message or state != old.state else old.message
    err = update.err if update.err or state != old.state else old.err
    if (state == old.state and health == old.health and message == old.message
            and (old.container_status or r.ContainerStatus()) == container):
        return None
    status = old.model_copy(update={
        "state": state, "message": message, "err": err, "container_status": container, "health": health,
        "timestamp": now if state != old.state else old.timestamp,
        "health_changed_at": now if health != old.health else old.health_changed_at,
        "started_at": now if state == r.TaskState.RUNNING and old.started_at is None else old.started_at,
        "finished_at": now if state.terminal and old.finished_at is None else old.finished_at,
    })
    return task.model_copy(update={"status": status, "updated_at": now})


def services_on_node(cache: Cache, node_id: str) -> set[str]:
    """The services a change of node `node_id` can matter to (taskindex.services_near_node)."""
    tasks = cache.tasks
    return services_near_node(cache.index, cache.services, (tasks[tid] for tid in cache.tasks_by_node.get(node_id, ()) if tid in tasks))


def tune_gc() -> None:
    """Make Python's cyclic garbage collector affordable for a manager that holds (or may
    load, when it comes to lead) 100,000 tasks.

    Records are acyclic and freed by reference counting; the collector only finds cycles (trio
    tasks and exceptions). With its defaults it ran a full collection, which walks every object
    of the heap (over a million at 100,000 tasks), each time the survivors of a pass's
    temporaries added a quarter to it: 69 s of a 100,000-task deploy, pauses of a second that
    cost the leader its lease; a manager taking over spent 17 to 24 s in 29 full collections
    while loading the cache, lost its lease, and leadership went back and forth. So: young
    collections every 200,000 net allocations, not 700 (a pass's temporaries and a round of
    status reports die young instead of being walked again and promoted; at 50,000 the leader
    spent 7.4 to 9.9 s of a 100,000-task deploy in the collector, at 200,000 4.5 s), middle
    ones every 10 young ones, on every manager from its start."""
    if gc.get_threshold() != GC_THRESHOLDS:
        gc.set_threshold(*GC_THRESHOLDS)


def hold_gc() -> None:
    """The cache just loaded is frozen out of the collector's walks (gc.freeze: it is freed by
    reference counts all the same; a cycle frozen with it would stay, which records never form).

    Tried and not kept: freezing what survives every young collection as well (each record
    walked once, not again in each middle-generation collection). It halved the collector's
    time in a 100,000-task deploy (13 s to 6 s of the leader's CPU) but froze cyclic garbage
    with it: the leader's memory grew by a quarter (685 to 931 MB)."""
    tune_gc()
    gc.freeze()


def plan_ops(plan: ClusterPlan, max_ops: int) -> list[list]:
    """A plan's batches as store operation groups (the fence is added by the caller)."""
    groups = []
    for batch in plan.batches(max_ops):
        ops: list = []
        for key, revision in batch.compares.items():
            ops.append(Check(kind_of_key(key), id_of_key(key), revision))
        for change in batch.changes:
            kind = kind_of_key(change.key)
            if change.op == "delete":
                ops.append(Delete(kind, change.record.id))
            else:
                ops.append(Put(kind, change.record))
        groups.append(ops)
    return groups


@dataclass
class ManagerIdentity:
    node_id: str
    addr: str  # host:port workers reach this manager's dispatcher at


class Manager:
    def __init__(self, store: Store, me: ManagerIdentity, *, clock: Callable[[], float] = time.time,
                 lease_ttl: int = LEASE_TTL, keyring=None):
        self.store = store
        self.keyring = keyring  # secretbox.Keyring: opens secrets for the nodes that need them
        self._opened: dict[str, dict] = {}  # secret id -> its payload, opened once
        self.me = me
        self.clock = clock
        self.lease_ttl = lease_ttl
        self.term: Term | None = None
        self.cache: Cache | None = None
        self.dispatcher: Dispatcher | None = None
        self.leader: LeaderRecord | None = None
        self._leader_changed = trio.Event()
        self.leading = trio.Event()  # set while this manager leads (tests wait on it)
        self._wake = trio.Event()
        self._dirty: set[str] | None = set()  # services to plan; None: all
        # While a plan is being committed, the nodes its transactions touch are told once it is
        # all in, not once per transaction (a pass of 5,000 new tasks touches every node in
        # each of its transactions).
        self._committing = False
        self._status: dict[str, tuple[str, p.TaskStatusUpdate]] = {}
        self._status_ready = trio.Event()
        self._node_writes: dict[str, Callable[[r.Node], r.Node | None]] = {}
        self.plans = 0
        self.commits = 0
        self._assigned: dict[str, tuple] = {}  # task id -> (what the payload is made of, payload)
        self.log_plans = bool(os.environ.get("ORCH_LOG_PLANS"))  # one line per plan committed, in the agent's log
        self._commit_seconds = 0.0  # how long the last plan's transactions took (ORCH_LOG_PLANS)
        self._doomed: set[str] = set()  # nodes removed from the cluster: nothing more is written of them
        self._net_index: tuple[int, NetIndex] | None = None  # (cache revision, index): overlay entries
        # Whether the overlay entries were in use when every node was last told of a change, and
        # the tasks holding addresses (netview.holds_address), kept as changes come so that the
        # question costs no pass over every task: a cluster with no service on an overlay
        # network (swarm init makes the ingress network, so there always is one) pushes nothing
        # to every node when a service or a node changes.
        self._overlay_told = False
        self._net_tasks: set[str] = set()
        self._standby: Cache | None = None  # the cluster as this manager follows it (_stand_by)
        self._standby_ready = trio.Event()
        self._term_scope: trio.CancelScope | None = None  # the current term's work

    # -- election -----------------------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        tune_gc()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._stand_by)
            await self._campaign_forever()

    async def _campaign_forever(self) -> None:
        while True:
            try:
                async with open_session(self.store, self.lease_ttl, detached=True) as session:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._follow_leader)
                        while not session.lost.is_set():
                            async with open_leadership(self.store, session, LEADER,
                                                       LeaderRecord(node_id=self.me.node_id, addr=self.me.addr)) as term:
                                self.term = term
                                print(f"manager: {self.me.node_id} leads (term {term.create_revision})", file=sys.stderr, flush=True)
                                await self._lead(term)
                            self._stop_leading(term.reason)
                        nursery.cancel_scope.cancel()
            except OrchError as err:
                print(f"manager: {err}; campaigning again", file=sys.stderr, flush=True)
            await trio.sleep(1)

    def _stop_leading(self, why: str) -> None:
        if self.leading.is_set():
            print(f"manager: {self.me.node_id} stopped leading: {why}", file=sys.stderr, flush=True)
            self.leading = trio.Event()
        self.term = None
        self.dispatcher = None
        self._tell_leader_changed()

    async def _follow_leader(self) -> None:
        """Know who leads, to redirect workers to it."""
        while True:
            try:
                stored = await self.store.get(LEADER)
                self.leader = stored.record if stored else None
                since = stored.mod_revision if stored else 0
                rev = since or (await self.store.list(NODES)).revision
                async with self.store.open_watch(LEADER, start_revision=rev + 1) as batches:
                    async for batch in batches:
                        for change in batch.changes:
                            self.leader = change.record
                        self._tell_leader_changed()
            except OrchError:
                await trio.sleep(1)

    async def serve_session(self, framed, node_id: str, hello: dict) -> None:
        """A worker's session: served by the dispatcher while this manager leads, else
        answered with a redirect to the leader."""
        await self._wait_for_a_leader(hello.get("lost"))
        if not self.is_leader():
            await Dispatcher(self).serve(framed, node_id, hello)  # a redirect to the leader
            return
        dispatcher, cache = self.dispatcher, self.cache
        # A node removed from the cluster is refused. The leader's cache answers (a thousand
        # nodes coming back to a new leader read nothing from etcd); a node that joined a moment
        # ago may be in etcd before the cache has it.
        if node_id not in cache.nodes and await self.store.get(NODES, node_id) is None:
            await framed.send(p.Refused(message=f"node {node_id} was removed from the cluster; "
                                                f"run orch swarm leave on it, then join again").model_dump())
            return
        await dispatcher.serve(framed, node_id, hello)

    async def _wait_for_a_leader(self, lost) -> None:
        """Hold a worker's hello while a leader is on its way (at most SESSION_WAIT):
        - this manager won and is not serving yet: sent back to this same manager at once, a
          thousand workers of a dead leader kept a new leader busy with handshakes;
        - the worker lost its session with (or could not reach) `lost`, the manager this one
          knows as the leader: that one likely died, and its lease runs out within a TTL.
          Sent back to it, a thousand nodes backed off for seconds each and came to the new
          leader over 5 to 10 s; held, each goes to the new leader the moment it leads. If the
          leader lives on (the node's trouble was its own), the node goes back to it once a
          TTL has passed."""
        now = trio.current_time()
        deadline = now + SESSION_WAIT
        lost = lost if isinstance(lost, str) and lost != self.me.addr else ""
        held_until = min(deadline, now + self.lease_ttl + 1) if lost else now
        while not self.is_leader():
            leader = self.leader
            starting = ((self.term is not None and not self.term.lost.is_set())
                        or (leader is not None and leader.node_id == self.me.node_id))
            held = lost and (leader is None or leader.addr == lost)
            until = deadline if starting else held_until if held else now
            if trio.current_time() >= until:
                return
            with trio.move_on_at(until):
                await self._leader_changed.wait()

    def _tell_leader_changed(self) -> None:
        self._leader_changed.set()
        self._leader_changed = trio.Event()

    async def send_service_logs(self, service_id: str, out: trio.MemorySendChannel, *, follow: bool = False,
                                tail: int | None = None, since: float | None = None) -> None:
        """Send (task, hostname, JSON log line) for every task of a service, from the nodes that
        run them, into `out` as lines arrive, then close it; the leader only (its dispatcher
        holds the sessions). A node that is not connected is one line of its own. A task of
        its own, not an async generator: a nursery must not span a generator's yields."""
        async with out:
            cache, dispatcher = self.cache, self.dispatcher
            if cache is None or dispatcher is None or not self.is_leader():
                raise Unavailable("this manager is not the leader; ask the leader")
            tasks = [t for t in cache.tasks.values() if t.service_id == service_id and t.node_id
                     and t.status.container_status is not None]

            async def one(task: r.Task, out) -> None:
                node = cache.nodes.get(task.node_id)
                hostname = node.description.hostname if node else task.node_id
                async with out:
                    try:
                        async for line in dispatcher.logs(task.node_id, task.id, follow=follow, tail=tail, since=since):
                            await out.send((task, hostname, line))
                    except OrchError as err:
                        await out.send((task, hostname, json.dumps({"log": f"orch: {err}\n", "stream": "stderr", "time": ""})))

            try:
                async with trio.open_nursery() as nursery:
                    for task in tasks:
                        nursery.start_soon(one, task, out.clone())
            except* trio.BrokenResourceError:
                pass  # the reader went away

    # -- the dispatcher's backend -----------------------------------------------------------
    def is_leader(self) -> bool:
        return self.term is not None and not self.term.lost.is_set() and self.dispatcher is not None

    def leader_addr(self) -> str:
        """Where to send a worker: the leader's address, or "" (try again later) when there is
        none or it is this manager, not serving yet."""
        if self.leader is None or (self.leader.node_id == self.me.node_id and not self.is_leader()):
            return ""
        return self.leader.addr

    def managers(self) -> list[str]:
        if self.cache is None:
            return []
        return sorted(n.manager_status.addr for n in self.cache.nodes.values()
                      if n.manager_status is not None and n.manager_status.addr)

    async def session_started(self, node_id: str, description: p.NodeDescription, running) -> None:
        now = self.clock()

        def update(node: r.Node) -> r.Node | None:
            desc = r.NodeDescription(
                hostname=description.hostname,
                platform=r.Platform(os=description.os, architecture=description.architecture),
                resources=r.Resources(nano_cpus=description.nano_cpus, memory_bytes=description.memory_bytes),
                engine_labels=description.labels, engine_version=description.engine_version)
            status = r.NodeStatus(state="ready", addr=description.addr, message="")
            if node.description == desc and node.status == status:
                return None
            return node.model_copy(update={"description": desc, "status": status, "updated_at": now})

        self._write_node(node_id, update)
        for u in running:
            self._status[u.task_id] = (node_id, u)
        self._status_ready.set()

    def assignments(self, node_id: str):
        cache = self.cache
        if cache is None:
            return [], [], []
        out = []
        memo = self._assigned
        tasks, services = cache.tasks, cache.services
        for tid in cache.tasks_by_node.get(node_id, ()):
            task = tasks.get(tid)
            if task is None:
                continue
            # A task's status changes far more often than what the node is told of it: keep the
            # payload while the parts it is made of are the same objects (records are frozen,
            # and a status update copies the rest by reference).
            service = services.get(task.service_id)
            key = (task.spec, task.desired_state, task.node_id, task.endpoint,
                   service.registry_auth if service is not None else b"")
            hit = memo.get(tid)
            if hit is None or hit[0] != key:
                payload = assignment_of(task, service, cache.specs.as_json(task.spec))
                if service is not None and service.registry_auth:
                    payload["registry_auth"] = self._open_auth(service)
                hit = memo[tid] = (key, payload)
            out.append(hit[1])
        return out, *self._assets_for(node_id)

    def _assets_for(self, node_id: str) -> tuple[list[dict], list[dict]]:
        """The secrets and configs the node's tasks name, and nothing else (swarm's rule): a
        secret's value opened with the managers' keyring, to travel inside the TLS session."""
        cache = self.cache
        if not cache.secrets and not cache.configs:
            return [], []
        secret_names: set[str] = set()
        config_names: set[str] = set()
        for tid in cache.tasks_by_node.get(node_id, ()):
            task = cache.tasks.get(tid)
            if task is None or task.desired_state > r.TaskState.RUNNING:
                continue
            secret_names.update(ref.secret_name for ref in task.spec.container_spec.secrets)
            config_names.update(ref.config_name for ref in task.spec.container_spec.configs)
        secrets = [self._secret_payload(s) for s in cache.secrets.values() if s.spec.name in secret_names]
        configs = [{"id": c.id, "name": c.spec.name, "data": base64.b64encode(c.spec.data).decode()}
                   for c in cache.configs.values() if c.spec.name in config_names]
        return [s for s in secrets if s is not None], configs

    def _open_auth(self, service: r.Service) -> dict | None:
        """A service's registry credentials (`--with-registry-auth`), for its tasks' nodes."""
        if self.keyring is None:
            return None
        try:
            return json.loads(self.keyring.open(service.registry_auth, record_id=f"registry-auth/{service.id}"))
        except (OrchError, ValueError) as err:
            print(f"manager: registry credentials of service {service.spec.name}: {err}", file=sys.stderr, flush=True)
            return None

    def _secret_payload(self, secret: r.Secret) -> dict | None:
        if self.keyring is None:
            return None
        hit = self._opened.get(secret.id)
        if hit is None:
            try:
                plain = self.keyring.open(secret.spec.data, record_id=secret.id)
            except OrchError as err:
                print(f"manager: secret {secret.spec.name}: {err}", file=sys.stderr, flush=True)
                return None
            hit = self._opened[secret.id] = {"id": secret.id, "name": secret.spec.name,
                                              "data": base64.b64encode(plain).decode()}
        return hit

    def _overlay_in_use(self, cache: Cache) -> bool:
        """Whether some node has overlay entries (now, or when every node was last told: then
        they are told once more, that they have none)."""
        now = bool(self._net_tasks) or any(on_overlay(s) for s in cache.services.values())
        was, self._overlay_told = self._overlay_told, now
        return now or was

    def net_entries(self, node_id: str) -> list[dict]:
        """The overlay entries the node needs (orch.cluster.netview), from an index made once
        per revision of the cache."""
        cache = self.cache
        if cache is None:
            return []
        if self._net_index is None or self._net_index[0] != cache.revision:
            # Only the tasks that hold addresses make entries (kept as changes come: a scan of
            # 100,000 tasks for none, per revision, was 4% of a new leader's time while its
            # nodes came back).
            tasks = {tid: cache.tasks[tid] for tid in self._net_tasks if tid in cache.tasks}
            self._net_index = (cache.revision, NetIndex.build(cache.networks, cache.services, tasks, cache.nodes))
        return self._net_index[1].entries(node_id)

    async def report(self, node_id: str, updates) -> None:
        for u in updates:
            self._status[u.task_id] = (node_id, u)
        self._status_ready.set()

    async def node_down(self, node_id: str, why: str) -> None:
        now = self.clock()

        def update(node: r.Node) -> r.Node | None:
            if node.status.state == "down":
                return None
            return node.model_copy(update={"status": node.status.model_copy(update={"state": "down", "message": why}),
                                           "updated_at": now})

        self._write_node(node_id, update)

    def _write_node(self, node_id: str, fn: Callable[[r.Node], r.Node | None]) -> None:
        previous = self._node_writes.get(node_id)
        if previous is not None:
            def both(node: r.Node, first=previous, second=fn) -> r.Node | None:
                mid = first(node) or node
                return second(mid) or (mid if mid is not node else None)
            self._node_writes[node_id] = both
        else:
            self._node_writes[node_id] = fn
        self._status_ready.set()

    # -- the cluster, followed by every manager -------------------------------------------------
    async def _stand_by(self) -> None:
        """Keep the cluster in a cache whether this manager leads or not (a hot standby): one
        that wins leads from what it already holds. Loading 100,000 tasks when it won took a
        new leader 10 to 15 s here while a thousand nodes waited for it. The leader's work
        hears of each batch of changes through _on_changes; if following fails, a term on
        this cache ends, and the cache is loaded again."""
        while True:
            cache = Cache()
            try:
                # The load makes a million objects that all live: young collections would
                # promote and walk them again and again, and they form no cycles. The
                # collector is off until they are loaded and frozen out of its walks.
                gc.disable()
                try:
                    await cache.load(self.store)
                    hold_gc()
                finally:
                    gc.enable()
                self._standby = cache
                self._standby_ready.set()
                await cache.follow(self.store, self._on_standby_changes)
            except OrchError as err:
                print(f"manager: following the cluster: {err}; loading it again in 1 s", file=sys.stderr, flush=True)
            finally:
                self._standby = None
                self._standby_ready = trio.Event()
                if self._term_scope is not None:
                    self._term_scope.cancel()  # the term's cache no longer follows the cluster
            await trio.sleep(1)

    def _on_standby_changes(self, changes: list[Change]) -> None:
        if self.cache is not None:
            self._on_changes(changes)
        elif gc.get_count()[0] > STANDBY_FREEZE:
            # A standby makes little but the records it follows, which live: its young
            # collections walked each one twice (3.4 s of a standby's 11 s of CPU in a
            # 100,000-task deploy). Frozen as they come, as the loaded cache is (hold_gc).
            gc.freeze()

    # -- leading ------------------------------------------------------------------------------
    async def _lead(self, term: Term) -> None:
        while self._standby is None:
            await self._standby_ready.wait()
        cache = self._standby
        # What the cache noted while this manager followed: every service is planned once the
        # nodes are back (_sweep_when_settled), and every node gets a full push when its
        # session starts.
        cache.touched_nodes, cache.touched_services = set(), set()
        self.cache = cache
        self._net_tasks = {t.id for t in cache.tasks.values() if holds_address(t)}
        self._overlay_told = True  # a new leader's first change is told to every node
        settings = cache.cluster.settings if cache.cluster else r.ClusterSettings()
        dispatcher = Dispatcher(self, period=settings.heartbeat_period, misses=settings.heartbeat_misses)
        dispatcher.known_nodes(nid for nid, n in cache.nodes.items() if n.status.state != "down")
        self._dirty = set()  # what changes from now on is planned at once
        try:
            async with trio.open_nursery() as nursery:
                self._term_scope = nursery.cancel_scope
                await nursery.start(dispatcher.run)
                self.dispatcher = dispatcher
                nursery.start_soon(self._reconcile, term)
                nursery.start_soon(self._sweep_when_settled, dispatcher)
                nursery.start_soon(self._write_reports, term)
                self.leading.set()
                self._tell_leader_changed()
                await trio.sleep_forever()
        finally:
            self.cache = None
            self._term_scope = None

    async def _sweep_when_settled(self, dispatcher: Dispatcher) -> None:
        """Plan every service once the nodes are back with a new leader (Dispatcher.settle):
        what the old one left undone. Meanwhile what changes is planned (a service updated
        now is not held up by 100,000 tasks that are not)."""
        await dispatcher.settle()
        self._dirty = None
        self._wake.set()

    def _on_changes(self, changes: list[Change]) -> None:
        cache, dispatcher = self.cache, self.dispatcher
        if not changes:  # the cache was listed again: plan everything
            self._dirty = None
        if cache is not None:
            if not self._committing:
                self._push_touched()
            # The services whose tasks changed in a way a pass reads (a node's report that only
            # moves a task forward is not one: see orch.scheduler.taskindex).
            services, cache.touched_services = cache.touched_services, set()
            if self._dirty is not None:
                self._dirty |= services
        overlay = not changes  # a change every node with overlay networks may need to hear of
        if not changes and cache is not None:
            self._net_tasks = {t.id for t in cache.tasks.values() if holds_address(t)}
        for c in changes:
            if c.kind is TASKS:
                task = c.record or None
                overlay = overlay or task is None or bool(task.networks)
                if task is not None and holds_address(task):
                    self._net_tasks.add(c.id)
                else:
                    self._net_tasks.discard(c.id)
                if task is None:
                    self._assigned.pop(c.id, None)
            elif c.kind is NODES:
                overlay = True  # its tasks' endpoints serve or not; its underlay address
                if self._dirty is not None and cache is not None:
                    self._dirty |= services_on_node(cache, c.id)
                if c.record is None:
                    self._doomed.add(c.id)
                    if dispatcher is not None:
                        dispatcher.forget(c.id)
                elif dispatcher is not None and c.record.status.state != "down":
                    dispatcher.known_nodes([c.id])
            else:
                overlay = True  # a service (VIPs, names, ports) or a network
                if self._dirty is not None:
                    if c.record is not None and isinstance(c.record, r.Service):
                        self._dirty.add(c.id)
                    else:
                        self._dirty = None
        if overlay and dispatcher is not None and cache is not None and self._overlay_in_use(cache):
            dispatcher.all_changed()
        if dispatcher is not None and cache is not None and cache.cluster is not None:
            period = cache.cluster.settings.heartbeat_period
            if period != dispatcher.period:
                dispatcher.set_period(period)
        self._wake.set()

    def _push_touched(self) -> None:
        """Tell the dispatcher which nodes' tasks changed since it was last told."""
        cache, dispatcher = self.cache, self.dispatcher
        if cache is None:
            return
        touched, cache.touched_nodes = cache.touched_nodes, set()
        if dispatcher is not None:
            for node_id in touched:
                dispatcher.node_changed(node_id)

    async def _reconcile(self, term: Term) -> None:
        cache = self.cache
        assert cache is not None
        next_check: float | None = None
        waiting: set[str] = set()
        # The services a plan over everything (a new term's first, or after a rejected commit)
        # has yet to cover: a slice of them each pass (_sweep_slice). One pass over 100,000
        # tasks held the event loop 1.3 to 1.8 s while a new leader's thousand nodes came back
        # to it, and a change (a service update) waited behind it.
        sweep: list[str] = []
        last_pass = 0.0
        while True:
            if self._dirty is not None and not self._dirty and not sweep:
                self._wake = trio.Event()
                with trio.move_on_after(math.inf if next_check is None else max(0.0, next_check - self.clock())):
                    await self._wake.wait()
            elif sweep:
                # Sessions and reports get as long as the last slice took: a sweep takes at most
                # half of the event loop (a new leader's nodes are all coming back meanwhile).
                await trio.sleep(last_pass)
            dirty, self._dirty = self._dirty, set()
            if dirty is None:
                sweep = list(reversed(cache.services))
                # And the services removed whose tasks are left: any pass reaps those, but with
                # no service left to sweep no pass ran, and a removed stack's tasks stayed.
                dirty = {sid for sid in cache.index.by_service if sid not in cache.services}
            settings = cache.cluster.settings if cache.cluster else r.ClusterSettings()
            # A pass covers the services whose records changed, and every service that waited
            # in the last pass: what it waits for (another service's tasks, a node, a slot on
            # one, a time: every check a pass asks for comes with a wait) may be what changed;
            # and the next slice of a sweep. No such service, no pass.
            services = dirty | waiting | self._sweep_slice(cache, sweep)
            if not services:
                continue
            began = time.perf_counter()
            plan = plan_cluster(cache.state(), now=self.clock(), settings=settings, services=services,
                                max_new=PASS_NEW_TASKS)
            took = last_pass = time.perf_counter() - began
            if took > SLOW_PASS:
                print(f"manager: a pass over {len(services)} services of {len(cache.tasks)} tasks took {took:.1f} s",
                      file=sys.stderr, flush=True)
            self.plans += 1
            next_check = plan.next_check_at
            names = {w.service for w in plan.waiting}
            waiting = {sid for sid, svc in cache.services.items() if svc.spec.name in names} if names else set()
            if not plan.changes:
                continue
            committing = time.perf_counter()
            await self._commit(term, plan, settings)
            if self.log_plans:
                print(f"manager: {time.strftime('%H:%M:%S')} {plan.summary()} (planned in {took:.2f} s, committed in "
                      f"{self._commit_seconds:.2f} s, seen {time.perf_counter() - committing:.2f} s after it began)",
                      file=sys.stderr, flush=True)

    @staticmethod
    def _sweep_slice(cache: Cache, sweep: list[str]) -> set[str]:
        """The next services of a sweep, about SWEEP_TASKS tasks (a service's tasks are never
        split). Tasks of services removed meanwhile are reaped by any pass."""
        out: set[str] = set()
        count = 0
        while sweep and count < SWEEP_TASKS:
            sid = sweep.pop()
            if sid in cache.services:
                out.add(sid)
                count += len(cache.index.by_service.get(sid, ())) + 1
        return out

    async def _commit(self, term: Term, plan: ClusterPlan, settings: r.ClusterSettings) -> None:
        cache = self.cache
        groups = [[*ops, term.fence] for ops in plan_ops(plan, max(2, settings.max_txn_ops - 1))]
        self._committing = True
        began = time.perf_counter()
        try:
            try:
                result = await self.store.commit(groups, echo=cache.echo)
            except OrchError as err:
                print(f"manager: committing a plan: {err}", file=sys.stderr, flush=True)
                self._dirty = None
                await trio.sleep(0.5)
                return
            self.commits += result.transactions
            self._commit_seconds = time.perf_counter() - began
            if result.revision:
                await cache.wait_revision(result.revision)
        finally:
            self._committing = False
            self._push_touched()
        if result.rejected:
            # Records changed under the plan: plan again once the cache has seen them.
            self._dirty = None

    async def _write_reports(self, term: Term) -> None:
        cache = self.cache
        while True:
            await self._status_ready.wait()
            self._status_ready = trio.Event()
            pending, self._status = self._status, {}
            node_writes, self._node_writes = self._node_writes, {}
            now = self.clock()
            mark = cache.revision  # what the cache had seen when it was read
            wait_for = 0  # the revision to wait for before what is retried goes again
            groups: list[list] = []
            retry: dict[str, tuple[str, p.TaskStatusUpdate]] = {}
            requeued = failed = False
            for node_id, fn in node_writes.items():
                node = cache.nodes.get(node_id)
                if node is None:
                    if node_id in self._doomed:
                        continue
                    # Not in the cache yet (a session that came before the watch delivered the
                    # node's record): try again once the cache has moved.
                    self._node_writes.setdefault(node_id, fn)
                    requeued = True
                    continue
                new = fn(node)
                if new is not None:
                    groups.append([Put(NODES, new, expect=cache.revisions.get(node.key)), term.fence])
            for i, (task_id, (node_id, update)) in enumerate(pending.items()):
                if i % REPORT_SLICE == REPORT_SLICE - 1:
                    await trio.sleep(0)  # a new leader hears of every task at once: others get their turn
                task = cache.tasks.get(task_id)
                if task is None or task.node_id != node_id:
                    continue  # not (or no longer) this node's task: the assignment says so
                new = merge_status(task, update, now)
                if new is not None:
                    groups.append([Put(TASKS, new, expect=cache.revisions.get(task.key)), term.fence])
            if not groups:
                if requeued:
                    await cache.wait_revision(mark + 1)
                    self._status_ready.set()
                continue
            written = 0
            for start in range(0, len(groups), STATUS_BATCH):
                chunk = groups[start:start + STATUS_BATCH]
                try:
                    result = await self.store.commit(chunk, echo=cache.echo)
                except OrchError as err:
                    print(f"manager: writing task status: {err}", file=sys.stderr, flush=True)
                    await trio.sleep(0.5)
                    result, failed = None, True
                if result is not None and result.rejected:
                    wait_for = max(wait_for, result.seen)
                if result is None or result.rejected:
                    bad = set(range(len(chunk))) if result is None else set(result.rejected)
                    for i in bad:
                        record = chunk[i][0].record
                        if isinstance(record, r.Task) and record.id in pending:
                            retry[record.id] = pending[record.id]
                        elif isinstance(record, r.Node) and record.id in node_writes:
                            self._node_writes.setdefault(record.id, node_writes[record.id])
                            requeued = True
                if result is not None:
                    self.commits += result.transactions
                    written = max(written, result.revision)
            # The next round merges what comes against the cache: it must hold this round's
            # writes by then (not after each chunk: the chunks are other tasks, and waiting for
            # each one's echo left a deploy's last statuses 15 to 20 s behind its last plan).
            if written:
                await cache.wait_revision(written)
            if retry or requeued:
                for task_id, item in retry.items():
                    self._status.setdefault(task_id, item)
                # What was rejected goes again once the cache has seen what it was rejected on;
                # a record not in the cache yet, once the cache has moved. (Waiting for the
                # cache's next change instead could wait forever: what the retry needs may be
                # in already, and an idle cluster changes nothing more. A status so lost left a
                # stopped task running in etcd, and a rolling update waiting for it for ever.)
                if not failed:
                    await cache.wait_revision(max(wait_for, mark + 1) if requeued else wait_for)
                self._status_ready.set()


def require_leader(manager: Manager) -> None:
    if not manager.is_leader():
        raise Unavailable("this manager is not the leader")
