"""The agent's registry API: POST /images/pull and POST /images/push, streaming progress.

The answer is a stream of JSON lines in docker's /images/create shape ({"status", "id",
"progressDetail"}), ending with {"status": ...} lines on success or one
{"error": message, "kind": kind} line on failure: once the 200 and the first lines are out, an
error can only travel in-band, as docker's stream does it. Credentials come in the body (the
caller's, as docker's X-Registry-Auth), else from the agent's own auth.json.

The transfer runs in a plain thread, not a trio worker: it goes on to the end even when the
caller hangs up (a half-pulled image is never visible anyway, see orch/registry/pull.py), and
events cross to the response through a queue.

The `orch` CLI and the compose engine use these routes, with the user's credentials in the body
(orch/cli/registry.py). A push ends with docker's {"aux": {"Tag", "Digest", "Size"}} event.
"""

import json
import queue
import threading

import trio
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from orch.errors import OrchError
from orch.node.agent.routes_containers import parse
from orch.node.runtime import reference
from orch.registry import credentials

_DONE = object()


class Auth(BaseModel):
    username: str
    password: str


class TransferRequest(BaseModel):
    ref: str
    auth: Auth | None = None


def _lookup(body: TransferRequest):
    if body.auth is None:
        return credentials.lookup
    pair = (body.auth.username, body.auth.password)
    return lambda _domain: pair


def _stream(work) -> StreamingResponse:
    """Run `work(events)` in a thread; answer with its events as JSON lines."""
    q: queue.SimpleQueue = queue.SimpleQueue()

    def run() -> None:
        try:
            work(q.put)
        except OrchError as err:
            q.put({"error": str(err), "kind": err.kind})
        except Exception as err:  # a bug: still one line for the caller
            q.put({"error": f"internal error in the agent: {type(err).__name__}: {err}", "kind": "error"})
        finally:
            q.put(_DONE)

    threading.Thread(target=run, name="registry-transfer", daemon=True).start()

    async def lines():
        while True:
            event = await trio.to_thread.run_sync(q.get)
            if event is _DONE:
                return
            yield (json.dumps(event) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def pull_image(request: Request) -> StreamingResponse:
    from orch.registry.pull import pull

    body = await parse(request, TransferRequest)
    node = request.app.state.node

    def work(events) -> None:
        pull(node.images, body.ref, events=events, lookup=_lookup(body))
        _publish(node, "pull", body.ref)

    return _stream(work)


def _publish(node, action: str, ref: str) -> None:
    """docker's pull and push events: the actor is the reference, `name` its repository."""
    parsed = reference.parse(ref)
    labels = {}
    try:
        labels = (node.images.resolve(ref).config.get("config") or {}).get("Labels") or {}
    except OrchError:
        pass
    node.events.image(action, parsed.familiar(), parsed.familiar_name, labels)


async def push_image(request: Request) -> StreamingResponse:
    from orch.registry.push import push

    body = await parse(request, TransferRequest)
    store = request.app.state.node.images

    def work(events) -> None:
        digest = push(store, body.ref, events=events, lookup=_lookup(body))
        _publish(request.app.state.node, "push", body.ref)
        events({"progressDetail": {}, "aux": {"Tag": reference.parse(body.ref).tag or "", "Digest": digest}})

    return _stream(work)


ROUTES = [
    Route("/images/pull", pull_image, methods=["POST"]),
    Route("/images/push", push_image, methods=["POST"]),
]
