"""The cluster's typed store: pydantic records in etcd (EtcdStore) or in memory (MemoryStore,
memstore.py), behind one interface with one conformance suite (tests/integration/cluster/
test_store.py, containerd's snapshots testsuite is the model).

A `Kind` is a record type and a key scheme: `Kind("v1/tasks/", Task)` keeps a task under
`<root>v1/tasks/<id>`, where root is `/orch/` by default, so that a test or `swarm leave` can
remove exactly what orch wrote. A singleton (`Kind("v1/cluster", Cluster, singleton=True)`)
lives at `<root>v1/cluster`. Values are the records' JSON; a record's own `version` field and
its validators migrate older versions (records.py owns that).

Reads give `Stored` records with etcd's revisions; writes can compare a record's
`mod_revision` (the revision it was read at: a stale writer fails the compare), and 0 means
"absent" (create-if-absent). `txn` commits ops atomically in one etcd transaction; `commit`
packs many atomic groups into as few transactions as --max-txn-ops and --max-request-bytes
allow, and when a transaction's compares fail it finds the stale groups (the failure branch
reads every compared key back), drops them and commits the rest: nomad's plan_apply, where a
plan is partly applied and the scheduler recomputes the rest.

Backends implement six primitives on raw bytes (`_range`, `_txn`, `_open_watch`, `_grant`,
`_keepalive`, `_revoke`); everything typed is written once, here. Leases and leader election
on top of them are in election.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pydantic
import trio

from orch.cluster import etcd
from orch.cluster.etcd import Compacted, Compare, Event, KeyValue, WatchResponse, prefix_end
from orch.errors import AlreadyExists, Conflict, InvalidArgument, OrchError, SystemFailure

__all__ = ["Kind", "Stored", "Listing", "Change", "WatchBatch", "Put", "Delete", "Check", "Fence", "Op", "CommitResult", "Echo",
           "StaleRecords", "Compacted", "Store", "EtcdStore", "Limits"]

R = TypeVar("R", bound=pydantic.BaseModel)
DEFAULT_ROOT = "/orch/"
PAGE = 5000  # keys per range request when listing: bounds a response to a few MB


@dataclass(frozen=True)
class Kind(Generic[R]):
    """A record type and where its records live under the root."""

    path: str  # "v1/tasks/" for a collection, "v1/cluster" for a singleton
    model: type[R]
    id_field: str = "id"
    singleton: bool = False

    def __post_init__(self) -> None:
        if self.singleton == self.path.endswith("/"):
            raise InvalidArgument(f"kind {self.path!r}: a collection's path ends with '/', a singleton's does not")

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def id_of(self, record: R) -> str:
        return "" if self.singleton else str(getattr(record, self.id_field))

    def key(self, root: str, record_id: str) -> bytes:
        if self.singleton:
            return (root + self.path).encode()
        if not record_id or "/" in record_id:
            raise InvalidArgument(f"{self.name} id {record_id!r} is not valid: it must be non-empty and have no '/'")
        return (root + self.path + record_id).encode()

    def encode(self, record: R) -> bytes:
        return record.model_dump_json().encode()

    def decode(self, kv: KeyValue) -> R:
        try:
            return self.model.model_validate_json(kv.value)
        except pydantic.ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "value"
            raise SystemFailure(f"stored record {kv.key.decode(errors='replace')} (mod revision {kv.mod_revision}) "
                                f"is not a valid {self.model.__name__}: {where}: {first.get('msg')}") from None


@dataclass(frozen=True, slots=True)
class Stored(Generic[R]):
    id: str
    record: R
    mod_revision: int
    create_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Listing(Generic[R]):
    items: list[Stored[R]]
    revision: int  # the store's revision the listing is a snapshot of: watch from revision + 1


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    id: str
    record: Any  # the new record, None when deleted
    mod_revision: int

    @property
    def deleted(self) -> bool:
        return self.record is None


@dataclass(frozen=True, slots=True)
class WatchBatch:
    revision: int
    changes: list[Change]


# -- operations -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Put:
    """Write a record; with `expect`, only if its mod revision is that (0: only if absent)."""

    kind: Kind
    record: pydantic.BaseModel
    expect: int | None = None
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    kind: Kind
    id: str
    expect: int | None = None


@dataclass(frozen=True)
class Check:
    """Compare only: the record a plan was computed from is still at `mod_revision`."""

    kind: Kind
    id: str
    mod_revision: int


@dataclass(frozen=True)
class Fence:
    """Compare only: a key's create revision (a leader key: only this term's leader passes)."""

    key: bytes
    create_revision: int


Op = Put | Delete | Check | Fence


@dataclass(frozen=True)
class _Lowered:
    compares: list[Compare]
    requests: list[etcd.Put | etcd.Delete]
    write_keys: set[bytes]
    size: int
    records: list[tuple[bytes, bytes, Any]]  # (key, value, record) of each Put


COMMIT_WINDOW = 4  # transactions of one commit in flight at once (Store.commit)

# Per-op overheads in etcd's protobuf encoding, rounded up; the request budget below leaves room.
_OP_OVERHEAD = 32
_REQUEST_OVERHEAD = 4096


def _lower(root: str, ops: Iterable[Op]) -> _Lowered:
    compares: list[Compare] = []
    requests: list[etcd.Put | etcd.Delete] = []
    write_keys: set[bytes] = set()
    records: list[tuple[bytes, bytes, Any]] = []
    size = 0
    for op in ops:
        if isinstance(op, Put):
            key = op.kind.key(root, op.kind.id_of(op.record))
            value = op.kind.encode(op.record)
            requests.append(etcd.Put(key, value, op.lease))
            records.append((key, value, op.record))
            write_keys.add(key)
            size += len(key) + len(value) + _OP_OVERHEAD
            if op.expect is not None:
                compares.append(Compare(key, "MOD", op.expect))
                size += 2 * (len(key) + _OP_OVERHEAD)  # the compare and its failure-branch read
        elif isinstance(op, Delete):
            key = op.kind.key(root, op.id)
            requests.append(etcd.Delete(key))
            write_keys.add(key)
            size += len(key) + _OP_OVERHEAD
            if op.expect is not None:
                compares.append(Compare(key, "MOD", op.expect))
                size += 2 * (len(key) + _OP_OVERHEAD)
        elif isinstance(op, Check):
            key = op.kind.key(root, op.id)
            compares.append(Compare(key, "MOD", op.mod_revision))
            size += 2 * (len(key) + _OP_OVERHEAD)
        elif isinstance(op, Fence):
            compares.append(Compare(op.key, "CREATE", op.create_revision))
            size += 2 * (len(op.key) + _OP_OVERHEAD)
        else:
            raise InvalidArgument(f"not a store operation: {op!r}")
    return _Lowered(compares, requests, write_keys, size, records)


def compare_holds(c: Compare, kv: KeyValue | None) -> bool:
    """Whether etcd would find `c` true of `kv` (None: the key is absent, every number is 0)."""
    if c.target == "VALUE":
        have: int | bytes = kv.value if kv else b""
    else:
        have = {"MOD": kv.mod_revision, "CREATE": kv.create_revision, "VERSION": kv.version,
                "LEASE": kv.lease}[c.target] if kv else 0
    want = c.value
    return {"EQUAL": have == want, "NOT_EQUAL": have != want,
            "GREATER": have > want, "LESS": have < want}[c.result]  # type: ignore[operator]


class StaleRecords(Conflict):
    """A transaction's compares failed: `stale` names the keys (relative to the root) that
    changed since they were read."""

    def __init__(self, message: str, stale: list[str]):
        super().__init__(message)
        self.stale = stale


@dataclass(frozen=True)
class CommitResult:
    revision: int  # of the last transaction that applied (0 if none did)
    applied: list[int]  # indices of the groups committed
    rejected: dict[int, list[str]] = field(default_factory=dict)  # group index -> stale keys
    transactions: int = 0
    # The newest revision any of its transactions answered with: a rejected group's writer
    # waits for its cache to reach it (what the compare failed on is in by then).
    seen: int = 0


@dataclass
class _Tally:
    """A CommitResult as its transactions come back."""

    revision: int = 0
    applied: list[int] = field(default_factory=list)
    rejected: dict[int, list[str]] = field(default_factory=dict)
    transactions: int = 0
    seen: int = 0


@dataclass(frozen=True)
class Limits:
    """etcd's --max-txn-ops and --max-request-bytes as this client must respect them."""

    max_txn_ops: int = 128
    max_request_bytes: int = 1572864

    @property
    def budget(self) -> int:
        return self.max_request_bytes - _REQUEST_OVERHEAD


