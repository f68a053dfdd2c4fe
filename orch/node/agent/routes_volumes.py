"""The agent's volume API (docker's Engine API paths): create, list, inspect, remove, prune.
Whether a volume is in use is decided here, from the container records (any state, as docker)."""

from __future__ import annotations

import trio
from pydantic import Field
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orch.errors import NotFound
from orch.api.models import Body
from orch.node.agent.routes_containers import flag, node_of, parse
from orch.node.agent.wiring import volume_users


class VolumeCreate(Body):
    name: str | None = None
    driver: str = "local"
    driver_opts: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


def _store(request):
    node = node_of(request)
    if node.volumes is None:
        raise NotFound("this agent has no volume store")
    return node, node.volumes


async def create(request):
    node, store = _store(request)
    req = await parse(request, VolumeCreate)
    meta = await trio.to_thread.run_sync(lambda: store.create(req.name or None, labels=req.labels, driver=req.driver,
                                                              driver_opts=req.driver_opts))
    return JSONResponse(meta, status_code=201)


async def list_(request):
    node, store = _store(request)
    from orch.node.agent.routes_networks import matches_filters

    vols = await trio.to_thread.run_sync(store.list)
    return JSONResponse({"Volumes": [v for v in vols if matches_filters(request, v["Name"], v.get("Labels") or {})], "Warnings": []})


async def inspect(request):
    node, store = _store(request)
    return JSONResponse(store.get(request.path_params["name"]))


async def remove(request):
    node, store = _store(request)
    name = request.path_params["name"]
    users = volume_users(node, name)
    await trio.to_thread.run_sync(lambda: store.remove(name, in_use=users, force=flag(request, "force")))
    return Response(status_code=204)


async def prune(request):
    node, store = _store(request)
    used = {v for r in node.records.values() for v in _names(r)}
    gone, freed = await trio.to_thread.run_sync(lambda: store.prune(used, all_volumes=flag(request, "all")))
    return JSONResponse({"VolumesDeleted": gone, "SpaceReclaimed": freed})


def _names(rec: dict) -> list[str]:
    from orch.node.agent.mountspec import volumes_in

    return volumes_in(rec.orch.mounts)


ROUTES = [
    Route("/volumes/create", create, methods=["POST"]),
    Route("/volumes/prune", prune, methods=["POST"]),
    Route("/volumes", list_, methods=["GET"]),
    Route("/volumes/{name}", inspect, methods=["GET"]),
    Route("/volumes/{name}", remove, methods=["DELETE"]),
]
