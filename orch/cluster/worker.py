"""The worker side of the cluster: one session with the leading manager, and one controller
per assigned task that brings the node's containers to what the assignments say.

The session (`Worker.run`) connects to a manager it knows, follows a redirect to the leader,
says hello with the tasks the node runs now, then, side by side: applies assignments as
they come, sends a heartbeat every period, and sends task status changes in batches. When
the session breaks (a manager died, the underlay is cut) it reconnects with back-off; the
containers keep running meanwhile, as swarm's do, and the next hello tells the manager
what runs so it can decide.

A task controller (`TaskController`) drives one task through docker's task states with the
node's runtime: accepted -> preparing (the image) -> starting (create, start) -> running ->
complete | failed; a desired state of shutdown stops it; a task that leaves the assignments
has its container removed. The runtime is an interface (`Runtime`), so the same session and
controllers run over the real node agent (runtime_agent.py) or over a hollow runtime that
creates nothing (hollow.py, for scale tests), many nodes to a process.
"""

from __future__ import annotations

import itertools
import random
import sys
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

import trio

from orch.cluster import protocol as p
from orch.cluster.wire import Framed, FrameError
from orch.errors import OrchError

# docker's task states, in order; a task never goes back (swarmkit api/types.proto).
STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running",
          "complete", "shutdown", "failed", "rejected", "remove", "orphaned")
ORDER = {s: i for i, s in enumerate(STATES)}
TERMINAL = {"complete", "shutdown", "failed", "rejected", "orphaned", "remove"}
STATUS_BATCH = 256
LOG_BATCH = 256
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0
# What ends a session without ending the worker: the peer, the network, the framing.
SESSION_ERRORS = (OSError, OrchError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)


