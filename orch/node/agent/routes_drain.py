"""POST /containers/{ref}/drain: the network DNS stops answering with a container's addresses,
while the container keeps its addresses and keeps serving; ?undo=1 gives them back.

`orch compose` drains a replica it is about to replace, waits a moment, then stops it: a client
that resolves the service name meanwhile gets a live replica, and requests already in flight
to the old one finish (a disconnect would cut them: their packets would go nowhere). This is
swarm's "remove the task from the load balancer, then stop it" with DNS as the balancer. A new
replica that replaces others is drained from its creation until it is healthy, so clients
never reach one that does not listen yet.

The mark is the network manager's (`Networks.hide` / `show`): it is kept in the persisted
network state, so it survives an agent restart and a restart of the container, and it goes
when the container is removed.
"""

import trio
from starlette.responses import Response
from starlette.routing import Route


async def drain(request):
    node = request.app.state.node
    rec = node.get(request.path_params["ref"])
    if node.net is not None:
        undo = request.query_params.get("undo") in ("1", "true")
        await trio.to_thread.run_sync(node.net.show if undo else node.net.hide, rec["Id"])
    return Response(status_code=204)


ROUTES = [Route("/containers/{ref}/drain", drain, methods=["POST"])]
