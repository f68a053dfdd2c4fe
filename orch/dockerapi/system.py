"""docker.sock's system routes: /_ping and /version (how a client negotiates its version),
/info, /system/df and /auth.
"""

from __future__ import annotations

import os

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orch import __version__
from orch.dockerapi import versions
from orch.dockerapi.common import answer, json_body, node_of
from orch.errors import Unavailable
from orch.node.agent.routes_system import dir_size

OS_TYPE = "linux"


def server_header() -> str:
    return f"orch/{__version__} ({OS_TYPE})"


def common_headers() -> list[tuple[bytes, bytes]]:
    """What dockerd puts on every answer; a client reads API-Version from /_ping's."""
    return [(b"api-version", versions.MAX_VERSION.encode()), (b"docker-experimental", b"false"),
            (b"ostype", OS_TYPE.encode()), (b"server", server_header().encode())]


async def ping(request: Request) -> Response:
    # Builder-Version 1: the classic builder (POST /build with a tar), which orch's is; the
    # CLI then builds without BuildKit when DOCKER_BUILDKIT is unset.
    headers = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache", "Builder-Version": "1",
               "Swarm": "inactive"}
    return Response("OK" if request.method != "HEAD" else None, media_type="text/plain; charset=utf-8", headers=headers)


async def version(request: Request) -> JSONResponse:
    """The agent's GET /version (nodeinfo.compute_version) with the versions this door speaks."""
    from orch.node.agent.nodeinfo import compute_version

    out = await trio.to_thread.run_sync(compute_version)
    out.update(ApiVersion=versions.MAX_VERSION, MinAPIVersion=versions.MIN_VERSION)
    for component in out.get("Components") or []:
        component.get("Details", {}).update(ApiVersion=versions.MAX_VERSION, MinAPIVersion=versions.MIN_VERSION)
    return answer(out)


async def auth(request: Request) -> JSONResponse:
    """POST /auth {"username", "password", "serveraddress"}: checks the credentials against the
    registry (the token dance, as `docker login` does through dockerd); the client stores them."""
    from orch.errors import InvalidArgument

    body = await json_body(request, "POST /auth")
    user, password = body.get("username") or "", body.get("password") or ""
    server = body.get("serveraddress") or ""
    if not user or not password:
        raise InvalidArgument("POST /auth: give username and password (an identity token alone is not supported)")
    from orch.registry import names
    from orch.registry.client import RegistryClient

    key = names.credentials_key(server or None)
    host = names.DOCKER_HUB_API if key == names.DOCKER_HUB_KEY else key

    def check() -> None:
        with RegistryClient(host, names.scheme_for(host, os.environ.get("ORCH_INSECURE_REGISTRIES", "")), (user, password)) as client:
            client.ping()

    await trio.to_thread.run_sync(check)
    return answer({"Status": "Login Succeeded", "IdentityToken": ""})


async def df(request: Request) -> JSONResponse:
    """GET /system/df in docker's shape, from the agent's own (images, containers) and the
    volume store."""
    from orch.dockerapi.common import decoded, forward
    from orch.node.agent import routes_system

    node = node_of(request)
    mine = decoded(await forward(routes_system.df, request))
    images = node.images.list() if node.images is not None else []
    by_id = {i.id: i for i in images}
    out_images = []
    for row in mine["Images"]:
        image = by_id.get(row["Id"])
        out_images.append({"Containers": row["Containers"], "Created": int(_created(image)), "Id": row["Id"], "Labels": {},
                           "ParentId": "", "RepoDigests": [], "RepoTags": row["RepoTags"], "SharedSize": -1, "Size": row["Size"],
                           "VirtualSize": row["Size"]})
    from orch.dockerapi import inspectview
    from orch.dockerapi.containers import mounts, network_settings
    from orch.node.agent.views import summary

    containers = []
    for row in mine["Containers"]:
        rec = node.records.get(row["Id"])
        if rec is None:
            continue  # removed meanwhile
        view = inspectview.compute_list_row(summary(rec), network_settings(node, rec), mounts(node, rec), rec)
        containers.append(dict(view, SizeRw=row["SizeRw"], SizeRootFs=0))
    volumes = []
    if node.volumes is not None:
        from orch.node.agent.wiring import volume_users

        for meta in await trio.to_thread.run_sync(node.volumes.list):
            size = await trio.to_thread.run_sync(dir_size, node.volumes.data_path(meta["Name"]))
            volumes.append(dict(meta, UsageData={"Size": size, "RefCount": len(volume_users(node, meta["Name"]))}))
    layers = sum(i.size for i in images)
    return answer({"LayersSize": layers, "Images": out_images, "Containers": containers, "Volumes": volumes, "BuildCache": []})


def _created(image) -> float:
    from orch.node.runtime.imageconfig import parse_time

    if image is None:
        return 0
    try:
        return parse_time(image.config.get("created") or "") or 0
    except Exception:
        return 0


async def no_swarm(request: Request):
    """dockerd's answer on a node in no swarm: 503 (docker-py's leave_swarm(force=True) takes it
    as done)."""
    if request.url.path.endswith("/leave"):
        raise Unavailable("This node is not part of a swarm")
    raise Unavailable('This node is not a swarm manager. orch\'s cluster is `orch cluster`, not the node\'s Docker API')
