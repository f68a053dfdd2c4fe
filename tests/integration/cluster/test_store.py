"""The store's conformance suite: every test runs against MemoryStore and against EtcdStore on
a real etcd (containerd's core/snapshots/testsuite is the model). What passes here on the fake
holds on etcd; what differs is a bug in one of them."""

from __future__ import annotations

import pydantic
import pytest
import trio

from orch.cluster.election import campaign, open_leadership, open_session
from orch.cluster.store import Check, Compacted, Delete, Echo, Kind, Limits, Put, StaleRecords
from orch.cluster.store_testing import PartitionableStore
from orch.errors import AlreadyExists, InvalidArgument, NotFound

pytestmark = pytest.mark.tools("/usr/bin/etcd", package="etcd-server")


class Item(pydantic.BaseModel):
    version: int = 1
    id: str
    value: int = 0
    note: str = ""


class Other(pydantic.BaseModel):
    version: int = 1
    id: str
    size: int = 0


class Config(pydantic.BaseModel):
    version: int = 1
    period: int = 5


class Leader(pydantic.BaseModel):
    version: int = 1
    node: str


ITEMS = Kind("v1/items/", Item)
OTHERS = Kind("v1/others/", Other)
CONFIG = Kind("v1/config", Config, singleton=True)
LEADER = Kind("v1/leader", Leader, singleton=True)
TTL = 2  # etcd's smallest lease TTL (its minimum is 1.5 election timeouts, rounded up)


async def test_get_create_and_revisions(store, clock):
    assert await store.get(ITEMS, "a") is None
    rev = await store.create(ITEMS, Item(id="a", value=1))
    got = await store.get(ITEMS, "a")
    assert got.id == "a" and got.record == Item(id="a", value=1)
    assert got.mod_revision == got.create_revision == rev and got.version == 1
    rev2 = await store.create(ITEMS, Item(id="b"))
    assert rev2 == rev + 1


async def test_create_refuses_an_existing_record(store, clock):
    await store.create(ITEMS, Item(id="a", value=1))
    with pytest.raises(AlreadyExists, match="items a already exists"):
        await store.create(ITEMS, Item(id="a", value=2))
    assert (await store.get(ITEMS, "a")).record.value == 1


async def test_put_compares_mod_revision(store, clock):
    rev = await store.create(ITEMS, Item(id="a"))
    rev2 = await store.put(ITEMS, Item(id="a", value=2), expect=rev)
    got = await store.get(ITEMS, "a")
    assert got.mod_revision == rev2 > rev and got.create_revision == rev and got.version == 2
    with pytest.raises(StaleRecords, match=rf"v1/items/a expected at mod revision {rev}, found at mod revision {rev2}") as err:
        await store.put(ITEMS, Item(id="a", value=3), expect=rev)
    assert err.value.stale == ["v1/items/a"]
    assert (await store.get(ITEMS, "a")).record.value == 2
    await store.put(ITEMS, Item(id="a", value=4))  # unconditional
    assert (await store.get(ITEMS, "a")).version == 3


async def test_put_with_expect_zero_is_create_if_absent(store, clock):
    await store.put(ITEMS, Item(id="a"), expect=0)
    with pytest.raises(StaleRecords, match="v1/items/a expected absent"):
        await store.put(ITEMS, Item(id="a"), expect=0)


async def test_delete(store, clock):
    rev = await store.create(ITEMS, Item(id="a"))
    with pytest.raises(StaleRecords):
        await store.delete(ITEMS, "a", expect=rev - 1)
    assert await store.delete(ITEMS, "a", expect=rev) is True
    assert await store.get(ITEMS, "a") is None
    listing = await store.list(ITEMS)
    assert await store.delete(ITEMS, "a") is False
    assert (await store.list(ITEMS)).revision == listing.revision  # deleting nothing makes no revision
    await store.create(ITEMS, Item(id="a"))
    assert (await store.get(ITEMS, "a")).version == 1  # a delete resets the version


async def test_ids_are_checked(store, clock):
    with pytest.raises(InvalidArgument, match="items id 'a/b' is not valid"):
        await store.create(ITEMS, Item(id="a/b"))
    with pytest.raises(InvalidArgument):
        await store.get(ITEMS, "")


