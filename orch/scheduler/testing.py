"""Short builders of the reconciler's values, for tables of tests.

They live in the package, as trio keeps `trio.testing`, so every test of the scheduler (and
the executor's tests later) spells a stack and a node the same short way. Containers are
named as compose v2 names them, `<project>-<service>-<number>`, in project `s`, and their id is
`<service><number>` (`web2`), which keeps expected plans readable.
"""

from __future__ import annotations

from orch.scheduler.model import (
    Action,
    Dependency,
    DesiredService,
    DesiredState,
    ObservedContainer,
    ObservedState,
    Plan,
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
) -> DesiredService:
    """A desired service; `deps` maps a dependency to its condition or a full Dependency."""
    depends_on = {d: (c if isinstance(c, Dependency) else Dependency(c)) for d, c in (deps or {}).items()}
    if isinstance(restart, str):
        mode, _, n = restart.partition(":")
        restart = RestartPolicy(mode=mode, max_attempts=int(n or 0))
    return DesiredService(
        name, config_hash, replicas=replicas, depends_on=depends_on, restart=restart,
        update=update or UpdateConfig(parallelism=0), healthcheck=healthcheck,
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
) -> ObservedContainer:
    return ObservedContainer(
        id=f"{service}{number}", name=f"{PROJECT}-{service}-{number}", service=service, number=number,
        config_hash=config_hash, state=state, health=health, exit_code=exit_code,
        created_at=created if created is not None else started, started_at=started, finished_at=finished,
        health_changed_at=health_at, restart_count=restarts, backoff_streak=streak,
        stopped_by_user=by_user, one_off=one_off,
    )


def node(*containers: ObservedContainer, rolled_back: dict[str, str] | None = None) -> ObservedState:
    return ObservedState(PROJECT, tuple(containers), rolled_back=rolled_back or {})


def render_action(a: Action) -> str:
    """`kind name: reason`, the form expected plans are written in."""
    return f"{a.kind} {a.name or a.service}: {a.reason}"


def render_waiting(plan: Plan) -> list[str]:
    return [f"{'failed' if w.failed else 'wait'} {w.service}: {w.reason}" for w in plan.waiting]
