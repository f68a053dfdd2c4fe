"""The leader's dispatcher: one session per worker, assignments out, task status and
heartbeats in.

Heartbeats are kept here, in memory, not in etcd: a beat proves a node is alive and nothing
more, and writing one per node every period would cost etcd a write per node per period for
nothing. A node whose beats stop for `period x misses` is reported Down once, to the backend
(which writes it); a dispatcher that just became leader gives every node a full grace period
from its own start, so a change of leader marks no healthy node Down.

Assignments are pushed as differences: the session remembers what it last sent the worker
and, when the backend says a node's tasks changed, sends what differs. A change that lands
while a push is under way is picked up by the next one, so bursts coalesce on their own.

The dispatcher decides nothing about tasks: the backend (the manager, over its watch-fed
cache and etcd) answers what a node should run and records what the node reports.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from orch.cluster import protocol as p
from orch.cluster.wire import Framed, FrameError
from orch.cluster.worker import SESSION_ERRORS, describe_error
from orch.errors import Unavailable

DEFAULT_PERIOD = 5.0
DEFAULT_MISSES = 3
HELLO_TIMEOUT = 10.0
MAX_TASKS_PER_ASSIGN = 500  # keeps one frame well under wire.MAX_FRAME
LOG_QUEUE = 64  # log batches a reader may fall behind before its request is ended
# A node's assignments are pushed this long after the first change of a batch, so that the
# changes that follow it (the other transactions of a plan, which its watch delivers one by
# one) go in the same push: swarmkit's dispatcher waits 100 ms too (batchingWaitTime). At
# 1,000 nodes and 100,000 tasks a push per transaction cost the leader a quarter of its time.
PUSH_BATCHING = 0.1
# Full assignments (a session's first push: every task of its node) made at once. A new
# leader's thousand sessions each turning a hundred tasks into JSON in the same turn of the
# event loop held it for seconds; a few at a time, the loop turns quickly and the lease's
# keepalives go out.
FULL_PUSHES = 8
TAKEOVER_GRACE = 2  # graces a node has to come back to a manager that just took over
SETTLE_QUIET = 1.0  # seconds without a new session after which a new leader's nodes are back
SETTLE_MAX = 5.0  # seconds a new leader waits for its nodes at most before it plans every service


class Backend(Protocol):
    """What the dispatcher needs from the manager."""

    def is_leader(self) -> bool: ...

    def leader_addr(self) -> str: ...

    def managers(self) -> list[str]: ...

    async def session_started(self, node_id: str, description: p.NodeDescription,
                              running: list[p.TaskStatusUpdate]) -> None: ...

    def assignments(self, node_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """The node's tasks (each with an "id"), and the secrets and configs they need."""
        ...

    def net_entries(self, node_id: str) -> list[dict[str, Any]]:
        """The overlay networks' entries the node needs (each with an "id"): orch.cluster.netview."""
        ...

    async def report(self, node_id: str, updates: list[p.TaskStatusUpdate]) -> None: ...

    async def node_down(self, node_id: str, why: str) -> None: ...


@dataclass
class _Session:
    node_id: str
    sid: str
    framed: Framed
    changed: trio.Event = field(default_factory=trio.Event)
    sent_tasks: dict[str, dict] = field(default_factory=dict)
    sent_secrets: set[str] = field(default_factory=set)
    sent_configs: set[str] = field(default_factory=set)
    sent_net: dict[str, dict] = field(default_factory=dict)
    logs: dict[str, trio.MemorySendChannel] = field(default_factory=dict)  # log requests in flight


