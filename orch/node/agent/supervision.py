"""What the agent does by itself when a container starts or exits: healthchecks and restarts.

Node.apply_event calls `after_event` for every supervisor event it applies, and
watch_supervisor calls `after_adopt` once it has adopted what runs. From there:

- a started container with a healthcheck gets one probe task (orch.node.agent.health);
- an exited container is started again when its restart policy says so, after the back-off of
  the pure `orch.scheduler.restart.classify_exit` (100 ms doubling to one minute, reset after
  10 s of running), so a crash loop costs one start a minute, not a spinning CPU; a
  deploy.restart_policy's delay, max_attempts and window replace those numbers (swarm's);
- after the agent starts, `always` containers come back even when a user stopped them and
  `unless-stopped` ones do not (docker's one difference between the two).

Tasks are keyed by container id in the node's dicts (health_tasks, restart_tasks), so a second adopt (the supervisor came
back) or a duplicate event never starts a second probe loop or a second pending restart. A
pending restart re-checks the record when it wakes: a user's start, stop or rm in between wins.
"""

from __future__ import annotations

import sys
import time

from orch.errors import OrchError
from orch.node.runtime.containerlog import rfc3339_nano

NS = 1_000_000_000


def _tasks(node, kind: str) -> dict:
    return node.health_tasks if kind == "health" else node.restart_tasks


def after_event(node, rec: dict, kind: str) -> None:
    if node.nursery is None:
        return
    if kind == "started" and rec["State"]["Status"] == "running":
        watch_health(node, rec, fresh=True)
    elif kind == "exited":
        _cancel(node, "health", rec["Id"])
        schedule_restart(node, rec, after_boot=False)


def after_adopt(node, *, first: bool) -> None:
    if node.nursery is None:
        return
    for rec in list(node.records.values()):
        status = rec["State"]["Status"]
        if status in ("running", "paused"):
            watch_health(node, rec)
        elif status == "exited":
            schedule_restart(node, rec, after_boot=first)


def on_user_start(rec: dict) -> None:
    """`docker start` by a person: the restart counters and the stopped mark start over."""
    rec.orch.stopped_by_user = False
    rec["RestartCount"] = 0
    rec.orch.backoff_streak = 0


def on_user_stop(rec: dict) -> None:
    rec.orch.stopped_by_user = True


def _cancel(node, kind: str, cid: str) -> None:
    entry = _tasks(node, kind).pop(cid, None)
    if entry is not None:
        entry[0].cancel()


def watch_health(node, rec: dict, *, fresh: bool = False) -> None:
    """Probe `rec` while its current run lasts; `fresh`: a new run, whose health starts over."""
    import trio

    from orch.node.agent import health

    if not rec["Config"].get("Healthcheck"):
        return
    pid = rec["State"].get("Pid")
    tasks = _tasks(node, "health")
    current = tasks.get(rec["Id"])
    if current is not None and current[1] == pid:
        return
    _cancel(node, "health", rec["Id"])
    if fresh:
        rec["State"]["Health"] = health.initial_health()
    scope = trio.CancelScope()
    entry = (scope, pid)  # the pid says which run of the container this loop probes
    tasks[rec["Id"]] = entry

    async def run():
        with scope:
            try:
                await health.monitor(node, rec, pid)
            except OrchError as err:
                print(f"agent: healthcheck of {rec['Id'][:12]}: {err}", file=sys.stderr, flush=True)
        if tasks.get(rec["Id"]) is entry:
            tasks.pop(rec["Id"], None)

    node.nursery.start_soon(run)


def restart_policy(rec: dict):
    """The record's HostConfig.RestartPolicy as the decider's value. Docker's keys (Name,
    MaximumRetryCount) plus, from deploy.restart_policy, MaxAttempts and Delay / Window in
    nanoseconds (the unit of docker's other durations, such as Healthcheck.Interval)."""
    from orch.scheduler.model import RestartPolicy

    policy = rec["HostConfig"].get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    attempts = int(policy.get("MaxAttempts") or policy.get("MaximumRetryCount") or 0)
    delay, window = (policy.get(key) for key in ("Delay", "Window"))
    return RestartPolicy(mode=name, max_attempts=attempts, delay=None if delay is None else delay / NS,
                         window=None if window is None else window / NS)