async def test_list_is_one_kind_at_one_revision(store, clock):
    empty = await store.list(ITEMS)
    assert empty.items == [] and empty.revision >= 1
    for i in range(7):
        await store.create(ITEMS, Item(id=f"i{i}", value=i))
    await store.create(OTHERS, Other(id="o1"))
    await store.put(CONFIG, Config(period=7))
    listing = await store.list(ITEMS, page=3)  # three pages
    assert [s.id for s in listing.items] == [f"i{i}" for i in range(7)]
    assert [s.record.value for s in listing.items] == list(range(7))
    assert [s.id for s in (await store.list(OTHERS)).items] == ["o1"]
    config = await store.list(CONFIG)
    assert [(s.id, s.record.period) for s in config.items] == [("", 7)]
    assert (await store.get(CONFIG)).record.period == 7

    # The past stays readable at its revision (what paging at a fixed revision relies on).
    await store.delete(ITEMS, "i1")
    await store.put(ITEMS, Item(id="i2", value=20))
    await store.create(ITEMS, Item(id="i9"))
    old = await store.list(ITEMS, revision=listing.revision, page=2)
    assert old.revision == listing.revision
    assert [(s.id, s.record.value) for s in old.items] == [(f"i{i}", i) for i in range(7)]
    now = await store.list(ITEMS, page=2)
    assert [s.id for s in now.items] == ["i0", "i2", "i3", "i4", "i5", "i6", "i9"]
    # A singleton read at a past revision says that revision too (watching from it + 1 must
    # not skip what was written since).
    await store.put(CONFIG, Config(period=8))
    old_config = await store.list(CONFIG, revision=listing.revision)
    assert old_config.revision == listing.revision and [s.record.period for s in old_config.items] == [7]


async def test_a_txn_is_one_revision_and_atomic(store, clock):
    base = await store.create(ITEMS, Item(id="a"))
    rev = await store.txn([Put(ITEMS, Item(id="b")), Put(ITEMS, Item(id="c")), Delete(ITEMS, "a"), Put(OTHERS, Other(id="x"))])
    assert rev == base + 1
    assert {s.mod_revision for s in (await store.list(ITEMS)).items} == {rev}
    with pytest.raises(StaleRecords) as err:
        await store.txn([Put(ITEMS, Item(id="d")), Check(ITEMS, "b", rev), Check(OTHERS, "x", base), Put(ITEMS, Item(id="e"))])
    assert err.value.stale == ["v1/others/x"]
    assert [s.id for s in (await store.list(ITEMS)).items] == ["b", "c"]  # nothing of the failed txn


async def test_a_txn_over_the_limits_is_refused(store_factory, clock):
    async with store_factory(limits=Limits(max_txn_ops=4)) as store:
        with pytest.raises(InvalidArgument, match="needs 5 etcd operations, more than --max-txn-ops 4"):
            await store.txn([Put(ITEMS, Item(id=f"i{i}")) for i in range(5)])
    async with store_factory(limits=Limits(max_request_bytes=8192)) as store:
        with pytest.raises(InvalidArgument, match="more than --max-request-bytes 8192"):
            await store.txn([Put(ITEMS, Item(id="big", note="x" * 5000))])


async def test_commit_packs_groups_within_max_txn_ops(store_factory, clock):
    async with store_factory(limits=Limits(max_txn_ops=8)) as store:
        before = (await store.list(ITEMS)).revision
        result = await store.commit([[Put(ITEMS, Item(id=f"i{i:02d}", value=i), expect=0)] for i in range(50)])
        assert result.applied == list(range(50)) and result.rejected == {}
        assert result.transactions == 7  # ceil(50 / 8)
        listing = await store.list(ITEMS)
        assert len(listing.items) == 50 and listing.revision == before + 7 == result.revision


def slowed(store):
    """The store's transactions each take a while, the earlier ones longer (so that any sent
    together finish in the other order); the most in flight at once is counted."""
    real, seen = store._txn, {"in_flight": 0, "most": 0, "calls": 0}

    async def txn(*args):
        seen["calls"] += 1
        seen["in_flight"] += 1
        seen["most"] = max(seen["most"], seen["in_flight"])
        try:
            await trio.sleep(0.05 / seen["calls"])
            return await real(*args)
        finally:
            seen["in_flight"] -= 1

    store._txn = txn
    return seen