def first_leaf(err: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups: the one line to log."""
    while isinstance(err, BaseExceptionGroup):
        err = err.exceptions[0]
    return err


def describe_error(err: BaseException) -> str:
    """One line for a log: the message, or the error's name when it has none (TooSlowError)."""
    leaf = first_leaf(err)
    return str(leaf) or type(leaf).__name__


@dataclass
class Observed:
    """A task's container as the runtime sees it."""

    task_id: str
    container_id: str
    running: bool
    exit_code: int | None = None
    healthy: bool | None = None


class Runtime(Protocol):
    async def observe(self) -> list[Observed]:
        """Containers of cluster tasks on this node (by their task id label)."""
        ...

    async def prepare(self, task: dict, secrets: dict[str, dict], configs: dict[str, dict]) -> None:
        """Make the task's image (and secrets, configs) present; raise OrchError if it cannot."""
        ...

    async def create(self, task: dict) -> str: ...

    async def start(self, container_id: str) -> None: ...

    async def wait(self, container_id: str, on_health: Callable[[bool], None]) -> int:
        """Until the container exits: its exit code. Calls on_health(healthy) as health changes."""
        ...

    async def stop(self, container_id: str, timeout: float | None) -> None: ...

    async def remove(self, container_id: str) -> None: ...

    def logs(self, container_id: str, *, follow: bool, tail: int | None, since: float | None):
        """The container's log entries as JSON lines, an async iterator (ends at the end, or,
        with `follow`, when the container has stopped and its log is drained)."""
        ...

    # Optional (a runtime without them has no overlay networks: hollow and fake runtimes):
    # async def sync_networks(self, entries: list[dict]) -> None: the overlay entries the node
    #     needs now (orch.cluster.netview), applied before the tasks of the same assignment;
    # async def drain(self, container_id: str, grace: float | None) -> None: until the task's
    #     clients are gone (it has already left every balancer and DNS), at most `grace`.


# Takes a task status update in its wire form (protocol.status_update).
Report = Callable[[dict[str, Any]], None]


class TaskController:
    """Brings one task to its desired state and reports every state it passes.

    A node runs a controller per task, so what each costs counts (a hollow fleet runs 100,000):
    one trio task and one cancel scope each. A stop is a task of its own, started only when the
    desired state asks for it (`update`), not a second task per controller waiting for that."""

    def __init__(self, task: dict, runtime: Runtime, report: Report, assets: "Assets",
                 nursery: trio.Nursery, observed: Observed | None = None):
        self.task = task
        self.runtime = runtime
        self._report = report
        self.assets = assets
        self.nursery = nursery  # where a stop runs
        self.container_id = observed.container_id if observed else ""
        self.state = "running" if observed and observed.running else "assigned"
        if observed and not observed.running:
            self.state = "complete" if observed.exit_code == 0 else "failed"
        self.exit_code = observed.exit_code if observed else None
        self.healthy = observed.healthy if observed else None
        # Made here, not when its trio task starts, so that a removal that comes first cancels it.
        self.scope = trio.CancelScope()
        self._waiting = False  # the container runs and run() waits for it to exit
        self._stopping: trio.CancelScope | None = None

    @property
    def task_id(self) -> str:
        return self.task["id"]

    @property
    def wants_shutdown(self) -> bool:
        return ORDER.get(self.task.get("desired_state", "running"), 0) > ORDER["running"]

    def update(self, task: dict) -> None:
        """The task as the assignments say now. The same task again (a full assignment after a
        reconnect repeats every task) changes nothing."""
        if task == self.task:
            return
        self.task = task
        if self._waiting and self.wants_shutdown:
            self._begin_stop()

    def cancel(self) -> None:
        """The task left the assignments: whatever its controller does ends."""
        self.scope.cancel()
        if self._stopping is not None:
            self._stopping.cancel()

    def report(self, state: str, message: str = "", err: str = "") -> None:
        if state != self.state or state == "running":
            self.state = state
        self._report(p.status_update(self.task["id"], state, message=message, err=err, exit_code=self.exit_code,
                                     container_id=self.container_id, healthy=self.healthy,
                                     timestamp=trio.current_time()))

    async def run(self) -> None:
        with self.scope:
            # Removed before its trio task began (two frames read at once): not one step. The
            # runtime's first await may not be a checkpoint, so the cancel would come too late.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                if self.state in TERMINAL:
                    self.report(self.state, "finished while no manager watched")
                    return
                if self.state != "running":
                    if self.wants_shutdown:
                        self.report("shutdown", "shut down before it started")
                        return
                    self.report("accepted")
                    self.report("preparing")
                    await self.runtime.prepare(self.task, self.assets.secrets, self.assets.configs)
                    self.report("starting")
                    self.container_id = await self.runtime.create(self.task)
                    await self.runtime.start(self.container_id)
                self.report("running", "started")
                self._waiting = True
                try:
                    if self.wants_shutdown:  # asked while it was starting
                        self._begin_stop()
                    code = await self.runtime.wait(self.container_id, self._on_health)
                finally:
                    self._waiting = False
                    if self._stopping is not None:
                        self._stopping.cancel()  # the container is gone: nothing left to stop
                self.exit_code = code
                if self.wants_shutdown:
                    self.report("shutdown", "shut down")
                elif code == 0:
                    self.report("complete", "finished")
                else:
                    self.report("failed", "task: non-zero exit", err=f"task: non-zero exit ({code})")
            except OrchError as err:
                state = "rejected" if self.state in ("accepted", "preparing") else "failed"
                self.report(state, str(err), err=str(err))

    def _on_health(self, healthy: bool) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            self.report("running", "healthy" if healthy else "unhealthy")

    def _begin_stop(self) -> None:
        if self._stopping is None:
            self._stopping = trio.CancelScope()
            self.nursery.start_soon(self._stop, self._stopping)

    async def _stop(self, scope: trio.CancelScope) -> None:
        with scope:
            timeout = self.task.get("spec", {}).get("container_spec", {}).get("stop_grace_period")
            drain = getattr(self.runtime, "drain", None)
            if drain is not None and self.task.get("networks"):
                # The same assignment took the task out of every node's balancer and DNS; its
                # clients finish before it stops (orch.scheduler.drain's rule, at most its grace).
                await drain(self.container_id, timeout)
            await self.runtime.stop(self.container_id, timeout)
            # runtime.wait returns when the container is gone, and run() goes on from there


@dataclass
class Assets:
    secrets: dict[str, dict]
    configs: dict[str, dict]


class TaskSet:
    """The node's assigned tasks and their controllers."""

    def __init__(self, runtime: Runtime, report: Report):
        self.runtime = runtime
        self.report = report
        self.controllers: dict[str, TaskController] = {}
        self.assets = Assets({}, {})
        self.observed: dict[str, Observed] = {}
        self.nursery: trio.Nursery | None = None
        self.net: dict[str, dict] = {}  # the overlay entries the node was told of, by id

    async def apply_net(self, msg: p.Assign) -> None:
        """The overlay entries of an assignment, handed to the runtime as a whole."""
        sync = getattr(self.runtime, "sync_networks", None)
        if not (msg.full or msg.net or msg.net_removed):
            return
        if msg.full:
            self.net = {}
        for eid in msg.net_removed:
            self.net.pop(eid, None)
        for entry in msg.net:
            self.net[entry["id"]] = entry
        if sync is not None:
            try:
                await sync(list(self.net.values()))
            except OrchError as err:
                print(f"worker: programming the overlay networks: {err}", file=sys.stderr, flush=True)

    async def observe(self) -> list[p.TaskStatusUpdate]:
        self.observed = {o.task_id: o for o in await self.runtime.observe()}
        running = []
        for tid, c in self.controllers.items():
            running.append(p.TaskStatusUpdate(task_id=tid, state=c.state, container_id=c.container_id,
                                              exit_code=c.exit_code, healthy=c.healthy))
        for tid, o in self.observed.items():
            if tid not in self.controllers:
                running.append(p.TaskStatusUpdate(task_id=tid, state="running" if o.running else "complete",
                                                  container_id=o.container_id, exit_code=o.exit_code, healthy=o.healthy))
        return running

    def apply(self, msg: p.Assign) -> None:
        assert self.nursery is not None
        for s in msg.secrets:
            self.assets.secrets[s["id"]] = s
        for c in msg.configs:
            self.assets.configs[c["id"]] = c
        wanted = {t["id"]: t for t in msg.tasks}
        gone = list(msg.removed)
        if msg.full:
            gone += [tid for tid in list(self.controllers) if tid not in wanted]
            gone += [tid for tid in self.observed if tid not in wanted and tid not in self.controllers]
        for tid in gone:
            self._remove(tid)
        for tid, task in wanted.items():
            controller = self.controllers.get(tid)
            if controller is not None:
                controller.update(task)
                continue
            controller = TaskController(task, self.runtime, self.report, self.assets, self.nursery,
                                        self.observed.pop(tid, None))
            self.controllers[tid] = controller
            self.nursery.start_soon(controller.run)

    def container_of(self, task_id: str) -> str:
        controller = self.controllers.get(task_id)
        if controller is not None and controller.container_id:
            return controller.container_id
        observed = self.observed.get(task_id)
        return observed.container_id if observed else ""

    def _remove(self, tid: str) -> None:
        controller = self.controllers.pop(tid, None)
        observed = self.observed.pop(tid, None)
        cid = controller.container_id if controller else observed.container_id if observed else ""
        if controller is not None:
            controller.cancel()
        if cid and self.nursery is not None:
            self.nursery.start_soon(self._remove_container, tid, cid)

    async def _remove_container(self, tid: str, cid: str) -> None:
        try:
            await self.runtime.remove(cid)
        except OrchError as err:
            print(f"worker: removing the container of task {tid}: {err}", file=sys.stderr, flush=True)


Connect = Callable[[str], Awaitable[trio.abc.Stream]]


class Worker:
    """A node's session with the cluster. `connect(addr)` returns a stream with TLS done."""

    def __init__(self, managers: list[str], connect: Connect, runtime: Runtime,
                 describe: Callable[[], p.NodeDescription], *, rng: random.Random | None = None):
        self.managers = list(managers)
        self.connect = connect
        self.describe = describe
        self.period = 5.0
        self.connected = trio.Event()  # set while a session is up (tests and `swarm join` wait on it)
        self.session_id = ""
        # Each task's latest status update (its wire form) not sent yet, kept across sessions,
        # in the order the tasks first reported; one event for the sender, not a channel
        # operation per update. A task passes four states or more in a moment, and the manager
        # keeps only the latest of those it reads together anyway (swarmkit's reporter sends
        # the latest likewise): the leader read four times the updates in a deploy.
        self._outbox: dict[str, dict[str, Any]] = {}
        self._outbox_ready = trio.Event()
        self.tasks = TaskSet(runtime, self._queue_status)
        self._rng = rng or random.Random()
        self.last_error = ""
        self._welcomed = False  # the last session got as far as a welcome
        self._lost = ""  # the manager the last session was with, or the last that could not be reached (Hello.lost)
        # Called with the managers' addresses when a welcome changes them (the node keeps them,
        # so that after a restart it reaches a manager even if the one it joined is gone).
        self.on_managers: Callable[[list[str]], Awaitable[None]] | None = None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.tasks.nursery = nursery
            task_status.started()
            delay = BACKOFF_MIN
            i = 0
            target = ""
            while True:
                addr = target or self.managers[i % len(self.managers)]
                self._welcomed = False
                target = await self._attempt(addr)
                if target:
                    continue  # redirected to the leader: go at once
                self._lost = addr
                if self._welcomed:
                    delay = BACKOFF_MIN  # a session that was up: back off from the start again
                i += 1
                # Jitter, so that a thousand workers of a dead leader do not all come back at once.
                await trio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, BACKOFF_MAX)

    async def _attempt(self, addr: str) -> str:
        """One session, its errors logged: the leader's address if redirected, else ""."""
        target = ""
        try:
            target = await self._session(addr)
        except* SESSION_ERRORS as group:
            err = describe_error(group)
            self.last_error = f"{addr}: {err}"
            print(f"worker: session with {addr}: {err}", file=sys.stderr, flush=True)
        finally:
            if self.connected.is_set():
                self.connected = trio.Event()
        return target

    async def _session(self, addr: str) -> str:
        """One session; returns the leader's address if redirected, "" when it ended."""
        stream = await self.connect(addr)
        framed = Framed(stream)
        try:
            running = await self.tasks.observe()
            await framed.send(p.Hello(description=self.describe(), tasks=running, lost=self._lost).model_dump())
            with trio.fail_after(10):
                first = await framed.receive()
            if first is None:
                raise FrameError(f"manager {addr} closed the session before welcoming")
            reply = p.parse(first, {"welcome": p.Welcome, "redirect": p.Redirect, "refused": p.Refused})
            if isinstance(reply, p.Redirect):
                return reply.leader
            if isinstance(reply, p.Refused):
                raise OrchError(f"manager {addr} refused the session: {reply.message}")
            self.session_id = reply.session
            self._welcomed = True
            self._lost = ""
            self.period = reply.heartbeat_period
            if reply.managers and reply.managers != self.managers:
                self.managers = reply.managers
                if self.on_managers is not None:
                    await self.on_managers(list(reply.managers))
            self.connected.set()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._beat, framed)
                nursery.start_soon(self._send_status, framed)
                await self._receive(framed, nursery)
                nursery.cancel_scope.cancel()
            return ""
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                try:
                    await framed.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    async def _receive(self, framed: Framed, nursery: trio.Nursery) -> None:
        logs: dict[str, trio.CancelScope] = {}
        while True:
            # A manager that says nothing for three periods is gone (we beat every period,
            # and it answers every beat).
            with trio.move_on_after(self.period * 3) as timer:
                msg = await framed.receive()
            if timer.cancelled_caught:
                raise trio.TooSlowError(f"no word from the manager for {self.period * 3:.0f} s")
            if msg is None:
                return
            parsed = p.parse(msg, p.TO_WORKER)
            if isinstance(parsed, p.Assign):
                await self.tasks.apply_net(parsed)
                self.tasks.apply(parsed)
            elif isinstance(parsed, p.Heartbeat) and parsed.period:
                self.period = parsed.period
            elif isinstance(parsed, p.LogsRequest):
                scope = logs[parsed.request] = trio.CancelScope()
                nursery.start_soon(self._send_logs, framed, parsed, scope, logs)
            elif isinstance(parsed, p.LogsCancel) and parsed.request in logs:
                logs.pop(parsed.request).cancel()

    async def _send_logs(self, framed: Framed, req: p.LogsRequest, scope: trio.CancelScope,
                         logs: dict[str, trio.CancelScope]) -> None:
        """A task's log to the manager in batches: each batch is what the log had ready, at most
        LOG_BATCH lines, so a follow sends lines as they come and a dump goes in few frames."""
        error = ""
        with scope:
            try:
                cid = self.tasks.container_of(req.task_id)
                if not cid:
                    raise OrchError(f"task {req.task_id} has no container on this node (it never started here, "
                                    f"or it was removed)")
                lines = self.tasks.runtime.logs(cid, follow=req.follow, tail=req.tail, since=req.since)
                send_lines, ready = trio.open_memory_channel[str](LOG_BATCH)

                async def read() -> None:
                    async with send_lines:
                        async for line in lines:
                            await send_lines.send(line)

                async with trio.open_nursery() as reading:
                    reading.start_soon(read)
                    async for first in ready:
                        batch = [first]
                        while len(batch) < LOG_BATCH:
                            try:
                                batch.append(ready.receive_nowait())
                            except (trio.WouldBlock, trio.EndOfChannel):
                                break
                        await framed.send(p.LogLines(request=req.request, lines=batch).model_dump())
            except* OrchError as group:
                error = describe_error(group)
        logs.pop(req.request, None)
        if not scope.cancelled_caught:
            await framed.send(p.LogLines(request=req.request, end=True, error=error).model_dump())

    async def _beat(self, framed: Framed) -> None:
        while True:
            await framed.send(p.Heartbeat().model_dump())
            await trio.sleep(self.period)

    def _queue_status(self, update: dict[str, Any]) -> None:
        self._outbox[update["task_id"]] = update
        self._outbox_ready.set()

    async def _send_status(self, framed: Framed) -> None:
        """What the tasks report, in frames of up to STATUS_BATCH updates: each frame takes what
        is waiting when the last one has gone."""
        while True:
            await self._outbox_ready.wait()
            batch = [self._outbox.pop(tid) for tid in list(itertools.islice(self._outbox, STATUS_BATCH))]
            if not self._outbox:
                self._outbox_ready = trio.Event()
            # A Status message, its updates already in their wire form.
            await framed.send({"op": "status", "updates": batch})


def task_summary(task: dict[str, Any]) -> str:
    return f"{task.get('id', '?')[:12]} ({task.get('desired_state', 'running')})"
