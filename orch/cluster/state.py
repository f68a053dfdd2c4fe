"""Where the cluster's records live in the store, and the leader's watch-fed cache of them.

Every record type has a Kind (store.py) at the path its `Record.key` names, so a plan's keys
(`v1/tasks/<id>`) and the store's keys agree. The leader lists every kind once, then follows
one watch over the whole layout from the listing's revision: the cache is the state the
orchestrator plans from, and no event rereads the whole state. A compacted watch (the leader
fell too far behind) lists again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from pydantic import BaseModel, ConfigDict

from orch.cluster import records as r
from orch.cluster.store import Change, Compacted, Echo, Kind, Store
from orch.scheduler.clusterplan import ClusterState
from orch.scheduler.taskindex import TaskIndex, classify_task_change


class _RecordKind(Kind):
    """A Kind that writes records the way records.py stores them (compact, no defaults)."""

    def encode(self, record) -> bytes:
        return record.to_json()


CLUSTER = _RecordKind(f"{r.LAYOUT}/cluster", r.Cluster, singleton=True)
NODES = _RecordKind(f"{r.LAYOUT}/nodes/", r.Node)
SERVICES = _RecordKind(f"{r.LAYOUT}/services/", r.Service)
TASKS = _RecordKind(f"{r.LAYOUT}/tasks/", r.Task)
NETWORKS = _RecordKind(f"{r.LAYOUT}/networks/", r.Network)
SECRETS = _RecordKind(f"{r.LAYOUT}/secrets/", r.Secret)
CONFIGS = _RecordKind(f"{r.LAYOUT}/configs/", r.Config)
WATCHED = (NODES, SERVICES, TASKS, NETWORKS, SECRETS, CONFIGS, CLUSTER)
BY_RECORD = {k.model: k for k in WATCHED}
# A new leader loading 100,000 tasks lets its other tasks run every this many records.
LOAD_SLICE = 2000


class LeaderRecord(BaseModel):
    """The leader key's value (election.py holds the key with the leader's lease)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    node_id: str
    addr: str  # the leader's dispatcher, host:port

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


LEADER = _RecordKind(f"{r.LAYOUT}/leader", LeaderRecord, singleton=True)


def kind_of_key(key: str) -> Kind:
    """The Kind of a record key such as `v1/tasks/<id>`."""
    for kind in WATCHED:
        if key == kind.path or (not kind.singleton and key.startswith(kind.path)):
            return kind
    raise KeyError(key)


def id_of_key(key: str) -> str:
    kind = kind_of_key(key)
    return "" if kind.singleton else key[len(kind.path):]