async def test_commit_sends_independent_transactions_together(store_factory, clock):
    from orch.cluster.store import COMMIT_WINDOW

    async with store_factory(limits=Limits(max_txn_ops=8)) as store:
        seen = slowed(store)
        result = await store.commit([[Put(ITEMS, Item(id=f"i{i:02d}", value=i), expect=0)] for i in range(50)])
        assert result.applied == list(range(50)) and result.transactions == 7 and not result.rejected
        assert seen["most"] == COMMIT_WINDOW
        listing = await store.list(ITEMS)
        assert len(listing.items) == 50 and listing.revision == result.revision


async def test_commit_writes_a_record_the_others_compare_after_them(store_factory, clock):
    # A plan writes a service's own record last; its tasks' transactions compare it. Sent
    # together, the record's write could land first and every other transaction fail.
    async with store_factory(limits=Limits(max_txn_ops=8)) as store:
        rev = await store.create(OTHERS, Other(id="svc"))
        seen = slowed(store)
        groups = [[Check(OTHERS, "svc", rev), Put(ITEMS, Item(id=f"t{i:02d}"), expect=0)] for i in range(20)]
        groups.append([Put(OTHERS, Other(id="svc", size=1), expect=rev)])
        result = await store.commit(groups)
        assert not result.rejected and result.applied == list(range(21))
        assert seen["most"] > 1  # the tasks' transactions still went together
        assert (await store.get(OTHERS, "svc")).record.size == 1


async def test_commit_packs_groups_within_max_request_bytes(store_factory, clock):
    async with store_factory(limits=Limits(max_request_bytes=16384)) as store:
        result = await store.commit([[Put(ITEMS, Item(id=f"i{i:02d}", note="x" * 1000))] for i in range(40)])
        assert result.applied == list(range(40)) and result.transactions >= 3
        assert len((await store.list(ITEMS)).items) == 40


async def test_commit_keeps_groups_whole_and_drops_only_stale_ones(store, clock):
    revs = {}
    for n in ("n1", "n2", "n3"):
        revs[n] = await store.create(OTHERS, Other(id=n))
    await store.put(OTHERS, Other(id="n2", size=1))  # n2 changed since the plan read it
    groups = [[Check(OTHERS, n, revs[n]), Put(ITEMS, Item(id=f"{n}-t{j}"), expect=0), Put(ITEMS, Item(id=f"{n}-u{j}"))]
              for j in range(3) for n in ("n1", "n2", "n3")]
    result = await store.commit(groups)
    assert sorted(result.rejected) == [1, 4, 7]
    assert all(v == ["v1/others/n2"] for v in result.rejected.values())
    assert result.applied == [0, 2, 3, 5, 6, 8]
    ids = [s.id for s in (await store.list(ITEMS)).items]
    assert ids == sorted(f"{n}-{x}{j}" for n in ("n1", "n3") for x in "tu" for j in range(3))


async def test_commit_splits_writes_to_one_key_and_keeps_their_order(store, clock):
    result = await store.commit([[Put(ITEMS, Item(id="a", value=1))], [Put(ITEMS, Item(id="a", value=2))]])
    assert result.applied == [0, 1] and result.transactions == 2
    assert (await store.get(ITEMS, "a")).record.value == 2


async def test_a_group_too_big_for_one_transaction_is_refused(store_factory, clock):
    async with store_factory(limits=Limits(max_txn_ops=4)) as store:
        with pytest.raises(InvalidArgument, match="group 1 needs 6 etcd operations"):
            await store.commit([[Put(ITEMS, Item(id="a"))], [Put(ITEMS, Item(id=f"b{i}")) for i in range(6)]])
        assert await store.get(ITEMS, "a") is None  # checked before anything is sent


