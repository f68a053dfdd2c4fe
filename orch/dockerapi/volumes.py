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
