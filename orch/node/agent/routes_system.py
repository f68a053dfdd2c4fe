"""The agent's node-level API: ping, info, disk usage and prune."""

import os

import trio
from starlette.responses import JSONResponse
from starlette.routing import Route

from orch import __version__
from orch.errors import OrchError
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
    node = request.app.state.node
    states = [r["State"]["Status"] for r in node.records.values()]
    return JSONResponse({
        "Containers": len(states), "ContainersRunning": states.count("running"), "ContainersPaused": states.count("paused"),
        "ContainersStopped": sum(s not in ("running", "paused") for s in states),
        "Images": len(node.images.list()) if node.images is not None else 0,
        "OrchRootDir": str(node.root), "Supervisor": node.sup_path, "ServerVersion": __version__, "AgentPid": os.getpid(),
    })


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
    Route("/system/df", df, methods=["GET"]),
    Route("/system/prune", prune, methods=["POST"]),
]
