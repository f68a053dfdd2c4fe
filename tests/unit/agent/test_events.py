"""The node's event bus (orch/node/agent/events.py): dockerd's message shape, docker's event
filters as a table, since/until over the kept events, and a slow reader being dropped."""

import json
import threading

import pytest
import trio

from orch.errors import InvalidArgument
from orch.node.agent import events as ev


def container_event(action="start", cid="c" * 64, name="web", image="busybox", **extra):
    rec = {"Id": cid, "Name": "/" + name, "Image": "sha256:" + "1" * 64,
           "Config": {"Image": image, "Labels": {"com.docker.compose.project": "p", "tier": "front"}}}
    return ev.message("container", action, cid, ev.container_attributes(rec, **extra), time_ns=1_700_000_000_123_456_789)


def test_a_container_event_is_dockerds_message_key_for_key():
    msg = container_event("die", exitCode=137)
    # moby's events.Message, deprecated fields first, Go's encoder (compact, sorted map keys).
    assert ev.encode(msg) == (
        b'{"status":"die","id":"' + b"c" * 64 + b'","from":"busybox","Type":"container","Action":"die",'
        b'"Actor":{"ID":"' + b"c" * 64 + b'","Attributes":{"com.docker.compose.project":"p","exitCode":"137",'
        b'"image":"busybox","name":"web","tier":"front"}},"scope":"local","time":1700000000,"timeNano":1700000000123456789}\n')


def test_networks_and_volumes_have_no_deprecated_fields_and_images_no_from():
    net = ev.message("network", "connect", "n1", {"container": "c", "name": "back", "type": "bridge"}, time_ns=1)
    assert list(net) == ["Type", "Action", "Actor", "scope", "time", "timeNano"]
    image = ev.message("image", "tag", "sha256:ab", {"name": "bb:1"}, time_ns=1)
    assert list(image) == ["status", "id", "Type", "Action", "Actor", "scope", "time", "timeNano"]
    prune = ev.message("container", "prune", "", {"reclaimed": 0}, time_ns=1)
    assert "id" not in prune and "from" not in prune and prune["Actor"]["Attributes"] == {"reclaimed": "0"}


WEB = container_event("start", cid="abc123" + "0" * 58, name="web")
HEALTH = container_event("health_status: healthy", cid="abc123" + "0" * 58, name="web")
EXEC = container_event("exec_create: sh -c true", cid="abc123" + "0" * 58, name="web", execID="e1")
TAG = ev.message("image", "tag", "sha256:" + "2" * 64, {"name": "localhost:5000/app:v1", "maintainer": "x"}, time_ns=1)
PULL = ev.message("image", "pull", "busybox:latest", {"name": "busybox"}, time_ns=1)
VOLUME = ev.message("volume", "mount", "data", {"container": "abc123", "driver": "local", "destination": "/d"}, time_ns=1)
NETWORK = ev.message("network", "connect", "f0" * 32, {"container": "abc123", "name": "back", "type": "bridge"}, time_ns=1)

# (what, filters, event, matches): moby daemon/events/filter.go's rules.
CASES = [
    ("no filter", {}, WEB, True),
    ("type", {"type": ["container"]}, WEB, True),
    ("another type", {"type": ["image"]}, WEB, False),
    ("types are alternatives", {"type": ["image", "container"]}, WEB, True),
    ("event exact", {"event": ["start"]}, WEB, True),
    ("event is not a prefix", {"event": ["sta"]}, WEB, False),
    ("health_status matches its long form", {"event": ["health_status"]}, HEALTH, True),
    ("exec_create matches its long form", {"event": ["exec_create"]}, EXEC, True),
    ("health_status not another action", {"event": ["health_status"]}, WEB, False),
    ("container by name", {"container": ["web"]}, WEB, True),
    ("container by id prefix", {"container": ["abc1"]}, WEB, True),
    ("container by name prefix", {"container": ["we"]}, WEB, True),
    ("another container", {"container": ["db"]}, WEB, False),
    ("a container filter leaves out images", {"container": ["web"]}, TAG, False),
    ("keys are all required", {"type": ["container"], "event": ["die"]}, WEB, False),
    ("label key", {"label": ["tier"]}, WEB, True),
    ("label key=value", {"label": ["tier=front"]}, WEB, True),
    ("label other value", {"label": ["tier=back"]}, WEB, False),
    ("labels are all required", {"label": ["tier", "missing"]}, WEB, False),
    ("image of a container", {"image": ["busybox"]}, WEB, True),
    ("image of an image event by name", {"image": ["localhost:5000/app:v1"]}, TAG, True),
    ("image without its tag", {"image": ["localhost:5000/app"]}, TAG, True),
    ("image by id", {"image": ["sha256:" + "2" * 64]}, TAG, True),
    ("image pulled, by reference", {"image": ["busybox:latest"]}, PULL, True),
    ("image label", {"label": ["maintainer=x"]}, TAG, True),
    ("volume by name", {"volume": ["data"]}, VOLUME, True),
    ("volume other", {"volume": ["logs"]}, VOLUME, False),
    ("network by name", {"network": ["back"]}, NETWORK, True),
    ("network by id prefix", {"network": ["f0f0"]}, NETWORK, True),
    ("scope", {"scope": ["local"]}, NETWORK, True),
    ("scope swarm", {"scope": ["swarm"]}, NETWORK, False),
    ("daemon filter leaves out others", {"daemon": ["x"]}, WEB, False),
]


