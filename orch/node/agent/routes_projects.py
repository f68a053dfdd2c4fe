"""GET/PUT/DELETE /projects/{name}/state: a small JSON document the node keeps for a stack.

`orch compose` is a client that comes and goes; what must outlive one `up` and is not a
container's property lives here. Today that is the rolled back updates (orch.compose.memory):
swarm keeps a service's UpdateStatus ("rollback_completed") in its store, and the node keeps
the same fact in ORCH_ROOT/projects/<name>.json, written atomically. The agent does not read
the document; the client that wrote it does.
"""

from __future__ import annotations

import json
import re

import trio
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orch import paths
from orch.errors import InvalidArgument
from orch.node.agent.routes_containers import node_of
from orch.node.runtime.superproto import write_json_atomic

# compose's project names: lower-case letters, digits, dashes and underscores.
NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
MAX_BYTES = 256 * 1024


def _path(request):
    name = request.path_params["name"]
    if not NAME.fullmatch(name):
        raise InvalidArgument(f"invalid project name {name!r}: use lower-case letters, digits, '-' and '_'")
    return node_of(request).root / "projects" / f"{name}.json"


def _read(path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}  # none yet, or a torn file from before atomic writes: nothing to remember


async def get_state(request):
    return JSONResponse(await trio.to_thread.run_sync(_read, _path(request)))


async def put_state(request):
    path = _path(request)
    raw = await request.body()
    if len(raw) > MAX_BYTES:
        raise InvalidArgument(f"project state of {len(raw)} bytes is too large (at most {MAX_BYTES})")
    try:
        doc = json.loads(raw or b"{}")
    except ValueError:
        raise InvalidArgument("project state must be a JSON object") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("project state must be a JSON object")

    def write():
        paths.private_dir(path.parent)
        write_json_atomic(path, doc)

    await trio.to_thread.run_sync(write)
    return Response(status_code=204)


async def delete_state(request):
    path = _path(request)
    await trio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
    return Response(status_code=204)


ROUTES = [Route("/projects/{name}/state", get_state, methods=["GET"]),
          Route("/projects/{name}/state", put_state, methods=["PUT"]),
          Route("/projects/{name}/state", delete_state, methods=["DELETE"])]
