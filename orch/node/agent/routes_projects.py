"""GET/PUT/DELETE /projects/{name}/state: a small JSON document the node keeps for a stack.

`orch compose` is a client that comes and goes; what must outlive one `up` and is not a
container's property lives here. Today that is the rolled back updates (orch.compose.memory):
swarm keeps a service's UpdateStatus ("rollback_completed") in its store, and the node keeps
the same fact in ORCH_ROOT/projects/<name>.json, written atomically. The agent does not read
the document; the client that wrote it does.
"""

from __future__ import annotations

import re

import trio
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orch import paths
from orch.atomic import write_json_atomic
from orch.errors import InvalidArgument
from orch.node.agent.records import VERSION, ProjectFile
from orch.node.agent.routes_containers import node_of

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
        return ProjectFile.model_validate_json(path.read_bytes()).model_dump(exclude_unset=True)
    except FileNotFoundError:
        return {}  # none yet: nothing to remember
    except ValidationError:
        return {}  # a torn file from before atomic writes: nothing to remember


async def get_state(request):
    return JSONResponse(await trio.to_thread.run_sync(_read, _path(request)))


async def put_state(request):
    path = _path(request)
    raw = await request.body()
    if len(raw) > MAX_BYTES:
        raise InvalidArgument(f"project state of {len(raw)} bytes is too large (at most {MAX_BYTES})")
    try:
        doc = ProjectFile.model_validate_json(raw or b"{}")
    except ValidationError as err:
        first = err.errors()[0]
        raise InvalidArgument(f"project state: {'.'.join(map(str, first['loc'])) or 'body'}: {first['msg'].lower()}") from None
    doc.version = VERSION

    def write():
        paths.private_dir(path.parent)
        write_json_atomic(path, doc.model_dump())

    await trio.to_thread.run_sync(write)
    return Response(status_code=204)


async def delete_state(request):
    path = _path(request)
    await trio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
    return Response(status_code=204)


ROUTES = [Route("/projects/{name}/state", get_state, methods=["GET"]),
          Route("/projects/{name}/state", put_state, methods=["PUT"]),
          Route("/projects/{name}/state", delete_state, methods=["DELETE"])]
