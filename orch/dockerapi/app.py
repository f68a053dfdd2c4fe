"""docker.sock's app: docker's routes, each served by the agent's own handler where its shape
is docker's, or by a translation here; dockerd's version prefix, headers and errors around it.

Errors: an OrchError is `{"message": ...}` with its status (not-found 404, conflict and
already-exists 409, invalid-argument 400, as dockerd's errdefs map them); an unknown route is
501 with a one-line message naming it (dockerd says 404 "page not found", which a client would
take for a missing object); any other exception is a bug: logged with its traceback, answered
500 in one line.
"""

from __future__ import annotations

import json
import sys
import traceback

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from orch.dockerapi import containers, execs, images, networks, system, versions, volumes
from orch.dockerapi import build as building
from orch.errors import OrchError
from orch.node.agent import limits
from orch.node.agent import routes_archive as agent_archive
from orch.node.agent import routes_containers as agent_containers
from orch.node.agent import routes_images as agent_images
from orch.node.agent import routes_networks as agent_networks
from orch.node.agent import routes_stats as agent_stats
from orch.node.agent import routes_system as agent_system
from orch.node.agent import routes_volumes as agent_volumes


class DockerState:
    """What docker.sock keeps beside the node's records (in memory: an agent restart ends the
    attached connections and execs anyway)."""

    def __init__(self, nursery):
        self.nursery = nursery  # for the hubs, which outlive the request that started them
        self.pending: dict[str, list] = {}  # container id -> sessions attached before its start
        self.hubs: dict[str, object] = {}  # container id -> the hub of its current run
        self.execs: dict[str, object] = {}  # exec id -> execs.ExecInstance
        self.console: dict[str, tuple[int, int]] = {}  # container id -> the terminal size it was created with


def R(path: str, endpoint, *methods: str) -> Route:
    return Route(path, endpoint, methods=list(methods))


ROUTES = [
    # system
    R("/_ping", system.ping, "GET", "HEAD"),
    R("/version", system.version, "GET"),
    R("/info", agent_system.info, "GET"),
    R("/events", agent_system.events, "GET"),
    R("/system/df", system.df, "GET"),
    R("/swarm", system.no_swarm, "GET"),
    R("/swarm/leave", system.no_swarm, "POST"),
    R("/auth", system.auth, "POST"),
    # containers
    R("/containers/create", containers.create, "POST"),
    R("/containers/json", containers.list_, "GET"),
    R("/containers/prune", agent_containers.prune, "POST"),
    R("/containers/{ref}/json", containers.inspect, "GET"),
    R("/containers/{ref}/start", containers.start, "POST"),
    R("/containers/{ref}/stop", agent_containers.stop, "POST"),
    R("/containers/{ref}/restart", agent_containers.restart, "POST"),
    R("/containers/{ref}/kill", containers.kill, "POST"),
    R("/containers/{ref}/pause", agent_containers.pause, "POST"),
    R("/containers/{ref}/unpause", agent_containers.unpause, "POST"),
    R("/containers/{ref}/wait", containers.wait, "POST"),
    R("/containers/{ref}/top", agent_containers.top, "GET"),
    R("/containers/{ref}/changes", agent_containers.changes, "GET"),
    R("/containers/{ref}/logs", containers.logs, "GET"),
    R("/containers/{ref}/attach", containers.attach, "POST"),
    R("/containers/{ref}/stats", agent_stats.stats, "GET"),
    R("/containers/{ref}/rename", agent_containers.rename, "POST"),
    R("/containers/{ref}/update", agent_containers.update, "POST"),
    R("/containers/{ref}/archive", agent_archive.archive_get, "GET", "HEAD"),
    R("/containers/{ref}/archive", agent_archive.archive_put, "PUT"),
    R("/containers/{ref}/export", agent_archive.export, "GET"),
    R("/containers/{ref}/resize", containers.resize, "POST"),
    R("/containers/{ref}/exec", execs.create, "POST"),
    R("/containers/{ref}", agent_containers.remove, "DELETE"),
    R("/commit", images.commit, "POST"),
    # exec
    R("/exec/{id}/start", execs.start, "POST"),
    R("/exec/{id}/resize", execs.resize, "POST"),
    R("/exec/{id}/json", execs.inspect, "GET"),
    # images
    R("/images/json", images.list_, "GET"),
    R("/images/create", images.create, "POST"),
    R("/images/load", images.load, "POST"),
    R("/images/get", images.save, "GET"),
    R("/images/prune", images.prune, "POST"),
    R("/images/search", images.search, "GET"),
    R("/build", building.build, "POST"),
    R("/build/prune", building.prune, "POST"),
    R("/session", building.session, "POST"),
    R("/images/{ref:path}/json", agent_images.inspect_image, "GET"),
    R("/images/{ref:path}/history", agent_images.image_history, "GET"),
    R("/images/{ref:path}/tag", images.tag, "POST"),
    R("/images/{ref:path}/push", images.push, "POST"),
    R("/images/{ref:path}/get", images.save_one, "GET"),
    R("/images/{ref:path}", images.remove, "DELETE"),
    # networks
    R("/networks", networks.list_, "GET"),
    R("/networks/create", networks.create, "POST"),
    R("/networks/prune", agent_networks.prune, "POST"),
    R("/networks/{ref}", networks.inspect, "GET"),
    R("/networks/{ref}", agent_networks.remove, "DELETE"),
    R("/networks/{ref}/connect", networks.connect, "POST"),
    R("/networks/{ref}/disconnect", networks.disconnect, "POST"),
    # volumes
    R("/volumes", agent_volumes.list_, "GET"),
    R("/volumes/create", volumes.create, "POST"),
    R("/volumes/prune", volumes.prune, "POST"),
    R("/volumes/{name}", agent_volumes.inspect, "GET"),
    R("/volumes/{name}", agent_volumes.remove, "DELETE"),
]

