"""The agent's POST /images/pull and /images/push: JSON lines, errors in-band."""

import json
from types import SimpleNamespace

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse

from orch.errors import OrchError
from orch.node.agent.events import EventBus

from orch.node.agent.routes_registry import ROUTES

from .conftest import PASSWORD, USER, make_image


def _client(store) -> httpx.AsyncClient:
    async def on_error(request, err: OrchError):  # as the agent's app.py does
        return JSONResponse({"kind": err.kind, "message": str(err)}, status_code=err.http_status)

    app = Starlette(routes=ROUTES, exception_handlers={OrchError: on_error})
    app.state.node = SimpleNamespace(root=store.root, images=store, events=EventBus())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orch")


def _lines(resp) -> list[dict]:
    return [json.loads(line) for line in resp.text.splitlines()]


async def test_push_and_pull_stream_progress(registry_server, store_factory):
    reg = registry_server(auth=True)
    src, dst = store_factory("a"), store_factory("b")
    ref = f"{reg.host}/agent/app:v1"
    image = make_image(src, ref, [{"f": b"x" * 200_000}])
    auth = {"username": USER, "password": PASSWORD}
    async with _client(src) as c:
        resp = await c.post("/images/push", json={"ref": ref, "auth": auth})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/x-ndjson"
    events = _lines(resp)
    assert events[0] == {"status": f"The push refers to repository [{reg.host}/agent/app]"}
    assert any(e.get("status") == "Pushing" and e["progressDetail"]["current"] == e["progressDetail"]["total"] for e in events)
    assert events[-2]["status"].startswith("v1: digest: sha256:")
    assert events[-1]["aux"] == {"Tag": "v1", "Digest": events[-2]["status"].split()[2]}  # docker's last event of a push

    async with _client(dst) as c:
        resp = await c.post("/images/pull", json={"ref": ref, "auth": auth})
    events = _lines(resp)
    assert not [e for e in events if "error" in e]
    assert events[-1] == {"status": ref}
    assert dst.resolve(ref).id == image.id


async def test_errors_arrive_as_the_last_line(registry_server, store_factory):
    reg = registry_server(auth=True)
    async with _client(store_factory()) as c:
        resp = await c.post("/images/pull", json={"ref": f"{reg.host}/agent/app:v1"})
        bad = await c.post("/images/pull", json={"reference": "x"})
    assert _lines(resp)[-1] == {"error": f"registry {reg.host} wants a user name and password: run 'orch login {reg.host}'", "kind": "invalid-argument"}
    assert bad.status_code == 400
    assert bad.json() == {"kind": "invalid-argument", "message": "POST /images/pull: ref: field required"}
