"""Test doubles of the cluster's session: a runtime that keeps containers in a dict, and a
dispatcher backend that keeps a node's assignments and what the node reported.

They are values and trio events only, so the session's tests run on trio's MockClock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import trio

from orch.cluster import protocol as p
from orch.cluster.worker import Observed
from orch.errors import NotFound, SystemFailure


@dataclass
class FakeContainer:
    cid: str
    task: dict
    running: bool = False
    exit_code: int | None = None
    exited: trio.Event = field(default_factory=trio.Event)
    health: list = field(default_factory=list)


class FakeRuntime:
    """Containers in a dict. A task whose spec says {"fail_prepare": "why"} is rejected; one
    with {"exit_after": seconds} exits 0 after that long on the trio clock."""

    def __init__(self):
        self.containers: dict[str, FakeContainer] = {}
        self.removed: list[str] = []
        self._ids = itertools.count(1)
        self.events: list[tuple[str, str]] = []
        self.changed = trio.Event()
        self.net: dict[str, dict] = {}  # the overlay entries it was given last
        self.log_lines: dict[str, list[str]] = {}  # task id -> its log, as JSON lines

    def _record(self, what: str, task_id: str) -> None:
        self.events.append((what, task_id))
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate) -> None:
        while not predicate():
            await self.changed.wait()

    async def observe(self) -> list[Observed]:
        return [Observed(c.task["id"], c.cid, c.running, c.exit_code) for c in self.containers.values()]

    async def prepare(self, task, secrets, configs) -> None:
        why = task.get("spec", {}).get("fail_prepare")
        if why:
            raise SystemFailure(why)

    async def create(self, task) -> str:
        cid = f"c{next(self._ids)}"
        self.containers[cid] = FakeContainer(cid, task)
        self._record("create", task["id"])
        return cid

    async def start(self, cid) -> None:
        c = self.containers[cid]
        c.running = True
        self._record("start", c.task["id"])
        after = c.task.get("spec", {}).get("exit_after")
        if after is not None:
            trio.lowlevel.spawn_system_task(self._exit_later, c, after)

    async def _exit_later(self, c: FakeContainer, after: float) -> None:
        await trio.sleep(after)
        self.exit(c.cid, 0)

    def exit(self, cid: str, code: int) -> None:
        c = self.containers[cid]
        if c.running:
            c.running, c.exit_code = False, code
            c.exited.set()

    async def wait(self, cid, on_health) -> int:
        c = self.containers.get(cid)
        if c is None:
            raise NotFound(f"no such container: {cid}")
        await c.exited.wait()
        return c.exit_code

    async def stop(self, cid, timeout) -> None:
        self._record("stop", self.containers[cid].task["id"])
        self.exit(cid, 143)

    async def sync_networks(self, entries) -> None:
        self.net = {e["id"]: e for e in entries}
        self._record("net", ",".join(sorted(self.net)))

    async def drain(self, cid, grace) -> None:
        self._record("drain", self.containers[cid].task["id"])

    async def remove(self, cid) -> None:
        c = self.containers.get(cid)
        if c is not None:
            self.exit(cid, 137)
            del self.containers[cid]
            self.removed.append(c.task["id"])
            self._record("remove", c.task["id"])

    async def logs(self, cid, *, follow, tail, since):
        """What the test put in `log_lines[task id]`; a follow then waits for the container to stop."""
        c = self.containers.get(cid)
        if c is None:
            return
        lines = self.log_lines.get(c.task["id"], [])
        for line in lines[-tail:] if tail else lines:
            yield line
        if follow:
            await c.exited.wait()

    def running_tasks(self) -> set[str]:
        return {c.task["id"] for c in self.containers.values() if c.running}


class FakeBackend:
    """A leader's view of nodes: assignments to give, and what nodes said."""

    def __init__(self, leader: bool = True, leader_addr: str = ""):
        self.leader = leader
        self._leader_addr = leader_addr
        self.tasks: dict[str, dict[str, dict[str, Any]]] = {}  # node -> task id -> task
        self.secrets: dict[str, list[dict]] = {}
        self.net: dict[str, list[dict]] = {}  # node -> overlay entries (orch.cluster.netview)
        self.updates: list[tuple[str, p.TaskStatusUpdate]] = []
        self.hellos: list[tuple[str, p.NodeDescription, list[p.TaskStatusUpdate]]] = []
        self.downs: list[tuple[str, str]] = []
        self.changed = trio.Event()
        self.dispatcher = None

    def is_leader(self) -> bool:
        return self.leader

    def leader_addr(self) -> str:
        return self._leader_addr

    def managers(self) -> list[str]:
        return []

    async def session_started(self, node_id, description, running) -> None:
        self.hellos.append((node_id, description, running))
        self._changed()

    def assignments(self, node_id):
        return list(self.tasks.get(node_id, {}).values()), self.secrets.get(node_id, []), []

    def net_entries(self, node_id):
        return list(self.net.get(node_id, ()))

    async def report(self, node_id, updates) -> None:
        self.updates.extend((node_id, u) for u in updates)
        self._changed()

    async def node_down(self, node_id, why) -> None:
        self.downs.append((node_id, why))
        self._changed()

    # -- what tests do ----------------------------------------------------------------------
    def assign(self, node_id: str, task: dict) -> None:
        self.tasks.setdefault(node_id, {})[task["id"]] = task
        if self.dispatcher is not None:
            self.dispatcher.node_changed(node_id)

    def set_net(self, node_id: str, entries: list[dict]) -> None:
        self.net[node_id] = list(entries)
        if self.dispatcher is not None:
            self.dispatcher.node_changed(node_id)

    def unassign(self, node_id: str, task_id: str) -> None:
        self.tasks.get(node_id, {}).pop(task_id, None)
        if self.dispatcher is not None:
            self.dispatcher.node_changed(node_id)

    def last_state(self, task_id: str) -> str | None:
        states = [u.state for _, u in self.updates if u.task_id == task_id]
        return states[-1] if states else None

    def states(self, task_id: str) -> list[str]:
        return [u.state for _, u in self.updates if u.task_id == task_id]

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate) -> None:
        while not predicate():
            await self.changed.wait()
