"""The reconciler: from the desired stack, the observed containers and the time to a plan.

`plan_reconcile` is the pure core of `orch up` (nomad's `scheduler/reconciler`, a kubernetes
controller's sync function). It is level-triggered: each pass looks at the whole observed
state, never at what happened before, and returns only the next step. The executor applies
the plan, observes again and calls it again until the plan is empty, or sleeps until
`next_check_at`. A pass that fails half way therefore needs no repair: the next pass sees
what was done and plans the rest.

Services are visited in dependency order. For each, in this order:

1. Scale down: surplus replicas of the current configuration go, highest numbers first.
2. Outdated replicas (another config hash, or all of them with --force-recreate) are replaced
   by the update rules: stopped ones at once, running ones in batches of update_config
   (`orch.scheduler.rolling`). Old replicas are removed as soon as updated ones are ready to
   take their place.
3. Missing replicas are created, with the lowest free numbers.
4. Stopped replicas are started: by `up` when they stopped before it began, otherwise only by
   their restart policy, after its back-off (`orch.scheduler.restart`).
5. Replicas whose `restart: true` dependency started after them are restarted.

Every action that starts a container is gated by depends_on (`orch.scheduler.depends`): when a
dependency does not meet its condition, or has actions of its own in this plan, the service
waits, and the plan says why.
"""

from __future__ import annotations

from dataclasses import replace

from orch.errors import InvalidArgument
from orch.scheduler.depends import DependencyStatus, classify_gate, compute_levels
from orch.scheduler.model import (
    STARTING_KINDS,
    Action,
    DesiredService,
    DesiredState,
    ObservedContainer,
    ObservedState,
    FAILED_EXIT,
    FAILED_RESTART_LIMIT,
    NOTICE_ORPHANS,
    WAIT_DEPENDENCY,
    WAIT_RESTART_BACKOFF,
    Notice,
    Plan,
    ReconcileOptions,
    Waiting,
)
from orch.scheduler.restart import classify_exit
from orch.scheduler.rolling import ServicePass, plan_update


def plan_reconcile(
    desired: DesiredState, observed: ObservedState, *, now: float, options: ReconcileOptions = ReconcileOptions()
) -> Plan:
    """The next step that brings `observed` towards `desired` at time `now`."""
    levels = compute_levels(desired)
    selected, forced = _selection(desired, options)
    state = _Pass(desired, observed, now, options, levels)
    for name in sorted(selected, key=lambda s: (levels[s], s)):
        state.plan_service(desired.services[name], forced=name in forced)
    state.plan_orphans()
    return state.plan()


def plan_down(
    observed: ObservedState, *, desired: DesiredState | None = None, remove_orphans: bool = False
) -> Plan:
    """Remove the project's containers, dependents before their dependencies.

    Without the stack (`orch down -p NAME`), every container of the project goes. With it,
    containers of services the stack no longer has go only with `remove_orphans`, as in
    compose. Orphans have no place in the graph and go in the first stage.
    """
    levels = compute_levels(desired) if desired is not None else {}
    top = max(levels.values(), default=0)
    actions = []
    warnings = []
    orphans = []
    for c in sorted(observed.containers, key=lambda c: (c.service, c.number, c.name)):
        known = desired is None or c.service in desired.services
        if not known and not remove_orphans:
            orphans.append(c.name)
            continue
        stage = top - levels[c.service] + 1 if c.service in levels else 0
        reason = "stack is going down" if known else "orphan: its service is not in the stack"
        actions.append(Action("remove", c.service, reason, name=c.name, number=c.number, target=c.id, stage=stage))
    if orphans:
        warnings.append(_orphan_warning(observed.project, orphans))
    actions.sort(key=lambda a: (a.stage, a.service, a.number or 0))
    return Plan(observed.project, tuple(actions), warnings=tuple(warnings))


