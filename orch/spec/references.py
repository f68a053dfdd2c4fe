"""Which services a service names, and whether those names go round in a circle.

Four keys make a service depend on another, as compose reads them: `depends_on` (a mapping
name -> object with `.condition`, `.required`, `.restart`, or a list of names), `links`
("db" or "db:alias"), `network_mode: service:db`, and `volumes_from` ("db", "db:ro";
"container:name" names a container, not a service). The loader checks the stack for cycles
with them and the scheduler builds its graph from them, so both read the same edges.

Services are read through their attributes only, so the spec's models and a test's small
dataclasses both fit. Pure: this module imports nothing.
"""

from collections.abc import Iterable, Mapping

SERVICE_STARTED = "service_started"


def service_references(service) -> Iterable[tuple[str, str, str, bool, bool]]:
    """(target, kind, condition, required, restart) for each service that `service` names;
    kind is the key that names it."""
    depends_on = getattr(service, "depends_on", None) or {}
    if isinstance(depends_on, (list, tuple)):
        depends_on = dict.fromkeys(depends_on)  # the short syntax: names, default conditions
    for target, dep in depends_on.items():
        condition = getattr(dep, "condition", None) or SERVICE_STARTED
        required = getattr(dep, "required", True)
        restart = bool(getattr(dep, "restart", False))
        yield target, "depends_on", condition, True if required is None else bool(required), restart
    for link in getattr(service, "links", None) or []:
        yield link.split(":", 1)[0], "links", SERVICE_STARTED, True, False
    network_mode = getattr(service, "network_mode", None) or ""
    if network_mode.startswith("service:"):
        yield network_mode[len("service:"):], "network_mode", SERVICE_STARTED, True, False
    for source in getattr(service, "volumes_from", None) or []:
        if source.startswith("container:"):
            continue  # a container outside the stack: nothing to order
        yield source.split(":", 1)[0], "volumes_from", SERVICE_STARTED, True, False


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle of `edges` (name -> names it depends on) as [a, b, ..., a], starting at the
    member that comes first in `edges`' order, so the message reads in the order the user
    wrote the services; None when there is none. Iterative, so a long chain cannot overflow."""
    order = {name: i for i, name in enumerate(edges)}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in edges:
        if root in state:
            continue
        path: list[str] = [root]
        todo = [iter(edges[root])]
        state[root] = 1
        while todo:
            target = next(todo[-1], None)
            if target is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(target) == 1:
                cycle = path[path.index(target):]
                first = min(range(len(cycle)), key=lambda i: order.get(cycle[i], len(order)))
                cycle = cycle[first:] + cycle[:first]
                return cycle + [cycle[0]]
            elif target not in state and target in edges:
                state[target] = 1
                path.append(target)
                todo.append(iter(edges[target]))
    return None
