"""network_mode: service:X in the reconciler, as tables: a service that shares X's network
namespace starts after X, restarts after X restarts (X's namespace is made anew at each
start), and is recreated when X's container is replaced (its id is gone)."""

from dataclasses import dataclass, field

import pytest

from orch.scheduler.desired import desired_service
from orch.scheduler.model import Dependency, DesiredState, ObservedState, ReconcileOptions
from orch.scheduler.reconcile import plan_reconcile
from orch.scheduler.testing import container as c
from orch.scheduler.testing import node, render_action, render_waiting, service, stack


@dataclass
class Case:
    name: str
    desired: DesiredState
    observed: ObservedState
    actions: list[str]
    waiting: list[str] = field(default_factory=list)
    options: ReconcileOptions = ReconcileOptions()


def check(case: Case) -> None:
    plan = plan_reconcile(case.desired, case.observed, now=100.0, options=case.options)
    assert [render_action(a) for a in plan.actions] == case.actions, plan.explain()
    assert render_waiting(plan) == case.waiting, plan.explain()


SHARED = stack(service("db"), service("web", network_of="db"))
UP = ReconcileOptions(up_since=50.0)

CASES = [
    Case("fresh stack: web waits for db's container", SHARED, node(),
         ["create s-db-1: replica 1 of 1 is missing"], ["wait web: dependency db is not running yet"]),
    Case("db runs: web is created", SHARED, node(c("db", 1, started=10)), ["create s-web-1: replica 1 of 1 is missing"]),
    Case("converged: web shares db1's namespace and started after it", SHARED,
         node(c("db", 1, started=10), c("web", 1, started=20, joins="db1")), []),
    Case("db restarted after web: web restarts and joins db's new namespace", SHARED,
         node(c("db", 1, started=30), c("web", 1, started=20, joins="db1")),
         ["restart s-web-1: dependency db restarted after s-web-1 started (s-db-1)"]),
    Case("db's container was replaced: web is recreated, not restarted", SHARED,
         node(c("db", 2, started=30), c("web", 1, started=20, joins="db1")),
         ["recreate s-web-1: the db container whose network it shares was replaced"]),
    Case("db is being recreated in this pass: web waits for the next one", stack(service("db", "h2"), service("web", network_of="db")),
         node(c("db", 1, started=10), c("web", 1, started=20, joins="db1")),
         ["recreate s-db-1: config changed (hash h1→h2)"], []),
    Case("db's replacement is not running yet: web's recreate waits for it", SHARED,
         node(c("db", 2, "h1", "created", started=None), c("web", 1, started=20, joins="db1")),
         ["start s-db-2: created but not started"], ["wait web: dependency db is not running yet"]),
    Case("a replica of db that only stopped keeps its id: up starts both, web after db", SHARED,
         node(c("db", 1, "h1", "exited", started=10, finished=40, exit_code=0),
              c("web", 1, "h1", "exited", started=20, finished=40, exit_code=0, joins="db1")),
         ["start s-db-1: stopped (exit 0); up starts it"], ["wait web: dependency db is not running yet"], options=UP),
    Case("a container that shares no namespace is never stale", stack(service("db"), service("web", network_of="db")),
         node(c("db", 2, started=10), c("web", 1, started=20)), []),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_network_of(case):
    check(case)


class Svc:
    """A stand-in for orch.spec's service model: desired.py reads attributes only."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


@pytest.mark.parametrize("mode, network_of, deps", [
    ("service:db", "db", {"db": Dependency(restart=True)}),
    ("container:abc", None, {}),
    ("host", None, {}),
    (None, None, {}),
])
def test_desired_network_of(mode, network_of, deps):
    svc = desired_service("web", Svc(network_mode=mode), image_id="sha256:x")
    assert (svc.network_of, dict(svc.depends_on)) == (network_of, deps)