@dataclass(frozen=True, slots=True)
class TxnOutcome:
    """A backend's transaction result: per request, a Range's kvs, a Delete's count, or None."""

    succeeded: bool
    revision: int
    results: list[list[KeyValue] | int | None]


class Store:
    """The interface the manager uses. Subclasses implement the primitives at the bottom."""

    def __init__(self, *, root: str = DEFAULT_ROOT, limits: Limits = Limits()):
        if not root.startswith("/") or not root.endswith("/"):
            raise InvalidArgument(f"store root {root!r} must start and end with '/' (e.g. /orch/)")
        self.root = root
        self.limits = limits

    def key(self, kind: Kind, record_id: str = "") -> bytes:
        return kind.key(self.root, record_id)

    def _name(self, key: bytes) -> str:
        return key.decode(errors="replace").removeprefix(self.root)

    def _stored(self, kind: Kind[R], kv: KeyValue) -> Stored[R]:
        record_id = "" if kind.singleton else kv.key[len(self.root) + len(kind.path):].decode()
        return Stored(record_id, kind.decode(kv), kv.mod_revision, kv.create_revision, kv.version, kv.lease)

    # -- reads ----------------------------------------------------------------------------

    async def get(self, kind: Kind[R], record_id: str = "", *, revision: int = 0) -> Stored[R] | None:
        result = await self._range(self.key(kind, record_id), None, revision=revision, limit=0)
        return self._stored(kind, result.kvs[0]) if result.kvs else None

    async def list(self, kind: Kind[R], *, revision: int = 0, page: int = PAGE) -> Listing[R]:
        """Every record of `kind` at one revision (the current one by default), read in pages."""
        if kind.singleton:
            item = await self._range(self.key(kind), None, revision=revision, limit=0)
            # A response's header revision is the store's current one, not the one read at.
            return Listing([self._stored(kind, kv) for kv in item.kvs], revision or item.revision)
        start = (self.root + kind.path).encode()
        end = prefix_end(start)
        items: list[Stored[R]] = []
        while True:
            result = await self._range(start, end, revision=revision, limit=page)
            revision = revision or result.revision
            items.extend(self._stored(kind, kv) for kv in result.kvs)
            if not result.more or not result.kvs:
                return Listing(items, revision)
            start = result.kvs[-1].key + b"\0"

    # -- writes ---------------------------------------------------------------------------

    async def put(self, kind: Kind[R], record: R, *, expect: int | None = None, lease: int = 0) -> int:
        """Write `record`; the new revision. With `expect`, StaleRecords if it changed."""
        return await self.txn([Put(kind, record, expect, lease)])

    async def create(self, kind: Kind[R], record: R, *, lease: int = 0) -> int:
        """Write `record` only if absent; AlreadyExists otherwise."""
        try:
            return await self.txn([Put(kind, record, 0, lease)])
        except StaleRecords:
            raise AlreadyExists(f"{kind.name} {kind.id_of(record) or kind.path} already exists") from None

    async def delete(self, kind: Kind, record_id: str = "", *, expect: int | None = None) -> bool:
        """Delete a record; whether it existed. With `expect`, StaleRecords if it changed."""
        low = _lower(self.root, [Delete(kind, record_id, expect)])
        outcome = await self._commit_lowered(low, what=f"delete {kind.name} {record_id}")
        return bool(outcome.results[0])

    async def txn(self, ops: Sequence[Op]) -> int:
        """Apply `ops` atomically in one transaction; the revision. StaleRecords if a compare
        fails (nothing is applied); InvalidArgument if the ops exceed the limits."""
        low = _lower(self.root, ops)
        self._check_limits(low, f"{len(ops)} operations")
        outcome = await self._commit_lowered(low, what="txn")
        return outcome.revision

    def _check_limits(self, low: _Lowered, what: str) -> None:
        n = max(len(low.compares), len(low.requests))
        if n > self.limits.max_txn_ops:
            raise InvalidArgument(f"a transaction of {what} needs {n} etcd operations, more than --max-txn-ops "
                                  f"{self.limits.max_txn_ops}; use commit() to split it, or raise the limit")
        if low.size > self.limits.budget:
            raise InvalidArgument(f"a transaction of {what} is about {low.size} bytes, more than --max-request-bytes "
                                  f"{self.limits.max_request_bytes} allows; use commit() to split it, or raise the limit")

    async def _commit_lowered(self, low: _Lowered, *, what: str) -> TxnOutcome:
        failure = self._read_back(low.compares)
        outcome = await self._txn(low.compares, low.requests, failure)
        if not outcome.succeeded:
            stale = self._stale(low.compares, failure, outcome)
            raise StaleRecords(f"{what} conflicts: {self._describe(low.compares, failure, outcome, stale)}; "
                               f"read again and retry", stale)
        return outcome

    @staticmethod
    def _read_back(compares: Sequence[Compare]) -> list[etcd.Range]:
        seen: dict[bytes, None] = {}
        for c in compares:
            seen.setdefault(c.key)
        return [etcd.Range(k, keys_only=True) for k in seen]

    def _current(self, failure: list[etcd.Range], outcome: TxnOutcome) -> dict[bytes, KeyValue | None]:
        current: dict[bytes, KeyValue | None] = {}
        for req, res in zip(failure, outcome.results):
            current[req.key] = res[0] if isinstance(res, list) and res else None
        return current

    def _stale(self, compares: Sequence[Compare], failure: list[etcd.Range], outcome: TxnOutcome) -> list[str]:
        current = self._current(failure, outcome)
        return sorted({self._name(c.key) for c in compares if not compare_holds(c, current.get(c.key))})

    def _describe(self, compares: Sequence[Compare], failure: list[etcd.Range], outcome: TxnOutcome, stale: list[str]) -> str:
        current = self._current(failure, outcome)
        parts = []
        for c in compares:
            if compare_holds(c, current.get(c.key)):
                continue
            kv = current.get(c.key)
            field_name = "create revision" if c.target == "CREATE" else "mod revision"
            have = (kv.create_revision if c.target == "CREATE" else kv.mod_revision) if kv else 0
            expected = "absent" if c.value == 0 else f"at {field_name} {c.value}"
            found = "absent" if kv is None else f"at {field_name} {have}"
            parts.append(f"{self._name(c.key)} expected {expected}, found {found}")
            if len(parts) == 3:
                break
        more = len(stale) - len(parts)
        return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")

    async def commit(self, groups: Sequence[Sequence[Op]], *, echo: Echo | None = None) -> CommitResult:
        """Commit many groups of ops, each group atomic, packed into as few transactions as
        the limits allow. A group whose compares fail is left out and reported in `rejected`;
        the other groups still commit. Groups are applied in order.

        `echo` (a watch's, see open_watch) is told each record written, so that the watch
        hands back the record object instead of parsing the bytes it was made into."""
        lowered = [_lower(self.root, g) for g in groups]
        if echo is not None:
            # Before the transaction: its events may come through the watch before its reply.
            echo.expect(rec for low in lowered for rec in low.records)
        for i, low in enumerate(lowered):
            self._check_limits(low, f"group {i}")
        result = _Tally()
        errors: list[OrchError] = []
        # Transactions that touch no key an earlier one writes, and write none an earlier one
        # compares or writes, go COMMIT_WINDOW at a time (etcd takes in the next ones while it
        # applies one: 1.5 to 1.8 times the records a second, bench/cluster_store.py): a plan
        # of 5,000 new tasks waited 2 to 3.7 s for 17 transactions one after the other. One that depends on an earlier one waits for all before it (a plan
        # writes a service's own record last: the tasks' transactions compare it).
        for run in self._runs(lowered, self._pack(lowered)):
            window = trio.Semaphore(COMMIT_WINDOW)
            async with trio.open_nursery() as nursery:
                for batch in run:
                    await window.acquire()
                    nursery.start_soon(self._commit_batch, lowered, batch, echo, result, errors, window, nursery.cancel_scope)
            if errors:
                raise errors[0]
        return CommitResult(result.revision, sorted(result.applied), result.rejected, result.transactions, result.seen)

    async def _commit_batch(self, lowered: list[_Lowered], batch: list[int], echo: Echo | None, result: _Tally,
                            errors: list[OrchError], window: trio.Semaphore, scope: trio.CancelScope) -> None:
        try:
            pending = batch
            while pending:
                # Groups of one plan compare the same records (the tasks of a service its
                # record, the tasks placed on a node the node's): each compare once.
                compares = list(dict.fromkeys(c for i in pending for c in lowered[i].compares))
                requests = [r for i in pending for r in lowered[i].requests]
                failure = self._read_back(compares)
                outcome = await self._txn(compares, requests, failure)
                result.transactions += 1
                result.seen = max(result.seen, outcome.revision)
                if outcome.succeeded:
                    result.applied.extend(pending)
                    result.revision = max(result.revision, outcome.revision)
                    return
                current = self._current(failure, outcome)
                still = []
                for i in pending:
                    bad = sorted({self._name(c.key) for c in lowered[i].compares if not compare_holds(c, current.get(c.key))})
                    if bad:
                        result.rejected[i] = bad
                    else:
                        still.append(i)
                if len(still) == len(pending):
                    # The failure branch reads back the very state the compares failed on, in the
                    # same transaction, so some group is always to blame.
                    raise SystemFailure("etcd failed a transaction whose compares all hold when read back")
                if echo is not None:
                    echo.forget(rec for i in pending if i in result.rejected for rec in lowered[i].records)
                pending = still
        except OrchError as err:
            errors.append(err)
            scope.cancel()
        finally:
            window.release()

    @staticmethod
    def _runs(lowered: list[_Lowered], batches: list[list[int]]) -> list[list[list[int]]]:
        """The transactions cut where one depends on an earlier one: it compares a key an
        earlier one writes, or writes a key an earlier one compares or writes. Those of a run
        may be applied in any order."""
        runs: list[list[list[int]]] = []
        written: set[bytes] = set()
        compared: set[bytes] = set()
        for batch in batches:
            writes = set().union(*(lowered[i].write_keys for i in batch))
            reads = {c.key for i in batch for c in lowered[i].compares}
            if not runs or writes & (written | compared) or reads & written:
                runs.append([])
                written, compared = set(), set()
            runs[-1].append(batch)
            written |= writes
            compared |= reads
        return runs

    def _pack(self, lowered: list[_Lowered]) -> list[list[int]]:
        limit, budget = self.limits.max_txn_ops, self.limits.budget
        batches: list[list[int]] = []
        batch: list[int] = []
        requests = reads = size = 0
        keys: set[bytes] = set()
        read_keys: set[bytes] = set()
        compare_set: set[Compare] = set()
        for i, low in enumerate(lowered):
            new_reads = {c.key for c in low.compares} - read_keys
            new_compares = set(low.compares) - compare_set
            fits = (len(compare_set) + len(new_compares) <= limit and requests + len(low.requests) <= limit
                    and reads + len(new_reads) <= limit and size + low.size <= budget and not (keys & low.write_keys))
            if batch and not fits:
                batches.append(batch)
                batch, requests, reads, size, keys, read_keys, compare_set = [], 0, 0, 0, set(), set(), set()
                new_reads = {c.key for c in low.compares}
                new_compares = set(low.compares)
            batch.append(i)
            compare_set |= new_compares
            requests += len(low.requests)
            reads += len(new_reads)
            read_keys |= new_reads
            size += low.size
            keys |= low.write_keys
        if batch:
            batches.append(batch)
        return batches

    # -- watches --------------------------------------------------------------------------

    @asynccontextmanager
    async def open_watch(self, *kinds: Kind, start_revision: int,
                         echo: Echo | None = None) -> AsyncIterator[AsyncIterator[WatchBatch]]:
        """Watch the records of `kinds` from `start_revision` (a listing's revision + 1) in one
        stream, in revision order. Raises Compacted when that revision is gone: list again.
        With `echo` (also given to `commit`), the writer's own records come back as the
        objects it wrote, unparsed."""
        if not kinds:
            raise InvalidArgument("watch needs at least one kind")
        paths = [self.root + k.path for k in kinds]
        common = paths[0]
        for p in paths[1:]:
            while not p.startswith(common):
                common = common[:-1]
        start = common.encode()
        end = prefix_end(start) if len(kinds) > 1 or not kinds[0].singleton else None
        by_path = sorted((((self.root + k.path).encode(), k) for k in kinds), key=lambda pk: -len(pk[0]))  # longest first
        async with self._open_watch(start, end, start_revision) as responses:
            yield _Typed(self, responses, by_path, echo)

    # -- leases ---------------------------------------------------------------------------

    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, TTL granted in seconds)."""
        return await self._grant(ttl)

    async def keepalive(self, lease: int) -> int:
        """Refresh a lease: its TTL, or 0 when it has expired or was revoked."""
        return await self._keepalive(lease)

    def detached_keepalive(self):
        """What a session can keep its lease with from another thread's trio loop (an async
        context manager giving a keepalive function), or None: this store lives in one loop."""
        return None

    async def revoke(self, lease: int) -> None:
        """Revoke a lease and delete every key attached to it."""
        await self._revoke(lease)

    async def compact(self, revision: int) -> None:
        """Drop history before `revision` (etcd also does it by itself, --auto-compaction-*):
        reads at older revisions and watches from them raise Compacted afterwards."""
        await self._compact(revision)

    async def delete_all(self) -> int:
        """Delete every key under the root (tests, `swarm leave` of the last manager)."""
        start = self.root.encode()
        outcome = await self._txn([], [etcd.Delete(start, prefix_end(start))], [])
        return int(outcome.results[0] or 0)

    # -- primitives -----------------------------------------------------------------------

    async def _range(self, key: bytes, end: bytes | None, *, revision: int, limit: int) -> etcd.RangeResult:
        raise NotImplementedError

    async def _txn(self, compares: Sequence[Compare], success: Sequence[etcd.Put | etcd.Delete],
                   failure: Sequence[etcd.Range]) -> TxnOutcome:
        raise NotImplementedError

    def _open_watch(self, key: bytes, end: bytes | None, start_revision: int) -> Any:
        """An async context manager giving an async iterator of WatchResponse."""
        raise NotImplementedError

    async def _compact(self, revision: int) -> None:
        raise NotImplementedError

    async def _grant(self, ttl: int) -> tuple[int, int]:
        raise NotImplementedError

    async def _keepalive(self, lease: int) -> int:
        raise NotImplementedError

    async def _revoke(self, lease: int) -> None:
        raise NotImplementedError


class Echo:
    """Records a writer put, by key, until its watch sees them: the watch then gives back the
    object written when the value is the very bytes written (a leader writes every task and
    reads each write back through its watch; parsing it again cost a fifth of its time).

    An entry goes when the watch sees its key (whatever the value: a later write wins), or when
    its transaction failed. One whose outcome is unknown (the connection broke mid-request) may
    stay; past `limit` entries the oldest are dropped, which costs a parse, never a wrong record."""

    def __init__(self, limit: int = 500_000):
        self.limit = limit
        self._records: dict[bytes, tuple[bytes, Any]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def expect(self, records: Iterable[tuple[bytes, bytes, Any]]) -> None:
        table = self._records
        for key, value, record in records:
            table.pop(key, None)  # re-inserted last: the oldest entries stay first
            table[key] = (value, record)
        while len(table) > self.limit:
            del table[next(iter(table))]

    def forget(self, records: Iterable[tuple[bytes, bytes, Any]]) -> None:
        table = self._records
        for key, value, _ in records:
            hit = table.get(key)
            if hit is not None and hit[0] == value:
                del table[key]

    def seen(self, key: bytes, value: bytes | None) -> Any:
        """The record written as `value` under `key`, if this writer wrote it; else None."""
        hit = self._records.pop(key, None)
        if hit is None or value is None or hit[0] != value:
            return None
        return hit[1]

    def clear(self) -> None:
        self._records.clear()


class _Typed:
    """WatchResponses turned into WatchBatches of the watched kinds' records."""

    def __init__(self, store: Store, responses: AsyncIterator[WatchResponse], by_path: list[tuple[bytes, Kind]],
                 echo: Echo | None = None):
        self.store = store
        self.responses = responses
        self.by_path = by_path
        self.echo = echo
        self.revision = 0  # the last revision this watch is known to be complete up to

    def __aiter__(self) -> _Typed:
        return self

    def _change(self, ev: Event) -> Change | None:
        key = ev.kv.key
        for path, kind in self.by_path:
            if kind.singleton and key == path or not kind.singleton and key.startswith(path):
                record_id = "" if kind.singleton else key[len(path):].decode()
                if "/" in record_id:
                    return None
                if ev.type == "delete":
                    record = None
                    if self.echo is not None:
                        self.echo.seen(key, None)
                else:
                    record = self.echo.seen(key, ev.kv.value) if self.echo is not None else None
                    if record is None:
                        record = kind.decode(ev.kv)
                return Change(kind, record_id, record, ev.kv.mod_revision)
        return None

    async def __anext__(self) -> WatchBatch:
        while True:
            resp = await self.responses.__anext__()
            changes = [c for c in map(self._change, resp.events) if c is not None]
            revision = resp.events[-1].kv.mod_revision if resp.events else resp.revision
            self.revision = max(self.revision, revision)
            if changes:
                return WatchBatch(revision, changes)


