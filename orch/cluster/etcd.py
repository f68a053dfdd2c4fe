"""A trio client of etcd 3.4's v3 API through its JSON gateway (POST /v3/...).

Keys and values travel base64 in the JSON, int64 fields as strings, and proto3 leaves out
every field at its default (a missing `count` is 0, a missing `succeeded` is false). This
module turns that into typed values (`KeyValue`, `Event`, `Member`, `Status`) and etcd's gRPC
error codes into orch's error families, with one-line messages naming the endpoint and the
operation.

Endpoints and failover: requests go to the endpoint that last answered. A request that
certainly did not reach it (connecting failed) moves on to the next endpoint, as does a read
(range, status, member list) that failed after it was sent; a write that failed after it was
sent is not repeated (its outcome is unknown; the caller's level-triggered loop re-reads and
decides). Every call has one deadline (`timeout`) across all its attempts.

Watches (`open_watch`) resume after a disconnect from the revision after the last one seen,
on whichever endpoint answers, so no event is lost or repeated. The revision seen advances
with events and with etcd's progress notifications (which say that every event up to their
header revision was sent). When the revision to resume from has been compacted away, the
watch raises `Compacted`: the caller lists again and watches from the listing's revision.
A stream silent for `idle_timeout` is taken as dead (a half-open TCP connection after a
partition sends nothing) and re-opened; our embedded etcd sends progress notifications every
few seconds, so silence means trouble.
"""

from __future__ import annotations

import binascii
import json
import math
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import trio

from orch.cluster.jsonhttp import Endpoint, TransportError
from orch.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, OrchError, PermissionDenied, SystemFailure, Unavailable

DEFAULT_TIMEOUT = 5.0
WATCH_IDLE_TIMEOUT = 30.0
RETRY_MIN, RETRY_MAX = 0.05, 1.0


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode()


