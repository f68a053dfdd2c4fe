"""Task records seen as the node reconciler's values, so one set of rules serves both.

A task is a replica (`ObservedContainer`) whose number is its slot and whose config hash is its
spec digest; a service's restart policy and update config become the reconciler's
`RestartPolicy` and `UpdateConfig`. The translation is lossless for what the rules read: state
(created until running, exited once terminal), exit code, health and their times, and the
restart counters a task carries from the one it replaced.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from orch.cluster.records import Service, Task, TaskState, UpdateConfig as UpdateConfigRecord
from orch.scheduler.model import ObservedContainer, RestartPolicy, UpdateConfig

_CONDITIONS = {"any": "always", "on-failure": "on-failure", "none": "no"}


def task_view(task: Task, number: int, service_name: str) -> ObservedContainer:
    """A task as the replica rules see a container: its number is its slot."""
    s = task.status
    if s.state == TaskState.RUNNING:
        cstate = "running"
    elif s.state.terminal:
        cstate = "exited"
    else:
        cstate = "created"
    code = s.container_status.exit_code if s.container_status else None
    if s.state == TaskState.COMPLETE:
        code = 0
    elif s.state.terminal and code == 0:
        code = None  # Shut down or rejected by its node: not a success.
    finished = s.finished_at if s.finished_at is not None else (s.timestamp if s.state.terminal else None)
    return ObservedContainer(
        id=task.id, name=task.name, service=service_name, number=number, config_hash=task.spec_digest,
        state=cstate, health=s.health, exit_code=code, created_at=task.created_at, started_at=s.started_at,
        finished_at=finished, health_changed_at=s.health_changed_at, restart_count=task.restart_count,
        backoff_streak=task.backoff_streak,
    )


def restart_policy(policy) -> RestartPolicy:
    """deploy.restart_policy as the restart rules read it (window 0: count every restart)."""
    return RestartPolicy(mode=_CONDITIONS[policy.condition], max_attempts=policy.max_attempts, delay=policy.delay, window=policy.window or None)


def update_config(config: UpdateConfigRecord, *, rollback: bool) -> UpdateConfig:
    action = config.failure_action
    if rollback and action == "rollback":
        action = "pause"  # swarm never rolls back a rollback.
    return UpdateConfig(
        parallelism=config.parallelism, delay=config.delay, order=config.order, failure_action=action,
        monitor=config.monitor, max_failure_ratio=config.max_failure_ratio,
    )


def has_healthcheck(service: Service) -> bool:
    check = service.spec.task_template.container_spec.healthcheck
    return check is not None and bool(check.test) and check.test[:1] != ["NONE"]


class TaskViews(dict):
    """Service name -> the tasks that count (`counts(task)`) as containers, made when first
    asked for, so a pass over a few services does not convert every task of the cluster."""

    def __init__(self, services: Mapping[str, Service], by_service: Mapping[str, Sequence[Task]], counts: Callable[[Task], bool],
                 view: Callable[[Task, int, str], ObservedContainer] = task_view):
        super().__init__()
        self.by_service = by_service
        self.counts = counts
        self.view = view
        self.ids = {s.spec.name: sid for sid, s in services.items()}

    def __missing__(self, name: str) -> list[ObservedContainer]:
        sid = self.ids.get(name)
        tasks = self.by_service.get(sid, ()) if sid is not None else ()
        views = self[name] = [self.view(t, t.slot, name) for t in tasks if self.counts(t)]
        return views

    def get(self, name, default=None):
        return self[name] if name in self.ids else default
