"""docker.sock's HTTP/1.1 server (orch/dockerapi/server.py) with a small app on a unix socket
in a temporary directory: keep-alive across requests (a request without a body included),
the hijack (101, bytes sent early, both half-closes), dockerd's version prefix and headers,
and the bounds a client meets (head size, body size, idle time, connections)."""

import os

import pytest
import trio
import trio.testing
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from orch.dockerapi import server
from orch.dockerapi.app import MAX_ARCHIVE, DockerState, build_app, on_orch_error, versioned
from orch.errors import OrchError
from orch.node.agent import limits


async def echo(request):
    return JSONResponse({"path": request.url.path, "version": request.scope.get("docker.version"),
                         "body": (await request.body()).decode()})


async def ping(request):
    return PlainTextResponse("OK")


async def hijack(request):
    await request.body()
    conn = await request.scope["extensions"]["orch.hijack"]("application/vnd.docker.raw-stream")
    got = b""
    while True:
        data = await conn.receive()
        if not data:
            break
        got += data
    await conn.send(b"got:" + got)  # after the client's half-close, the answer still goes out
    await conn.send_eof()

    class Taken(Response):
        async def __call__(self, scope, receive, send):
            return None

    return Taken()


def app():
    # docker.sock's own handler of orch's errors, so a refused body answers as it does there
    return limits.limit_bodies(versioned(Starlette(routes=[
        Route("/echo", echo, methods=["GET", "POST", "HEAD"]), Route("/_ping", ping, methods=["GET", "HEAD"]),
        Route("/attach", hijack, methods=["POST"])], exception_handlers={OrchError: on_orch_error})))


@pytest.fixture
async def sock(tmp_path, nursery):
    path = str(tmp_path / "docker.sock")
    await nursery.start(server.serve, app(), path)
    return path


async def connect(path):
    s = trio.socket.socket(trio.socket.AF_UNIX)
    await s.connect(path)
    return trio.SocketStream(s)


async def read_response(stream, buf=b"", *, head_request=False):
    """(head, body, rest) of one answer; the body by Content-Length or chunks (none for HEAD)."""
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(65536)
        assert chunk, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])}
    if head_request:
        return head, b"", rest
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        while len(rest) < n:
            rest += await stream.receive_some(65536)
        return head, rest[:n], rest[n:]
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += await stream.receive_some(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line, 16)
            while len(rest) < n + 2:
                rest += await stream.receive_some(65536)
            body, rest = body + rest[:n], rest[n + 2:]
            if n == 0:
                return head, body, rest
    return head, b"", rest


