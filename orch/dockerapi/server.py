"""docker.sock's HTTP/1.1 server: an ASGI server on h11 and trio that can hand a connection
over to its handler, as dockerd "hijacks" one for attach and exec.

Why not hypercorn, which serves orch.sock: docker's attach and exec start answer
`101 UPGRADED` (the client sent `Upgrade: tcp`) and then carry the process's stdio raw on the
same connection, both ways, with a half-close for the end of stdin. ASGI has no such door,
and hypercorn refuses an upgrade it does not know. This server is small because h11 does the
parsing: it runs the docker app (a Starlette app) for every request and offers one extension
in the scope, `scope["extensions"]["orch.hijack"]`: awaiting it with a content type (and, if
need be, a callback run before the answer goes out) writes
the 101 (or, for a client that asked no upgrade, dockerd's `200 OK` with the raw stream's
type) and returns a `Hijacked` connection, with the bytes the client already sent after its
request. The handler then owns the connection until it returns; the server closes it.

What a client can make it hold: the same bounds as orch.sock (orch/node/agent/limits.py):
a request head of MAX_HEAD bytes, KEEP_ALIVE seconds to send one (from the connection's
start and between requests), BODY_IDLE seconds between a body's chunks, and MAX_BODY for a
body, except the routes that take an archive (a build context, an image to load or import, a
`cp` into a container), which stream it to a file on the node, never into memory: those are
bounded by MAX_ARCHIVE and the same idle time. MAX_CONNECTIONS connections at once; one more
is answered 503 and closed.
"""

from __future__ import annotations


import h11
import trio

from orch.node.agent import limits

MAX_CONNECTIONS = 1024
READ_SIZE = 65536
SKIP_BODY = 1 << 16  # what is read of a body its handler left, to keep the connection


class Hijacked:
    """A connection taken over by its handler: `receive()` (b"" at the client's end of
    stream, its half-close included), `send()`, `send_eof()` (our half-close) and `close()`."""

    def __init__(self, stream: trio.SocketStream, leftover: bytes, closed: bool):
        self.stream = stream
        self._leftover = leftover
        self._eof = closed and not leftover

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        if self._leftover:
            data, self._leftover = self._leftover, b""
            return data
        if self._eof:
            return b""
        try:
            data = await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._eof = True
        return data

    async def send(self, data: bytes) -> None:
        """Raises trio.BrokenResourceError when the client is gone."""
        if data:
            try:
                await self.stream.send_all(data)
            except trio.ClosedResourceError:
                raise trio.BrokenResourceError("the connection is closed") from None

    async def send_eof(self) -> None:
        try:
            await self.stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async def close(self) -> None:
        await self.stream.aclose()