@pytest.mark.parametrize("what,filters,msg,expected", CASES, ids=[c[0] for c in CASES])
def test_filters(what, filters, msg, expected):
    assert ev.event_matches(msg, filters) is expected


def test_filters_parse_both_forms_and_refuse_unknown_keys():
    assert ev.parse_filters('{"type":["container"],"event":{"die":true}}') == {"type": ["container"], "event": ["die"]}
    assert ev.parse_filters(None) == {}
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        ev.parse_filters('{"colour":["red"]}')
    with pytest.raises(InvalidArgument):
        ev.parse_filters("not json")


def test_timestamps():
    assert ev.parse_timestamp("1700000000", "since") == 1_700_000_000_000_000_000
    assert ev.parse_timestamp("1700000000.5", "since") == 1_700_000_000_500_000_000
    assert ev.parse_timestamp("1700000000.000000001", "since") == 1_700_000_000_000_000_001
    assert ev.parse_timestamp("", "since") is None
    with pytest.raises(InvalidArgument, match="invalid until"):
        ev.parse_timestamp("yesterday", "until")


class Clock:
    def __init__(self):
        self.now = 1_000

    def __call__(self):
        return self.now


def test_the_ring_keeps_the_newest_and_times_strictly_increase():
    clock = Clock()
    bus = ev.EventBus(ring=3, clock=clock)
    for i in range(5):
        bus.publish("volume", "create", f"v{i}", {"driver": "local"})
    kept = bus.past(0, None, {})
    assert [m["Actor"]["ID"] for m in kept] == ["v2", "v3", "v4"]
    assert [m["timeNano"] for m in kept] == [1002, 1003, 1004]  # one clock reading, still in order
    assert bus.past(None, None, {}) == []  # docker: no past unless since or until is given
    assert [m["Actor"]["ID"] for m in bus.past(None, 1003, {})] == ["v2", "v3"]
    assert [m["Actor"]["ID"] for m in bus.past(1003, 1003, {})] == ["v3"]


async def test_a_stream_gives_the_past_then_what_comes_and_ends_at_until():
    clock = Clock()
    bus = ev.EventBus(clock=clock)
    bus.publish("volume", "create", "old", {})
    got = []

    async def read(until):
        async for msg in bus.stream(since=0, until=until, filters={"type": ["volume"]}):
            got.append(msg["Actor"]["ID"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, 10**12)  # a thousand seconds after the clock's now
        await trio.testing.wait_all_tasks_blocked()
        bus.publish("network", "create", "skipped", {})
        bus.publish("volume", "create", "new", {})
        clock.now = 2 * 10**12
        bus.publish("volume", "create", "after-until", {})
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert got == ["old", "new"]
    assert bus.listeners() == 0


async def test_an_until_in_the_past_gives_only_the_past():
    clock = Clock()
    bus = ev.EventBus(clock=clock)
    bus.publish("volume", "create", "a", {})
    clock.now = 10_000
    assert [m["Actor"]["ID"] async for m in bus.stream(until=5_000)] == ["a"]
    with pytest.raises(InvalidArgument):
        async for _ in bus.stream(since=6, until=5):
            pass


async def test_events_from_another_thread_wake_the_reader():
    bus = ev.EventBus()
    got = []

    async def read():
        async for msg in bus.stream():
            got.append(msg["Actor"]["ID"])
            return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(lambda: bus.publish("volume", "create", "from-a-thread", {}))
    assert got == ["from-a-thread"]


async def test_a_reader_that_falls_behind_is_dropped_and_publishers_do_not_wait():
    bus = ev.EventBus(queue=3)
    sub = bus.subscribe({})
    for i in range(10):  # never blocks, whatever the reader does
        bus.publish("volume", "create", str(i), {})
    assert sub.dropped
    # What was queued before the drop is still read, then the reader learns it was dropped.
    assert [(await sub.next())["Actor"]["ID"] for _ in range(3)] == ["0", "1", "2"]
    with pytest.raises(ev.Dropped):
        await sub.next()
    bus.unsubscribe(sub)
    assert bus.listeners() == 0


def test_publish_is_safe_from_many_threads():
    bus = ev.EventBus(ring=10_000)
    threads = [threading.Thread(target=lambda: [bus.publish("volume", "create", "x", {}) for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = [m["timeNano"] for m in bus.past(0, None, {})]
    assert len(times) == 2000 and times == sorted(set(times))
    assert json.loads(ev.encode(bus.past(0, None, {})[0]))["Type"] == "volume"