async def test_keep_alive_after_a_request_without_a_body(sock):
    """HEAD /_ping then POST on one connection, as the docker CLI does: the first request's
    (empty) body must be read to its end, or the second is lost."""
    stream = await connect(sock)
    await stream.send_all(b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"POST /v1.41/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    head, body, rest = await read_response(stream, head_request=True)
    assert head.startswith(b"HTTP/1.1 200") and b"api-version: 1.47" in head.lower() and body == b""
    head, body, _ = await read_response(stream, rest)
    assert b'"version":"1.41"' in body and b'"path":"/echo"' in body and b'"body":"hi"' in body


async def test_a_version_out_of_range_is_dockerds_400(sock):
    stream = await connect(sock)
    await stream.send_all(b"GET /v1.12/echo HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body, _ = await read_response(stream)
    assert head.startswith(b"HTTP/1.1 400") and b"is too old" in body


async def test_hijack_with_early_bytes_and_half_closes(sock):
    stream = await connect(sock)
    # The client's first bytes of stdin come in the same packet as its request.
    await stream.send_all(b"POST /attach HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\nearly ")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += await stream.receive_some(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED") and b"Upgrade: tcp" in head
    await stream.send_all(b"late")
    await stream.send_eof()  # the client's stdin ends; its reading side stays open
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        rest += chunk
    assert rest == b"got:early late"


async def test_a_body_over_the_limit_is_413_before_it_is_read(sock):
    stream = await connect(sock)
    await stream.send_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (limits.MAX_BODY + 1))
    head, body, _ = await read_response(stream)
    assert head.startswith(b"HTTP/1.1 413") and b"limit" in body


async def test_a_head_over_the_limit_is_refused(sock):
    stream = await connect(sock)
    await stream.send_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (limits.MAX_HEAD + 10) + b"\r\n\r\n")
    head, body, _ = await read_response(stream)
    assert head.startswith(b"HTTP/1.1 431"), head
    try:
        assert await stream.receive_some(10) == b""  # and the connection is closed
    except trio.BrokenResourceError:
        pass  # closed with some of our head unread: a reset


async def test_a_head_that_trickles_in_is_cut_at_the_keep_alive_time(sock, autojump_clock):
    """A slow client (one byte of its head a second, never a whole head) holds a connection
    no longer than a silent one: the keep-alive time runs from the connect, not from its last byte."""
    stream = await connect(sock)
    start = trio.current_time()
    closed = False
    with trio.fail_after(limits.KEEP_ALIVE + 2):
        for byte in b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                await stream.send_all(bytes([byte]))
                with trio.move_on_after(1):
                    if await stream.receive_some(10) == b"":
                        closed = True
                        break
            except trio.BrokenResourceError:  # closed with our bytes unread: a reset
                closed = True
                break
    assert closed and trio.current_time() - start <= limits.KEEP_ALIVE + 1


async def test_a_silent_connection_is_closed_after_the_keep_alive_time(sock, autojump_clock):
    stream = await connect(sock)
    with trio.fail_after(limits.KEEP_ALIVE + 1):
        assert await stream.receive_some(10) == b""


async def test_a_body_that_stops_coming_is_408(sock, autojump_clock):
    stream = await connect(sock)
    await stream.send_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    with trio.fail_after(limits.BODY_IDLE + limits.KEEP_ALIVE):
        head, body, _ = await read_response(stream)
    assert head.startswith(b"HTTP/1.1 408") and b"stopped coming" in body, (head, body)


@pytest.mark.parametrize("method, path, limit", [
    ("POST", "/v1.41/containers/create", limits.MAX_BODY),  # a JSON body: orch.sock's bound
    ("POST", "/v1.41/build", MAX_ARCHIVE),  # archives stream to a file: a bound of their own
    ("POST", "/v1.41/images/load", MAX_ARCHIVE),
    ("POST", "/images/create", MAX_ARCHIVE),  # import
    ("PUT", "/v1.41/containers/c1/archive", MAX_ARCHIVE),  # cp into a container
])
async def test_every_route_of_the_docker_app_bounds_its_body(tmp_path, nursery, method, path, limit):
    """docker.sock's own app (build_app): a body announced one byte over its route's bound is
    refused before a byte of it is read, and before the route runs (no node is needed). That an
    archive route takes more than MAX_BODY is tests/integration/dockerapi/test_door.py's."""
    sock = str(tmp_path / "docker.sock")
    state = DockerState(nursery)
    await nursery.start(server.serve, build_app(None, state), sock)
    stream = await connect(sock)
    await stream.send_all(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {limit + 1}\r\n\r\n".encode())
    head, body, _ = await read_response(stream)
    assert head.startswith(b"HTTP/1.1 413") and f"limit of {limit >> 20} MiB".encode() in body, (head, body)
    assert await stream.receive_some(10) == b""  # the connection is closed, the body never read


async def test_connections_beyond_the_bound_are_answered_503(tmp_path, nursery, monkeypatch):
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 2)
    path = str(tmp_path / "docker.sock")
    await nursery.start(server.serve, app(), path)
    held = [await connect(path) for _ in range(2)]
    for s in held:  # both are being served (they got an answer)
        await s.send_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_response(s)
    third = await connect(path)
    head, body, _ = await read_response(third)
    assert head.startswith(b"HTTP/1.1 503") and b"connections at once" in body


async def test_the_socket_is_root_only(sock):
    assert os.stat(sock).st_mode & 0o777 == 0o600


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)
