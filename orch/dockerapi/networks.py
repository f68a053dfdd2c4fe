"""docker.sock's network routes that take docker's bodies: create, connect, disconnect (the
agent's handlers, with the body translated). List, inspect, remove and prune are the agent's
own (docker's shapes already)."""

from __future__ import annotations

from starlette.requests import Request

from orch.dockerapi.common import answer, decoded, forward, json_body
from orch.errors import InvalidArgument
from orch.node.agent import routes_networks as agent


async def create(request: Request):
    body = await json_body(request, "POST /networks/create")
    name = body.get("Name")
    if not name:
        raise InvalidArgument("POST /networks/create: give the network's Name")
    if body.get("EnableIPv6"):
        raise InvalidArgument("IPv6 networks are not supported by orch (EnableIPv6)")
    if body.get("Attachable") or body.get("Ingress") or body.get("ConfigOnly") or body.get("ConfigFrom"):
        raise InvalidArgument("swarm networks (Attachable, Ingress, config-only) are not supported by orch's node")
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
    if endpoint.get("Links"):
        raise InvalidArgument("legacy links are not supported; containers on one network reach each other by name")
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
