"""The node's event bus: docker's events (GET /events), for containers, images, networks and
volumes, in dockerd's message shape.

One `EventBus` per agent (`node.events`). The code that changes the node publishes as it acts
(`publish`, or `container` for a container's event with docker's attributes); readers stream
(`stream`), with docker's `since`, `until` and `filters`. It is the one source of events for
every door: orch's own API on orch.sock and the Docker Engine API (which serves GET /events
from this same module).

- A message is a dict in dockerd's JSON, key for key and in its order: the deprecated
  `status`/`id`/`from` for containers and images, then `Type`, `Action`, `Actor` {`ID`,
  `Attributes`}, `scope` ("local"), `time` (seconds) and `timeNano` (moby
  daemon/events/events.go `Log`). Attributes are strings; a container's are its labels plus
  `image` (as the user named it) and `name`, and what the action adds (`exitCode`, `signal`,
  `execID`, `oldName`); an image's are its labels plus `name`.
- The past: the last RING events are kept in memory (dockerd keeps 256; a compose project
  brought up emits more than that), lost when the agent stops, as dockerd's are.
- Readers: each has a queue of at most QUEUE events. One that falls that far behind is
  dropped (its stream ends) rather than making the node hold an unbounded backlog or slow
  down the code that publishes; dockerd's broker drops the messages instead, which leaves a
  reader with a hole it cannot see.
- Threads: `publish` may be called from any thread (image and network work runs in worker
  threads); readers are trio tasks, woken through the trio token they subscribed with.

Filters follow moby daemon/events/filter.go: values of one key are alternatives, different
keys must all hold; `container`, `network` and `volume` match the actor's id or name as a
prefix (FuzzyMatch), `event`, `type`, `image` and `scope` exactly (`image` also without its
tag), `label` as key or key=value; an `event` filter of `health_status`, `exec_create` or
`exec_start` matches those actions' longer forms ("health_status: healthy").
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque

from orch.errors import InvalidArgument

RING = 1024
QUEUE = 4096
TYPES = ("container", "image", "volume", "network", "daemon", "plugin", "node", "service", "secret", "config")
FILTER_KEYS = ("container", "event", "image", "label", "network", "type", "volume", "daemon", "plugin", "scope",
               "node", "service", "secret", "config")
_FUZZY_EVENTS = ("health_status", "exec_create", "exec_start")


# -- the message ---------------------------------------------------------------------------------
def message(type_: str, action: str, actor_id: str, attributes: dict | None = None, *, time_ns: int) -> dict:
    """One event as dockerd writes it (see the module's docstring)."""
    attrs = {str(k): str(v) for k, v in sorted((attributes or {}).items())}
    msg: dict = {}
    if type_ in ("container", "image"):
        msg["status"] = action
        if actor_id:
            msg["id"] = actor_id
        if type_ == "container" and attrs.get("image"):
            msg["from"] = attrs["image"]
    msg.update({"Type": type_, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs}, "scope": "local",
                "time": time_ns // 1_000_000_000, "timeNano": time_ns})
    return msg


def container_attributes(rec: dict, **extra) -> dict:
    """A container event's attributes: its labels, `image` and `name` (moby
    daemon/events.go LogContainerEventWithAttributes), then the action's own."""
    attrs = dict(rec["Config"].get("Labels") or {})
    attrs["image"] = rec["Config"].get("Image") or rec.get("Image", "")
    attrs["name"] = rec["Name"].lstrip("/")
    attrs.update({k: str(v) for k, v in extra.items()})
    return attrs


def encode(msg: dict) -> bytes:
    """One event as a line of the stream (Go's json.Encoder: compact, a newline after)."""
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


# -- filters (pure) ------------------------------------------------------------------------------------
def parse_filters(text: str | None) -> dict[str, list[str]]:
    """docker's `filters` query parameter: {"type": ["container"], "event": ["die"]}, or the
    older {"type": {"container": true}} form. An unknown key is refused, as dockerd does."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise InvalidArgument(f"invalid filters {text!r}: give JSON such as {{\"type\": [\"container\"]}}") from None
    if not isinstance(raw, dict):
        raise InvalidArgument("invalid filters: give a JSON object of lists, such as {\"type\": [\"container\"]}")
    out: dict[str, list[str]] = {}
    for key, values in raw.items():
        if key not in FILTER_KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
        values = list(values.keys()) if isinstance(values, dict) else values
        if not isinstance(values, list):
            raise InvalidArgument(f"invalid filter '{key}': give a list of values")
        out[key] = [str(v) for v in values]
    return out


def _exact(filters: dict, key: str, *sources: str) -> bool:
    wanted = filters.get(key)
    return not wanted or any(s in wanted for s in sources)


def _fuzzy(filters: dict, key: str, *sources: str) -> bool:
    wanted = filters.get(key)
    return not wanted or any(s == w or (s and s.startswith(w)) for w in wanted for s in sources)


def _strip_tag(ref: str) -> str:
    """busybox:1 -> busybox, localhost:5000/a:b -> localhost:5000/a, a@sha256:x -> a."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def event_matches(msg: dict, filters: dict[str, list[str]]) -> bool:
    """Whether `msg` passes docker's events `filters` (moby's Filter.Include)."""
    if not filters:
        return True
    actor = msg.get("Actor") or {}
    actor_id = actor.get("ID", "")
    attrs = actor.get("Attributes") or {}
    type_, action = msg.get("Type", ""), msg.get("Action", "")
    if any(w in _FUZZY_EVENTS for w in filters.get("event", ())):
        if not _fuzzy(filters, "event", action):
            return False
    elif not _exact(filters, "event", action):
        return False
    if not _exact(filters, "type", type_) or not _exact(filters, "scope", msg.get("scope", "")):
        return False
    name = attrs.get("name", "")
    for key in ("container", "network", "volume", "plugin", "node", "service", "secret", "config"):
        if not _fuzzy(filters, key, actor_id, name):
            return False
    if filters.get("daemon") and not (type_ == "daemon" and _exact(filters, "daemon", actor_id, name)):
        return False
    image_name = attrs.get("name" if type_ == "image" else "image", "")
    if not _exact(filters, "image", actor_id, image_name, _strip_tag(actor_id), _strip_tag(image_name)):
        return False
    for wanted in filters.get("label", ()):
        key, eq, value = wanted.partition("=")
        if key not in attrs or (eq and attrs[key] != value):
            return False
    return True


def parse_timestamp(text: str | None, what: str) -> int | None:
    """`since`/`until` as the API takes them ("1700000000", "1700000000.5", or with up to nine
    digits of fraction): nanoseconds since the epoch, or None when absent."""
    if text in (None, ""):
        return None
    sec, _, frac = text.partition(".")
    if not (sec.lstrip("-").isdigit() and (not frac or frac.isdigit())):
        raise InvalidArgument(f"invalid {what} {text!r}: give seconds since the epoch, such as 1700000000.5")
    return int(sec) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


# -- the bus -----------------------------------------------------------------------------------------------------
class Dropped(Exception):
    """A reader fell more than QUEUE events behind and was dropped."""


class Subscription:
    """One reader's queue, woken in its trio thread."""

    def __init__(self, bus: "EventBus", filters: dict, limit: int):
        import trio

        self.bus, self.filters, self.limit = bus, filters, limit
        self.queue: deque = deque()
        self.dropped = False
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()
        self._wake = trio.Event()

    def offer(self, msg: dict) -> None:
        if self.dropped or not event_matches(msg, self.filters):
            return
        if len(self.queue) >= self.limit:
            self.dropped = True
        else:
            self.queue.append(msg)
        if threading.get_ident() == self._thread:
            self._wake.set()
        else:
            try:
                self._token.run_sync_soon(self._set)
            except RuntimeError:  # trio has finished: nobody reads any more
                pass

    def _set(self) -> None:
        self._wake.set()

    async def next(self) -> dict:
        import trio

        while not self.queue:
            if self.dropped:
                raise Dropped()
            self._wake = trio.Event()
            await self._wake.wait()
        return self.queue.popleft()


class EventBus:
    def __init__(self, ring: int = RING, queue: int = QUEUE, clock=time.time_ns):
        self._ring: deque = deque(maxlen=ring)
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()
        self._queue = queue
        self._clock = clock
        self._last = 0

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict | None = None) -> dict:
        with self._lock:
            # Strictly increasing times, so `since` and `until` cut the ring in one place.
            now = max(self._clock(), self._last + 1)
            self._last = now
            msg = message(type_, action, actor_id, attributes, time_ns=now)
            self._ring.append(msg)
            readers = list(self._subscribers)
        for reader in readers:
            reader.offer(msg)
        return msg

    def container(self, rec: dict, action: str, **extra) -> dict:
        return self.publish("container", action, rec["Id"], container_attributes(rec, **extra))

    def image(self, action: str, actor_id: str, name: str, labels: dict | None = None) -> dict:
        """An image event: the actor is the image id (tag, untag, delete, load, save, import)
        or the reference (pull, push); attributes are the image's labels and `name`."""
        return self.publish("image", action, actor_id, dict(labels or {}, name=name))

    def past(self, since: int | None, until: int | None, filters: dict) -> list[dict]:
        """The kept events from `since` up to `until` that pass `filters` (moby
        loadBufferedEvents: nothing unless one of the two is given)."""
        if since is None and until is None:
            return []
        with self._lock:
            kept = list(self._ring)
        return [m for m in kept if (since is None or m["timeNano"] >= since) and (until is None or m["timeNano"] <= until)
                and event_matches(m, filters)]

    def subscribe(self, filters: dict) -> Subscription:
        sub = Subscription(self, filters, self._queue)
        with self._lock:
            self._subscribers.add(sub)
        return sub

    def listeners(self) -> int:
        """How many readers are subscribed (docker's NEventsListener)."""
        with self._lock:
            return len(self._subscribers)

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    async def stream(self, since: int | None = None, until: int | None = None, filters: dict | None = None):
        """Yield docker's GET /events: the kept events from `since` (or all kept ones when
        only `until` is given), then new ones as they come, until `until` (forever without
        it; at once when `until` is past). Raises Dropped when the reader falls behind."""
        import trio

        filters = filters or {}
        if since is not None and until is not None and until < since:
            raise InvalidArgument("`since` time cannot be after `until` time")
        sub = self.subscribe(filters)  # before reading the past: nothing falls in between
        try:
            seen = 0
            for msg in self.past(since, until, filters):
                seen = msg["timeNano"]
                yield msg
            now = self._clock()
            if until is not None and until < now:
                return
            deadline = float("inf") if until is None else trio.current_time() + (until - now) / 1e9
            while True:
                # The wait alone is in the cancel scope: a generator must not yield inside one.
                msg = None
                with trio.move_on_at(deadline):
                    msg = await sub.next()
                if msg is None:
                    return
                if msg["timeNano"] > seen and (until is None or msg["timeNano"] <= until):
                    yield msg
        finally:
            self.unsubscribe(sub)
