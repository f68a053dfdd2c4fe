"""The reconciler's values: what a stack wants, what the node has, and the plan between them.

These are plain frozen dataclasses with no behaviour beyond formatting, so the deciders in
this package stay pure functions of values (nomad's `scheduler/structs`; kubernetes' typed
objects). The stack-file models live in `orch.spec`; `orch.scheduler.desired` turns them into
the small `DesiredState` here, so the reconciler does not depend on how a stack file is
spelled.

Times are float seconds on one clock that the caller chooses (the node's wall clock in the
agent, plain numbers in tests). Nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

Condition = Literal["service_started", "service_healthy", "service_completed_successfully"]
RestartMode = Literal["no", "always", "on-failure", "unless-stopped"]
ContainerState = Literal["created", "running", "paused", "exited", "dead"]
Health = Literal["none", "starting", "healthy", "unhealthy"]
ActionKind = Literal["create", "start", "restart", "stop", "remove", "recreate", "rollback"]

# The actions that make a container run. They are the ones gated by depends_on.
STARTING_KINDS = frozenset({"create", "start", "restart", "recreate"})
# The actions that take a running container away, even if only for a moment.
DISRUPTIVE_KINDS = frozenset({"stop", "remove", "recreate", "restart"})


def short_hash(config_hash: str | None) -> str:
    """The first 8 hex digits of a config hash, as plans print them."""
    return (config_hash or "none")[:8]


@dataclass(frozen=True)
class RestartPolicy:
    """When an exited container is started again, and how long to wait first.

    `delay=None` is docker's restart manager: 100 ms doubling up to a minute. A number is a
    fixed delay, as deploy.restart_policy.delay has it. A run that lasted `window` seconds
    (10 s when None, docker's rule) counts as a success: the back-off starts over, and when a
    window is set, so does the count of attempts that max_attempts limits.
    """

    mode: RestartMode = "no"
    max_attempts: int = 0  # 0: no limit.
    delay: float | None = None
    window: float | None = None


@dataclass(frozen=True)
class UpdateConfig:
    """How a changed service rolls out (deploy.update_config).

    `parallelism=0` replaces every outdated replica at once, which is what docker compose does
    when a stack has no update_config. A replica is ready when it runs, is healthy if it has a
    healthcheck, and has run for `monitor` seconds.
    """

    parallelism: int = 1
    delay: float = 0.0
    order: Literal["stop-first", "start-first"] = "stop-first"
    failure_action: Literal["pause", "rollback", "continue"] = "pause"
    monitor: float = 0.0
    max_failure_ratio: float = 0.0  # The fraction of replicas that may fail before failure_action.


@dataclass(frozen=True)
class Dependency:
    """One depends_on entry: the condition the dependency must meet before this service starts."""

    condition: Condition = "service_started"
    required: bool = True
    restart: bool = False  # Restart this service when the dependency is restarted after it.


@dataclass(frozen=True)
class DesiredService:
    name: str
    config_hash: str
    replicas: int = 1
    depends_on: Mapping[str, Dependency] = field(default_factory=dict)
    restart: RestartPolicy = RestartPolicy()
    update: UpdateConfig = UpdateConfig(parallelism=0)
    healthcheck: bool = False
    # network_mode: service:NAME: the service whose container's network namespace it joins.
    network_of: str | None = None
    # container_name: the first replica's name instead of <project>-<service>-1 (compose's).
    container_name: str | None = None


@dataclass(frozen=True)
class DesiredState:
    project: str
    services: Mapping[str, DesiredService]


@dataclass(frozen=True, slots=True)
class ObservedContainer:
    """One container of the project as the node reports it.

    `restart_count` counts restarts since the container was created or last started by hand
    (docker's RestartCount); `backoff_streak` counts restarts in a row after short runs. The
    executor stores both from the `attempt` and `streak` of the restart action it performed.
    `health_changed_at` is when the health status last changed: a replica is ready from then.
    `network_container` is set for a container that joined another's network namespace
    (network_mode: service:NAME, docker's container:ID).
    """

    id: str
    name: str
    service: str
    number: int
    config_hash: str
    state: ContainerState = "running"
    health: Health = "none"
    exit_code: int | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    health_changed_at: float | None = None
    restart_count: int = 0
    backoff_streak: int = 0
    stopped_by_user: bool = False
    one_off: bool = False
    network_container: str | None = None  # The id of the container whose network it shares.

    @property
    def running(self) -> bool:
        # A paused container still holds its replica slot and its address.
        return self.state in ("running", "paused")


@dataclass(frozen=True)
class ObservedState:
    """Everything the node has for one project.

    `rolled_back` maps a service to the config hash whose rollout was rolled back; the
    executor records it when it performs a `rollback` action, so the next pass does not roll
    the same failing change out again, and clears it when the user runs `up --force-recreate`.
    """

    project: str
    containers: tuple[ObservedContainer, ...] = ()
    rolled_back: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReconcileOptions:
    """The flags of `orch compose up` that change the plan, and the context of the pass.

    `up_since` is when the user's `up` began: containers that stopped before it are started
    again, as `docker compose up` does, and `force_recreate` replaces containers created before
    it. A pass without it is a supervision pass: only restart policies start exited
    containers. `after_boot` marks the first pass after the node restarted, when `always`
    brings back even containers a user stopped (and `unless-stopped` does not).
    """

    force_recreate: bool = False
    no_deps: bool = False
    remove_orphans: bool = False
    services: tuple[str, ...] | None = None
    scale: Mapping[str, int] = field(default_factory=dict)
    up_since: float | None = None
    after_boot: bool = False


@dataclass(frozen=True)
class Action:
    """One step for the executor, with the reason a person reads in `orch compose plan`.

    `target` is the id of an existing container the action works on; `name` and `number` name
    the container it leaves behind (the new one for create and recreate). `config_hash` is the
    configuration a new container gets; when `clone_from` is set (a rollback), the executor
    copies the configuration of that container instead. Actions with a lower `stage` finish
    before actions with a higher one start; within a stage they may run in parallel.

    The kinds, for the executor: `create` creates and starts a container; `start` starts a
    stopped one and resets its restart counters, as `docker start` does; `restart` stops it if
    it runs, starts it, and stores `attempt` and `streak` (when given) as its restart_count and
    backoff_streak; `stop` stops it; `remove` stops and removes it; `recreate` removes it and
    creates its replacement under the same name; `rollback` records that the service's
    `config_hash` was rolled back (ObservedState.rolled_back).
    """

    kind: ActionKind
    service: str
    reason: str
    name: str | None = None
    number: int | None = None
    target: str | None = None
    config_hash: str | None = None
    clone_from: str | None = None
    attempt: int | None = None
    streak: int | None = None
    stage: int = 0

    def describe(self) -> str:
        what = self.name or self.service
        return f"{self.kind:<9}{what}: {self.reason}"


# Why a service waits (Waiting.kind), for programs, as nomad keeps its reasons as constants
# (scheduler/status/status.go); `reason` is the sentence for people and may change. An
# executor acts on some: the node's leaves restart back-offs to the agent, the cluster records
# a paused update in the service's UpdateStatus. A wait made without a kind has "".
WAIT_DEPENDENCY = "dependency"  # a dependency does not meet its condition yet (or failed)
WAIT_READY = "ready"  # an update waits for new replicas to be ready
WAIT_UPDATE_DELAY = "update-delay"  # update_config.delay between batches
WAIT_RESTART_BACKOFF = "restart-backoff"  # the restart policy starts it at the end of a back-off: the node's job
FAILED_EXIT = "exited"  # exited, and nothing will start it again
FAILED_RESTART_LIMIT = "restart-limit"  # the restart policy gave up
WAIT_UPDATE_PAUSED = "update-paused"  # a rollout stopped on a failing replica (failure_action: pause)
FAILED_ROLLBACK = "rollback-impossible"  # rolled back, but nothing has the old configuration

# Plan warnings (Notice.kind).
NOTICE_ORPHANS = "orphans"  # containers of services no longer in the stack
NOTICE_ROLLED_BACK = "rolled-back"  # a service runs its previous configuration


@dataclass(frozen=True)
class Waiting:
    """A service that cannot make progress in this pass, and why.

    `failed` means it will not make progress without a change: a failed dependency, a rollout
    paused by a failure, a restart limit reached. The others only need time. `kind` is one of
    the WAIT_* / FAILED_* constants above ("" for none).
    """

    service: str
    reason: str
    failed: bool = False
    kind: str = ""


@dataclass(frozen=True)
class Notice:
    """A warning of a plan: `text` for people, `kind` (NOTICE_*) and `service` for programs."""

    kind: str
    text: str
    service: str | None = None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Plan:
    project: str
    actions: tuple[Action, ...] = ()
    waiting: tuple[Waiting, ...] = ()
    warnings: tuple[Notice, ...] = ()
    next_check_at: float | None = None

    @property
    def converged(self) -> bool:
        return not self.actions and not self.waiting

    @property
    def failed(self) -> tuple[Waiting, ...]:
        return tuple(w for w in self.waiting if w.failed)

    def summary(self) -> str:
        """One line: `stack web is up to date`, or the counts of what the plan does."""
        if self.converged:
            return f"stack {self.project} is up to date"
        counts: dict[str, int] = {}
        for action in self.actions:
            counts[action.kind] = counts.get(action.kind, 0) + 1
        parts = [f"{n} to {kind}" for kind, n in counts.items()]
        if self.waiting:
            parts.append(f"{len(self.waiting)} waiting")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return f"stack {self.project}: " + ", ".join(parts)

    def explain(self, *, now: float | None = None) -> str:
        """The text of `orch compose plan`: every action and every wait, with its reason."""
        lines = [self.summary()]
        lines += ["  " + a.describe() for a in self.actions]
        for w in self.waiting:
            lines.append(f"  {'failed' if w.failed else 'waiting':<9}{w.service}: {w.reason}")
        lines += [f"  warning  {text}" for text in self.warnings]
        if self.next_check_at is not None and now is not None:
            lines.append(f"  next check in {max(0.0, self.next_check_at - now):.1f}s")
        return "\n".join(lines)
