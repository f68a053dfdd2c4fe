"""The agent's node-level API: ping, info, disk usage and prune."""

import os
import sys

import trio
from starlette.responses import JSONResponse
from starlette.routing import Route

from orch import __version__
from orch.errors import InvalidArgument, OrchError
from orch.api.models import PruneRequest


def dir_size(path) -> int:
    total = 0
    for base, dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_blocks * 512
            except OSError:
                pass
    return total


async def ping(request):
    return JSONResponse({"ok": True, "pid": os.getpid(), "version": __version__})


async def info(request):
    """docker's GET /info (nodeinfo.py)."""
    from orch.node.agent.nodeinfo import compute_info

    node = request.app.state.node
    swarm = await _swarm_local(request)
    return JSONResponse(await trio.to_thread.run_sync(compute_info, node, swarm))


async def _swarm_local(request) -> dict | None:
    """The Swarm part of /info: what GET /swarm/local answers, when this agent has that route
    (the cluster's); None (inactive) when it has not, or cannot say."""
    import json

    for route in getattr(request.app, "routes", ()):
        if getattr(route, "path", None) == "/swarm/local" and "GET" in (getattr(route, "methods", None) or ()):
            try:
                answer = await route.endpoint(request)
                return json.loads(answer.body) if answer.status_code == 200 else None
            except (OrchError, ValueError):
                return None
    return None


async def version(request):
    """docker's GET /version."""
    from orch.node.agent.nodeinfo import compute_version

    return JSONResponse(await trio.to_thread.run_sync(compute_version))


async def events(request):
    """docker's GET /events?since=&until=&filters=: JSON messages, one a line (events.py).
    The stream ends at `until`, or when this reader falls too far behind (it is dropped)."""
    from starlette.responses import StreamingResponse

    from orch.node.agent import events as ev

    node = request.app.state.node
    since = ev.parse_timestamp(request.query_params.get("since"), "since")
    until = ev.parse_timestamp(request.query_params.get("until"), "until")
    filters = ev.parse_filters(request.query_params.get("filters"))
    if since is not None and until is not None and until < since:
        raise InvalidArgument(f"`since` time ({request.query_params['since']}) cannot be after `until` time "
                              f"({request.query_params['until']})")

    async def body():
        try:
            async for msg in node.events.stream(since, until, filters):
                yield ev.encode(msg)
        except ev.Dropped:
            print(f"agent: an events reader fell {ev.QUEUE} events behind and was dropped", file=sys.stderr, flush=True)

    return StreamingResponse(body(), media_type="application/json")


async def df(request):
    node = request.app.state.node

    def compute():
        images = node.images.list() if node.images is not None else []
        used = {r["Image"] for r in node.records.values()}
        containers = []
        for r in node.records.values():
            upper = node.images.upper_dir(r["Id"]) if node.images is not None else None
            containers.append({"Id": r["Id"], "Names": [r["Name"]], "State": r["State"]["Status"],
                               "SizeRw": dir_size(upper) if upper is not None and os.path.exists(upper) else 0})
        return {
            "Images": [{"Id": i.id, "RepoTags": list(i.repo_tags), "Size": i.size, "Containers": sum(r["Image"] == i.id for r in node.records.values()),
                        "Active": i.id in used} for i in images],
            "Containers": containers,
            "Volumes": [],
            "BuildCache": [],
        }

    return JSONResponse(await trio.to_thread.run_sync(compute))


async def prune(request):
    from orch.node.agent.routes_containers import parse

    node = request.app.state.node
    req = await parse(request, PruneRequest)
    deleted, images_deleted, reclaimed = [], [], 0
    if req.containers:
        for rec in list(node.records.values()):
            if rec["State"]["Status"] in ("created", "exited", "dead"):
                upper = node.images.upper_dir(rec["Id"]) if node.images is not None else None
                size = await trio.to_thread.run_sync(lambda: dir_size(upper) if upper and os.path.exists(upper) else 0)
                await node.remove(rec, force=False)
                deleted.append(rec["Id"])
                reclaimed += size
    if req.images and node.images is not None:
        used = {r["Image"] for r in node.records.values()}
        for image in await trio.to_thread.run_sync(node.images.list):
            if not image.repo_tags and image.id not in used:
                try:
                    images_deleted += await trio.to_thread.run_sync(node.images.remove, image.id)
                    reclaimed += image.size
                except OrchError:
                    continue
    return JSONResponse({"ContainersDeleted": deleted, "ImagesDeleted": images_deleted, "SpaceReclaimed": reclaimed})


ROUTES = [
    Route("/_ping", ping, methods=["GET"]),
    Route("/info", info, methods=["GET"]),
    Route("/version", version, methods=["GET"]),
    Route("/events", events, methods=["GET"]),
    Route("/system/df", df, methods=["GET"]),
    Route("/system/prune", prune, methods=["POST"]),
]
