"""Draining a container: the network DNS stops answering with its addresses while it keeps them
and keeps serving, and the node watches its connections until it may stop.

- POST /containers/{ref}/drain: unnamed in DNS (?undo=1 names it again). With ?wait=1 the
  answer is a stream of JSON lines while the node waits for the container's clients to go
  (the rule: orch.scheduler.drain): {"Status": "waiting", "Open": n} whenever the number of
  open connections changes, {"Status": "blind", "Message"} if the node cannot see them, and
  last {"Status": "drained", "Reason": "idle" | "grace" | "not running", "Open", "Waited"}.
  The bound is the container's stop timeout (its service's stop_grace_period), or ?t=.
- GET /containers/{ref}/connections: the connections to the container now, as the node's
  connection tracking has them (orch.net.conntrack).

`orch compose` drains a replica it is about to replace, then stops it: a client that resolves
the service name meanwhile gets a live replica, and requests in flight finish. This is swarm's
"remove the task from the load balancer, then stop it" with DNS as the balancer. A new replica
that replaces others is drained from its creation until it is healthy, so clients never reach
one that does not listen yet.

The DNS mark is the network manager's (`Networks.hide` / `show`): it is kept in the persisted
network state, so it survives an agent restart and a restart of the container, and it goes
when the container is removed.
"""

import json
import math

import trio
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from orch.errors import InvalidArgument, SystemFailure
from orch.node.agent.drain import connections_now, container_addresses, visibility, watch_drain
from orch.node.agent.routes_containers import flag, number
from orch.scheduler.drain import DEFAULT_GRACE, DrainPolicy


async def drain(request):
    node = request.app.state.node
    rec = node.get(request.path_params["ref"])
    undo = flag(request, "undo")
    if node.net is not None:
        await trio.to_thread.run_sync(node.net.show if undo else node.net.hide, rec["Id"])
    if undo or not flag(request, "wait"):
        return Response(status_code=204)
    grace = number(request, "t")
    if grace is not None and not math.isfinite(grace):
        raise InvalidArgument(f"POST {request.url.path}: t={grace} is not a number of seconds")
    if grace is None:
        grace = rec["Config"].get("StopTimeout")
    policy = DrainPolicy(grace=DEFAULT_GRACE if grace is None else max(float(grace), 0.0))
    addresses = [] if node.net is None else container_addresses(node.net.nets, rec["Id"])

    async def lines():
        began = trio.current_time()
        if rec["State"]["Status"] not in ("running", "paused"):
            yield _line(Status="drained", Reason="not running", Open=0, Waited=0)
            return
        seen = visibility(addresses)
        if not seen.visible:
            yield _line(Status="blind", Message=f"connections to {node.display(rec)} cannot be seen: {seen.why}")
        failure = None  # a look that failed (no ctnetlink): said once, then the quiet period only

        async def look():
            nonlocal failure
            if failure is not None or not addresses:
                return []
            try:
                flows = await trio.to_thread.run_sync(connections_now, addresses)
            except OSError as err:
                failure = str(err)
                return []
            return [(f.id, f.open) for f in flows]

        last, said = 0, False
        async for step in watch_drain(look, policy):
            if failure is not None and not said:
                said = True
                yield _line(Status="blind", Message=f"connections to {node.display(rec)} cannot be seen: {failure}")
            if step.stop:
                yield _line(Status="drained", Reason=step.reason, Open=step.open, Waited=round(trio.current_time() - began, 3))
            elif step.open != last:
                yield _line(Status="waiting", Open=step.open)
            last = step.open

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def connections(request):
    node = request.app.state.node
    rec = node.get(request.path_params["ref"])
    addresses = [] if node.net is None else container_addresses(node.net.nets, rec["Id"])
    seen = visibility(addresses)
    try:
        flows = await trio.to_thread.run_sync(connections_now, addresses) if addresses else []
    except OSError as err:
        raise SystemFailure(f"connections to {node.display(rec)}: {err}") from None
    return JSONResponse({
        "Open": sum(1 for f in flows if f.open),
        "Visible": seen.visible,
        "Message": seen.why,
        "Connections": [{"Id": f.id, "Proto": {6: "tcp", 17: "udp"}.get(f.proto, str(f.proto)), "Client": f.client,
                         "ClientPort": f.client_port, "Address": f.server, "Port": f.server_port, "State": f.state,
                         "Open": f.open} for f in flows],
    })


def _line(**fields) -> str:
    return json.dumps(fields) + "\n"


ROUTES = [Route("/containers/{ref}/drain", drain, methods=["POST"]),
          Route("/containers/{ref}/connections", connections, methods=["GET"])]
