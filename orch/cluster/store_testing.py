"""A test double for partitions: a Store wrapper whose link to the real store can be cut.

While cut, every call hangs (as requests do when packets are dropped, the worst case for a
leader: no error arrives to tell it anything) and open watches deliver nothing; answers in
flight when the link is cut are lost. `heal` lets everything through again. It wraps either
store, so the election's partition tests run on MemoryStore and on real etcd alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from orch.cluster import etcd
from orch.cluster.store import Store, TxnOutcome


class PartitionableStore(Store):
    def __init__(self, inner: Store):
        super().__init__(root=inner.root, limits=inner.limits)
        self.inner = inner
        self._open = trio.Event()
        self._open.set()
        self.calls_while_cut = 0

    @property
    def is_cut(self) -> bool:
        return not self._open.is_set()

    def cut(self) -> None:
        if not self.is_cut:
            self._open = trio.Event()

    def heal(self) -> None:
        self._open.set()

    async def _gate(self) -> None:
        if self.is_cut:
            self.calls_while_cut += 1
        await self._open.wait()

    async def _range(self, key, end, *, revision, limit) -> etcd.RangeResult:
        await self._gate()
        result = await self.inner._range(key, end, revision=revision, limit=limit)
        await self._gate()
        return result

    async def _txn(self, compares, success, failure) -> TxnOutcome:
        await self._gate()
        result = await self.inner._txn(compares, success, failure)
        await self._gate()
        return result

    @asynccontextmanager
    async def _open_watch(self, key: bytes, end: bytes | None, start_revision: int) -> AsyncIterator[AsyncIterator]:
        await self._gate()
        async with self.inner._open_watch(key, end, start_revision) as responses:
            yield _Gated(self, responses)

    async def _compact(self, revision: int) -> None:
        await self._gate()
        await self.inner._compact(revision)

    async def _grant(self, ttl: int) -> tuple[int, int]:
        await self._gate()
        result = await self.inner._grant(ttl)
        await self._gate()
        return result

    async def _keepalive(self, lease: int) -> int:
        await self._gate()
        result = await self.inner._keepalive(lease)
        await self._gate()
        return result

    async def _revoke(self, lease: int) -> None:
        await self._gate()
        await self.inner._revoke(lease)


class _Gated:
    def __init__(self, store: PartitionableStore, responses):
        self.store = store
        self.responses = responses

    def __aiter__(self):
        return self

    async def __anext__(self):
        await self.store._gate()
        item = await self.responses.__anext__()
        await self.store._gate()
        return item


__all__ = ["PartitionableStore"]
