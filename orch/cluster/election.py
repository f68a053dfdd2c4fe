"""Sessions (a lease kept alive) and leader election (a lease and a transaction on a leader
key), on any Store, so that EtcdStore and MemoryStore elect the same way.

The rules, in order of importance:
1. At most one leader at a time. Winning is a transaction that creates the leader key with
   the candidate's lease only if the key is absent; the key goes when the lease does.
2. A leader that loses its lease learns it before anyone else can win. The session keeps a
   deadline by its own clock: the time it *sent* its last successful keepalive plus the TTL
   etcd answered, less a safety margin. etcd counts the TTL from when it *received* that
   keepalive, later than we sent it, so the lease cannot expire (and the key cannot be won
   by another) before our deadline. The leader stops acting at the first of: the deadline
   passing (keepalives not answered: a partition, a dead etcd), a keepalive saying the lease
   is gone, the leader key deleted or taken over (seen by a watch). Stopping is a cancel
   scope around the leader's work, and `Term.lost` is set.
3. A stale leader's writes fail anyway: `Term.fence` is a compare on the leader key's create
   revision, which the leader adds to every plan it commits (etcd's election fencing token).

Keepalives go every TTL/3; a failed one is retried every `retry` seconds until the deadline.

A manager's session is *detached* (`open_session(..., detached=True)` on a store whose
`detached_keepalive` gives one: the etcd one): its keepalives go from a thread of their own, with their
own trio loop and etcd client, so a leader whose event loop is busy for seconds (a full pass
over 100,000 tasks, a thousand nodes reconnecting at once) keeps its lease, as etcd's Go
clients do with a goroutine. The thread renews only while the owning loop shows life: a loop
held over `max_stall` seconds (a bug) lets its lease go, as a dead process would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import pydantic
import trio

from orch.cluster import etcd
from orch.cluster.store import Fence, Kind, Store, StaleRecords
from orch.errors import OrchError, Unavailable

R = TypeVar("R", bound=pydantic.BaseModel)

SAFETY = 0.1  # the share of the TTL the session gives up, for clock rate differences and scheduling delays
RETRY = 0.5
MAX_STALL_TTLS = 3  # a detached session lets its lease go once its loop was held this many TTLs


@dataclass
class Session:
    """A lease kept alive. `lost` is set once the lease may have expired; it is never unset."""

    store: Store
    lease: int
    ttl: int
    deadline: float
    lost: trio.Event = field(default_factory=trio.Event)
    reason: str = ""
    keepalives: int = 0

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()

    async def _keep(self, retry: float) -> None:
        await self._renew(self.store.keepalive, retry, clock=trio.current_time, offset=0.0, lose=self._lose)

    async def _renew(self, keepalive, retry: float, *, clock, offset: float, lose, stalled=None) -> None:
        """The keepalive loop, on `clock` (the session's deadline is on clock() + offset, the
        owning loop's clock), reporting a loss through `lose`. `stalled(now)`: why to let the
        lease go anyway, or "". Only relative times reach trio: the loop this runs in may keep
        a clock of its own."""
        deadline = self.deadline - offset
        next_at = clock() + self.ttl / 3
        while True:
            await trio.sleep(max(0.0, min(next_at, deadline) - clock()))
            now = clock()
            if now >= deadline:
                lose(f"lease {self.lease:x} not renewed within its TTL ({self.ttl}s)")
                return
            why = stalled(now) if stalled is not None else ""
            if why:
                lose(why)
                return
            ttl = None
            with trio.move_on_after(deadline - now):
                try:
                    ttl = await keepalive(self.lease)
                except OrchError:
                    next_at = now + retry
                    continue
            if ttl is None:
                lose(f"lease {self.lease:x} not renewed within its TTL ({self.ttl}s)")
                return
            if ttl <= 0:
                lose(f"lease {self.lease:x} expired or was revoked")
                return
            self.keepalives += 1
            deadline = now + ttl * (1 - SAFETY)
            self.deadline = deadline + offset
            next_at = now + ttl / 3

    async def _keep_detached(self, retry: float, open_keepalive, max_stall: float, *,
                             task_status=trio.TASK_STATUS_IGNORED) -> None:
        """_keep's rules, kept by a thread of its own (see the module's doc); started once the
        thread has its client."""
        token = trio.lowlevel.current_trio_token()
        offset = trio.current_time() - time.perf_counter()  # this loop's clock, from perf_counter's
        alive = [time.perf_counter()]
        there = _Thread()
        ready = trio.Event()

        def lose(reason: str) -> None:
            try:
                token.run_sync_soon(self._lose, reason)
            except trio.RunFinishedError:
                pass

        def stalled(now: float) -> str:
            if now - alive[0] > max_stall:
                return f"lease {self.lease:x} let go: this manager's event loop was held over {max_stall:.0f} s"
            return ""

        async def keep() -> None:  # in the thread, on its own trio loop
            with trio.CancelScope() as scope:
                if there.started(trio.lowlevel.current_trio_token(), scope):
                    return
                async with open_keepalive() as keepalive:
                    token.run_sync_soon(ready.set)
                    await self._renew(keepalive, retry, clock=time.perf_counter, offset=offset, lose=lose,
                                      stalled=stalled)

        async def show_life() -> None:
            while True:
                alive[0] = time.perf_counter()
                await trio.sleep(min(1.0, self.ttl / 6))

        async def run_thread() -> None:
            try:
                await trio.to_thread.run_sync(trio.run, keep, abandon_on_cancel=True)
            finally:
                there.stop()
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(show_life)
            nursery.start_soon(run_thread)
            await ready.wait()
            task_status.started()


class _Thread:
    """The keeping thread's loop, as the owning loop sees it: stop it from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._stopped = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None

    def started(self, token, scope) -> bool:
        """The thread's loop runs; whether it was already told to stop."""
        with self._lock:
            self._token, self._scope = token, scope
            return self._stopped

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._token is not None:
                try:
                    self._token.run_sync_soon(self._scope.cancel)
                except trio.RunFinishedError:
                    pass


