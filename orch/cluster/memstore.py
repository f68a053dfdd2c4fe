"""MemoryStore: the store in one process, with etcd's semantics, for fast tests and hollow
clusters. It passes the same conformance suite as EtcdStore.

What it keeps of etcd's model (etcd's mvcc package):
- One revision counter for the whole store, starting at 1. A transaction that writes
  anything takes the next revision for all its writes; a read-only one or a delete of
  nothing does not move it. Each key has create, mod revision and a version (writes since
  it was created; a delete resets it).
- Ranges at a past revision (what `Store.list` pages at) and watches from a past revision
  are served from a history of events, until `compact(revision)` drops older history; then
  both raise Compacted, as etcd does.
- Transactions check etcd's limits (--max-txn-ops, --max-request-bytes) and refuse two
  writes to one key, so code that passes here is not refused by etcd.
- Leases expire on the trio clock (so a MockClock drives them): a background task started by
  `open_memory_store` revokes an expired lease and deletes its keys in one revision, and
  watchers see the deletes.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from orch.cluster import etcd
from orch.cluster.etcd import Compacted, Compare, Event, KeyValue, RangeResult, WatchResponse
from orch.cluster.store import DEFAULT_ROOT, Limits, Store, TxnOutcome, compare_holds
from orch.errors import InvalidArgument, NotFound


@dataclass
class _Lease:
    ttl: int
    deadline: float
    keys: set[bytes] = field(default_factory=set)


def _in(key: bytes, start: bytes, end: bytes | None) -> bool:
    if end is None:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


class MemoryStore(Store):
    def __init__(self, *, root: str = DEFAULT_ROOT, limits: Limits = Limits(), clock: Callable[[], float] = trio.current_time):
        super().__init__(root=root, limits=limits)
        self.clock = clock
        self.revision = 1
        self.compacted = 0
        self._kvs: dict[bytes, KeyValue] = {}
        self._keys: list[bytes] = []  # sorted
        self._history: list[Event] = []  # every event since `compacted`, prev kvs included
        self._watchers: set[tuple[bytes, bytes | None, trio.MemorySendChannel[WatchResponse | Exception]]] = set()
        self._leases: dict[int, _Lease] = {}
        self._lease_changed = trio.Event()
        self._rng = random.Random()

    # -- maintenance ----------------------------------------------------------------------

    async def _compact(self, revision: int) -> None:
        """Forget history before `revision` (etcd's compaction): older ranges and watches fail."""
        await trio.lowlevel.checkpoint()
        if revision > self.revision:
            raise InvalidArgument(f"cannot compact at {revision}: the store is at revision {self.revision}")
        self.compacted = max(self.compacted, revision)
        self._history = [e for e in self._history if e.kv.mod_revision >= self.compacted]

    async def run_lease_expiry(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Revoke leases when their TTL runs out, until cancelled."""
        task_status.started()
        while True:
            self._lease_changed = trio.Event()
            deadline = min((lease.deadline for lease in self._leases.values()), default=math.inf)
            with trio.move_on_at(deadline):
                await self._lease_changed.wait()
            now = self.clock()
            for lease_id in [i for i, lease in self._leases.items() if lease.deadline <= now]:
                self._revoke_now(lease_id)

    # -- writes, in one place -------------------------------------------------------------

    def _apply(self, writes: Sequence[etcd.Put | etcd.Delete]) -> tuple[int, list[int | None]]:
        events: list[Event] = []
        results: list[int | None] = []
        revision = self.revision + 1
        for w in writes:
            if isinstance(w, etcd.Put):
                prev = self._kvs.get(w.key)
                if prev is not None and prev.lease and prev.lease != w.lease and prev.lease in self._leases:
                    self._leases[prev.lease].keys.discard(w.key)
                kv = KeyValue(w.key, w.value, prev.create_revision if prev else revision, revision,
                              (prev.version if prev else 0) + 1, w.lease)
                if prev is None:
                    bisect.insort(self._keys, w.key)
                self._kvs[w.key] = kv
                if w.lease:
                    self._leases[w.lease].keys.add(w.key)
                events.append(Event("put", kv, prev))
                results.append(None)
            else:
                keys = self._keys_in(w.key, w.range_end)
                for key in keys:
                    prev = self._kvs.pop(key)
                    del self._keys[bisect.bisect_left(self._keys, key)]
                    if prev.lease in self._leases:
                        self._leases[prev.lease].keys.discard(key)
                    events.append(Event("delete", KeyValue(key, b"", 0, revision, 0, 0), prev))
                results.append(len(keys))
        if events:
            self.revision = revision
            self._history.extend(events)
            self._notify(events)
        return self.revision, results

    def _notify(self, events: list[Event]) -> None:
        for start, end, send in list(self._watchers):
            mine = [e for e in events if _in(e.kv.key, start, end)]
            if mine:
                try:
                    send.send_nowait(WatchResponse(self.revision, mine))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._watchers.discard((start, end, send))

    def _keys_in(self, start: bytes, end: bytes | None) -> list[bytes]:
        if end is None:
            return [start] if start in self._kvs else []
        lo = bisect.bisect_left(self._keys, start)
        hi = len(self._keys) if end == b"\0" else bisect.bisect_left(self._keys, end)
        return self._keys[lo:hi]

    def _revoke_now(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is not None and lease.keys:
            self._apply([etcd.Delete(k) for k in sorted(lease.keys)])

    # -- primitives -----------------------------------------------------------------------

    def _state_at(self, revision: int, start: bytes, end: bytes | None) -> list[KeyValue]:
        if revision and revision < self.compacted:
            raise Compacted(f"memory store has compacted revision {revision} (compacted up to {self.compacted})",
                            self.compacted)
        if revision > self.revision:
            raise InvalidArgument(f"revision {revision} is in the future (the store is at {self.revision})")
        if not revision or revision == self.revision:
            return [self._kvs[k] for k in self._keys_in(start, end)]
        # Undo, newest first, every event after `revision` on keys in range.
        state = {k: self._kvs[k] for k in self._keys_in(start, end)}
        for ev in reversed(self._history):
            if ev.kv.mod_revision <= revision:
                break
            if not _in(ev.kv.key, start, end):
                continue
            if ev.prev is None:
                state.pop(ev.kv.key, None)
            else:
                state[ev.kv.key] = ev.prev
        return [state[k] for k in sorted(state)]

    async def _range(self, key: bytes, end: bytes | None, *, revision: int, limit: int) -> RangeResult:
        await trio.lowlevel.checkpoint()
        kvs = self._state_at(revision, key, end)
        more = bool(limit) and len(kvs) > limit
        return RangeResult(kvs[:limit] if limit else kvs, self.revision, more, len(kvs))

    async def _txn(self, compares: Sequence[Compare], success: Sequence[etcd.Put | etcd.Delete],
                   failure: Sequence[etcd.Range]) -> TxnOutcome:
        await trio.lowlevel.checkpoint()
        limit = self.limits.max_txn_ops
        if len(compares) > limit or len(success) > limit or len(failure) > limit:
            raise InvalidArgument(f"memory store refused txn: too many operations in txn request (limit {limit})")
        size = sum(len(c.key) + 16 for c in compares) + sum(
            len(o.key) + (len(o.value) if isinstance(o, etcd.Put) else 0) + 16 for o in (*success, *failure))
        if size > self.limits.max_request_bytes:
            raise InvalidArgument(f"memory store refused txn: request is too large ({size} bytes)")
        put_keys = [o.key for o in success if isinstance(o, etcd.Put)]
        if len(set(put_keys)) != len(put_keys):
            raise InvalidArgument("memory store refused txn: duplicate key given in txn request")
        for o in success:
            if isinstance(o, etcd.Put) and o.lease and o.lease not in self._leases:
                raise NotFound(f"memory store refused put {o.key.decode(errors='replace')}: requested lease not found")
        if all(compare_holds(c, self._kvs.get(c.key)) for c in compares):
            revision, results = self._apply(success)
            return TxnOutcome(True, revision, list(results))
        reads: list[list[KeyValue] | int | None] = [[kv for kv in self._state_at(0, r.key, r.range_end)] for r in failure]
        return TxnOutcome(False, self.revision, reads)

    @asynccontextmanager
    async def _open_watch(self, key: bytes, end: bytes | None, start_revision: int) -> AsyncIterator[AsyncIterator[WatchResponse]]:
        if start_revision and start_revision < self.compacted:
            raise Compacted(f"memory store has compacted revision {start_revision} (compacted up to {self.compacted})",
                            self.compacted)
        send, receive = trio.open_memory_channel[WatchResponse | Exception](math.inf)
        backlog: dict[int, list[Event]] = {}
        for ev in self._history:
            if ev.kv.mod_revision >= start_revision and _in(ev.kv.key, key, end):
                backlog.setdefault(ev.kv.mod_revision, []).append(ev)
        for revision, events in backlog.items():
            send.send_nowait(WatchResponse(revision, events))
        entry = (key, end, send)
        self._watchers.add(entry)
        try:
            async with receive:
                yield _Responses(receive)
        finally:
            self._watchers.discard(entry)
            send.close()

    async def _grant(self, ttl: int) -> tuple[int, int]:
        await trio.lowlevel.checkpoint()
        if ttl <= 0:
            raise InvalidArgument(f"lease TTL must be positive, not {ttl}")
        lease_id = self._rng.getrandbits(62) + 1
        self._leases[lease_id] = _Lease(ttl, self.clock() + ttl)
        self._lease_changed.set()
        return lease_id, ttl

    async def _keepalive(self, lease: int) -> int:
        await trio.lowlevel.checkpoint()
        entry = self._leases.get(lease)
        if entry is None or entry.deadline <= self.clock():
            self._revoke_now(lease)  # expired, though the expiry task has not run yet
            return 0
        entry.deadline = self.clock() + entry.ttl
        self._lease_changed.set()
        return entry.ttl

    async def _revoke(self, lease: int) -> None:
        await trio.lowlevel.checkpoint()
        self._revoke_now(lease)
        self._lease_changed.set()

    def lease_ids(self) -> list[int]:
        return sorted(self._leases)


class _Responses:
    def __init__(self, receive: trio.MemoryReceiveChannel[WatchResponse | Exception]):
        self.receive = receive

    def __aiter__(self) -> _Responses:
        return self

    async def __anext__(self) -> WatchResponse:
        try:
            item = await self.receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        if isinstance(item, Exception):
            raise item
        return item


@asynccontextmanager
async def open_memory_store(*, root: str = DEFAULT_ROOT, limits: Limits = Limits(),
                            clock: Callable[[], float] = trio.current_time) -> AsyncIterator[MemoryStore]:
    """A MemoryStore whose leases expire while the block runs."""
    store = MemoryStore(root=root, limits=limits, clock=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run_lease_expiry)
        try:
            yield store
        finally:
            nursery.cancel_scope.cancel()
