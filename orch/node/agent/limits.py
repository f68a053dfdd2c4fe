"""What one client can make the agent hold on orch.sock: a request's body and its time.

Every route takes a small JSON body (a create request, a project's state), since build
contexts, image archives and volumes travel as paths on the node (POST /build {"context":
PATH}, /images/load {"path": PATH}), read from disk by the worker that needs them. So one bound
holds for every route, MAX_BODY, but one: docker's PUT /containers/{id}/archive (`cp` into a
container), whose tar body the agent streams to a worker as it comes and never holds
(`streams_body`). A body announced larger (Content-Length) is
refused before a byte of it is read; a chunked body is counted as it comes and refused when it
passes the bound. Either way the answer is 413 with the agent's one-line error, and the
connection is closed (the rest of the body is never read).

Time: hypercorn closes a connection that sends no complete request head within its
keep-alive timeout (KEEP_ALIVE, from the connection's start and between requests), and bounds
the head's size (MAX_HEAD). Once the head is in, the body must keep coming: BODY_IDLE seconds
at most between its chunks, else 408, and the connection closes at once (error_headers). A
request whose body is complete may then take as long as its work does (a build, `logs -f`,
`wait`), so there is no timeout on reading after that: hypercorn's read_timeout would cut
those off.
"""

import os
from contextlib import asynccontextmanager

import trio

from orch.errors import InvalidArgument

MAX_BODY = 16 << 20
BODY_IDLE = 5.0
KEEP_ALIVE = 5.0
MAX_HEAD = 16 << 10


@asynccontextmanager
async def private_unix_listener(path: str, backlog: int, kind: int = trio.socket.SOCK_STREAM):
    """A listening unix socket at `path` only root may connect to (0600 from its creation: the
    umask covers the moment between bind and chmod), replacing a stale one; closed and removed
    when the block ends."""
    if os.path.exists(path):
        os.unlink(path)
    listener = trio.socket.socket(trio.socket.AF_UNIX, kind)
    try:
        old = os.umask(0o077)
        try:
            await listener.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        listener.listen(backlog)
        yield listener
    finally:
        listener.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class BodyTooLarge(InvalidArgument):
    http_status = 413


class BodyTooSlow(InvalidArgument):
    http_status = 408


def error_headers(err: Exception) -> dict[str, str] | None:
    """The headers of an error answer: a refused body is never read to its end, so the answer
    closes the connection (else the server would wait to skip the rest of a body that stopped
    coming before it closed: BODY_IDLE more seconds held by a slow client)."""
    return {"connection": "close"} if isinstance(err, (BodyTooLarge, BodyTooSlow)) else None


def _too_large(method: str, path: str, size: str, limit: int | float) -> BodyTooLarge:
    if limit == MAX_BODY:
        return BodyTooLarge(f"{method} {path}: the request body ({size}) is over the agent's limit of "
                            f"{MAX_BODY >> 20} MiB; pass large inputs as paths on the node")
    return BodyTooLarge(f"{method} {path}: the request body ({size}) is over the agent's limit of {int(limit) >> 20} MiB "
                        "for this route")


def streams_body(method: str, path: str) -> bool:
    """The one route whose body is streamed on, never held: PUT /containers/{id}/archive (a
    tar, which the agent hands to a worker chunk by chunk). Only its time is bounded."""
    parts = path.split("/")
    return method == "PUT" and len(parts) == 4 and parts[1] == "containers" and parts[3] == "archive"


def limit_bodies(app, *, limit: int | None = None, idle: float | None = None):
    """The ASGI app `app`, with request bodies bounded in size and in time between chunks.
    (`limit` and `idle` default to MAX_BODY and BODY_IDLE, read at each request.)"""

    async def limited(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        max_body = MAX_BODY if limit is None else limit
        if limit is None and streams_body(scope["method"], scope["path"]):
            max_body = float("inf")  # orch.sock's cp: only its time is bounded (a caller's limit holds)
        max_idle = BODY_IDLE if idle is None else idle
        method, path = scope["method"], scope["path"]
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and int(length) > max_body:
            err = _too_large(method, path, f"{int(length)} bytes", max_body)
            return await _reply(send, err)
        received = 0
        done = False

        async def receive_limited():
            nonlocal received, done
            if done:
                return await receive()  # a disconnect, awaited while a response streams
            with trio.move_on_after(max_idle) as waiting:
                message = await receive()
            if waiting.cancelled_caught:
                raise BodyTooSlow(f"{method} {path}: the request body stopped coming for {max_idle:g} s; "
                                  "the connection is closed")
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    raise _too_large(method, path, f"over {received} bytes, chunked", max_body)
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        await app(scope, receive_limited, send)

    return limited


async def _reply(send, err: InvalidArgument) -> None:
    import json

    body = json.dumps({"kind": err.kind, "message": str(err)}).encode()
    await send({"type": "http.response.start", "status": err.http_status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
