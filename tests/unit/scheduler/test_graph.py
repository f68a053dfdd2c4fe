"""Table tests of the dependency graph (orch.scheduler.graph)."""

from dataclasses import dataclass, field

import pytest

from orch.errors import NotFound, UserError
from orch.scheduler.graph import (
    compute_graph,
    dependencies_of,
    dependents_of,
    render_dot,
    render_mermaid,
    start_order,
    stop_order,
)


@dataclass
class Dep:
    condition: str = "service_started"
    restart: bool = False
    required: bool = True


@dataclass
class Svc:
    depends_on: dict = field(default_factory=dict)
    links: list = field(default_factory=list)
    network_mode: str | None = None
    volumes_from: list = field(default_factory=list)


def deps(*names, **conditions):
    """depends_on in short form: deps("db", cache="service_healthy")."""
    result = {name: Dep() for name in names}
    result.update({name: Dep(condition) for name, condition in conditions.items()})
    return result


def edges(graph):
    return sorted((a, b, d["condition"], d["kinds"]) for a, b, d in graph.edges(data=True))


# (name, services, expected edges (dependent, dependency, condition, kinds), expected start order)
GRAPH_CASES = [
    ("no services", {}, [], []),
    ("independent", {"a": Svc(), "b": Svc()}, [], [["a", "b"]]),
    (
        "depends_on short",
        {"web": Svc(depends_on=deps("db")), "db": Svc()},
        [("web", "db", "service_started", ("depends_on",))],
        [["db"], ["web"]],
    ),
    (
        "depends_on conditions",
        {"web": Svc(depends_on=deps(db="service_healthy", migrate="service_completed_successfully")), "db": Svc(), "migrate": Svc(depends_on=deps("db"))},
        [
            ("migrate", "db", "service_started", ("depends_on",)),
            ("web", "db", "service_healthy", ("depends_on",)),
            ("web", "migrate", "service_completed_successfully", ("depends_on",)),
        ],
        [["db"], ["migrate"], ["web"]],
    ),
    (
        "depends_on as a plain list",
        {"web": Svc(depends_on=["db"]), "db": Svc()},
        [("web", "db", "service_started", ("depends_on",))],
        [["db"], ["web"]],
    ),
    (
        "links with and without alias",
        {"web": Svc(links=["db:database", "cache"]), "db": Svc(), "cache": Svc()},
        [("web", "cache", "service_started", ("links",)), ("web", "db", "service_started", ("links",))],
        [["db", "cache"], ["web"]],
    ),
    (
        "network_mode service",
        {"sidecar": Svc(network_mode="service:app"), "app": Svc(), "host": Svc(network_mode="host")},
        [("sidecar", "app", "service_started", ("network_mode",))],
        [["app", "host"], ["sidecar"]],
    ),
    (
        "volumes_from services and containers",
        {"backup": Svc(volumes_from=["db:ro", "files", "container:legacy"]), "db": Svc(), "files": Svc()},
        [("backup", "db", "service_started", ("volumes_from",)), ("backup", "files", "service_started", ("volumes_from",))],
        [["db", "files"], ["backup"]],
    ),
    (
        "two keys, one edge, the stronger condition",
        {"web": Svc(links=["db"], depends_on=deps(db="service_healthy")), "db": Svc()},
        [("web", "db", "service_healthy", ("depends_on", "links"))],
        [["db"], ["web"]],
    ),
    (
        "required false on a missing service is dropped",
        {"web": Svc(depends_on={"db": Dep(), "metrics": Dep(required=False)}), "db": Svc()},
        [("web", "db", "service_started", ("depends_on",))],
        [["db"], ["web"]],
    ),
    (
        "required false on a present service stays",
        {"web": Svc(depends_on={"db": Dep(required=False)}), "db": Svc()},
        [("web", "db", "service_started", ("depends_on",))],
        [["db"], ["web"]],
    ),
    (
        "diamond: generations keep stack order",
        {"proxy": Svc(depends_on=deps("web", "api")), "web": Svc(depends_on=deps("db")), "api": Svc(depends_on=deps("db")), "db": Svc()},
        [
            ("api", "db", "service_started", ("depends_on",)),
            ("proxy", "api", "service_started", ("depends_on",)),
            ("proxy", "web", "service_started", ("depends_on",)),
            ("web", "db", "service_started", ("depends_on",)),
        ],
        [["db"], ["web", "api"], ["proxy"]],
    ),
]


