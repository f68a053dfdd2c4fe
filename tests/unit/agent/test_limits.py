"""The agent's request-body bounds (orch/node/agent/limits.py) on a stand-in ASGI app: refused
on Content-Length without reading, refused as a chunked body passes the bound, refused when
it stops coming; a complete body, and what the app awaits after it, are left alone. Waits run
on pytest-trio's autojump clock: they take no time."""

import json

import pytest
import trio

from orch.node.agent.limits import BodyTooLarge, BodyTooSlow, limit_bodies


def scope(length=None):
    headers = [(b"host", b"orch")] + ([(b"content-length", str(length).encode())] if length is not None else [])
    return {"type": "http", "method": "POST", "path": "/containers/create", "headers": headers}


class Client:
    """The server side of one request: the body's chunks as `receive` gives them, and what
    the app sent."""

    def __init__(self, chunks, *, then_wait=False):
        self.chunks = list(chunks)
        self.then_wait = then_wait
        self.taken = 0
        self.sent = []

    async def receive(self):
        if self.chunks:
            self.taken += 1
            chunk = self.chunks.pop(0)
            if chunk is None:
                await trio.sleep_forever()  # the client stopped sending
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}
        await trio.sleep_forever()  # a disconnect that never comes

    async def send(self, message):
        self.sent.append(message)


async def reading_app(scope, receive, send):
    """Reads the whole body, as starlette's request.body() does, and answers its size."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def test_an_announced_body_over_the_limit_is_refused_unread():
    client = Client([b"x" * 10])
    await limit_bodies(reading_app, limit=100)(scope(length=101), client.receive, client.send)
    assert client.taken == 0
    start, body = client.sent
    assert start["status"] == 413 and (b"connection", b"close") in start["headers"]
    answer = json.loads(body["body"])
    assert answer["kind"] == "invalid-argument" and "over the agent's limit" in answer["message"]


async def test_a_chunked_body_is_refused_as_it_passes_the_limit():
    client = Client([b"x" * 40] * 10)
    with pytest.raises(BodyTooLarge, match="over 120 bytes, chunked"):
        await limit_bodies(reading_app, limit=100)(scope(), client.receive, client.send)
    assert client.taken == 3 and client.sent == []


async def test_a_body_that_stops_coming_is_refused_after_the_idle_time(autojump_clock):
    client = Client([b"{", None])
    start = trio.current_time()
    with pytest.raises(BodyTooSlow, match="stopped coming for 5 s"):
        await limit_bodies(reading_app, limit=100, idle=5)(scope(length=50), client.receive, client.send)
    assert trio.current_time() - start == pytest.approx(5)


async def test_a_body_within_the_limit_passes_and_later_waits_are_not_timed(autojump_clock):
    client = Client([b"x" * 50, b"x" * 50])
    await limit_bodies(reading_app, limit=100, idle=5)(scope(length=100), client.receive, client.send)
    assert client.sent[1]["body"] == b"100"

    async def streaming_app(scope, receive, send):
        await receive()  # the (empty) body
        with trio.move_on_after(60):
            await receive()  # waits for a disconnect while a response streams: no 408 here
        await send({"type": "http.response.start", "status": 200, "headers": []})

    client = Client([b""])
    await limit_bodies(streaming_app, limit=100, idle=5)(scope(), client.receive, client.send)
    assert client.sent[0]["status"] == 200
