"""Short builders of the reconciler's values, for tables of tests.

They live in the package, as trio keeps `trio.testing`, so every test of the scheduler (and
the executor's tests later) spells a stack and a node the same short way. Containers are
named as compose v2 names them, `<project>-<service>-<number>`, in project `s`, and their id is
`<service><number>` (`web2`), which keeps expected plans readable.
"""

from __future__ import annotations

import dataclasses

from orch.scheduler.model import (
    Action,
    Dependency,
    DesiredService,
    DesiredState,
    ObservedContainer,
    ObservedState,
    Plan,
    ReconcileOptions,
    RestartPolicy,
    UpdateConfig,
)

PROJECT = "s"


def service(
    name: str,
    config_hash: str = "h1",
    *,
    replicas: int = 1,
    deps: dict[str, str | Dependency] | None = None,
    restart: str | RestartPolicy = "no",
    update: UpdateConfig | None = None,
    healthcheck: bool = False,
    network_of: str | None = None,
    container_name: str | None = None,
) -> DesiredService:
    """A desired service; `deps` maps a dependency to its condition or a full Dependency.
    `network_of` (network_mode: service:X) also adds X as a `restart: true` dependency, as
    desired.py does."""
    depends_on = {d: (c if isinstance(c, Dependency) else Dependency(c)) for d, c in (deps or {}).items()}
    if network_of is not None:
        depends_on = {network_of: Dependency(restart=True)} | depends_on
    if isinstance(restart, str):
        mode, _, n = restart.partition(":")
        restart = RestartPolicy(mode=mode, max_attempts=int(n or 0))
    return DesiredService(
        name, config_hash, replicas=replicas, depends_on=depends_on, restart=restart,
        update=update or UpdateConfig(parallelism=0), healthcheck=healthcheck, network_of=network_of,
        container_name=container_name,
    )


def stack(*services: DesiredService) -> DesiredState:
    return DesiredState(PROJECT, {s.name: s for s in services})


def container(
    service: str,
    number: int,
    config_hash: str = "h1",
    state: str = "running",
    *,
    health: str = "none",
    exit_code: int | None = None,
    created: float | None = None,
    started: float | None = 0.0,
    finished: float | None = None,
    health_at: float | None = None,
    restarts: int = 0,
    streak: int = 0,
    by_user: bool = False,
    one_off: bool = False,
    joins: str | None = None,
) -> ObservedContainer:
    return ObservedContainer(
        id=f"{service}{number}", name=f"{PROJECT}-{service}-{number}", service=service, number=number,
        config_hash=config_hash, state=state, health=health, exit_code=exit_code,
        created_at=created if created is not None else started, started_at=started, finished_at=finished,
        health_changed_at=health_at, restart_count=restarts, backoff_streak=streak,
        stopped_by_user=by_user, one_off=one_off, network_container=joins,
    )


def node(*containers: ObservedContainer, rolled_back: dict[str, str] | None = None) -> ObservedState:
    return ObservedState(PROJECT, tuple(containers), rolled_back=rolled_back or {})


def render_action(a: Action) -> str:
    """`kind name: reason`, the form expected plans are written in."""
    return f"{a.kind} {a.name or a.service}: {a.reason}"


def render_waiting(plan: Plan) -> list[str]:
    return [f"{'failed' if w.failed else 'wait'} {w.service}: {w.reason}" for w in plan.waiting]


