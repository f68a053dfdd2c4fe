"""Replicas of one service: scale, missing replicas, and rolling updates by update_config.

A rolling update has no state of its own: each pass works out how far it got from the config
hashes and readiness of the containers it sees (swarm's updater keeps a loop; here the loop is
the executor calling the reconciler again). The rules, for a service that wants R replicas:

- *Current* replicas have the desired config hash; *outdated* ones do not (or all of them,
  with --force-recreate). A current replica is *ready* when it runs, is healthy if the service
  has a healthcheck, and has run for update_config.monitor seconds; *starting* before that;
  *failed* when it exited non-zero, died or is unhealthy.
- Outdated replicas are kept while the current ones that are ready fall short of R; the rest
  are removed. So with start-first an old replica goes only once a new one is ready.
- Outdated replicas that do not run are recreated at once: replacing them costs no capacity.
- Running outdated replicas are replaced a batch (parallelism; 0 = all) at a time, when no
  current replica is starting and update_config.delay has passed since the last batch became
  ready. stop-first recreates a batch in place (same names); start-first creates the batch
  beside them with free numbers and removes the old ones on a later pass.
- A failed replica while outdated ones remain stops the update (failure_action pause, until
  the replica recovers), ignores it (continue), or rolls back (rollback): the updated replicas
  are recreated from the configuration of an old one, and the executor records the rolled back
  hash so that later passes do not roll it out again. update_config.max_failure_ratio lets
  that fraction of the replicas fail before the failure action applies (swarm's rule).

The cluster's orchestrator (orch.scheduler.orchestrate) runs the same rules over tasks: a
replica is a task, its number the task's slot. There a start-first replacement shares the
slot of the task it replaces (`same_slot`), and a paused update stays paused until the service
changes (`paused`, swarm's UpdateStatus), where on one node it resumes once the replica recovers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Literal, Mapping, Protocol

from orch.scheduler.model import (
    FAILED_ROLLBACK,
    NOTICE_ROLLED_BACK,
    WAIT_READY,
    WAIT_UPDATE_DELAY,
    WAIT_UPDATE_PAUSED,
    Action,
    DesiredService,
    Notice,
    ObservedContainer,
    short_hash,
)

ReplicaStatus = Literal["ready", "starting", "failed", "stopped"]


@dataclass(frozen=True)
class ServicePass:
    """What the update rules need to know about one service in one pass."""

    svc: DesiredService
    project: str
    replicas: int
    containers: tuple[ObservedContainer, ...]
    now: float
    forced: bool = False
    up_since: float | None = None
    rolled_back: bool = False
    # Replicas that are outdated whatever their hash, with why: on one node those that joined
    # the network namespace of a container their network_of service no longer has (compose
    # recreates them); in a cluster those on a drained node or one that no longer satisfies
    # the service's constraints.
    stale: Mapping[str, str] = field(default_factory=dict)
    # A start-first replacement takes the number of the replica it replaces (a cluster's slot)
    # instead of a free one (a node's container name).
    same_slot: bool = False
    # Why the update is paused, when an earlier pass paused it and it stays so (a cluster's
    # UpdateStatus); None on one node, where a pause lasts while the failure does.
    paused: str | None = None
    retry_hint: str = "fix the service and run up again"


class Emitter(Protocol):
    """The part of a reconcile pass the update rules write into."""

    def add(self, svc: DesiredService, action: Action) -> bool: ...

    def wait(self, service: str, reason: str, *, failed: bool = False, until: float | None = None, kind: str = "") -> None: ...

    warnings: list[Notice]


def is_outdated(sp: ServicePass, c: ObservedContainer) -> bool:
    if c.id in sp.stale:
        return True
    if sp.rolled_back:
        # The desired hash was rolled back: the replicas that still carry it are the outdated ones.
        return c.config_hash == sp.svc.config_hash
    if c.config_hash != sp.svc.config_hash:
        return True
    # --force-recreate replaces what existed before this `up`, once, not on every pass.
    return sp.forced and (sp.up_since is None or c.created_at is None or c.created_at < sp.up_since)


def classify_replica(svc: DesiredService, c: ObservedContainer, *, now: float) -> ReplicaStatus:
    if c.state in ("exited", "dead"):
        if c.stopped_by_user or (c.state == "exited" and c.exit_code == 0):
            return "stopped"
        return "failed"
    if c.health == "unhealthy":
        return "failed"
    if c.state == "created" or (svc.healthcheck and c.health != "healthy"):
        return "starting"
    if c.started_at is not None and now < c.started_at + svc.update.monitor:
        return "starting"
    return "ready"


def ready_at(svc: DesiredService, c: ObservedContainer) -> float:
    """When a ready replica became ready: monitor after its start, or when it turned healthy."""
    at = (c.started_at or 0.0) + svc.update.monitor
    if svc.healthcheck and c.health_changed_at is not None:
        at = max(at, c.health_changed_at)
    return at


def plan_update(sp: ServicePass, out: Emitter) -> set[str]:
    """Emit the scale and update actions of one service; return the ids of containers they cover."""
    svc, want = sp.svc, sp.replicas
    handled: set[str] = {c.id for c in sp.containers if is_outdated(sp, c)}
    current = [c for c in sp.containers if not is_outdated(sp, c)]
    outdated = [c for c in sp.containers if is_outdated(sp, c)]
    total = len(sp.containers)
    free = _free_numbers({c.number for c in sp.containers})
    source = _rollback_source(sp)
    if sp.rolled_back:
        out.warnings.append(Notice(
            NOTICE_ROLLED_BACK, f"service {svc.name}: the update to hash {short_hash(svc.config_hash)} was rolled back; "
            "change the service or run up --force-recreate to try it again", svc.name,
        ))

    # 1. Scale down the current replicas, highest numbers first.
    if len(current) > want:
        surplus = sorted(current, key=lambda c: c.number, reverse=True)[: len(current) - want]
        for c in surplus:
            out.add(svc, Action("remove", svc.name, f"scale {total}→{want}", name=c.name, number=c.number, target=c.id))
            handled.add(c.id)
        current = [c for c in current if c not in surplus]

    status = {c.id: classify_replica(svc, c, now=sp.now) for c in current}
    failed = [c for c in current if status[c.id] == "failed"]
    done = [c for c in current if status[c.id] in ("ready", "stopped")]
    tolerated = svc.update.failure_action == "continue" or len(failed) <= svc.update.max_failure_ratio * want
    if tolerated:
        done += failed

    # 2. Keep the outdated replicas that ready ones have not replaced yet; remove the others.
    keep = min(len(outdated), max(0, want - len(done)))
    idle_first = sorted(outdated, key=lambda c: (c.running, c.number if done else -c.number))
    for c in idle_first[: len(outdated) - keep]:
        reason = f"replaced by an updated replica ({_change(sp, c, source)})" if done else f"scale {total}→{want}"
        out.add(svc, Action("remove", svc.name, reason, name=c.name, number=c.number, target=c.id))
    kept = sorted(idle_first[len(outdated) - keep :], key=lambda c: c.number)

    # 3. Create the missing replicas.
    for _ in range(want - len(current) - len(kept)):
        number = next(free)
        reason = f"scale {total}→{want}" if total else f"replica {number} of {want} is missing"
        _create(sp, out, number, reason, source)

    # 4. Replace the outdated replicas that are kept.
    for c in [c for c in kept if not c.running]:
        _recreate(sp, out, c, _change(sp, c, source), source)
    running = [c for c in kept if c.running]
    if not running:
        return handled
    if sp.paused is not None:
        out.wait(svc.name, f"update paused: {sp.paused}; {sp.retry_hint}", failed=True, kind=WAIT_UPDATE_PAUSED)
        return handled
    if failed and not sp.rolled_back and not tolerated:
        if _on_failure(sp, out, failed[0], current, running[0]):
            handled |= {c.id for c in current}
        return handled
    starting = [c for c in current if status[c.id] == "starting"]
    if starting:
        _wait_ready(sp, out, starting)
        return handled
    ready = [c for c in current if status[c.id] == "ready"]
    if ready and svc.update.delay:
        allowed = max(ready_at(svc, c) for c in ready) + svc.update.delay
        if sp.now < allowed:
            out.wait(svc.name, f"next update batch in {allowed - sp.now:.3g}s (update_config.delay)", until=allowed, kind=WAIT_UPDATE_DELAY)
            return handled
    size = len(running) if svc.update.parallelism == 0 else min(svc.update.parallelism, len(running))
    for c in running[:size]:
        change = _change(sp, c, source)
        if svc.update.order == "start-first":
            number = c.number if sp.same_slot else next(free)
            _create(sp, out, number, f"{change}; start-first update of {c.name}", source)
        else:
            batch = f"; stop-first update, batch of {size}" if svc.update.parallelism else ""
            _recreate(sp, out, c, change + batch, source)
    return handled


def _on_failure(sp: ServicePass, out: Emitter, bad: ObservedContainer, current, old: ObservedContainer) -> bool:
    """Pause or roll back an update that `bad` failed; True when the current replicas are rolled back."""
    svc = sp.svc
    what = f"{bad.name} is unhealthy" if bad.health == "unhealthy" else f"{bad.name} exited {bad.exit_code}"
    if svc.update.failure_action == "pause":
        out.wait(svc.name, f"update paused: {what} (failure_action pause); {sp.retry_hint}", failed=True, kind=WAIT_UPDATE_PAUSED)
        return False
    out.add(svc, Action("rollback", svc.name, f"{what}; rolling back to hash {short_hash(old.config_hash)}", config_hash=svc.config_hash))
    for c in current:
        out.add(svc, Action("recreate", svc.name, f"rolling back: {what}", name=c.name, number=c.number, target=c.id, clone_from=old.id))
    return True


def _wait_ready(sp: ServicePass, out: Emitter, starting: list[ObservedContainer]) -> None:
    svc = sp.svc
    names = ", ".join(c.name for c in starting)
    monitor_ends = [c.started_at + svc.update.monitor for c in starting if c.started_at is not None and svc.update.monitor]
    until = max(monitor_ends) if monitor_ends and max(monitor_ends) > sp.now else None
    if svc.healthcheck and any(c.health != "healthy" for c in starting):
        why = "not healthy yet"
    elif until is not None:
        why = f"monitor {svc.update.monitor:g}s"
    else:
        why = "not running yet"
    out.wait(svc.name, f"waiting for {names} to be ready ({why})", until=until, kind=WAIT_READY)


def _rollback_source(sp: ServicePass) -> ObservedContainer | None:
    """The container whose configuration a rolled back service is recreated from."""
    if not sp.rolled_back:
        return None
    old = [c for c in sp.containers if c.config_hash != sp.svc.config_hash]
    return min(old, key=lambda c: (not c.running, c.number), default=None)


def _change(sp: ServicePass, c: ObservedContainer, source: ObservedContainer | None) -> str:
    if c.id in sp.stale:
        return sp.stale[c.id]
    if sp.rolled_back:
        return f"rolling back to hash {short_hash(source.config_hash if source else None)}"
    if c.config_hash == sp.svc.config_hash:
        return "forced recreate"
    return f"config changed (hash {short_hash(c.config_hash)}→{short_hash(sp.svc.config_hash)})"


def _create(sp: ServicePass, out: Emitter, number: int, reason: str, source: ObservedContainer | None) -> None:
    svc = sp.svc
    if sp.rolled_back and source is None:
        out.wait(svc.name, "rolled back, but no container has the old configuration to copy; change the service", failed=True,
                 kind=FAILED_ROLLBACK)
        return
    name = svc.container_name if svc.container_name and number == 1 else f"{sp.project}-{svc.name}-{number}"
    action = Action("create", svc.name, reason, name=name, number=number, config_hash=None if source else svc.config_hash, clone_from=source.id if source else None)
    out.add(svc, action)


def _recreate(sp: ServicePass, out: Emitter, c: ObservedContainer, reason: str, source: ObservedContainer | None) -> None:
    svc = sp.svc
    if sp.rolled_back and source is None:
        out.wait(svc.name, "rolled back, but no container has the old configuration to copy; change the service", failed=True,
                 kind=FAILED_ROLLBACK)
        return
    action = Action(
        "recreate", svc.name, reason, name=c.name, number=c.number, target=c.id,
        config_hash=None if source else svc.config_hash, clone_from=source.id if source else None,
    )
    out.add(svc, action)


def _free_numbers(used: set[int]) -> Iterator[int]:
    """The numbers no container of the service holds, lowest first. Numbers are only taken
    during a pass, so the search goes on from the last one (a pass that creates a thousand
    replicas does not scan from 1 a thousand times)."""
    n = 0
    while True:
        n += 1
        if n not in used:
            used.add(n)
            yield n
