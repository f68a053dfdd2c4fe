"""The agent's image routes, served by a small starlette app like the agent's, over httpx."""

from types import SimpleNamespace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse

from orch.errors import OrchError
from orch.node.agent.events import EventBus
from orch.node.agent.routes_images import ROUTES

from .conftest import entry, tar_bytes

pytestmark = pytest.mark.privileged


def make_app(store, in_use=None):
    async def on_error(request, err: OrchError):
        return JSONResponse({"kind": err.kind, "message": str(err)}, status_code=err.http_status)

    app = Starlette(routes=ROUTES, exception_handlers={OrchError: on_error})
    node = SimpleNamespace(root=store.root, images=store, events=EventBus())
    if in_use is not None:
        node.image_in_use = in_use
    app.state.node = node
    return app


@pytest.fixture
def client_for():
    clients = []

    def make(store, in_use=None):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(store, in_use)), base_url="http://orch")
        clients.append(client)
        return client

    yield make


async def test_import_list_inspect_tag_rmi(store, tmp_path, client_for):
    (tmp_path / "r.tar").write_bytes(tar_bytes(entry("etc/motd", data=b"hi")))
    c = client_for(store)
    r = await c.post("/images/import", json={"source": str(tmp_path / "r.tar"), "ref": "app:1", "changes": ['CMD ["sh"]', "ENV A=1"]})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    assert r.json()["repo_tags"] == ["app:1"]

    listing = (await c.get("/images")).json()
    assert [(i["Id"], i["RepoTags"]) for i in listing] == [(image_id, ["app:1"])]

    r = await c.post("/images/tag", json={"source": "app:1", "target": "localhost:5000/team/app:2"})
    assert r.status_code == 201 and r.json()["repo_tags"] == ["app:1", "localhost:5000/team/app:2"]

    doc = (await c.get("/images/localhost:5000/team/app:2/json")).json()
    assert doc["Id"] == image_id and doc["Config"]["Cmd"] == ["sh"] and doc["Config"]["Env"] == ["A=1"]

    r = await c.delete("/images/localhost:5000/team/app:2")
    assert r.json() == {"lines": ["Untagged: localhost:5000/team/app:2"]}
    r = await c.delete(f"/images/{image_id[7:19]}")
    assert r.json()["lines"][:2] == ["Untagged: app:1", f"Deleted: {image_id}"]


async def test_errors_come_back_as_kind_and_message(store, client_for):
    c = client_for(store)
    r = await c.get("/images/nope/json")
    assert r.status_code == 404 and r.json() == {"kind": "not-found", "message": "no such image: nope; build it, pull it, or make a base with 'orch bootstrap busybox'"}
    r = await c.post("/images/tag", content=b'{"source": "x"}')
    assert r.status_code == 400 and r.json()["kind"] == "invalid-argument" and "target" in r.json()["message"]
    r = await c.post("/images/save", json={"refs": ["x"], "path": "/tmp/x.tar", "format": "zip"})
    assert r.status_code == 400 and "format" in r.json()["message"]


async def test_rmi_asks_the_node_which_containers_use_the_image(store, tmp_path, client_for):
    (tmp_path / "r.tar").write_bytes(tar_bytes(entry("a", data=b"a")))
    image = store.import_rootfs(tmp_path / "r.tar", "busy")
    c = client_for(store, in_use=lambda image_id: ["web"] if image_id == image.id else [])
    r = await c.delete("/images/busy")
    assert r.status_code == 409 and "container web is using its referenced image" in r.json()["message"]
    r = await c.delete("/images/busy?force=1")
    assert r.json() == {"lines": ["Untagged: busy:latest"]}


async def test_save_and_load(store, tmp_path, client_for):
    (tmp_path / "r.tar").write_bytes(tar_bytes(entry("a", data=b"a")))
    image = store.import_rootfs(tmp_path / "r.tar", "busy")
    c = client_for(store)
    r = await c.post("/images/save", json={"refs": ["busy"], "path": str(tmp_path / "out.tar"), "format": "oci"})
    assert r.status_code == 200 and (tmp_path / "out.tar").exists()
    store.remove("busy")
    r = await c.post("/images/load", json={"path": str(tmp_path / "out.tar")})
    assert r.json() == {"lines": ["Loaded image: busy:latest"]} and store.resolve("busy").id == image.id
