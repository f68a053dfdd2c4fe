"""The agent's network API (docker's Engine API paths): create, list, inspect, remove, prune,
connect and disconnect."""

from __future__ import annotations

import trio
from pydantic import Field
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orch.errors import InvalidArgument, NotFound
from orch.api.models import Body
from orch.node.agent.routes_containers import flag, node_of, parse


class NetworkCreate(Body):
    name: str
    driver: str = "bridge"
    subnet: str | None = None
    gateway: str | None = None
    internal: bool = False
    attachable: bool = False  # overlay only
    ingress: bool = False  # overlay only: the routing mesh's network
    options: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class Connect(Body):
    container: str
    aliases: list[str] = Field(default_factory=list)
    ipv4_address: str | None = None


class Disconnect(Body):
    container: str
    force: bool = False


def _networks(request):
    node = node_of(request)
    if node.net is None:
        raise NotFound("this agent has no networking")
    return node, node.net


def _find(net, ref: str):
    """A network by name, full id or unique id prefix."""
    nets = net.nets.list()
    for n in nets:
        if ref in (n.name, n.id):
            return n
    matches = [n for n in nets if ref and n.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InvalidArgument(f"network id prefix {ref} is ambiguous; give more characters or the name")
    raise NotFound(f"network {ref} not found")


def network_view(node, net, n) -> dict:
    containers = {}
    for e in net.nets.endpoints_on(n.name):
        rec = node.records.get(e.container_id)
        containers[e.container_id] = {"Name": node.display(rec) if rec else e.container_id[:12], "EndpointID": e.host_ifname,
                                      "MacAddress": "", "IPv4Address": f"{e.address}/{n.prefixlen}", "IPv6Address": ""}
    options = {"com.docker.network.bridge.name": n.bridge, "com.docker.network.driver.mtu": str(n.mtu)}
    if n.overlay:
        options = {"com.docker.network.driver.overlay.vxlanid_list": str(n.vni), "com.docker.network.driver.mtu": str(n.mtu)}
    return {
        "Name": n.name, "Id": n.cluster_id if n.overlay else n.id, "Scope": "swarm" if n.overlay else "local",
        "Driver": n.driver, "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": n.subnet, "Gateway": n.gateway}]},
        "Internal": n.internal, "Attachable": False, "Ingress": n.ingress, "Containers": containers,
        "Options": options, "Labels": dict(n.labels),
    }


async def create(request):
    node, net = _networks(request)
    req = await parse(request, NetworkCreate)
    if req.driver == "overlay":
        from orch.cluster.routes import create_overlay

        return JSONResponse({"Id": await create_overlay(request, req), "Name": req.name, "Warning": ""}, status_code=201)
    if req.driver != "bridge":
        raise InvalidArgument(f"network driver {req.driver!r} is not available; orch has the 'bridge' and 'overlay' drivers")
    if req.attachable or req.ingress:
        raise InvalidArgument("--attachable and --ingress are for overlay networks (-d overlay)")
    if req.name in ("none", "host"):
        raise InvalidArgument(f"network name {req.name!r} is reserved for --network {req.name}; choose another name")
    n = await trio.to_thread.run_sync(lambda: net.create_network(
        req.name, subnet=req.subnet, gateway=req.gateway, internal=req.internal, options=req.options, labels=req.labels))
    _publish(node, "create", n)
    return JSONResponse({"Id": n.id, "Name": n.name, "Warning": ""}, status_code=201)