class _Connection:
    """One client connection: h11's state, the socket, and what a request's ASGI calls need."""

    def __init__(self, stream: trio.SocketStream, app):
        self.stream = stream
        self.app = app
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.MAX_HEAD)
        self.hijacked: Hijacked | None = None
        self.early: bytes = b""  # read while watching for a disconnect; fed to h11 for the next request
        self.closed = False  # the client closed its side

    async def _read_more(self) -> None:
        try:
            data = await self.stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.closed = True
        self.h11.receive_data(data)

    async def next_event(self):
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            await self._read_more()

    async def send(self, event) -> None:
        data = self.h11.send(event)
        if data:
            await self.stream.send_all(data)

    async def serve(self) -> None:
        while True:
            event = None
            with trio.move_on_after(limits.KEEP_ALIVE):
                try:
                    event = await self.next_event()
                except h11.RemoteProtocolError as err:
                    await self._refuse(err.error_status_hint, f"bad request: {err}")
                    return
            if event is None:
                return  # no request within the keep-alive time (or between requests)
            if not isinstance(event, h11.Request):
                return  # the client closed, or sent something other than a request
            # h11 bounds a head that is still coming (max_incomplete_event_size); one that
            # arrived whole in a read is measured here.
            if len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers) > limits.MAX_HEAD:
                await self._refuse(431, f"the request head is over {limits.MAX_HEAD} bytes")
                return
            await self._run(event)
            if self.hijacked is None and self.h11.their_state is h11.SEND_BODY:
                await self._skip_body()
            if self.hijacked is not None or self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return  # hijacked, or a body left unread, or `Connection: close`
            try:
                self.h11.start_next_cycle()
            except h11.LocalProtocolError:
                return
            if self.early:
                self.h11.receive_data(self.early)
                self.early = b""

    async def _skip_body(self) -> None:
        """Read the end of a body the handler did not read (a request without one needs
        h11's EndOfMessage too), so the connection can carry the next request; a long one
        closes the connection instead."""
        if self.h11.our_state is not h11.DONE:
            return  # our answer closes the connection (a refused body, an unfinished stream)
        skipped = 0
        with trio.move_on_after(limits.BODY_IDLE):
            while self.h11.their_state is h11.SEND_BODY and skipped <= SKIP_BODY:
                try:
                    event = await self.next_event()
                except h11.RemoteProtocolError:
                    return
                if isinstance(event, h11.Data):
                    skipped += len(event.data)
                elif not isinstance(event, h11.EndOfMessage):
                    return

    async def _refuse(self, status: int, message: str) -> None:
        """One error answer, then the connection closes. Written by hand: after the client's
        protocol error h11 sends nothing more."""
        import json
        from http import HTTPStatus

        body = json.dumps({"message": message}).encode()
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        try:
            await self.stream.send_all(head + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _run(self, request: h11.Request) -> None:
        target = request.target
        path, _, query = target.partition(b"?")
        from urllib.parse import unquote_to_bytes

        headers = [(k.lower(), v) for k, v in request.headers]
        upgrade = any(k == b"upgrade" for k, _ in headers)
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": request.http_version.decode(),
            "method": request.method.decode("ascii"), "scheme": "http",
            "path": unquote_to_bytes(path).decode("utf-8", "surrogateescape"), "raw_path": path, "query_string": query,
            "root_path": "", "headers": headers, "client": None, "server": None,
            "extensions": {"orch.hijack": lambda content_type, on_taken=None: self._hijack(content_type, upgrade, on_taken)},
        }
        body_done = False
        response_started = False
        response_done = False

        async def receive():
            nonlocal body_done
            if not body_done:
                event = await self.next_event()
                if isinstance(event, h11.Data):
                    return {"type": "http.request", "body": bytes(event.data), "more_body": True}
                body_done = True
                if isinstance(event, h11.EndOfMessage):
                    return {"type": "http.request", "body": b"", "more_body": False}
                return {"type": "http.disconnect"}  # ConnectionClosed mid-body
            # The body is in: wait for the client to go away (a streamed answer stops then).
            # Bytes it sends meanwhile (a next request) are kept for later.
            while not self.closed and self.hijacked is None and not response_done:
                try:
                    data = await self.stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    self.closed = True
                else:
                    self.early += data
            if self.hijacked is not None or not self.closed:
                await trio.sleep_forever()  # the handler owns the connection now
            return {"type": "http.disconnect"}

        async def send(message):
            nonlocal response_started, response_done
            if self.hijacked is not None:
                return  # the handler answered on the connection itself
            if message["type"] == "http.response.start":
                # The head goes out at once: a streamed answer without a length is chunked,
                # and docker's client waits for some heads before it goes on (wait, events).
                response_started = True
                await self.send(h11.Response(status_code=message["status"], headers=list(message.get("headers", []))))
                return
            if message["type"] != "http.response.body" or response_done or not response_started:
                return
            body = message.get("body", b"") if request.method != b"HEAD" else b""  # HEAD: the head alone
            more = message.get("more_body", False)
            if body:
                await self.send(h11.Data(data=body))
            if not more:
                response_done = True
                await self.send(h11.EndOfMessage())

        try:
            await self.app(scope, receive, send)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except BaseExceptionGroup as group:
            # A streamed answer's tasks (starlette's) whose client went away: nothing to say.
            _, rest = group.split((trio.BrokenResourceError, trio.ClosedResourceError))
            if rest is None:
                return
            raise
        except Exception:
            # The app answered 500 already (its error handler) or could not: a bug, logged;
            # this connection ends, the server goes on.
            import sys
            import traceback

            traceback.print_exc(file=sys.stderr)
            if self.hijacked is None and not response_started:
                await self._refuse(500, "internal error in the agent (see ORCH_ROOT/agent.log)")
            self.h11 = h11.Connection(h11.SERVER)
            return
        if self.hijacked is None and not response_done:
            if not response_started:
                await self._refuse(500, "internal error in the agent: the handler sent no answer (see ORCH_ROOT/agent.log)")
            else:
                # A streamed answer that ended without its last chunk: the connection cannot be reused.
                self.h11 = h11.Connection(h11.SERVER)

    async def _hijack(self, content_type: str, upgrade: bool, on_taken=None) -> Hijacked:
        """Answer 101 (or 200) by hand and give the connection to the handler. `on_taken`, if
        given, is called with the connection before the answer goes out: what it sets up is in
        place before the client can act on the answer (docker's client starts a container as
        soon as its attach is answered)."""
        if self.hijacked is not None:
            return self.hijacked
        if upgrade:
            head = ("HTTP/1.1 101 UPGRADED\r\nContent-Type: " + content_type + "\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        else:
            head = "HTTP/1.1 200 OK\r\nContent-Type: " + content_type + "\r\n\r\n"
        leftover, closed = self.h11.trailing_data
        self.hijacked = Hijacked(self.stream, self.early + leftover, closed or self.closed)
        self.early = b""
        if on_taken is not None:
            on_taken(self.hijacked)
        await self.stream.send_all(head.encode())
        return self.hijacked


async def serve(app, path: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on the unix socket `path` (made 0600, root's) until cancelled."""
    count = [0]
    async with limits.private_unix_listener(path, 128) as listener, trio.open_nursery() as nursery:
        task_status.started()
        while True:
            sock, _ = await listener.accept()
            nursery.start_soon(_handle, trio.SocketStream(sock), app, count)


async def _handle(stream: trio.SocketStream, app, count: list[int]) -> None:
    conn = _Connection(stream, app)
    try:
        if count[0] >= MAX_CONNECTIONS:
            await conn._refuse(503, f"docker.sock serves {MAX_CONNECTIONS} connections at once; try again when some close")
            return
        count[0] += 1
        try:
            await conn.serve()
        finally:
            count[0] -= 1
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError, h11.RemoteProtocolError):
        pass  # the client went away or broke the protocol: its connection ends, the server goes on
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()
