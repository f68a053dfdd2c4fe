"""Waiting for a service to converge, as `docker service create|update|scale|rollback`
without --detach does (docker/cli cli/command/service/progress/progress.go), printed in a
plain form: a line when the overall count or a slot's state changes, not redrawn bars.

    overall progress: 1 out of 3 tasks
    1/3: running
    2/3: preparing
    ...
    verify: Waiting 5 seconds to verify that tasks are stable...
    verify: Service web converged

The loop reads the service, its up-to-date tasks (the `_up-to-date` filter) and the nodes
that are not down, every 200 ms as docker's does. Converged: every slot (every eligible node
for a global service) has a running task of the current spec, and it stays so for the
update's monitor period. An update that pauses, or a rollback that pauses, ends it with
docker's error; Ctrl-C leaves the update running and says how to follow it.

The client, the clock and the sleep are arguments, so tests run it without waiting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import quote

from orch.errors import Conflict

POLL = 0.2
MAX_BARS = 20
_ORDER = ["new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running", "complete",
          "shutdown", "failed", "rejected", "remove", "orphaned"]
_RANK = {s: i + 1 for i, s in enumerate(_ORDER[:13])}  # progress.go's numberedStates


def _terminal(state: str) -> bool:
    return _RANK.get(state, 0) > _RANK["running"]


def _trunc_error(message: str) -> str:
    message = message.replace("\n", " ")
    return message if len(message) <= 75 else message[:74] + "…"


class Progress:
    """The lines of one service's progress; `update` returns whether it has converged."""

    def __init__(self, write: Callable[[str], None]):
        self.write = write
        self.last: dict[str, str] = {}
        self.slots: dict[int, int] = {}
        self.started = False

    def line(self, key: str, text: str) -> None:
        if self.last.get(key) != text:
            self.last[key] = text
            self.write(f"{key}: {text}")

    def overall(self, running: int, total: int, rollback: bool) -> None:
        action = f"rolling back update: {running} out of {total} tasks" if rollback else f"{running} out of {total} tasks"
        self.line("overall progress", action)

    def update(self, service: dict, tasks: list[dict], active_nodes: set[str], rollback: bool) -> bool:
        mode = service["Spec"].get("Mode", {})
        if mode.get("Global") is not None:
            return self._global(tasks, active_nodes, rollback)
        replicas = int((mode.get("Replicated") or {}).get("Replicas", 1))
        if not self.started:
            self.overall(0, replicas, rollback)
            self.started = True
        by_slot: dict[int, dict] = {}
        for t in tasks:
            if not _RANK.get(t.get("DesiredState", "")) or not _RANK.get(t.get("Status", {}).get("State", "")):
                continue
            if t.get("NodeID") and t["NodeID"] not in active_nodes:
                continue
            have = by_slot.get(t.get("Slot", 0))
            # Several tasks of one slot (a restart, a start-first update): the lowest desired
            # state wins, then the most advanced observed state.
            if have is not None:
                mine, theirs = _RANK[t["DesiredState"]], _RANK[have["DesiredState"]]
                if mine > theirs or (mine == theirs and _RANK[t["Status"]["State"]] <= _RANK[have["Status"]["State"]]):
                    continue
            by_slot[t.get("Slot", 0)] = t
        running = 0
        for slot in sorted(by_slot):
            task = by_slot[slot]
            mapped = self.slots.setdefault(slot, len(self.slots) + 1)
            state = task["Status"]["State"]
            if not _terminal(task["DesiredState"]) and state == "running":
                running += 1
            if replicas <= MAX_BARS and mapped <= replicas:
                err = task["Status"].get("Err", "")
                self.line(f"{mapped}/{replicas}", _trunc_error(err) if err else state)
        self.overall(running, replicas, rollback)
        return running == replicas

    def _global(self, tasks: list[dict], active_nodes: set[str], rollback: bool) -> bool:
        by_node: dict[str, dict] = {}
        for t in tasks:
            node = t.get("NodeID", "")
            if node not in active_nodes or _terminal(t.get("DesiredState", "")):
                continue
            by_node[node] = t
        running = sum(1 for t in by_node.values() if t.get("Status", {}).get("State") == "running")
        if len(by_node) <= MAX_BARS:
            for node in sorted(by_node):
                task = by_node[node]
                err = task["Status"].get("Err", "")
                self.line(node[:12], _trunc_error(err) if err else task["Status"].get("State", ""))
        self.overall(running, len(by_node), rollback)
        return bool(by_node) and running == len(by_node)


def wait_converged(client, service_id: str, *, write: Callable[[str], None] = print,
                   clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None) -> int:
    """Follow `service_id` until it converges; 0, or raise the paused update as one line."""
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    progress = Progress(write)
    converged_at: float | None = None
    rollback = False
    message = None
    path = f"/services/{quote(service_id, safe='')}"
    try:
        while True:
            service = client.call("GET", path)
            monitor = ((service["Spec"].get("UpdateConfig") or {}).get("Monitor") or 5_000_000_000) / 1e9
            status = service.get("UpdateStatus") or {}
            state = status.get("State", "")
            if state == "updating":
                rollback = False
            elif state == "completed" and converged_at is None:
                return 0  # the update finished before it was followed (docker's rule)
            elif state == "paused":
                raise Conflict(f"service update paused: {status.get('Message', '')}")
            elif state == "rollback_started":
                if not rollback and status.get("Message"):
                    write(f"rollback: {status['Message']}")
                rollback = True
            elif state == "rollback_paused":
                raise Conflict(f"service rollback paused: {status.get('Message', '')}")
            elif state == "rollback_completed":
                if converged_at is None:
                    message = f"rollback: {status.get('Message', '')}"
                rollback = True
            if converged_at is not None and clock() - converged_at >= monitor:
                write(f"verify: Service {service_id} converged")
                if message:
                    write(message)
                return 0
            filters = quote(json.dumps({"service": [service["ID"]], "_up-to-date": ["true"]}), safe="")
            tasks = client.call("GET", f"/tasks?filters={filters}")
            active = {n["ID"] for n in client.call("GET", "/nodes") if n.get("Status", {}).get("State") != "down"}
            if progress.update(service, tasks, active, rollback):
                if converged_at is None:
                    converged_at = clock()
                wait = monitor - (clock() - converged_at)
                if wait >= 0:
                    progress.line("verify", f"Waiting {int(wait) + 1} seconds to verify that tasks are stable...")
            else:
                if converged_at is not None:
                    progress.line("verify", "Detected task failure")
                converged_at = None
            sleep(POLL)
    except KeyboardInterrupt:
        if converged_at is None:
            write("Operation continuing in background.")
            write(f"Use `orch service ps {service_id}` to check progress.")
        return 0