@dataclass
class Cache:
    """The cluster as the leader last saw it. Changed only by `apply` (one trio task)."""

    cluster: r.Cluster | None = None
    nodes: dict[str, r.Node] = field(default_factory=dict)
    services: dict[str, r.Service] = field(default_factory=dict)
    tasks: dict[str, r.Task] = field(default_factory=dict)
    networks: dict[str, r.Network] = field(default_factory=dict)
    secrets: dict[str, r.Secret] = field(default_factory=dict)
    configs: dict[str, r.Config] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)  # record key -> mod revision
    tasks_by_node: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    revision: int = 0
    changed: trio.Event = field(default_factory=trio.Event)
    # Tasks of a service share one TaskSpec value (records.SpecInterner): memory, and cheap
    # comparisons of what a task runs.
    specs: r.SpecInterner = field(default_factory=r.SpecInterner)
    # Nodes whose tasks changed since the consumer last took them (a task deleted has no node
    # to tell any more but this): the dispatcher pushes their assignments. A node's report
    # that only moves a task forward (orch.scheduler.taskindex.classify_task_change) changes
    # nothing the node is told, and touches neither its node nor its service.
    touched_nodes: set[str] = field(default_factory=set)
    # Services whose tasks changed otherwise since the consumer last took them: the leader
    # plans them.
    touched_services: set[str] = field(default_factory=set)
    # The orchestrator's index of the tasks (by service, unplaced, ...), kept up to date here so
    # that a pass costs what the services it plans hold.
    index: TaskIndex = field(default_factory=TaskIndex)
    # What the leader wrote and its watch has not brought back yet (store.Echo): those come
    # back as the records written, not parsed again.
    echo: Echo = field(default_factory=Echo)

    def table(self, kind: Kind) -> dict:
        return {NODES: self.nodes, SERVICES: self.services, TASKS: self.tasks, NETWORKS: self.networks,
                SECRETS: self.secrets, CONFIGS: self.configs}[kind]

    def state(self) -> ClusterState:
        """The orchestrator's input. The live tables, not copies: a pass runs without awaiting,
        so nothing changes them while it reads (copying 100,000 tasks per pass would cost more
        than the pass)."""
        return ClusterState(services=self.services, nodes=self.nodes, tasks=self.tasks, revisions=self.revisions,
                            index=self.index, networks=self.networks)

    async def load(self, store: Store) -> None:
        revision = 0
        for kind in WATCHED:
            listing = await store.list(kind, revision=revision)
            revision = listing.revision
            for i, item in enumerate(listing.items):
                self._set(kind, item.id, item.record, item.mod_revision)
                if i % LOAD_SLICE == LOAD_SLICE - 1:
                    await trio.sleep(0)  # the lease's keepalives and the sessions get their turn
        self.revision = revision

    def _set(self, kind: Kind, record_id: str, record, mod_revision: int) -> None:
        key = kind.path if kind.singleton else kind.path + record_id
        if kind is CLUSTER:
            self.cluster = record
        else:
            table = self.table(kind)
            old = table.get(record_id)
            if kind is TASKS:
                if record is not None:
                    record = self.specs.task(record)
                self.index.put(old, record)
                if classify_task_change(old, record) != "progress":
                    if old is not None:
                        self.touched_services.add(old.service_id)
                        if old.node_id:
                            self.touched_nodes.add(old.node_id)
                    if record is not None:
                        self.touched_services.add(record.service_id)
                        if record.node_id:
                            self.touched_nodes.add(record.node_id)
                if old is not None and old.node_id and (record is None or old.node_id != record.node_id):
                    self.tasks_by_node[old.node_id].discard(record_id)
                if record is not None and record.node_id:
                    self.tasks_by_node[record.node_id].add(record_id)
            elif kind is SERVICES and record is None:
                self.index.forget_service(record_id)
            if record is None:
                table.pop(record_id, None)
            else:
                table[record_id] = record
        if record is None:
            self.revisions.pop(key, None)
        else:
            self.revisions[key] = mod_revision

    def apply(self, changes: list[Change], revision: int) -> None:
        for c in changes:
            self._set(c.kind, c.id, c.record, c.mod_revision)
        self.revision = max(self.revision, revision)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_revision(self, revision: int) -> None:
        """Until the cache has seen `revision` (a write of ours came back through the watch)."""
        while self.revision < revision:
            await self.changed.wait()

    async def follow(self, store: Store, on_changes: Callable[[list[Change]], Awaitable[None] | None],
                     *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Apply the watch's changes forever, calling `on_changes` after each batch."""
        started = False
        while True:
            try:
                async with store.open_watch(*WATCHED, start_revision=self.revision + 1, echo=self.echo) as batches:
                    if not started:
                        task_status.started()
                        started = True
                    async for batch in batches:
                        self.apply(batch.changes, batch.revision)
                        result = on_changes(batch.changes)
                        if result is not None:
                            await result
            except Compacted:
                fresh = Cache()
                await fresh.load(store)
                self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "changed"})
                self.changed.set()
                self.changed = trio.Event()
                await _call(on_changes, [])
            if not started:
                task_status.started()
                started = True


async def _call(fn, arg) -> None:
    result = fn(arg)
    if result is not None:
        await result