@pytest.mark.parametrize("name, services, expected_edges, expected_order", GRAPH_CASES, ids=[c[0] for c in GRAPH_CASES])
def test_graph(name, services, expected_edges, expected_order):
    graph = compute_graph(services)
    assert edges(graph) == expected_edges
    assert start_order(graph) == expected_order
    assert stop_order(graph) == list(reversed(expected_order))


# (name, services, exact message)
ERROR_CASES = [
    ("undefined depends_on", {"web": Svc(depends_on=deps("db"))}, "service 'web' depends on undefined service 'db' (depends_on)"),
    ("undefined link", {"web": Svc(links=["db:database"])}, "service 'web' depends on undefined service 'db' (links)"),
    ("undefined network_mode", {"web": Svc(network_mode="service:vpn")}, "service 'web' depends on undefined service 'vpn' (network_mode)"),
    ("undefined volumes_from", {"web": Svc(volumes_from=["data:ro"])}, "service 'web' depends on undefined service 'data' (volumes_from)"),
    ("self cycle", {"web": Svc(depends_on=deps("web"))}, "dependency cycle: web -> web"),
    ("two-cycle", {"web": Svc(depends_on=deps("api")), "api": Svc(depends_on=deps("web"))}, "dependency cycle: web -> api -> web"),
    (
        "three-cycle through other keys, in stack order",
        {"db": Svc(), "api": Svc(links=["worker"], depends_on=deps("db")), "worker": Svc(volumes_from=["web"]), "web": Svc(network_mode="service:api")},
        "dependency cycle: api -> worker -> web -> api",
    ),
]


@pytest.mark.parametrize("name, services, message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_graph_errors(name, services, message):
    with pytest.raises(UserError) as err:
        compute_graph(services)
    assert str(err.value) == message


STACK = {
    "proxy": Svc(depends_on=deps("web")),
    "web": Svc(depends_on=deps("api", cache="service_healthy")),
    "api": Svc(depends_on=deps("db")),
    "cache": Svc(),
    "db": Svc(),
    "tools": Svc(),
}

# (function, names, transitive, expected)
NEIGHBOUR_CASES = [
    (dependencies_of, ["web"], True, {"api", "cache", "db"}),
    (dependencies_of, ["web"], False, {"api", "cache"}),
    (dependencies_of, ["proxy", "api"], True, {"web", "api", "cache", "db"}),
    (dependencies_of, ["tools"], True, set()),
    (dependents_of, ["db"], True, {"api", "web", "proxy"}),
    (dependents_of, ["db"], False, {"api"}),
    (dependents_of, ["proxy"], True, set()),
]


@pytest.mark.parametrize("func, names, transitive, expected", NEIGHBOUR_CASES)
def test_neighbours(func, names, transitive, expected):
    assert func(compute_graph(STACK), names, transitive=transitive) == expected


def test_neighbours_of_an_unknown_service():
    with pytest.raises(NotFound) as err:
        dependencies_of(compute_graph(STACK), ["wbe"])
    assert str(err.value) == "no such service: 'wbe'"


def test_start_and_stop_order_of_a_stack():
    graph = compute_graph(STACK)
    assert start_order(graph) == [["cache", "db", "tools"], ["api"], ["web"], ["proxy"]]
    assert stop_order(graph) == [["proxy"], ["web"], ["api"], ["cache", "db", "tools"]]


def test_render_mermaid():
    graph = compute_graph({"web": Svc(depends_on=deps(db="service_healthy"), links=["cache"]), "db": Svc(), "cache": Svc(), "my-app.v2": Svc(network_mode="service:web"), "end": Svc()})
    assert render_mermaid(graph) == (
        "flowchart TD\n"
        '    web["web"]\n'
        '    db["db"]\n'
        '    cache["cache"]\n'
        '    s3["my-app.v2"]\n'
        '    s4["end"]\n'
        "    web -->|service_healthy| db\n"
        "    web -.-> cache\n"
        "    s3 -.-> web\n"
    )


def test_render_dot():
    graph = compute_graph({"web": Svc(depends_on=deps("db", migrate="service_completed_successfully")), "db": Svc(), "migrate": Svc(volumes_from=["db"]), 'we"ird': Svc()})
    assert render_dot(graph) == (
        'digraph "services" {\n'
        "    node [shape=box, style=rounded];\n"
        '    "web";\n'
        '    "db";\n'
        '    "migrate";\n'
        '    "we\\"ird";\n'
        '    "web" -> "db";\n'
        '    "web" -> "migrate" [label="service_completed_successfully"];\n'
        '    "migrate" -> "db" [style=dashed];\n'
        "}\n"
    )
