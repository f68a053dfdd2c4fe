"""docker.sock's network routes that take docker's bodies: create, connect, disconnect (the
agent's handlers, with the body translated). List, inspect, remove and prune are the agent's
own (docker's shapes already)."""

from __future__ import annotations

from starlette.requests import Request

from orch.dockerapi.common import answer, decoded, forward, json_body
from orch.dockerapi.createbody import check_endpoint
from orch.errors import InvalidArgument
from orch.node.agent import routes_networks as agent


async def create(request: Request):
    body = await json_body(request, "POST /networks/create")
    name = body.get("Name")
    if not name:
        raise InvalidArgument("POST /networks/create: give the network's Name")
    if body.get("EnableIPv6"):
        raise InvalidArgument("IPv6 networks are not supported by orch (EnableIPv6)")
    # Attachable only matters to swarm services (docker-compose v1 sets it for version 3
    # files); a node's bridge network takes any container anyway.
    if body.get("Ingress") or body.get("ConfigOnly") or body.get("ConfigFrom"):
        raise InvalidArgument("swarm networks (Ingress, config-only) are not supported by orch's node")
    ipam = body.get("IPAM") or {}
    if ipam.get("Driver") not in (None, "", "default"):
        raise InvalidArgument(f"IPAM driver {ipam['Driver']!r} is not supported; orch has the default one")
    configs = [c for c in ipam.get("Config") or [] if c]
    if len(configs) > 1:
        raise InvalidArgument("a network takes one IPAM config (one IPv4 subnet) in orch")
    config = configs[0] if configs else {}
    if config.get("IPRange") or config.get("AuxiliaryAddresses"):
        raise InvalidArgument("IPAM IPRange and AuxiliaryAddresses are not supported by orch")
    translated = {"name": name, "driver": body.get("Driver") or "bridge", "subnet": config.get("Subnet") or None,
                  "gateway": config.get("Gateway") or None, "internal": bool(body.get("Internal")),
                  "options": {str(k): str(v) for k, v in (body.get("Options") or {}).items()},
                  "labels": {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}}
    made = decoded(await forward(agent.create, request, body=translated))
    return answer({"Id": made["Id"], "Warning": made.get("Warning", "")}, 201)


async def connect(request: Request):
    body = await json_body(request, "POST /networks/{id}/connect")
    endpoint = body.get("EndpointConfig") or {}
    check_endpoint("EndpointConfig", endpoint)
    translated = {"container": body.get("Container") or "", "aliases": list(endpoint.get("Aliases") or []),
                  "ipv4_address": (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or None}
    await forward(agent.connect, request, body=translated)
    return _ok()


async def disconnect(request: Request):
    body = await json_body(request, "POST /networks/{id}/disconnect")
    await forward(agent.disconnect, request, body={"container": body.get("Container") or "", "force": bool(body.get("Force"))})
    return _ok()


def _ok():
    from starlette.responses import Response

    return Response(status_code=200)


# -- list and inspect: the agent's views, in dockerd's shape ---------------------------------------------
# dockerd always has these two beside the default bridge: a container's `--network host` and
# `--network none` name them. orch has the modes but no network objects for them.
PSEUDO = {"host": "host", "none": "null"}


def _pseudo(node, name: str) -> dict:
    import hashlib

    return {"Name": name, "Id": hashlib.sha256(f"{node.root}:{name}".encode()).hexdigest(), "Created": _ZERO,
            "Scope": "local", "Driver": PSEUDO[name], "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": []}, "Internal": False, "Attachable": False,
            "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": _pseudo_members(node, name),
            "Options": {}, "Labels": {}}


def _pseudo_members(node, mode: str) -> dict:
    out = {}
    for rec in node.records.values():
        if (rec.orch.net or {}).get("mode") == mode and rec["State"]["Status"] in ("running", "paused"):
            out[rec["Id"]] = {"Name": rec["Name"].lstrip("/"), "EndpointID": "", "MacAddress": "", "IPv4Address": "", "IPv6Address": ""}
    return out


_ZERO = "0001-01-01T00:00:00Z"


def docker_view(view: dict) -> dict:
    """The agent's network view with dockerd's keys; a user network's Options are the ones
    its creator gave, which orch does not keep apart from the bridge's own (so none shown)."""
    out = {"Name": view["Name"], "Id": view["Id"], "Created": view.get("Created") or _ZERO, "Scope": "local",
           "Driver": view.get("Driver", "bridge"), "EnableIPv6": False, "IPAM": view["IPAM"], "Internal": view.get("Internal", False),
           "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
           "Containers": view.get("Containers") or {}, "Options": {}, "Labels": view.get("Labels") or {}}
    if view["Name"] == "bridge":
        out["Options"] = dict(view.get("Options") or {}, **{"com.docker.network.bridge.default_bridge": "true"})
    return out


async def list_(request: Request):
    from orch.node.agent.routes_networks import matches_filters

    node = request.app.state.node
    rows = [docker_view(v) for v in decoded(await forward(agent.list_, request))]
    filters = request.query_params.get("filters")
    for name in PSEUDO:
        if matches_filters(request, name, {}):
            rows.append(_pseudo(node, name))
    if filters:
        rows = [r for r in rows if _matches_more(r, filters)]
    return answer(rows)


def _matches_more(row: dict, raw: str) -> bool:
    """docker's network filters beyond name and label (which the agent applies): driver, id,
    type (builtin: bridge, host, none; custom: the rest)."""
    import json

    filters = json.loads(raw)
    if isinstance(filters, dict):
        filters = {k: (list(v) if isinstance(v, (list, dict)) else [v]) for k, v in filters.items()}
    builtin = row["Name"] in ("bridge", "host", "none")
    for key, values in filters.items():
        if key == "driver" and row["Driver"] not in values:
            return False
        if key == "id" and not any(row["Id"].startswith(v) for v in values):
            return False
        if key == "type" and ("builtin" if builtin else "custom") not in values:
            return False
    return True


async def inspect(request: Request):
    node = request.app.state.node
    ref = request.path_params["ref"]
    for name in PSEUDO:
        pseudo = _pseudo(node, name)
        if ref in (name, pseudo["Id"]) or (len(ref) >= 12 and pseudo["Id"].startswith(ref)):
            return answer(pseudo)
    return answer(docker_view(decoded(await forward(agent.inspect, request))))