class EtcdStore(Store):
    """The store on a real etcd cluster, through EtcdClient."""

    def __init__(self, client: etcd.EtcdClient, *, root: str = DEFAULT_ROOT, limits: Limits = Limits()):
        super().__init__(root=root, limits=limits)
        self.client = client

    async def _range(self, key: bytes, end: bytes | None, *, revision: int, limit: int) -> etcd.RangeResult:
        return await self.client.range(key, end, revision=revision, limit=limit)

    async def _txn(self, compares, success, failure) -> TxnOutcome:
        what = (f"txn of {len(success)} writes" + (f" on {self._name(success[0].key)}" if len(success) == 1 else "")
                if success else "txn")
        result = await self.client.txn(compares, success, failure, op=what)
        ops = success if result.succeeded else failure
        results: list[list[KeyValue] | int | None] = []
        for op, resp in zip(ops, result.responses):
            if isinstance(op, etcd.Range):
                results.append([etcd.decode_kv(kv) for kv in resp.get("response_range", {}).get("kvs", ())])
            elif isinstance(op, etcd.Delete):
                results.append(int(resp.get("response_delete_range", {}).get("deleted", 0)))
            else:
                results.append(None)
        return TxnOutcome(result.succeeded, result.revision, results)

    def _open_watch(self, key: bytes, end: bytes | None, start_revision: int):
        return self.client.open_watch(key, end, start_revision=start_revision)

    async def _compact(self, revision: int) -> None:
        await self.client.compact(revision)

    async def _grant(self, ttl: int) -> tuple[int, int]:
        return await self.client.lease_grant(ttl)

    async def _keepalive(self, lease: int) -> int:
        return await self.client.lease_keepalive(lease)

    def detached_keepalive(self):
        """What election.open_session(detached=True) keeps a lease alive with from a thread of
        its own: an async context manager giving a keepalive function on a new client of the
        same etcd, for that thread's trio loop (a client belongs to the loop it runs in)."""
        endpoints, tls, timeout = list(self.client.endpoints), self.client.tls, self.client.timeout

        @asynccontextmanager
        async def open_keepalive():
            async with etcd.EtcdClient(endpoints, tls=tls, timeout=timeout) as client:
                yield client.lease_keepalive

        return open_keepalive

    async def _revoke(self, lease: int) -> None:
        await self.client.lease_revoke(lease)