async def test_watch_sees_changes_in_order_from_a_listing(store, clock):
    await store.create(ITEMS, Item(id="before"))
    listing = await store.list(ITEMS)
    async with store.open_watch(ITEMS, OTHERS, CONFIG, start_revision=listing.revision + 1) as changes:
        r1 = await store.create(ITEMS, Item(id="a", value=1))
        await store.create(Kind("v1/unwatched/", Item), Item(id="z"))
        r2 = await store.txn([Put(ITEMS, Item(id="a", value=2)), Put(OTHERS, Other(id="o"))])
        r3 = await store.delete(ITEMS, "before") and (await store.list(ITEMS)).revision
        r4 = await store.put(CONFIG, Config(period=9))
        seen = []
        async for batch in changes:
            seen.extend((c.mod_revision, c.kind.name, c.id, c.record) for c in batch.changes)
            if seen[-1][0] == r4:
                break
    assert seen == [
        (r1, "items", "a", Item(id="a", value=1)),
        (r2, "items", "a", Item(id="a", value=2)),
        (r2, "others", "o", Other(id="o")),
        (r3, "items", "before", None),
        (r4, "config", "", Config(period=9)),
    ]


async def test_a_writers_own_records_come_back_through_its_watch_unparsed(store, clock):
    echo = Echo()
    a, b = Item(id="a", value=1), Item(id="b", value=2)
    start = (await store.list(ITEMS)).revision + 1
    async with store.open_watch(ITEMS, start_revision=start, echo=echo) as changes:
        await store.commit([[Put(ITEMS, a)], [Put(ITEMS, b, expect=7)]], echo=echo)  # b's compare fails
        other = Item(id="a", value=3)
        rev = await store.put(ITEMS, other)  # written by someone else
        seen = []
        async for batch in changes:
            seen.extend(c.record for c in batch.changes)
            if batch.revision >= rev:
                break
    assert seen == [a, other]
    assert seen[0] is a and seen[1] is not other  # ours as written; theirs parsed
    assert len(echo) == 0  # nothing left behind: seen, or its transaction failed


async def test_watch_replays_history_from_a_past_revision(store, clock):
    r1 = await store.create(ITEMS, Item(id="a"))
    await store.delete(ITEMS, "a")
    r3 = await store.create(ITEMS, Item(id="b"))
    async with store.open_watch(ITEMS, start_revision=r1) as changes:
        seen = []
        async for batch in changes:
            seen.extend((c.id, c.deleted) for c in batch.changes)
            if batch.revision >= r3:
                break
    assert seen == [("a", False), ("a", True), ("b", False)]


async def test_compaction_is_reported_to_readers_and_watchers(store, clock):
    r1 = await store.create(ITEMS, Item(id="a"))
    await store.put(ITEMS, Item(id="a", value=1))
    r3 = await store.put(ITEMS, Item(id="a", value=2))
    await store.compact(r3)
    with pytest.raises(Compacted):
        await store.list(ITEMS, revision=r1)
    with pytest.raises(Compacted):
        async with store.open_watch(ITEMS, start_revision=r1) as changes:
            async for _batch in changes:
                pass
    listing = await store.list(ITEMS)  # the rebuild a cache does: list, then watch from there
    assert listing.items[0].record.value == 2
    async with store.open_watch(ITEMS, start_revision=listing.revision + 1) as changes:
        r4 = await store.put(ITEMS, Item(id="a", value=3))
        batch = await changes.__anext__()
    assert [(c.mod_revision, c.record.value) for c in batch.changes] == [(r4, 3)]


async def test_leases_delete_their_keys_when_revoked_or_expired(store, clock):
    lease, ttl = await store.grant(TTL)
    assert ttl >= TTL
    await store.create(ITEMS, Item(id="a"), lease=lease)
    await store.create(ITEMS, Item(id="b"))
    assert (await store.get(ITEMS, "a")).lease == lease
    start = (await store.list(ITEMS)).revision + 1
    async with store.open_watch(ITEMS, start_revision=start) as changes:
        await store.revoke(lease)
        batch = await changes.__anext__()
    assert [(c.id, c.deleted) for c in batch.changes] == [("a", True)]
    assert await store.keepalive(lease) == 0
    assert [s.id for s in (await store.list(ITEMS)).items] == ["b"]
    with pytest.raises(NotFound, match="lease not found"):
        await store.create(ITEMS, Item(id="c"), lease=lease)

    lease2, _ = await store.grant(TTL)
    await store.create(ITEMS, Item(id="d"), lease=lease2)
    start = (await store.list(ITEMS)).revision + 1
    async with store.open_watch(ITEMS, start_revision=start) as changes:
        batch = await changes.__anext__()  # nobody keeps lease2 alive: it expires
    assert [(c.id, c.deleted) for c in batch.changes] == [("d", True)]


