"""POST /volumes/create with docker's body (the agent's handler, translated). List, inspect,
remove and prune are the agent's own."""

from __future__ import annotations

from starlette.requests import Request

from orch.dockerapi.common import answer, decoded, forward, json_body
from orch.node.agent import routes_volumes as agent


async def create(request: Request):
    body = await json_body(request, "POST /volumes/create")
    translated = {"name": body.get("Name") or None, "driver": body.get("Driver") or "local",
                  "driver_opts": {str(k): str(v) for k, v in (body.get("DriverOpts") or {}).items()},
                  "labels": {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}}
    return answer(decoded(await forward(agent.create, request, body=translated)), 201)


async def prune(request: Request):
    """docker's filters: all=true prunes named volumes too; before API 1.42 (dockerd 20.10)
    every unused volume went, named or not, and the client sends no filter for it."""
    from orch.dockerapi import versions
    from orch.dockerapi.common import json_query

    filters = json_query(request, "filters", "POST /volumes/prune", {}) or {}
    wanted = filters.get("all") or []
    if isinstance(wanted, dict):
        wanted = [k for k, v in wanted.items() if v]
    every = any(str(v).lower() in ("1", "true") for v in wanted) or not versions.at_least(request.scope.get("docker.version"), "1.42")
    return await forward(agent.prune, request, query={"all": "1" if every else "0"})