def observed(rec: dict):
    """The record as the restart decider reads it."""
    from orch.node.agent.views import parse_time
    from orch.scheduler.model import ObservedContainer

    state = rec["State"]
    return ObservedContainer(
        id=rec["Id"], name=rec["Name"].lstrip("/"), service="", number=0, config_hash="", state="exited",
        exit_code=state.get("ExitCode"), started_at=parse_time(state.get("StartedAt", "")),
        finished_at=parse_time(state.get("FinishedAt", "")), restart_count=int(rec.get("RestartCount") or 0),
        backoff_streak=rec.orch.backoff_streak, stopped_by_user=rec.orch.stopped_by_user,
    )


def schedule_restart(node, rec: dict, *, after_boot: bool) -> None:
    import trio

    from orch.scheduler.restart import classify_exit

    if rec["HostConfig"].get("AutoRemove") or rec["Id"] in _tasks(node, "restart"):
        return
    policy = restart_policy(rec)
    if policy.mode == "no":
        return
    decision = classify_exit(policy, observed(rec), now=time.time(), after_boot=after_boot)
    if not decision.restart:
        return
    exited_pid = rec.orch.exited_pid
    scope = trio.CancelScope()
    entry = (scope, exited_pid)
    _tasks(node, "restart")[rec["Id"]] = entry
    rec["State"]["Restarting"] = True
    node.save(rec, durable=False)

    async def run():
        with scope:
            await trio.sleep_until(trio.current_time() + max(0.0, (decision.due_at or 0) - time.time()))
            _tasks(node, "restart").pop(rec["Id"], None)
            rec["State"]["Restarting"] = False
            still = (
                rec["Id"] in node.records and rec["State"]["Status"] == "exited" and rec.orch.exited_pid == exited_pid
                and (after_boot or not rec.orch.stopped_by_user)
            )
            if not still:
                return
            rec["RestartCount"] = decision.attempt
            rec.orch.backoff_streak = decision.streak
            rec.orch.stopped_by_user = False
            try:
                await node.start(rec, by_policy=True)
            except OrchError as err:
                # A start that fails (the program is gone, say) is an exit like any other: the
                # next attempt comes after a longer back-off.
                print(f"agent: restarting {rec['Name'].lstrip('/')}: {err}", file=sys.stderr, flush=True)
                rec["State"]["FinishedAt"] = rfc3339_nano()
                node.save(rec, durable=False)
                schedule_restart(node, rec, after_boot=False)
        if _tasks(node, "restart").get(rec["Id"]) is entry:
            _tasks(node, "restart").pop(rec["Id"], None)

    node.nursery.start_soon(run)


def cancel_restart(node, rec: dict) -> None:
    """A user acted on the container: a pending restart must not fire."""
    if rec["Id"] in _tasks(node, "restart"):
        _cancel(node, "restart", rec["Id"])
        rec["State"]["Restarting"] = False


def supervised_config(req, image_config: dict) -> dict:
    """The record's keys for supervision, from the create body over the image's config:
    Config.Healthcheck / StopSignal / StopTimeout and HostConfig.RestartPolicy, docker's names."""
    from orch.node.agent.health import compute_healthcheck
    from orch.node.agent.node import _signal_number

    config: dict = {}
    check = compute_healthcheck(req.healthcheck, image_config.get("Healthcheck"))
    if check is not None:
        config["Healthcheck"] = check
    if req.stop_signal:
        _signal_number(req.stop_signal)  # a bad name is an error now, not at the first stop
        config["StopSignal"] = req.stop_signal
    if req.stop_timeout is not None:
        config["StopTimeout"] = req.stop_timeout
    policy = req.restart_policy
    name = (policy.name if policy else "") or "no"
    if name != "on-failure" and policy is not None and policy.maximum_retry_count:
        from orch.errors import InvalidArgument

        raise InvalidArgument(f"maximum retry count applies only to the on-failure restart policy, not {name!r}")
    if name != "no" and req.auto_remove:
        from orch.errors import Conflict

        raise Conflict("a container removed when it exits (--rm) cannot have a restart policy; drop one of them")
    host = {"RestartPolicy": {"Name": name, "MaximumRetryCount": policy.maximum_retry_count if policy else 0}}
    if policy is not None and name != "no":
        # Only when given, so a docker-style policy inspects exactly as docker's does.
        if policy.max_attempts:
            host["RestartPolicy"]["MaxAttempts"] = policy.max_attempts
        for key, value in (("Delay", policy.delay), ("Window", policy.window)):
            if value is not None:
                host["RestartPolicy"][key] = round(value * NS)
    return {"Config": config, "HostConfig": host}
