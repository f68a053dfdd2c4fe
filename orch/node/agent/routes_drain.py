"""POST /containers/{ref}/drain: the network DNS stops answering with a container's addresses,
while the container keeps its addresses and keeps serving; ?undo=1 gives them back.

`orch compose` drains a replica it is about to replace, waits a moment, then stops it: a client
that resolves the service name meanwhile gets a live replica, and requests already in flight
to the old one finish (a disconnect would cut them: their packets would go nowhere). This is
swarm's "remove the task from the load balancer, then stop it" with DNS as the balancer. A new
replica that replaces others is drained from its creation until it is healthy, so clients
never reach one that does not listen yet.

It reaches into the network manager's state (orch.net.manager.Networks) because the manager
has no public call for it yet; the change it needs there is one method, `hide_names(cid)`,
noted for the networking package's owner.
"""

from dataclasses import replace

import trio
from starlette.responses import Response
from starlette.routing import Route


def hide_names(nets, container_id: str, hidden: dict) -> None:
    """Drop the DNS names of `container_id`'s endpoints, keeping them in `hidden`."""
    with nets._lock:
        state = nets.state
        kept = {e.network: e.names for e in state.endpoints if e.container_id == container_id and e.names}
        if not kept:
            return
        hidden.setdefault(container_id, {}).update(kept)
        _set_names(nets, container_id, {net: () for net in kept})


def show_names(nets, container_id: str, hidden: dict) -> None:
    """Give back the names `hide_names` took (a new replica turned healthy)."""
    with nets._lock:
        kept = hidden.pop(container_id, None)
        if kept:
            _set_names(nets, container_id, kept)


def _set_names(nets, container_id: str, names: dict) -> None:
    state = nets.state
    endpoints = tuple(
        replace(e, names=names[e.network]) if e.container_id == container_id and e.network in names else e
        for e in state.endpoints
    )
    new_state = replace(state, endpoints=endpoints)
    nets._sync(new_state)
    nets.state = new_state


async def drain(request):
    """?undo=1 gives the names back. Names hidden are kept in memory: after an agent restart a
    drained container stays unnamed until it is removed, which is what drained ones are for."""
    node = request.app.state.node
    rec = node.get(request.path_params["ref"])
    if node.net is not None:
        if not hasattr(node, "_hidden_names"):
            node._hidden_names = {}
        undo = request.query_params.get("undo") in ("1", "true")
        await trio.to_thread.run_sync(show_names if undo else hide_names, node.net.nets, rec["Id"], node._hidden_names)
    return Response(status_code=204)


ROUTES = [Route("/containers/{ref}/drain", drain, methods=["POST"])]