# Routes whose body is an archive, streamed to a file on the node (build contexts, images to
# load or import, files copied into a container): bounded by MAX_ARCHIVE, not MAX_BODY.
ARCHIVE_ROUTES = ("/build", "/images/load", "/images/create")
ARCHIVE_SUFFIXES = ("/archive",)
MAX_ARCHIVE = 64 << 30


async def on_orch_error(request, err: OrchError) -> JSONResponse:
    return JSONResponse({"message": docker_message(err)}, status_code=err.http_status, headers=limits.error_headers(err))


def docker_message(err: OrchError) -> str:
    """dockerd's words where clients read them: docker-py tells a missing image from another
    404 by "No such image" (ImageNotFound), and compose v1 builds an image only on that; the
    hint orch's CLI adds about its own commands is left out."""
    text = str(err)
    for what in ("container", "image", "volume", "exec instance"):
        if text.startswith(f"no such {what}: "):
            text = "N" + text[1:]
            if what == "image":
                text = text.split("; ", 1)[0]
            return text
    return text


async def on_bug(request, err: Exception) -> JSONResponse:
    traceback.print_exception(err, file=sys.stderr)
    return JSONResponse({"message": f"internal error in the agent: {type(err).__name__}: {err} (see ORCH_ROOT/agent.log)"},
                        status_code=500)


async def on_no_route(request, err) -> JSONResponse:
    return JSONResponse({"message": f"orch's Docker Engine API has no {request.method} {request.url.path}"}, status_code=501)


def build_app(node, state: DockerState):
    handlers = {OrchError: on_orch_error, Exception: on_bug, 404: on_no_route, 405: on_no_route}
    app = Starlette(routes=ROUTES, exception_handlers=handlers)
    app.state.node = node
    app.state.docker = state
    small = limits.limit_bodies(app)
    large = limits.limit_bodies(app, limit=MAX_ARCHIVE)

    async def bounded(scope, receive, send):
        path = scope.get("path", "")
        archive = path in ARCHIVE_ROUTES or path.endswith(ARCHIVE_SUFFIXES)
        await (large if archive else small)(scope, receive, send)

    return versioned(bounded)


def versioned(app):
    """dockerd's version prefix (/v1.47/...): stripped, checked (versions.py) and kept in the
    scope as "docker.version"; and dockerd's headers on every answer."""
    headers = system.common_headers()

    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        version, path = versions.split_path(scope["path"])
        if version is not None:
            raw = scope.get("raw_path") or b""
            scope = dict(scope, path=path, raw_path=raw[len(version) + 2:] if raw.startswith(b"/v") else raw)
            refused = versions.refusal(version)
            if refused:
                body = json.dumps({"message": refused}).encode()
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + headers})
                await send({"type": "http.response.body", "body": body})
                return
        scope["docker.version"] = version

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers", [])) + headers)
            await send(message)

        await app(scope, receive, send_with_headers)

    return asgi