async def test_a_session_keeps_its_lease_alive(store, clock):
    async with open_session(store, TTL) as session:
        await store.create(ITEMS, Item(id="a"), lease=session.lease)
        await trio.sleep(3 * TTL)
        assert not session.lost.is_set() and session.keepalives >= 3
        assert (await store.get(ITEMS, "a")) is not None
    assert await store.get(ITEMS, "a") is None  # closing the session revoked the lease


async def test_election_one_leader_then_the_next_after_resign(store_factory, clock):
    log: list[str] = []
    leaders = set()
    a_may_resign = trio.Event()

    async def candidate(name: str, hold: trio.Event | None, task_status=trio.TASK_STATUS_IGNORED):
        async with store_factory() as store, open_session(store, TTL) as session:
            task_status.started()
            async with open_leadership(store, session, LEADER, Leader(node=name)) as term:
                assert not leaders, f"{name} won while {leaders} leads"
                leaders.add(name)
                log.append(f"{name} won")
                holder = await store.get(LEADER)
                assert holder.record.node == name and holder.create_revision == term.create_revision
                if hold is not None:
                    await hold.wait()
                leaders.discard(name)
                log.append(f"{name} resigned")

    async with trio.open_nursery() as nursery:
        await nursery.start(candidate, "a", a_may_resign)
        while log != ["a won"]:
            await trio.sleep(0.01)
        await nursery.start(candidate, "b", None)
        await trio.sleep(0.5)  # b campaigns, and must not win while a holds the key
        assert log == ["a won"]
        a_may_resign.set()
    assert log == ["a won", "a resigned", "b won", "b resigned"]


async def test_a_leader_whose_keepalives_stop_learns_it_before_another_wins(store_factory, clock):
    """A's link to the store is cut while it leads: A must see its term lost (by its own clock)
    before B can win, and a write fenced by A's term fails afterwards."""
    events: list[tuple[str, float]] = []
    async with store_factory() as shared:
        cut_store = PartitionableStore(shared)
        a_term = None

        async def leader_a(task_status=trio.TASK_STATUS_IGNORED):
            nonlocal a_term
            async with open_session(cut_store, TTL) as session:
                async with open_leadership(cut_store, session, LEADER, Leader(node="a")) as term:
                    a_term = term
                    events.append(("a won", trio.current_time()))
                    task_status.started()
                    try:
                        await trio.sleep_forever()  # acts until cancelled by the loss of its term
                    finally:
                        events.append(("a stopped", trio.current_time()))
                assert term.lost.is_set() and "not renewed" in term.reason

        async def leader_b():
            async with open_session(shared, TTL) as session:
                async with open_leadership(shared, session, LEADER, Leader(node="b")):
                    events.append(("b won", trio.current_time()))

        async with trio.open_nursery() as nursery:
            await nursery.start(leader_a)
            cut_store.cut()  # A's keepalives, and everything else it sends, now go nowhere
            nursery.start_soon(leader_b)
        assert [e for e, _ in events] == ["a won", "a stopped", "b won"]
        assert events[1][1] <= events[2][1]
        holder = await shared.get(LEADER)
        assert holder is None or holder.record.node != "a"
        with pytest.raises(StaleRecords):  # a stale leader's plan fails its fence
            await shared.txn([a_term.fence, Put(ITEMS, Item(id="from-a"))])
        cut_store.heal()


async def test_campaign_fails_when_the_session_is_lost(store_factory, clock):
    async with store_factory() as store:
        async with open_session(store, TTL) as holder_session:
            await store.create(LEADER, Leader(node="holder"), lease=holder_session.lease)
            cut_store = PartitionableStore(store)
            async with open_session(cut_store, TTL) as session:
                cut_store.cut()
                with pytest.raises(Exception, match="lost the session while campaigning"):
                    await campaign(cut_store, session, LEADER, Leader(node="x"))
                cut_store.heal()
