"""depends_on: the order of services, and whether a dependency meets its condition yet.

Compose's conditions, decided from the observed containers of the dependency:

- `service_started`: one of its containers runs.
- `service_healthy`: it has a healthcheck, and every running container reports healthy. An
  unhealthy container, or no healthcheck at all, is a failure: waiting would never end.
- `service_completed_successfully`: every container exited 0. A non-zero exit is a failure,
  unless the dependency's restart policy is about to run it again.

A service with zero replicas meets every condition, as in compose. `required: false` lets a
service start when the dependency is not in the stack at all; when it is in the stack, its
condition still gates.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

from orch.errors import InvalidArgument
from orch.scheduler.model import Dependency, DesiredService, DesiredState, ObservedContainer
from orch.scheduler.restart import classify_exit


@dataclass(frozen=True)
class DependencyStatus:
    state: Literal["ok", "wait", "failed"]
    reason: str = ""


OK = DependencyStatus("ok")


def compute_levels(desired: DesiredState) -> dict[str, int]:
    """Each service's depth in the dependency graph: 0 for services that depend on nothing.

    Services of one level can start together; a dependency always has a lower level than its
    dependents. Dependencies that are not in the stack are left out (they are `required: false`
    or reported when a service needs them). A cycle is the user's error.
    """
    graph = {name: {d for d in svc.depends_on if d in desired.services} for name, svc in desired.services.items()}
    sorter = graphlib.TopologicalSorter(graph)
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as err:
        cycle = " -> ".join(err.args[1])
        raise InvalidArgument(f"services of stack {desired.project} depend on each other in a cycle: {cycle}; remove one of these depends_on") from None
    levels: dict[str, int] = {}
    for name in order:
        levels[name] = 1 + max((levels[d] for d in graph[name]), default=-1)
    return levels


def classify_dependency(
    name: str,
    dep: Dependency,
    desired: DesiredState,
    containers: Sequence[ObservedContainer],
    *,
    now: float,
    replicas: Mapping[str, int],
) -> DependencyStatus:
    """Whether dependency `name` meets `dep.condition` in the observed `containers` (its own)."""
    service = desired.services.get(name)
    if service is None:
        if dep.required:
            return DependencyStatus("failed", f"dependency {name} is not defined in the stack")
        return OK
    if replicas.get(name, service.replicas) == 0:
        return OK
    running = [c for c in containers if c.running]
    if dep.condition == "service_started":
        if running:
            return OK
        return DependencyStatus("wait", f"dependency {name} is not running yet")
    if dep.condition == "service_healthy":
        if not service.healthcheck:
            return DependencyStatus("failed", f"dependency {name} has no healthcheck; service_healthy needs one")
        unhealthy = [c for c in running if c.health == "unhealthy"]
        if unhealthy:
            return DependencyStatus("failed", f"dependency {name} is unhealthy ({unhealthy[0].name})")
        if running and all(c.health == "healthy" for c in running):
            return OK
        return DependencyStatus("wait", f"dependency {name} is not healthy yet")
    return _completed(name, service, containers, now=now)


def classify_gate(
    svc: DesiredService,
    desired: DesiredState,
    by_service: Mapping[str, Sequence[ObservedContainer]],
    *,
    now: float,
    replicas: Mapping[str, int],
    blocked: Mapping[str, str],
    acted: Mapping[str, set[str]],
) -> DependencyStatus:
    """Whether `svc` may start a container now: the first dependency that holds it back.

    `by_service` holds each service's containers (a cluster's tasks, seen as containers);
    `blocked` the services stuck on a failure of their own in this pass, with why; `acted` the
    services with actions in this pass, with their kinds. One rule for a node's reconciler and
    the cluster's orchestrator.
    """
    for name, dep in sorted(svc.depends_on.items()):
        status = classify_dependency(name, dep, desired, by_service.get(name, ()), now=now, replicas=replicas)
        if status.state == "wait" and name in blocked:
            # Waiting for it would never end: it is stuck on a failure of its own.
            return DependencyStatus("failed", f"dependency {name} failed: {blocked[name]}")
        if status.state != "ok":
            return status
        # The dependency meets its condition now, but its own actions in this plan may
        # stop or replace the containers that meet it: wait for the next pass.
        if name in acted:
            doing = "starting" if acted[name] <= {"create", "start"} else "being updated"
            return DependencyStatus("wait", f"dependency {name} is {doing}")
    return OK


def _completed(name: str, service: DesiredService, containers: Sequence[ObservedContainer], *, now: float) -> DependencyStatus:
    if not containers or any(c.state not in ("exited", "dead") for c in containers):
        return DependencyStatus("wait", f"dependency {name} has not completed yet")
    failed = [c for c in containers if c.exit_code != 0]
    if not failed:
        return OK
    first = failed[0]
    if classify_exit(service.restart, first, now=now).restart:
        return DependencyStatus("wait", f"dependency {name} exited {first.exit_code} and restarts")
    return DependencyStatus("failed", f"dependency {name} failed ({first.name} exited {first.exit_code})")