class FakeNode:
    """A node that performs plans at once and plays containers forward on a mock clock.

    With it a test runs the loop the real executor runs (observe, plan, apply, wait for the
    next event) over minutes of simulated time in milliseconds. Containers of a service with a
    healthcheck turn healthy `health_delay` seconds after they start; containers whose config
    hash is in `crashes` exit with the given code after the given run time.
    """

    def __init__(self, desired: DesiredState, *, health_delay: float = 1.0, crashes: dict[str, tuple[float, int]] | None = None):
        self.desired = desired
        self.health_delay = health_delay
        self.crashes = crashes or {}
        self.containers: dict[str, ObservedContainer] = {}
        self.rolled_back: dict[str, str] = {}
        self.log: list[tuple[float, str, str]] = []  # (time, action kind, container name)
        self._next_id = 0

    def observe(self, now: float) -> ObservedState:
        for cid, c in list(self.containers.items()):
            self.containers[cid] = self._play(c, now)
        return ObservedState(self.desired.project, tuple(self.containers.values()), rolled_back=dict(self.rolled_back))

    def next_event(self, now: float) -> float | None:
        """The next time a container turns healthy or crashes, after `now`."""
        times = []
        for c in self.containers.values():
            if c.state != "running" or c.started_at is None:
                continue
            if self._has_healthcheck(c) and c.health == "starting":
                times.append(c.started_at + self.health_delay)
            if c.config_hash in self.crashes:
                times.append(c.started_at + self.crashes[c.config_hash][0])
        return min((t for t in times if t > now), default=None)

    def apply(self, plan: Plan, now: float) -> None:
        for a in plan.actions:
            self.log.append((now, a.kind, a.name or a.service))
            if a.kind == "rollback":
                self.rolled_back[a.service] = a.config_hash
            elif a.kind == "create":
                self._create(a, now, self._config_of(a))
            elif a.kind == "recreate":
                config_hash = self._config_of(a)  # Before the target goes: a rollback may copy it.
                del self.containers[a.target]
                self._create(a, now, config_hash)
            elif a.kind == "remove":
                del self.containers[a.target]
            elif a.kind == "stop":
                c = self.containers[a.target]
                self.containers[a.target] = _replace(c, state="exited", exit_code=137, finished_at=now, stopped_by_user=True)
            elif a.kind in ("start", "restart"):
                c = self.containers[a.target]
                counters = dict(restart_count=a.attempt or 0, backoff_streak=a.streak or 0) if a.kind == "restart" else dict(restart_count=0, backoff_streak=0)
                self.containers[a.target] = _replace(
                    c, state="running", started_at=now, finished_at=None, exit_code=None, stopped_by_user=False,
                    health="starting" if self._has_healthcheck(c) else "none", **counters,
                )

    def _config_of(self, a: Action) -> str:
        return self.containers[a.clone_from].config_hash if a.clone_from else a.config_hash

    def _create(self, a: Action, now: float, config_hash: str) -> None:
        self._next_id += 1
        cid = f"c{self._next_id}"
        c = ObservedContainer(
            id=cid, name=a.name, service=a.service, number=a.number, config_hash=config_hash, state="running",
            created_at=now, started_at=now,
        )
        self.containers[cid] = _replace(c, health="starting" if self._has_healthcheck(c) else "none")

    def _has_healthcheck(self, c: ObservedContainer) -> bool:
        svc = self.desired.services.get(c.service)
        return bool(svc and svc.healthcheck)

    def _play(self, c: ObservedContainer, now: float) -> ObservedContainer:
        if c.state != "running" or c.started_at is None:
            return c
        if c.config_hash in self.crashes:
            run, code = self.crashes[c.config_hash]
            if now >= c.started_at + run:
                return _replace(c, state="exited", exit_code=code, finished_at=c.started_at + run, health="none")
        if self._has_healthcheck(c) and c.health == "starting" and now >= c.started_at + self.health_delay:
            return _replace(c, health="healthy", health_changed_at=c.started_at + self.health_delay)
        return c


def _replace(c: ObservedContainer, **changes) -> ObservedContainer:
    return dataclasses.replace(c, **changes)


def run_until_converged(
    desired: DesiredState,
    fake: FakeNode,
    *,
    now: float = 0.0,
    options: ReconcileOptions = ReconcileOptions(),
    until: float = 600.0,
    check=None,
    watch: bool = False,
) -> tuple[Plan, float]:
    """The executor's loop on a mock clock: plan, apply, and jump to the next event.

    `check(observed, now)` runs on every state observed, for invariants such as "never fewer
    than three ready replicas". The loop ends at convergence, or with `watch` (the agent's
    supervision) only when nothing more will happen or at `until`. Returns the last plan and
    the time it was made.
    """
    from orch.scheduler.reconcile import plan_reconcile

    while True:
        observed = fake.observe(now)
        if check is not None:
            check(observed, now)
        plan = plan_reconcile(desired, observed, now=now, options=options)
        if plan.actions:
            fake.apply(plan, now)
            now += 0.001  # The executor needs a moment to act.
            continue
        wake = [t for t in (plan.next_check_at, fake.next_event(now)) if t is not None]
        if (plan.converged and not watch) or not wake or now >= until:
            return plan, now
        now = min(wake)
