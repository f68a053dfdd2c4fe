"""The agent's image API: list, inspect, remove, tag, import, load, save, bootstrap.

Handlers find the node at `request.app.state.node` (`.images` is the ImageStore); the store
is blocking file work, so each call runs in a worker thread (`trio.to_thread.run_sync`).
Errors are `OrchError`s; the app turns them into `{"kind", "message"}` answers. Paths in
bodies (import, load, save) are paths on the node; the CLI makes them absolute.

References contain '/' and ':' ("docker.io/library/busybox:latest"), so routes that take one
in the URL use starlette's `path` converter (`/images/{ref:path}/json`); the CLI quotes the
reference anyway.
"""

from typing import Literal

import trio
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orch.errors import OrchError
from orch.node.agent.routes_containers import parse
from orch.node.runtime import imageconfig


class TagRequest(BaseModel):
    source: str
    target: str


class ImportRequest(BaseModel):
    source: str
    ref: str | None = None
    changes: list[str] | dict | None = None  # Dockerfile-style lines (`CMD ["sh"]`) or a config dict
    message: str | None = None


class LoadRequest(BaseModel):
    path: str


class SaveRequest(BaseModel):
    refs: list[str]
    path: str
    format: Literal["docker", "oci"] = "docker"


class BootstrapRequest(BaseModel):
    name: str
    force: bool = False


class Lines(BaseModel):
    """Messages to print, one a line (docker's "Untagged:", "Loaded image:" ...)."""

    lines: list[str]


class ImageRef(BaseModel):
    id: str
    repo_tags: list[str]
    message: str = ""


def _store(request: Request):
    return request.app.state.node.images


def _reply(model: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(), status_code=status)


def _labels(image) -> dict:
    return dict(((image.config.get("config") or {}).get("Labels")) or {})


def publish_image(request: Request, action: str, image, name: str | None = None) -> None:
    """docker's image event for `image` (an Image), named `name` (its id by default)."""
    request.app.state.node.events.image(action, image.id, name or image.id, _labels(image))


async def list_images(request: Request) -> JSONResponse:
    store = _store(request)
    found = await trio.to_thread.run_sync(store.list)
    return JSONResponse([imageconfig.summary_json(im) for im in found])


async def inspect_image(request: Request) -> JSONResponse:
    store = _store(request)
    image = await trio.to_thread.run_sync(store.resolve, request.path_params["ref"])
    return JSONResponse(imageconfig.inspect_json(image))


async def image_history(request: Request) -> JSONResponse:
    store = _store(request)

    def work():
        image = store.resolve(request.path_params["ref"])
        return imageconfig.history_json(image, store.layer_sizes(image))

    return JSONResponse(await trio.to_thread.run_sync(work))


async def remove_image(request: Request) -> JSONResponse:
    store = _store(request)
    force = request.query_params.get("force", "") in ("1", "true", "yes")
    node = request.app.state.node
    in_use = getattr(node, "image_in_use", None)
    image = await trio.to_thread.run_sync(store.resolve, request.path_params["ref"])
    lines = await trio.to_thread.run_sync(lambda: store.remove(request.path_params["ref"], force=force, in_use=in_use))
    for line in lines:
        if line.startswith("Untagged: "):
            publish_image(request, "untag", image)
        elif line == f"Deleted: {image.id}":
            publish_image(request, "delete", image)
    return _reply(Lines(lines=lines))


async def tag_image(request: Request) -> JSONResponse:
    body = await parse(request, TagRequest)
    store = _store(request)
    await trio.to_thread.run_sync(store.tag, body.source, body.target)
    image = await trio.to_thread.run_sync(store.resolve, body.target)
    from orch.node.runtime import reference

    publish_image(request, "tag", image, reference.parse(body.target).familiar())
    return _reply(ImageRef(id=image.id, repo_tags=list(image.repo_tags)), 201)


async def import_image(request: Request) -> JSONResponse:
    body = await parse(request, ImportRequest)
    store = _store(request)
    changes = imageconfig.apply_changes({}, body.changes) if isinstance(body.changes, list) else body.changes
    image = await trio.to_thread.run_sync(lambda: store.import_rootfs(body.source, body.ref, changes, comment=body.message))
    publish_image(request, "import", image)
    return _reply(ImageRef(id=image.id, repo_tags=list(image.repo_tags)), 201)


async def load_images(request: Request) -> JSONResponse:
    body = await parse(request, LoadRequest)
    store = _store(request)
    lines = await trio.to_thread.run_sync(store.load, body.path)
    for line in lines:
        ref = line.split(": ", 1)[-1] if line.startswith("Loaded image") else None
        if ref:
            try:
                publish_image(request, "load", await trio.to_thread.run_sync(store.resolve, ref))
            except OrchError:
                pass
    return _reply(Lines(lines=lines))


async def save_images(request: Request) -> JSONResponse:
    body = await parse(request, SaveRequest)
    store = _store(request)
    await trio.to_thread.run_sync(lambda: store.save(body.refs, body.path, body.format))
    for ref in body.refs:
        publish_image(request, "save", await trio.to_thread.run_sync(store.resolve, ref))
    return _reply(Lines(lines=[]))


async def bootstrap_image(request: Request) -> JSONResponse:
    from orch.node.runtime.bootstrap import bootstrap

    body = await parse(request, BootstrapRequest)
    store = _store(request)
    image, built, message = await trio.to_thread.run_sync(lambda: bootstrap(store, body.name, body.force))
    return _reply(ImageRef(id=image.id, repo_tags=list(image.repo_tags), message=message), 201 if built else 200)


ROUTES = [
    Route("/images", list_images, methods=["GET"]),
    Route("/images/tag", tag_image, methods=["POST"]),
    Route("/images/import", import_image, methods=["POST"]),
    Route("/images/load", load_images, methods=["POST"]),
    Route("/images/save", save_images, methods=["POST"]),
    Route("/images/bootstrap", bootstrap_image, methods=["POST"]),
    Route("/images/{ref:path}/json", inspect_image, methods=["GET"]),
    Route("/images/{ref:path}/history", image_history, methods=["GET"]),
    Route("/images/{ref:path}", remove_image, methods=["DELETE"]),
]
