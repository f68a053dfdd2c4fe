"""The dependency graph of a stack's services: a pure decider.

An edge `A -> B` means "A depends on B": B must be started before A and stopped after it.
Edges come from four service keys, as compose reads them (orch.spec.references lists them
once, for the loader's cycle check and for this graph): `depends_on`, `links`,
`network_mode: service:db` (A joins db's network namespace, so db must exist first) and
`volumes_from`.

Each edge carries `kinds` (the keys that made it, sorted), `condition` (what A waits for:
`service_started`, `service_healthy` or `service_completed_successfully`; only depends_on can
ask for more than `service_started`), `required` and `restart` (from depends_on).

The services are read through their attributes only (`depends_on`, `links`, `network_mode`,
`volumes_from`), so the spec's pydantic models and a test's small dataclasses both fit.

This module imports networkx and nothing that does I/O.
"""

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import networkx

from orch.errors import NotFound, UserError
from orch.spec.references import SERVICE_STARTED, find_cycle, service_references

SERVICE_HEALTHY = "service_healthy"
SERVICE_COMPLETED = "service_completed_successfully"

# The order in which a stronger wait wins when two keys make the same edge: links and
# depends_on on the same service keep depends_on's condition.
_CONDITION_STRENGTH = {SERVICE_STARTED: 0, SERVICE_HEALTHY: 1, SERVICE_COMPLETED: 2}


class ServiceLike(Protocol):
    depends_on: Mapping[str, Any]
    links: list[str]
    network_mode: str | None
    volumes_from: list[str]


def compute_graph(services: Mapping[str, ServiceLike]) -> networkx.DiGraph:
    """Build the graph of `services` (name -> service). Raise UserError on an undefined
    service or a cycle. Nodes keep the stack's order; edges are added in the stack's order."""
    graph = networkx.DiGraph()
    graph.add_nodes_from(services)
    for name, service in services.items():
        for target, kind, condition, required, restart in service_references(service):
            if target not in services:
                if not required:
                    # compose drops an optional dependency on a service that is not in the
                    # stack (for example one that a profile left out).
                    continue
                raise UserError(f"service '{name}' depends on undefined service '{target}' ({kind})")
            _add_edge(graph, name, target, kind, condition, required, restart)
    _check_acyclic(graph)
    return graph


def _add_edge(graph, name, target, kind, condition, required, restart) -> None:
    if graph.has_edge(name, target):
        data = graph.edges[name, target]
        data["kinds"] = tuple(sorted(set(data["kinds"]) | {kind}))
        if _CONDITION_STRENGTH.get(condition, 0) > _CONDITION_STRENGTH.get(data["condition"], 0):
            data["condition"] = condition
        data["required"] = data["required"] or required
        data["restart"] = data["restart"] or restart
        return
    graph.add_edge(name, target, kinds=(kind,), condition=condition, required=required, restart=restart)


def _check_acyclic(graph: networkx.DiGraph) -> None:
    # The loader reports a cycle with its file position (orch.spec.finalize); this is the same
    # check and message for services that did not come through it (tests, other callers).
    cycle = find_cycle({name: list(graph.successors(name)) for name in graph.nodes})
    if cycle:
        raise UserError("dependency cycle: " + " -> ".join(cycle))


def start_order(graph: networkx.DiGraph) -> list[list[str]]:
    """Topological generations, dependencies first: the services of one generation depend
    only on earlier generations and can start together. Each generation keeps stack order."""
    order = {name: i for i, name in enumerate(graph.nodes)}
    return [sorted(generation, key=order.__getitem__) for generation in networkx.topological_generations(graph.reverse(copy=False))]


def stop_order(graph: networkx.DiGraph) -> list[list[str]]:
    """The reverse of start_order: dependents stop before what they depend on."""
    return list(reversed(start_order(graph)))


def dependencies_of(graph: networkx.DiGraph, names: Iterable[str], *, transitive: bool = True) -> set[str]:
    """The services that `names` depend on (all the way down unless `transitive` is False).
    A named service appears in the result only when another named service depends on it."""
    result: set[str] = set()
    for name in _known(graph, names):
        result |= networkx.descendants(graph, name) if transitive else set(graph.successors(name))
    return result


def dependents_of(graph: networkx.DiGraph, names: Iterable[str], *, transitive: bool = True) -> set[str]:
    """The services that depend on `names` (for example those to restart or stop with them)."""
    result: set[str] = set()
    for name in _known(graph, names):
        result |= networkx.ancestors(graph, name) if transitive else set(graph.predecessors(name))
    return result


def _known(graph: networkx.DiGraph, names: Iterable[str]) -> list[str]:
    names = list(names)
    for name in names:
        if name not in graph:
            raise NotFound(f"no such service: '{name}'")
    return names


# Rendering. Arrows point from a service to what it depends on, as the edges do.


def edge_label(data: Mapping[str, Any]) -> str:
    """The label of an edge in a picture: the condition when it is more than 'started'."""
    condition = data.get("condition", SERVICE_STARTED)
    return "" if condition == SERVICE_STARTED else condition


def _is_soft(data: Mapping[str, Any]) -> bool:
    # Edges that only links, network_mode or volumes_from made are drawn dashed: they order
    # the start but are not declared dependencies.
    return "depends_on" not in data.get("kinds", ())


_MERMAID_RESERVED = {"end", "graph", "subgraph", "flowchart", "style", "class", "classdef", "click", "linkstyle", "default"}


def render_mermaid(graph: networkx.DiGraph) -> str:
    """A Mermaid flowchart of the graph."""
    ids = {}
    for i, name in enumerate(graph.nodes):
        plain = name.replace("_", "").isalnum() and name.isascii() and not name[:1].isdigit()
        ids[name] = name if plain and name.lower() not in _MERMAID_RESERVED else f"s{i}"
    lines = ["flowchart TD"]
    for name in graph.nodes:
        lines.append(f'    {ids[name]}["{_mermaid_text(name)}"]')
    for source, target, data in graph.edges(data=True):
        arrow = "-.->" if _is_soft(data) else "-->"
        label = edge_label(data)
        label = f"|{_mermaid_text(label)}|" if label else ""
        lines.append(f"    {ids[source]} {arrow}{label} {ids[target]}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def render_dot(graph: networkx.DiGraph, *, name: str = "services") -> str:
    """A Graphviz DOT digraph of the graph."""
    lines = [f"digraph {_dot_id(name)} {{", "    node [shape=box, style=rounded];"]
    for node in graph.nodes:
        lines.append(f"    {_dot_id(node)};")
    for source, target, data in graph.edges(data=True):
        attrs = []
        label = edge_label(data)
        if label:
            attrs.append(f"label={_dot_id(label)}")
        if _is_soft(data):
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"    {_dot_id(source)} -> {_dot_id(target)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
