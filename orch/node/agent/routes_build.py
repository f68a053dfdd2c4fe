"""The agent's build and image-change API: POST /build (a streamed build), container commit
and changes. Shapes follow docker's Engine API. (Image history is the store's route, in
routes_images.)

POST /build streams orch.node.agent.building's build messages as JSON lines (a cached
build answered in the agent, any other in a worker process); if the client goes away the
worker is stopped.
"""

import json
import os

import trio
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from orch.errors import Conflict, InvalidArgument, OrchError


def node_of(request):
    return request.app.state.node


async def _body(request) -> dict:
    raw = await request.body()
    try:
        value = json.loads(raw or b"{}")
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"bad request to {request.url.path}: not JSON ({err})") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"bad request to {request.url.path}: want a JSON object")
    return value


async def build(request):
    """Body: {"context", "dockerfile"?, "tags"?, "build_args"?, "target"?, "no_cache"?, "labels"?,
    "network"? ("default", "none", "host"), "allow"? (["network.host"])}; the answer is a stream
    of JSON lines ({"stream"}, then {"aux": {"ID"}} or {"error", "kind"})."""
    from orch.node.agent.building import stream_build

    node = node_of(request)
    req = await _body(request)
    if not isinstance(req.get("context"), str) or not os.path.isabs(req["context"]):
        raise InvalidArgument("POST /build: 'context' must be the absolute path of the build context on the node")
    from orch.build.flags import ENTITLEMENTS, NETWORKS

    if (req.get("network") or "default") not in NETWORKS:
        raise InvalidArgument(f"POST /build: invalid network {req['network']!r}; use one of: {', '.join(NETWORKS)}")
    if not set(req.get("allow") or ()) <= set(ENTITLEMENTS):
        raise InvalidArgument(f"POST /build: unknown entitlement in 'allow'; orch knows {', '.join(ENTITLEMENTS)}")

    async def lines():
        async for message in stream_build(node, req):
            yield json.dumps(message) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def commit(request):
    """Body: {"repo": "NAME[:TAG]"?, "comment"?, "author"?, "changes"?: [...], "pause"?: true}."""
    from orch.build.commit import commit_container

    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    req = await _body(request)
    pause = req.get("pause", True) and rec["State"]["Status"] == "running"
    if rec["State"]["Status"] in ("removing", "dead"):
        raise Conflict(f"container {node.display(rec)} is being removed; nothing to commit")

    def work():
        image = node.images.resolve(rec["Image"])
        cmd = (rec.get("Config") or {}).get("Cmd") or []
        created_by = " ".join(((rec.get("Config") or {}).get("Entrypoint") or []) + list(cmd))
        cgroups = node.cgroups() if pause else None
        frozen = False
        if pause:
            try:
                cgroups.freeze(rec.orch.cgroup)
                frozen = True
            except OrchError:
                # A container that exits between the check above and the freeze takes its
                # cgroup with it: nothing is left to pause. Any other failure is the error.
                if cgroups.exists(rec.orch.cgroup):
                    raise
        try:
            return commit_container(node.images, image, rec["Id"], ref=req.get("repo") or None, comment=req.get("comment") or "",
                                    author=req.get("author") or "", changes=list(req.get("changes") or []), created_by=created_by)
        finally:
            if frozen:
                try:
                    cgroups.thaw(rec.orch.cgroup)
                except OrchError:
                    # The same race at the other end: a program that was exiting when the freeze
                    # landed leaves an empty group, frozen at once, which the supervisor removes
                    # when it reaps it (docker-py's commit of `touch /test` met it).
                    if cgroups.exists(rec.orch.cgroup):
                        raise

    image = await trio.to_thread.run_sync(work)
    return JSONResponse({"Id": image.id}, status_code=201)


ROUTES = [
    Route("/build", build, methods=["POST"]),
    Route("/containers/{ref}/commit", commit, methods=["POST"]),
]
