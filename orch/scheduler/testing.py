"""Short builders of the reconciler's values, for tables of tests.

They live in the package, as trio keeps `trio.testing`, so every test of the scheduler (and
the executor's tests later) spells a stack and a node the same short way. Containers are
named as compose v2 names them, `<project>-<service>-<number>`, in project `s`, and their id is
`<service><number>` (`web2`), which keeps expected plans readable.
"""

from __future__ import annotations

import dataclasses

from orch.scheduler.converge import converge
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
from orch.scheduler.restart import RestartDecision, classify_exit

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
    """A node on a mock clock: it performs plans at once, plays containers forward, and
    restarts exited ones as the agent's supervision does (the restart policy's pure decider,
    orch.scheduler.restart.classify_exit, with its back-off), since the converge loop leaves
    those restarts to the node.

    With it a test runs the very loop the executor runs (orch.scheduler.converge) over minutes
    of simulated time in milliseconds. Containers of a service with a healthcheck turn healthy
    `health_delay` seconds after they start; containers whose config hash is in `crashes` exit
    with the given code after the given run time. `log` lists what happened: (time, kind,
    container name), the loop's actions and the node's own restarts alike.
    """

    def __init__(self, desired: DesiredState, *, health_delay: float = 1.0, crashes: dict[str, tuple[float, int]] | None = None,
                 now: float = 0.0):
        self.desired = desired
        self.health_delay = health_delay
        self.crashes = crashes or {}
        self.time = now
        self.containers: dict[str, ObservedContainer] = {}
        self.rolled_back: dict[str, str] = {}
        self.log: list[tuple[float, str, str]] = []  # (time, action kind, container name)
        self.restarts: dict[str, tuple[float, RestartDecision]] = {}  # pending supervision restarts by id
        self._next_id = 0

    # -- the loop's interface (orch.scheduler.converge.ConvergeNode) ---------------------------------
    def now(self) -> float:
        return self.time

    def observe(self) -> ObservedState:
        for cid in list(self.containers):
            self._play(cid, self.time)
        return ObservedState(self.desired.project, tuple(self.containers.values()), rolled_back=dict(self.rolled_back))

    def wait(self, until: float | None) -> bool:
        """Jump to the plan's next check or the node's next event, whichever comes first."""
        wake = [t for t in (until, self.next_event()) if t is not None]
        if not wake:
            return False
        self.time = max(self.time, min(wake))
        return True

    def apply(self, plan: Plan) -> None:
        now = self.time
        for a in plan.actions:
            self.log.append((now, a.kind, a.name or a.service))
            self.restarts.pop(a.target or "", None)  # a user's action wins over a pending restart
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
                self._start(a.target, now, restart_count=0, backoff_streak=0)
        self.time = now + 0.001  # The executor needs a moment to act.

    # -- the node's own life ----------------------------------------------------------------------
    def next_event(self, now: float | None = None) -> float | None:
        """The next time a container turns healthy, crashes or is restarted, after `now`."""
        now = self.time if now is None else now
        times = [due for due, _ in self.restarts.values()]
        for c in self.containers.values():
            if c.state != "running" or c.started_at is None:
                continue
            if self._has_healthcheck(c) and c.health == "starting":
                times.append(c.started_at + self.health_delay)
            if c.config_hash in self.crashes:
                times.append(c.started_at + self.crashes[c.config_hash][0])
        return min((t for t in times if t > now), default=None)

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

    def _start(self, cid: str, now: float, **counters) -> None:
        c = self.containers[cid]
        self.containers[cid] = _replace(c, state="running", started_at=now, finished_at=None, exit_code=None, stopped_by_user=False,
                                        health="starting" if self._has_healthcheck(c) else "none", **counters)

    def _has_healthcheck(self, c: ObservedContainer) -> bool:
        svc = self.desired.services.get(c.service)
        return bool(svc and svc.healthcheck)

    def _play(self, cid: str, now: float) -> None:
        """Everything that happened to container `cid` up to `now`, in order."""
        while True:
            c = self.containers[cid]
            pending = self.restarts.get(cid)
            if pending is not None and pending[0] <= now:
                due, decision = self.restarts.pop(cid)
                self.log.append((due, "restart", c.name))
                self._start(cid, due, restart_count=decision.attempt, backoff_streak=decision.streak)
                continue
            if c.state != "running" or c.started_at is None:
                return
            if c.config_hash in self.crashes:
                run, code = self.crashes[c.config_hash]
                if now >= c.started_at + run:
                    exited = _replace(c, state="exited", exit_code=code, finished_at=c.started_at + run, health="none")
                    self.containers[cid] = exited
                    self._supervise(exited)
                    continue
            if self._has_healthcheck(c) and c.health == "starting" and now >= c.started_at + self.health_delay:
                self.containers[cid] = _replace(c, health="healthy", health_changed_at=c.started_at + self.health_delay)
            return

    def _supervise(self, c: ObservedContainer) -> None:
        """A container exited on its own: its restart policy may start it again later."""
        svc = self.desired.services.get(c.service)
        if svc is None:
            return
        decision = classify_exit(svc.restart, c, now=c.finished_at)
        if decision.restart:
            self.restarts[c.id] = (decision.due_at if decision.due_at is not None else c.finished_at, decision)


def _replace(c: ObservedContainer, **changes) -> ObservedContainer:
    return dataclasses.replace(c, **changes)


def run_until_converged(
    desired: DesiredState,
    fake: FakeNode,
    *,
    now: float | None = None,
    options: ReconcileOptions = ReconcileOptions(),
    until: float = 600.0,
    check=None,
    watch: bool = False,
) -> tuple[Plan, float]:
    """The executor's loop (orch.scheduler.converge) on `fake`'s mock clock, from `now`.

    `check(observed, now)` runs on every state observed, for invariants such as "never fewer
    than three ready replicas". The loop ends at convergence, or with `watch` (the agent's
    supervision) only when nothing more will happen or at `until`. Returns the last plan and
    the time it was made.
    """
    if now is not None:
        fake.time = max(fake.time, now)
    last = None
    for p in converge(desired, fake, options=options):
        last = p
        if check is not None:
            check(p.observed, p.now)
        if p.todo:
            continue
        if (p.plan.converged and not watch) or p.now >= until:
            break
    return last.plan, last.now