def _selection(desired: DesiredState, options: ReconcileOptions) -> tuple[set[str], set[str]]:
    """The services this pass works on, and those --force-recreate applies to.

    `up web` also brings up what web depends on, unless --no-deps; --force-recreate applies
    only to the services named, as compose has it.
    """
    if options.services is None:
        names = set(desired.services)
        return names, (names if options.force_recreate else set())
    unknown = [s for s in options.services if s not in desired.services]
    if unknown:
        raise InvalidArgument(f"no such service in stack {desired.project}: {unknown[0]}")
    named = set(options.services)
    selected = set(named)
    todo = list(named)
    while todo and not options.no_deps:
        for dep in desired.services[todo.pop()].depends_on:
            if dep in desired.services and dep not in selected:
                selected.add(dep)
                todo.append(dep)
    return selected, (named if options.force_recreate else set())


def _orphan_warning(project: str, names: list[str]) -> Notice:
    return Notice(NOTICE_ORPHANS, f"found orphan containers ({', '.join(names)}) for stack {project}; run up with --remove-orphans to remove them")


class _Pass:
    """The bookkeeping of one reconcile pass: the actions so far and who waits for what.

    It is local to one call of `plan_reconcile` and never escapes it; the inputs stay
    untouched.
    """

    def __init__(self, desired, observed, now, options, levels):
        self.desired: DesiredState = desired
        self.observed: ObservedState = observed
        self.now: float = now
        self.options: ReconcileOptions = options
        self.levels: dict[str, int] = levels
        self.actions: list[Action] = []
        self.waiting: list[Waiting] = []
        self.checks: list[float] = []
        self.acted: dict[str, set[str]] = {}  # Services with actions in this plan: their kinds.
        self.blocked: dict[str, str] = {}  # Services that cannot start, with the failure.
        self.warnings: list[Notice] = []
        self.by_service: dict[str, list[ObservedContainer]] = {}
        for c in sorted(observed.containers, key=lambda c: c.number):
            if not c.one_off:
                self.by_service.setdefault(c.service, []).append(c)
        unknown = sorted(set(options.scale) - set(desired.services))
        if unknown:
            raise InvalidArgument(f"cannot scale {unknown[0]}: no such service in stack {desired.project}")
        self.replicas = {name: options.scale.get(name, svc.replicas) for name, svc in desired.services.items()}
        for name, n in self.replicas.items():
            if n < 0:
                raise InvalidArgument(f"scale of service {name} must be 0 or more, not {n}")

    # Emitting.

    def add(self, svc: DesiredService, action: Action) -> bool:
        """Add `action` unless it starts a container and a dependency holds it back."""
        if action.kind in STARTING_KINDS:
            gate = self.gate(svc)
            if gate.state != "ok":
                self.wait(svc.name, gate.reason, failed=gate.state == "failed", kind=WAIT_DEPENDENCY)
                return False
        self.actions.append(replace(action, stage=self.levels.get(svc.name, 0)))
        self.acted.setdefault(svc.name, set()).add(action.kind)
        return True

    def wait(self, service: str, reason: str, *, failed: bool = False, until: float | None = None, kind: str = "") -> None:
        entry = Waiting(service, reason, failed, kind)
        if entry not in self.waiting:
            self.waiting.append(entry)
        if failed:
            self.blocked.setdefault(service, reason)
        if until is not None:
            self.checks.append(until)

    def gate(self, svc: DesiredService) -> DependencyStatus:
        """Whether `svc` may start a container now: the first dependency that holds it back."""
        if self.options.no_deps:
            return DependencyStatus("ok")
        return classify_gate(
            svc, self.desired, self.by_service, now=self.now, replicas=self.replicas, blocked=self.blocked, acted=self.acted
        )

    def plan(self) -> Plan:
        actions = sorted(self.actions, key=lambda a: a.stage)  # Stable: keeps the order within a stage.
        return Plan(
            self.desired.project,
            tuple(actions),
            waiting=tuple(self.waiting),
            warnings=tuple(self.warnings),
            next_check_at=min(self.checks, default=None),
        )

    # Planning.

    def plan_orphans(self) -> None:
        orphans = [c for c in self.observed.containers if c.service not in self.desired.services]
        if not orphans:
            return
        if not self.options.remove_orphans:
            names = [c.name for c in orphans if not c.one_off]
            if names:
                self.warnings.append(_orphan_warning(self.desired.project, names))
            return
        for c in orphans:
            self.actions.append(
                Action("remove", c.service, "orphan: its service is not in the stack", name=c.name, number=c.number, target=c.id)
            )

    def plan_service(self, svc: DesiredService, *, forced: bool) -> None:
        containers = self.by_service.get(svc.name, [])
        sp = ServicePass(
            svc=svc,
            project=self.desired.project,
            replicas=self.replicas[svc.name],
            containers=tuple(containers),
            now=self.now,
            forced=forced,
            up_since=self.options.up_since,
            rolled_back=self.observed.rolled_back.get(svc.name) == svc.config_hash,
            stale=self.stale_network(svc, containers),
        )
        handled = plan_update(sp, self)
        for c in containers:
            if c.id not in handled:
                self.plan_stopped(svc, c)
        for c in containers:
            if c.id not in handled:
                self.plan_dependency_restart(svc, c)

    def stale_network(self, svc: DesiredService, containers: list[ObservedContainer]) -> dict[str, str]:
        """network_mode: service:X replicas that share the namespace of a container X no
        longer has, with why. A replica of X that only restarted keeps its id: its dependents
        restart (plan_dependency_restart, the implied `restart: true`) and join its new namespace."""
        if svc.network_of is None:
            return {}
        owners = {c.id for c in self.by_service.get(svc.network_of, [])}
        why = f"the {svc.network_of} container whose network it shares was replaced"
        return {c.id: why for c in containers if c.network_container is not None and c.network_container not in owners}

    def plan_stopped(self, svc: DesiredService, c: ObservedContainer) -> None:
        """Start a current replica that does not run, if `up` or its restart policy says so."""
        if c.state == "dead":
            # A rolled back replica keeps the old configuration: the dead container has it.
            own = c.config_hash == svc.config_hash
            action = Action(
                "recreate", svc.name, "container is dead", name=c.name, number=c.number, target=c.id,
                config_hash=c.config_hash if own else None, clone_from=None if own else c.id,
            )
            self.add(svc, action)
            return
        if c.state == "created":
            self.add(svc, Action("start", svc.name, "created but not started", name=c.name, number=c.number, target=c.id))
            return
        if c.state != "exited":
            return
        since = self.options.up_since
        if since is not None and (c.finished_at is None or c.finished_at < since):
            self.add(svc, Action("start", svc.name, f"stopped (exit {c.exit_code}); up starts it", name=c.name, number=c.number, target=c.id))
            return
        decision = classify_exit(svc.restart, c, now=self.now, after_boot=self.options.after_boot)
        if decision.gave_up:
            self.wait(svc.name, f"{c.name} {decision.reason}", failed=True, kind=FAILED_RESTART_LIMIT)
        elif not decision.restart and c.exit_code not in (0, None) and not c.stopped_by_user:
            # Nothing will start it again: say so, rather than call the stack up to date.
            self.wait(svc.name, f"{c.name} {decision.reason}", failed=True, kind=FAILED_EXIT)
        elif decision.restart and decision.due_at is not None and decision.due_at > self.now:
            left = decision.due_at - self.now
            self.wait(svc.name, f"{c.name} restarts in {left:.3g}s (back-off after exit {c.exit_code})", until=decision.due_at,
                      kind=WAIT_RESTART_BACKOFF)
        elif decision.restart:
            action = Action(
                "restart", svc.name, decision.reason, name=c.name, number=c.number, target=c.id,
                attempt=decision.attempt, streak=decision.streak,
            )
            self.add(svc, action)

    def plan_dependency_restart(self, svc: DesiredService, c: ObservedContainer) -> None:
        """depends_on `restart: true`: a replica restarts when its dependency started after it."""
        if c.state != "running" or c.started_at is None:
            return
        for name, dep in sorted(svc.depends_on.items()):
            if not dep.restart:
                continue
            later = [d for d in self.by_service.get(name, []) if d.running and d.started_at is not None and d.started_at > c.started_at]
            if later:
                reason = f"dependency {name} restarted after {c.name} started ({later[0].name})"
                self.add(svc, Action("restart", svc.name, reason, name=c.name, number=c.number, target=c.id))
                return