class Dispatcher:
    def __init__(self, backend: Backend, *, period: float = DEFAULT_PERIOD, misses: int = DEFAULT_MISSES):
        self.backend = backend
        self.period = period
        self.misses = misses
        self.sessions: dict[str, _Session] = {}
        self.last_seen: dict[str, float] = {}
        self.down: set[str] = set()
        self._started_at = 0.0
        self.closed = False  # set when `run` ends (the term is over): no session is served after
        self._period_changed = trio.Event()
        self._full_pushes = trio.CapacityLimiter(FULL_PUSHES)
        self._session_added = trio.Event()

    @property
    def grace(self) -> float:
        return self.period * self.misses

    def set_period(self, period: float) -> None:
        """`swarm update --dispatcher-heartbeat`: sessions learn it with their next beat."""
        self.period = period
        self._period_changed.set()
        self._period_changed = trio.Event()

    def node_changed(self, node_id: str) -> None:
        """The manager's cache saw a task (or secret) of this node change."""
        session = self.sessions.get(node_id)
        if session is not None:
            session.changed.set()

    def all_changed(self) -> None:
        """Something every node may be told of changed (an overlay network's entries)."""
        for session in self.sessions.values():
            session.changed.set()

    def forget(self, node_id: str) -> None:
        """A node removed from the cluster: end its session, stop watching its heartbeats."""
        self.last_seen.pop(node_id, None)
        self.down.discard(node_id)
        session = self.sessions.pop(node_id, None)
        if session is not None:
            trio.lowlevel.spawn_system_task(_close_quietly, session.framed)
        self._period_changed.set()
        self._period_changed = trio.Event()

    def known_nodes(self, node_ids) -> None:
        """Nodes the cluster holds: each gets a grace period from now if it has none."""
        now = trio.current_time()
        for node_id in node_ids:
            self.last_seen.setdefault(node_id, now)

    async def settle(self, quiet: float = SETTLE_QUIET, longest: float = SETTLE_MAX) -> None:
        """Until the nodes have come back after this dispatcher started: every node it knows
        has a session (or is Down), or none came for `quiet` seconds, or `longest` seconds
        passed. A new leader plans every service only then (it plans what changes meanwhile):
        when the old one dies its thousand nodes all come back at once, and planning 100,000
        tasks took half of the new leader's time while they did. Not longer: the nodes have
        two graces to come back (TAKEOVER_GRACE), and work the old leader left undone should
        not wait for the last of them."""
        deadline = self._started_at + longest
        while not all(n in self.sessions or n in self.down for n in self.last_seen):
            with trio.move_on_at(min(deadline, trio.current_time() + quiet)):
                await self._session_added.wait()
            if not self._session_added.is_set():
                return
            self._session_added = trio.Event()

    # -- the watchdog -----------------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Mark nodes Down whose beats stopped. Runs while this manager leads; its end ends
        every session."""
        self._started_at = trio.current_time()
        # A new leader's nodes all come back at once when the old one dies, through handshakes
        # queued behind each other: each node it knows gets TAKEOVER_GRACE graces from now
        # (swarmkit moves them to "unknown" for a while, likewise), not one. With one, 688 of
        # 1,000 healthy nodes were marked Down and their tasks started again elsewhere.
        for node_id in self.last_seen:
            self.last_seen[node_id] = self._started_at + self.grace * (TAKEOVER_GRACE - 1)
        task_status.started()
        try:
            await self._watch_beats()
        finally:
            # The term is over: every session ends, so that its worker goes to find the new
            # leader. Sessions run in the listener's tasks, not under this term's: a session
            # left open kept answering heartbeats for a manager that no longer led, and the new
            # leader, hearing nothing from those nodes, marked them all Down.
            self.closed = True
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as nursery:
                    for session in list(self.sessions.values()):
                        nursery.start_soon(_close_quietly, session.framed)

    async def _watch_beats(self) -> None:
        while True:
            now = trio.current_time()
            for node_id, seen in list(self.last_seen.items()):
                if node_id not in self.down and now - seen > self.grace:
                    self.down.add(node_id)
                    session = self.sessions.get(node_id)
                    if session is not None:
                        await _close_quietly(session.framed)
                    silent = now - min(seen, self._started_at)  # a takeover's grace counts from its start
                    await self.backend.node_down(node_id, f"heartbeat failure (none for {silent:.1f} s)")
            next_deadline = min((seen + self.grace for n, seen in self.last_seen.items() if n not in self.down),
                                default=now + self.grace)
            with trio.move_on_at(max(next_deadline, now) + 0.01):
                await self._period_changed.wait()

    # -- one session ---------------------------------------------------------------------------
    async def serve(self, stream: trio.abc.Stream | Framed, node_id: str, first: dict | None = None) -> None:
        """Serve a worker whose certificate names `node_id` until the session ends. `first`:
        its hello, when the listener already read it to route the connection."""
        framed = stream if isinstance(stream, Framed) else Framed(stream)
        try:
            if first is None:
                with trio.fail_after(HELLO_TIMEOUT):
                    first = await framed.receive()
            if first is None:
                return
            hello = p.parse(first, {"hello": p.Hello})
            if self.closed or not self.backend.is_leader():
                await framed.send(p.Redirect(leader=self.backend.leader_addr()).model_dump())
                return
            await self.backend.session_started(node_id, hello.description, hello.tasks)
            session = _Session(node_id, secrets.token_hex(8), framed)
            # The node reconnected: its old session is over. The new one is the node's before
            # the old one is closed (which waits): two sessions of one node that came at once
            # (a worker that gave up on a slow manager and tried again) then end with the
            # newest held and every other closed. The other order left a session that was
            # heartbeating but held by nobody, so nothing was ever pushed to its node again.
            previous = self.sessions.get(node_id)
            self.sessions[node_id] = session
            self._session_added.set()
            try:
                if previous is not None:
                    await _close_quietly(previous.framed)
                if self.closed:
                    return  # the term ended meanwhile (its sessions may have been closed before this one was held)
                self.last_seen[node_id] = trio.current_time()
                self.down.discard(node_id)
                await framed.send(p.Welcome(session=session.sid, heartbeat_period=self.period,
                                            managers=self.backend.managers()).model_dump())
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._push, session, nursery.cancel_scope)
                    await self._receive(session)
                    nursery.cancel_scope.cancel()
            finally:
                for channel in session.logs.values():
                    channel.close()
                session.logs.clear()
                if self.sessions.get(node_id) is session:
                    del self.sessions[node_id]
        except* SESSION_ERRORS as group:
            if not self.closed:  # else: closed with the term, as meant
                print(f"dispatcher: session of {node_id}: {describe_error(group)}", file=sys.stderr, flush=True)
        finally:
            await _close_quietly(framed)

    async def _receive(self, session: _Session) -> None:
        while True:
            with trio.move_on_after(self.grace) as timer:
                msg = await session.framed.receive()
            if timer.cancelled_caught or msg is None:
                return  # the watchdog marks it Down if it does not come back in time
            self.last_seen[session.node_id] = trio.current_time()
            parsed = p.parse(msg, p.TO_MANAGER)
            if isinstance(parsed, p.Heartbeat):
                await session.framed.send(p.Heartbeat(period=self.period).model_dump())
            elif isinstance(parsed, p.Status):
                await self.backend.report(session.node_id, parsed.updates)
            elif isinstance(parsed, p.LogLines):
                channel = session.logs.get(parsed.request)
                if channel is not None:
                    try:
                        channel.send_nowait(parsed)
                    except trio.WouldBlock:
                        # The reader is too slow: end its request, never the session (which
                        # carries the node's heartbeats).
                        session.logs.pop(parsed.request, None)
                        channel.close()
                        await session.framed.send(p.LogsCancel(request=parsed.request).model_dump())
                    except trio.BrokenResourceError:
                        session.logs.pop(parsed.request, None)
            else:
                raise FrameError("a second hello in one session")

    async def logs(self, node_id: str, task_id: str, *, follow: bool = False, tail: int | None = None,
                   since: float | None = None):
        """A task's log lines from the node that runs it (JSON lines of its json-file log), as an
        async iterator; leaving it early cancels the request on the node."""
        session = self.sessions.get(node_id)
        if session is None:
            raise Unavailable(f"node {node_id} is not connected; its tasks' logs are out of reach until it is back")
        rid = secrets.token_hex(8)
        send, receive = trio.open_memory_channel[p.LogLines](LOG_QUEUE)
        session.logs[rid] = send
        ended = False
        try:
            await session.framed.send(p.LogsRequest(request=rid, task_id=task_id, follow=follow, tail=tail,
                                                    since=since).model_dump())
            async for batch in receive:
                for line in batch.lines:
                    yield line
                if batch.end:
                    ended = True
                    if batch.error:
                        raise Unavailable(f"logs of task {task_id}: {batch.error}")
                    return
            raise Unavailable(f"logs of task {task_id}: the node's session ended, or this reader was too slow")
        finally:
            session.logs.pop(rid, None)
            if not ended and self.sessions.get(node_id) is session:
                with trio.move_on_after(1) as scope:
                    scope.shield = True
                    try:
                        await session.framed.send(p.LogsCancel(request=rid).model_dump())
                    except SESSION_ERRORS:
                        pass

    async def _push(self, session: _Session, scope: trio.CancelScope) -> None:
        async with self._full_pushes:
            session.changed = trio.Event()
            await self._push_once(session, full=True)
        while True:
            await session.changed.wait()
            await trio.sleep(PUSH_BATCHING)
            session.changed = trio.Event()
            await self._push_once(session, full=False)

    async def _push_once(self, session: _Session, *, full: bool) -> None:
        tasks, secrets_, configs = self.backend.assignments(session.node_id)
        net = self.backend.net_entries(session.node_id)
        for message in compute_assign(session, tasks, secrets_, configs, full=full, net=net):
            await session.framed.send(message.model_dump())


def compute_assign(session: _Session, tasks, secrets_, configs, *, full: bool, net=()) -> list[p.Assign]:
    """The messages that bring the worker from what it was sent to `tasks` (and the overlay
    entries `net`), in frames of at most MAX_TASKS_PER_ASSIGN tasks; the session's memory is
    updated as if they were sent. The entries all go in the first frame, which the worker
    applies before its tasks (an entry is ~200 bytes: 10,000 of them fit a frame twice)."""
    wanted = {t["id"]: t for t in tasks}
    net_wanted = {e["id"]: e for e in net}
    if full:
        changed = list(wanted.values())
        removed: list[str] = []
        new_secrets = list(secrets_)
        new_configs = list(configs)
        net_changed = list(net_wanted.values())
        net_removed: list[str] = []
    else:
        changed = [t for tid, t in wanted.items() if (sent := session.sent_tasks.get(tid)) is not t and sent != t]
        removed = [tid for tid in session.sent_tasks if tid not in wanted]
        new_secrets = [s for s in secrets_ if s["id"] not in session.sent_secrets]
        new_configs = [c for c in configs if c["id"] not in session.sent_configs]
        net_changed = [e for eid, e in net_wanted.items() if (sent := session.sent_net.get(eid)) is not e and sent != e]
        net_removed = [eid for eid in session.sent_net if eid not in net_wanted]
    session.sent_tasks = wanted
    session.sent_secrets = {s["id"] for s in secrets_}
    session.sent_configs = {c["id"] for c in configs}
    session.sent_net = net_wanted
    if not (full or changed or removed or new_secrets or new_configs or net_changed or net_removed):
        return []
    messages = []
    for start in range(0, max(len(changed), 1), MAX_TASKS_PER_ASSIGN):
        first = start == 0
        messages.append(p.Assign(full=full and first, tasks=changed[start:start + MAX_TASKS_PER_ASSIGN],
                                 removed=removed if first else [], secrets=new_secrets if first else [],
                                 configs=new_configs if first else [], net=net_changed if first else [],
                                 net_removed=net_removed if first else []))
    return messages


async def _close_quietly(framed: Framed) -> None:
    with trio.move_on_after(1) as scope:
        scope.shield = True
        try:
            await framed.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