def matches_filters(request, name: str, labels: dict) -> bool:
    """docker's ?filters={"label": ["k", "k=v"], "name": ["part"]} for networks and volumes."""
    import json

    raw = request.query_params.get("filters")
    if not raw:
        return True
    try:
        filters = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid filters {raw!r}: give JSON such as {{\"label\": [\"k=v\"]}}") from None
    for want in filters.get("label", ()):
        key, sep, value = want.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    names = filters.get("name", ())
    return not names or any(part in name for part in names)


async def _cluster_networks(request) -> list:
    """The cluster's overlay networks when this node is a manager (orch.cluster.routes)."""
    if getattr(node_of(request), "cluster", None) is None:
        return []
    from orch.cluster.routes import overlay_networks

    return await overlay_networks(request)


def _publish(node, action: str, n, container: str | None = None) -> None:
    """docker's network events: the actor is the network's id; `name`, `type` (the driver),
    and the container's id for connect and disconnect."""
    attrs = {"name": n.name, "type": n.driver}
    if container:
        attrs["container"] = container
    node.events.publish("network", action, n.id, attrs)


async def list_(request):
    node, net = _networks(request)
    views = [network_view(node, net, n) for n in net.nets.list() if matches_filters(request, n.name, n.labels)]
    if node.cluster is not None:
        from orch.cluster.routes import overlay_view

        here = {v["Name"] for v in views}
        views += [overlay_view(n) for n in await _cluster_networks(request)
                  if n.spec.name not in here and matches_filters(request, n.spec.name, n.spec.labels)]
    return JSONResponse(views)


async def inspect(request):
    node, net = _networks(request)
    ref = request.path_params["ref"]
    try:
        return JSONResponse(network_view(node, net, _find(net, ref)))
    except NotFound:
        found = _find_cluster(await _cluster_networks(request), ref)
        if found is None:
            raise
        from orch.cluster.routes import overlay_view

        return JSONResponse(overlay_view(found))


def _find_cluster(nets: list, ref: str):
    for n in nets:
        if ref in (n.spec.name, n.id):
            return n
    matches = [n for n in nets if ref and n.id.startswith(ref)]
    return matches[0] if len(matches) == 1 else None


def _users(node, net, name: str) -> list[str]:
    ids = sorted({e.container_id for e in net.nets.endpoints_on(name)})
    return [node.display(node.records[c]) if c in node.records else c[:12] for c in ids]


async def remove(request):
    node, net = _networks(request)
    ref = request.path_params["ref"]
    try:
        n = _find(net, ref)
    except NotFound:
        n = None
    if n is None or n.overlay:
        # A cluster's network is removed through a manager; the nodes let go of it when no
        # task of theirs uses it any more.
        if n is None and _find_cluster(await _cluster_networks(request), ref) is None:
            raise NotFound(f"network {ref} not found")
        from orch.cluster.routes import remove_overlay

        await remove_overlay(request, ref)
        return Response(status_code=204)
    await trio.to_thread.run_sync(net.remove_network, n.name, _users(node, net, n.name))
    _publish(node, "destroy", n)
    return Response(status_code=204)


async def prune(request):
    node, net = _networks(request)
    before = {n.name: n for n in net.nets.list()}
    gone = await trio.to_thread.run_sync(net.prune)
    for name in gone:
        if name in before:
            _publish(node, "destroy", before[name])
    return JSONResponse({"NetworksDeleted": gone})


async def connect(request):
    node, net = _networks(request)
    n = _find(net, request.path_params["ref"])
    req = await parse(request, Connect)
    rec = node.get(req.container)
    if req.ipv4_address:
        from orch.node.agent.netspec import _address

        _address(req.ipv4_address, "--ip")
    plan = await trio.to_thread.run_sync(net.connect, rec, n.name, req.aliases, req.ipv4_address)
    rec.orch.net = plan
    node.save(rec)
    _publish(node, "connect", n, rec["Id"])
    return Response(status_code=200)


async def disconnect(request):
    node, net = _networks(request)
    n = _find(net, request.path_params["ref"])
    req = await parse(request, Disconnect)
    rec = node.get(req.container)
    plan = await trio.to_thread.run_sync(net.disconnect, rec, n.name)
    rec.orch.net = plan
    node.save(rec)
    _publish(node, "disconnect", n, rec["Id"])
    return Response(status_code=200)


ROUTES = [
    Route("/networks/create", create, methods=["POST"]),
    Route("/networks/prune", prune, methods=["POST"]),
    Route("/networks", list_, methods=["GET"]),
    Route("/networks/{ref}", inspect, methods=["GET"]),
    Route("/networks/{ref}", remove, methods=["DELETE"]),
    Route("/networks/{ref}/connect", connect, methods=["POST"]),
    Route("/networks/{ref}/disconnect", disconnect, methods=["POST"]),
]

__all__ = ["ROUTES", "network_view", "flag"]