@asynccontextmanager
async def open_session(store: Store, ttl: int, *, retry: float = RETRY, detached: bool = False,
                       max_stall: float | None = None) -> AsyncIterator[Session]:
    """A lease kept alive while the block runs, revoked at the end (best effort: if etcd is
    unreachable the lease simply expires). `detached`: kept from a thread of its own when the
    store can (the module's doc)."""
    sent = trio.current_time()
    lease, granted = await store.grant(ttl)
    session = Session(store, lease, granted, sent + granted * (1 - SAFETY))
    open_keepalive = store.detached_keepalive() if detached else None
    try:
        async with trio.open_nursery() as nursery:
            if open_keepalive is not None:
                await nursery.start(partial(session._keep_detached, retry, open_keepalive,
                                            max_stall if max_stall is not None else granted * MAX_STALL_TTLS))
            else:
                nursery.start_soon(session._keep, retry)
            try:
                yield session
            finally:
                nursery.cancel_scope.cancel()
    finally:
        session._lose("session closed")
        with trio.move_on_after(2) as scope:
            scope.shield = True
            try:
                await store.revoke(lease)
            except OrchError:
                pass


@dataclass
class Term:
    """One leader's term: `create_revision` of its leader key identifies it."""

    session: Session
    key: bytes
    create_revision: int
    lost: trio.Event = field(default_factory=trio.Event)
    reason: str = ""

    @property
    def fence(self) -> Fence:
        """A compare to put in every transaction this leader commits."""
        return Fence(self.key, self.create_revision)


async def campaign(store: Store, session: Session, kind: Kind[R], record: R) -> Term:
    """Wait until this session holds the leader key (`kind` is a singleton) with `record` as
    its value; returns the term. Raises Unavailable if the session is lost first."""
    key = store.key(kind)
    with trio.CancelScope() as scope:
        async def watch_session() -> None:
            await session.lost.wait()
            scope.cancel()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_session)
            term = await _campaign(store, session, kind, record, key)
            nursery.cancel_scope.cancel()
            return term
    raise Unavailable(f"lost the session while campaigning for {kind.name}: {session.reason}")


async def _campaign(store: Store, session: Session, kind: Kind[R], record: R, key: bytes) -> Term:
    while True:
        try:
            revision = await store.create(kind, record, lease=session.lease)
            return Term(session, key, revision)
        except OrchError as err:
            if not isinstance(err, (StaleRecords,)) and err.kind != "already-exists":
                raise
        holder = await store.get(kind)
        if holder is None:
            continue
        if holder.lease == session.lease:  # ours already (a create whose answer was lost)
            return Term(session, key, holder.create_revision)
        # Wait for the holder's key to go (its lease expired, or it resigned).
        async with store.open_watch(kind, start_revision=holder.mod_revision + 1) as changes:
            async for batch in changes:
                if any(c.deleted for c in batch.changes):
                    break


async def _guard(store: Store, kind: Kind, term: Term, scope: trio.CancelScope) -> None:
    """Cancel the leader's work when its session is lost or its key is gone or replaced."""
    async def session_lost() -> None:
        await term.session.lost.wait()
        term.reason = term.session.reason

    async def key_lost() -> None:
        while True:
            try:
                async with store.open_watch(kind, start_revision=term.create_revision + 1) as changes:
                    async for batch in changes:
                        for c in batch.changes:
                            if c.deleted:
                                term.reason = "leader key deleted"
                                return
                            if not await _still_ours(store, kind, term):
                                term.reason = "leader key taken over"
                                return
            except etcd.Compacted:
                if not await _still_ours(store, kind, term):
                    term.reason = "leader key gone"
                    return
            except OrchError:
                await trio.sleep(RETRY)  # etcd unreachable: the session's deadline decides

    async with trio.open_nursery() as nursery:
        async def first(fn) -> None:
            await fn()
            nursery.cancel_scope.cancel()
        nursery.start_soon(first, session_lost)
        nursery.start_soon(first, key_lost)
    term.lost.set()
    scope.cancel()


async def _still_ours(store: Store, kind: Kind, term: Term) -> bool:
    holder = await store.get(kind)
    return holder is not None and holder.create_revision == term.create_revision


@asynccontextmanager
async def open_leadership(store: Store, session: Session, kind: Kind[R], record: R) -> AsyncIterator[Term]:
    """Campaign, then run the block as the leader. The block is cancelled when leadership is
    lost (the `async with` then ends normally and `term.lost` is set); leaving the block
    resigns (deletes the leader key if it is still this term's)."""
    term = await campaign(store, session, kind, record)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_guard, store, kind, term, nursery.cancel_scope)
            yield term
            nursery.cancel_scope.cancel()
    finally:
        if not term.lost.is_set():
            term.lost.set()
            term.reason = term.reason or "resigned"
        with trio.move_on_after(2) as scope:
            scope.shield = True
            await _resign(store, term)


async def _resign(store: Store, term: Term) -> None:
    try:
        await store._txn([etcd.Compare(term.key, "CREATE", term.create_revision)], [etcd.Delete(term.key)], [])
    except OrchError:
        pass  # unreachable: the lease expires and takes the key


def seconds_left(session: Session) -> float:
    return max(session.deadline - trio.current_time(), 0.0) if not session.lost.is_set() else 0.0

