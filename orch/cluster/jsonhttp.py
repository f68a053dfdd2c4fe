"""A small HTTP/1.1 client for JSON POSTs on trio streams (h11 for the framing), for etcd's
gateway: one endpoint, a pool of kept-alive connections, optional TLS, and streamed
responses read line by line (etcd's watch).

Why not httpx: measured against a local etcd (tests and bench/cluster_store.py), httpx under
trio (through anyio and httpcore) spent about 0.7 ms of client time per small request, h11 on
a trio stream about 0.1 ms: a put took 1.9 ms against 1.3 ms, a one-key range 1.4 ms against
0.7 ms. The manager makes many small requests (keepalives, single-record writes), and trio
streams give trio's own cancellation and TLS (SSLStream) with no second async layer.

Failures are `TransportError`, saying whether the request may have reached the server; the
etcd client turns them into one-line errors that name the endpoint.
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio

from orch.errors import InvalidArgument

READ_SIZE = 256 * 1024
MAX_IDLE = 8  # idle connections kept per endpoint
MAX_LINE = 64 << 20  # a watch message larger than this is refused (etcd's own limit is 1.5 MiB per request)


class TransportError(Exception):
    """The request failed below HTTP. `sent` is False when it certainly did not reach the
    server (connecting failed), so any request may be retried elsewhere."""

    def __init__(self, reason: str, *, sent: bool):
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


def parse_url(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"etcd endpoint {url!r} is not a URL: use http://HOST:PORT or https://HOST:PORT")
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _reason(err: BaseException) -> str:
    cause = err.__cause__
    if isinstance(cause, BaseExceptionGroup) and cause.exceptions:  # trio's open_tcp_stream: one per address tried
        return _reason(cause.exceptions[-1])
    if isinstance(err, trio.BrokenResourceError) and cause is not None:
        return _reason(cause)
    if isinstance(err, ssl.SSLError):
        return f"tls: {(err.reason or str(err)).replace('_', ' ')}".lower()
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return str(err) or type(err).__name__


class _Conn:
    def __init__(self, stream: trio.abc.Stream):
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_LINE)
        self.reused = False

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def next_event(self):
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(READ_SIZE)
            self.h11.receive_data(data)  # b"" marks end of stream, which h11 turns into an error or ConnectionClosed

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)


class _Lines:
    """The lines of a streamed response body (a class, not an async generator, so that leaving
    the stream early needs no generator finalization)."""

    def __init__(self, conn: _Conn):
        self.conn = conn
        # The pieces of the line being read, joined once its end comes: a watch message of a
        # few hundred kilobytes arrives in many reads, and adding each to the bytes before it
        # copied the message over and over (5% of a leader's CPU during a large deploy).
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.ready: deque[bytes] = deque()
        self.ended = False

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> bytes:
        while not self.ready:
            if self.ended:
                raise StopAsyncIteration
            try:
                event = await self.conn.next_event()
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, ssl.SSLError) as err:
                raise TransportError(_reason(err) or "connection closed", sent=True) from None
            if isinstance(event, h11.Data):
                self._add(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.ended = True
                self._end_line(b"")
            else:
                raise TransportError(f"unexpected {type(event).__name__} in a streamed response", sent=True)
        return self.ready.popleft()

    def _add(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._end_line(data[start:end])
            start = end + 1
        if start < len(data):
            rest = data[start:] if start else data
            self.pending.append(rest)
            self.pending_size += len(rest)
            if self.pending_size > MAX_LINE:
                raise TransportError(f"a streamed message is larger than {MAX_LINE} bytes", sent=True)

    def _end_line(self, last: bytes) -> None:
        if self.pending:
            self.pending.append(last)
            last = b"".join(self.pending)
            self.pending, self.pending_size = [], 0
        if last.strip():
            self.ready.append(last)


class Endpoint:
    """One server: `post` for request/response, `open_stream` for a streamed response."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None):
        self.url = url.rstrip("/")
        self.scheme, self.host, self.port = parse_url(self.url)
        if self.scheme == "https" and ssl_context is None:
            raise InvalidArgument(f"etcd endpoint {url} is https but no TLS certificates were given: "
                                  f"pass --etcd-cafile, --etcd-certfile and --etcd-keyfile")
        self.ssl_context = ssl_context if self.scheme == "https" else None
        self._idle: list[_Conn] = []
        self._host_header = f"{self.host}:{self.port}"

    async def _connect(self) -> _Conn:
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(self.host, self.port)
        except OSError as err:
            raise TransportError(_reason(err), sent=False) from None
        if self.ssl_context is not None:
            tls = trio.SSLStream(stream, self.ssl_context, server_hostname=self.host, https_compatible=True)
            try:
                await tls.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError, OSError) as err:
                await trio.aclose_forcefully(stream)
                raise TransportError(_reason(err), sent=False) from None
            stream = tls
        return _Conn(stream)

    async def _checkout(self) -> _Conn:
        if self._idle:
            conn = self._idle.pop()
            conn.reused = True
            return conn
        return await self._connect()

    def _request_bytes(self, conn: _Conn, path: str, body: bytes) -> bytes:
        head = conn.h11.send(h11.Request(method="POST", target=path, headers=[
            ("Host", self._host_header), ("Content-Type", "application/json"), ("Content-Length", str(len(body)))]))
        return head + conn.h11.send(h11.Data(data=body)) + conn.h11.send(h11.EndOfMessage())

    async def _start(self, path: str, body: bytes) -> tuple[_Conn, h11.Response]:
        """Send the request and read the response head, on a pooled connection; a reused
        connection the server had closed is retried once on a new one (nothing was read)."""
        for attempt in (0, 1):
            conn = await self._checkout()
            got_bytes = False
            try:
                await conn.send(self._request_bytes(conn, path, body))
                event = await conn.next_event()
                got_bytes = True
                if not isinstance(event, h11.Response):
                    raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
                return conn, event
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, ssl.SSLError) as err:
                await conn.aclose()
                if conn.reused and not got_bytes and attempt == 0:
                    continue
                raise TransportError(_reason(err) or "connection closed", sent=True) from None
            except BaseException:
                await conn.aclose()
                raise
        raise AssertionError("unreachable")

    async def post(self, path: str, body: bytes) -> Response:
        conn, head = await self._start(path, body)
        chunks = []
        try:
            while True:
                event = await conn.next_event()
                if isinstance(event, h11.Data):
                    chunks.append(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
        except (OSError, trio.BrokenResourceError, h11.ProtocolError, ssl.SSLError) as err:
            await conn.aclose()
            raise TransportError(_reason(err) or "connection closed", sent=True) from None
        except BaseException:
            await conn.aclose()
            raise
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE and len(self._idle) < MAX_IDLE:
            conn.h11.start_next_cycle()
            self._idle.append(conn)
        else:
            await conn.aclose()
        return Response(head.status_code, b"".join(chunks))

    @asynccontextmanager
    async def open_stream(self, path: str, body: bytes) -> AsyncIterator[tuple[int, _Lines]]:
        """A streamed response on a connection of its own: (status, an iterator of its lines).
        The iterator ends when the server ends the response; a broken connection raises
        TransportError. Leaving the block closes the connection."""
        conn, head = await self._start(path, body)

        try:
            yield head.status_code, _Lines(conn)
        finally:
            await conn.aclose()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()