def unb64(text: str) -> bytes:
    return binascii.a2b_base64(text)


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with `prefix` (clientv3's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"  # every key


class Compacted(Conflict):
    """The revision asked for has been compacted: list again, then watch from the listing."""

    def __init__(self, message: str, revision: int):
        super().__init__(message)
        self.revision = revision


class KeyValue(NamedTuple):
    """One key's state (a tuple: a range of 25,600 keys builds 25,600 of them, and a frozen
    dataclass takes three times as long to make)."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    type: Literal["put", "delete"]
    kv: KeyValue  # for a delete: the key and the deleting revision
    prev: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchResponse:
    revision: int  # the store's revision when etcd sent it; events may be older
    events: list[Event]


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int
    more: bool
    count: int


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[dict[str, Any]]  # etcd's response_range / response_put / response_delete_range objects


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class Status:
    endpoint: str
    version: str
    member_id: int
    leader: int
    revision: int
    raft_term: int
    db_size: int
    db_size_in_use: int
    errors: tuple[str, ...] = ()


# -- request values for txn -----------------------------------------------------------------

CompareTarget = Literal["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]
CompareResult = Literal["EQUAL", "GREATER", "LESS", "NOT_EQUAL"]
_TARGET_FIELD = {"VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision", "LEASE": "lease"}


@dataclass(frozen=True, slots=True)
class Compare:
    key: bytes
    target: CompareTarget
    value: int | bytes
    result: CompareResult = "EQUAL"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": b64(self.key), "target": self.target, "result": self.result}
        if self.target == "VALUE":
            out["value"] = b64(self.value if isinstance(self.value, bytes) else str(self.value).encode())
        else:
            out[_TARGET_FIELD[self.target]] = str(self.value)
        return out


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(self.key), "value": b64(self.value)}
        if self.lease:
            body["lease"] = str(self.lease)
        return {"request_put": body}


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes
    range_end: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        body = {"key": b64(self.key)}
        if self.range_end is not None:
            body["range_end"] = b64(self.range_end)
        return {"request_delete_range": body}


@dataclass(frozen=True, slots=True)
class Range:
    key: bytes
    range_end: bytes | None = None
    keys_only: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(self.key)}
        if self.range_end is not None:
            body["range_end"] = b64(self.range_end)
        if self.keys_only:
            body["keys_only"] = True
        return {"request_range": body}


RequestOp = Put | Delete | Range


# -- decoding -------------------------------------------------------------------------------

def decode_kv(kv: dict[str, Any]) -> KeyValue:
    get = kv.get
    value = get("value")
    return KeyValue(unb64(kv["key"]), unb64(value) if value else b"", int(get("create_revision", 0)),
                    int(get("mod_revision", 0)), int(get("version", 0)), int(get("lease", 0)))


def decode_event(ev: dict[str, Any]) -> Event:
    prev = ev.get("prev_kv")
    return Event("delete" if ev.get("type") == "DELETE" else "put", decode_kv(ev["kv"]), decode_kv(prev) if prev else None)


def _revision(resp: dict[str, Any]) -> int:
    return int(resp.get("header", {}).get("revision", 0))


# -- TLS ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TLSFiles:
    """A client's mutual TLS: the CA that signed etcd's certificates, and our certificate."""

    ca_file: str
    cert_file: str
    key_file: str

    def context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as err:
            raise InvalidArgument(f"etcd client TLS files ({self.ca_file}, {self.cert_file}, {self.key_file}) "
                                  f"cannot be loaded: {err}") from None
        # TLS 1.2 (ECDHE with AES-GCM or ChaCha20) on purpose: with TLS 1.3 the server checks the
        # client's certificate after the client's handshake has finished, so a refused
        # certificate shows up as a reset on the first read, indistinguishable from a server
        # that died while handling the request ("did my write happen?"). With 1.2 the refusal
        # is part of the handshake: certainly not sent, and reported as what it is.
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx


# -- errors ---------------------------------------------------------------------------------

def _error_from(url: str, op: str, status: int, body: bytes) -> OrchError:
    try:
        data = json.loads(body)
        message, code = str(data.get("message") or data.get("error") or ""), int(data.get("code", 0))
    except (ValueError, AttributeError, TypeError):
        message, code = body[:200].decode(errors="replace").strip(), 0
    message = message.removeprefix("etcdserver: ")
    text = f"etcd at {url} refused {op}: {message or f'HTTP {status}'}"
    if code == 11 and "compacted" in message:
        return Compacted(text + "; list again and watch from the new revision", 0)
    if code == 5:
        return NotFound(text)
    if code == 6:
        return AlreadyExists(text)
    if code == 3 or status == 400 and code == 0:
        if "too many operations" in message:
            return InvalidArgument(text + "; raise etcd's --max-txn-ops or lower orch's --max-txn-ops")
        if "too large" in message:
            return InvalidArgument(text + "; raise etcd's --max-request-bytes or lower orch's --max-request-bytes")
        return InvalidArgument(text)
    if code == 9:
        return Conflict(text)
    if code in (7, 16):
        return PermissionDenied(text)
    if code == 8:
        return Unavailable(text + ("; compact and defragment etcd, or raise --quota-backend-bytes" if "space" in message else ""))
    if code == 14 or status in (502, 503, 504):
        return Unavailable(text)
    return SystemFailure(text)


def _retryable(err: OrchError, idempotent: bool) -> bool:
    # "no leader" and "not capable" are refused before they reach raft: safe to repeat.
    return isinstance(err, Unavailable) and (idempotent or "no leader" in err.message or "not capable" in err.message)


# -- the client -----------------------------------------------------------------------------

@dataclass
class EtcdClient:
    """A client of one etcd cluster through any of its endpoints (client URLs)."""

    endpoints: Sequence[str]
    tls: TLSFiles | ssl.SSLContext | None = None
    timeout: float = DEFAULT_TIMEOUT
    _endpoints: list[Endpoint] = field(init=False, repr=False)
    _current: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise InvalidArgument("no etcd endpoints given: pass --etcd-endpoints https://HOST:2379[,...]")
        ctx = self.tls.context() if isinstance(self.tls, TLSFiles) else self.tls
        self._endpoints = [Endpoint(url, ctx) for url in self.endpoints]

    @property
    def endpoint(self) -> str:
        """The endpoint that answered last."""
        return self._endpoints[self._current].url

    async def aclose(self) -> None:
        for ep in self._endpoints:
            await ep.aclose()

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def _unreachable(self, op: str, failures: dict[str, str]) -> Unavailable:
        tls = any("tls" in r or "certificate" in r for r in failures.values())
        advice = "check --etcd-endpoints" + (" and that our client certificate is signed by etcd's CA" if tls else "")
        if len(failures) == 1:
            url, reason = next(iter(failures.items()))
            return Unavailable(f"etcd at {url} is unreachable for {op}: {reason}; {advice}")
        listed = ", ".join(f"{url} ({reason})" for url, reason in failures.items())
        return Unavailable(f"etcd is unreachable for {op} at {listed}; {advice}")

    async def call(self, path: str, body: dict[str, Any], *, op: str, idempotent: bool,
                   timeout: float | None = None) -> dict[str, Any]:
        """POST `body` to /v3/`path` on the current endpoint, failing over to the others."""
        data = json.dumps(body, separators=(",", ":")).encode()
        failures: dict[str, str] = {}
        delay = RETRY_MIN
        with trio.move_on_after(self.timeout if timeout is None else timeout) as scope:
            while True:
                for i in range(len(self._endpoints)):
                    index = (self._current + i) % len(self._endpoints)
                    ep = self._endpoints[index]
                    try:
                        resp = await ep.post("/v3/" + path, data)
                    except TransportError as err:
                        failures[ep.url] = err.reason
                        if err.sent and not idempotent:
                            raise Unavailable(f"etcd at {ep.url} dropped the connection during {op}: {err.reason}; "
                                              f"the write may or may not have happened") from None
                        continue
                    if resp.status == 200:
                        self._current = index
                        return json.loads(resp.body)
                    error = _error_from(ep.url, op, resp.status, resp.body)
                    if not _retryable(error, idempotent):
                        raise error
                    failures[ep.url] = error.message.split(": ", 1)[-1]
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        assert scope.cancelled_caught
        if not failures:
            failures = {self.endpoint: "timed out"}
        raise self._unreachable(op, failures)

    # -- kv -------------------------------------------------------------------------------

    async def range(self, key: bytes, range_end: bytes | None = None, *, revision: int = 0, limit: int = 0,
                    keys_only: bool = False, count_only: bool = False) -> RangeResult:
        body: dict[str, Any] = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        if keys_only:
            body["keys_only"] = True
        if count_only:
            body["count_only"] = True
        resp = await self.call("kv/range", body, op=f"range {key.decode(errors='replace')}", idempotent=True)
        return RangeResult([decode_kv(kv) for kv in resp.get("kvs", ())], _revision(resp), bool(resp.get("more")),
                           int(resp.get("count", 0)))

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        resp = await self.call("kv/put", Put(key, value, lease).to_json()["request_put"],
                               op=f"put {key.decode(errors='replace')}", idempotent=False)
        return _revision(resp)

    async def delete_range(self, key: bytes, range_end: bytes | None = None) -> tuple[int, int]:
        """(number deleted, revision)."""
        resp = await self.call("kv/deleterange", Delete(key, range_end).to_json()["request_delete_range"],
                               op=f"delete {key.decode(errors='replace')}", idempotent=False)
        return int(resp.get("deleted", 0)), _revision(resp)

    async def txn(self, compares: Sequence[Compare], success: Sequence[RequestOp], failure: Sequence[RequestOp] = (),
                  *, op: str = "txn") -> TxnResult:
        body = {"compare": [c.to_json() for c in compares], "success": [o.to_json() for o in success],
                "failure": [o.to_json() for o in failure]}
        writes = any(not isinstance(o, Range) for o in (*success, *failure))
        resp = await self.call("kv/txn", body, op=op, idempotent=not writes)
        return TxnResult(bool(resp.get("succeeded")), _revision(resp), resp.get("responses", []))

    async def compact(self, revision: int) -> None:
        await self.call("kv/compaction", {"revision": str(revision), "physical": True}, op=f"compact at {revision}", idempotent=True)

    # -- leases ---------------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """(lease id, granted TTL in seconds; etcd raises a TTL below its minimum)."""
        resp = await self.call("lease/grant", {"TTL": str(ttl)}, op=f"lease grant (ttl {ttl}s)", idempotent=False)
        if resp.get("error"):
            raise Unavailable(f"etcd at {self.endpoint} refused lease grant: {resp['error']}")
        return int(resp["ID"]), int(resp.get("TTL", ttl))

    async def lease_keepalive(self, lease: int, *, timeout: float | None = None) -> int:
        """Refresh a lease; its TTL in seconds, or 0 when it no longer exists (expired or revoked).
        A keepalive only resets a deadline, so repeating it is harmless."""
        resp = await self.call("lease/keepalive", {"ID": str(lease)}, op=f"lease keepalive {lease:x}", idempotent=True,
                               timeout=timeout)
        return max(int(resp.get("result", {}).get("TTL", 0)), 0)

    async def lease_revoke(self, lease: int) -> None:
        try:
            await self.call("lease/revoke", {"ID": str(lease)}, op=f"lease revoke {lease:x}", idempotent=True)
        except NotFound:
            pass  # already gone: what revoke wants

    async def lease_time_to_live(self, lease: int) -> int:
        """Seconds left, or -1 when the lease does not exist."""
        resp = await self.call("lease/timetolive", {"ID": str(lease)}, op=f"lease time-to-live {lease:x}", idempotent=True)
        return int(resp.get("TTL", -1))

    # -- cluster --------------------------------------------------------------------------

    async def member_list(self) -> list[Member]:
        resp = await self.call("cluster/member/list", {}, op="member list", idempotent=True)
        return [_member(m) for m in resp.get("members", ())]

    async def member_add(self, peer_urls: Sequence[str], *, learner: bool = False) -> tuple[Member, list[Member]]:
        """Add a member by its peer URLs; (the new member, every member). A learner does not
        vote, so adding one never costs the cluster its quorum while it catches up."""
        body: dict[str, Any] = {"peerURLs": list(peer_urls)}
        if learner:
            body["isLearner"] = True
        resp = await self.call("cluster/member/add", body,
                               op=f"member add {','.join(peer_urls)}", idempotent=False, timeout=max(self.timeout, 10.0))
        return _member(resp["member"]), [_member(m) for m in resp.get("members", ())]

    async def member_promote(self, member_id: int) -> None:
        """Make a learner a voting member (etcd refuses until it has caught up with the leader)."""
        await self.call("cluster/member/promote", {"ID": str(member_id)}, op=f"member promote {member_id:x}",
                        idempotent=False, timeout=max(self.timeout, 10.0))

    async def member_remove(self, member_id: int) -> None:
        await self.call("cluster/member/remove", {"ID": str(member_id)}, op=f"member remove {member_id:x}",
                        idempotent=False, timeout=max(self.timeout, 10.0))

    async def status(self, url: str | None = None) -> Status:
        """One endpoint's status (the current one by default), without failover."""
        ep = next((e for e in self._endpoints if e.url == (url or self.endpoint).rstrip("/")), None)
        if ep is None:
            ep = Endpoint(url or self.endpoint, self._endpoints[0].ssl_context)
        with trio.move_on_after(self.timeout):
            try:
                resp = await ep.post("/v3/maintenance/status", b"{}")
            except TransportError as err:
                raise self._unreachable("status", {ep.url: err.reason}) from None
            if resp.status != 200:
                raise _error_from(ep.url, "status", resp.status, resp.body)
            data = json.loads(resp.body)
            return Status(ep.url, data.get("version", ""), int(data.get("header", {}).get("member_id", 0)),
                          int(data.get("leader", 0)), _revision(data), int(data.get("raftTerm", 0)),
                          int(data.get("dbSize", 0)), int(data.get("dbSizeInUse", 0)), tuple(data.get("errors", ())))
        raise self._unreachable("status", {ep.url: "timed out"})

    # -- watch ----------------------------------------------------------------------------

    @asynccontextmanager
    async def open_watch(self, key: bytes, range_end: bytes | None = None, *, start_revision: int,
                         prev_kv: bool = False, idle_timeout: float = WATCH_IDLE_TIMEOUT) -> AsyncIterator[WatchStream]:
        """Watch `key` (or [key, range_end)) from `start_revision` on; iterate the stream for
        `WatchResponse`s. Reconnects by itself; raises Compacted when it cannot resume."""
        stream = WatchStream(self, key, range_end, start_revision, prev_kv, idle_timeout)
        try:
            yield stream
        finally:
            await stream.aclose()


def _member(m: dict[str, Any]) -> Member:
    return Member(int(m["ID"]), m.get("name", ""), tuple(m.get("peerURLs", ())), tuple(m.get("clientURLs", ())),
                  bool(m.get("isLearner")))


class WatchStream:
    """The responses of one watch, across reconnects. `next_revision` is where a resume starts."""

    def __init__(self, client: EtcdClient, key: bytes, range_end: bytes | None, start_revision: int, prev_kv: bool,
                 idle_timeout: float):
        self.client = client
        self.key = key
        self.range_end = range_end
        self.next_revision = start_revision
        self.prev_kv = prev_kv
        self.idle_timeout = idle_timeout
        self.reconnects = 0
        self._stack: AsyncExitStack | None = None
        self._lines: AsyncIterator[bytes] | None = None
        self._what = f"watch {key.decode(errors='replace')}"

    def __aiter__(self) -> WatchStream:
        return self

    async def aclose(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._lines = self._stack, None, None
            await stack.aclose()

    async def _open(self) -> None:
        """Open a stream on the first endpoint that answers, retrying with back-off for as long
        as the client's timeout; the caller's cancel scope bounds the rest."""
        body: dict[str, Any] = {"key": b64(self.key), "start_revision": str(self.next_revision), "progress_notify": True}
        if self.range_end is not None:
            body["range_end"] = b64(self.range_end)
        if self.prev_kv:
            body["prev_kv"] = True
        data = json.dumps({"create_request": body}).encode()
        client = self.client
        failures: dict[str, str] = {}
        delay = RETRY_MIN
        deadline = trio.current_time() + client.timeout
        while True:
            for i in range(len(client._endpoints)):
                index = (client._current + i) % len(client._endpoints)
                ep = client._endpoints[index]
                stack = AsyncExitStack()
                try:
                    status, lines = await stack.enter_async_context(ep.open_stream("/v3/watch", data))
                except TransportError as err:
                    failures[ep.url] = err.reason
                    await stack.aclose()
                    continue
                if status != 200:
                    body_bytes = b"".join([line async for line in lines])
                    await stack.aclose()
                    raise _error_from(ep.url, self._what, status, body_bytes)
                client._current = index
                self._stack, self._lines = stack, lines
                return
            if trio.current_time() >= deadline:
                raise client._unreachable(self._what, failures)
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def __anext__(self) -> WatchResponse:
        while True:
            if self._lines is None:
                await self._open()
            assert self._lines is not None
            line = None
            with trio.move_on_after(self.idle_timeout if self.idle_timeout else math.inf):
                try:
                    line = await self._lines.__anext__()
                except (TransportError, StopAsyncIteration):
                    pass
            if line is None:  # broken, ended or silent: resume from where we are
                await self.aclose()
                self.reconnects += 1
                continue
            msg = json.loads(line)
            if "error" in msg:
                err = msg["error"]
                await self.aclose()
                raise _error_from(self.client.endpoint, self._what, int(err.get("http_code", 500)),
                                  json.dumps({"message": err.get("message", ""), "code": err.get("grpc_code", 0)}).encode())
            result = msg.get("result", {})
            if result.get("canceled"):
                await self.aclose()
                compact = int(result.get("compact_revision", 0))
                if compact:
                    raise Compacted(f"etcd at {self.client.endpoint} has compacted revision {self.next_revision} "
                                    f"({self._what}, compacted up to {compact}); list again and watch from there", compact)
                reason = result.get("cancel_reason", "canceled by the server")
                raise Unavailable(f"etcd at {self.client.endpoint} canceled {self._what}: {reason}")
            revision = _revision(result)
            raw = result.get("events")
            if raw:
                events = [decode_event(e) for e in raw]
                self.next_revision = events[-1].kv.mod_revision + 1
                return WatchResponse(revision, events)
            if not result.get("created") and revision >= self.next_revision:
                # A progress notification: every event up to `revision` has been sent.
                self.next_revision = revision + 1
                return WatchResponse(revision, [])
