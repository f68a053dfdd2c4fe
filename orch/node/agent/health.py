"""Healthchecks: the agent runs a container's `test` inside it, on a timer, and keeps State.Health.

The rules are docker's (moby `daemon/health.go`), split as the rest of orch is:

- pure deciders: `compute_healthcheck` merges the create request's healthcheck over the
  image's (a field left out keeps the image's value, `["NONE"]` turns it off), `probe_args`
  turns the three test forms into a command, `compute_probe_delay` says when the next probe
  runs, and `apply_probe_result` folds one result into State.Health;
- drivers: `run_probe` execs the command through the supervisor (the exec path `orch exec`
  uses, so a probe sees what the program sees) and `monitor` is the trio task that loops.

docker's defaults: interval 30 s, timeout 30 s, 3 retries, start period 0, start interval 5 s.
A probe fails when it exits non-zero or outlives its timeout. Failures in the start period do
not count against the retries, but a success there makes the container healthy at once. The
log keeps the last five results, as docker's does.
"""

from __future__ import annotations

import os
import secrets
import select
import time

from orch.errors import InvalidArgument, OrchError

NS = 1_000_000_000
DEFAULTS = {"Interval": 30.0, "Timeout": 30.0, "Retries": 3, "StartPeriod": 0.0, "StartInterval": 5.0}
LOG_KEEP = 5
OUTPUT_LIMIT = 4096  # docker's maxOutputLen


def compute_healthcheck(request, image_check: dict | None) -> dict | None:
    """The healthcheck a container gets, in docker's Config.Healthcheck shape (durations in ns).

    `request` is the create body's healthcheck (seconds) or None; `image_check` is the image
    config's Healthcheck or None. Returns None when the container has no healthcheck.
    """
    merged = dict(image_check or {})
    if request is not None:
        if request.test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise InvalidArgument(f"healthcheck test must start with CMD, CMD-SHELL or NONE, not {request.test[0]!r}")
        merged["Test"] = list(request.test)
        for field, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"), ("start_interval", "StartInterval")):
            value = getattr(request, field)
            if value:  # zero means "inherit", as in docker
                merged[key] = int(value * NS)
        if request.retries:
            merged["Retries"] = request.retries
    test = merged.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    return merged


def seconds(check: dict, key: str) -> float:
    """A duration of the healthcheck in seconds, docker's default when unset or zero."""
    value = check.get(key) or 0
    if key == "Retries":
        return int(value) or DEFAULTS[key]
    return value / NS if value else DEFAULTS[key]


def probe_args(check: dict) -> list[str]:
    """The command a probe runs: CMD runs its arguments, CMD-SHELL its one string in /bin/sh."""
    test = check["Test"]
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    if test[0] == "CMD" and len(test) > 1:
        return list(test[1:])
    raise InvalidArgument(f"healthcheck test {test!r} has no command")


def compute_probe_delay(check: dict, health: dict, *, started_at: float, now: float) -> float:
    """Seconds to the next probe: start_interval while starting inside the start period."""
    in_start = now < started_at + seconds(check, "StartPeriod")
    if in_start and health.get("Status") == "starting" and check.get("StartInterval"):
        return seconds(check, "StartInterval")
    return seconds(check, "Interval")


def initial_health() -> dict:
    return {"Status": "starting", "FailingStreak": 0, "Log": []}


def apply_probe_result(check: dict, health: dict, result: dict, *, started_at: float) -> dict:
    """State.Health after one probe. `result` is {Start, End, ExitCode, Output} with Start and
    End as epoch seconds; the log stores them as RFC 3339 text, as docker's does."""
    from orch.node.runtime.containerlog import rfc3339_nano

    entry = dict(result, Start=rfc3339_nano(int(result["Start"] * NS)), End=rfc3339_nano(int(result["End"] * NS)))
    log = (list(health.get("Log") or []) + [entry])[-LOG_KEEP:]
    status, streak = health.get("Status", "starting"), int(health.get("FailingStreak", 0))
    if result["ExitCode"] == 0:
        return {"Status": "healthy", "FailingStreak": 0, "Log": log}
    in_start = result["Start"] < started_at + seconds(check, "StartPeriod")
    if status == "starting" and in_start:
        return {"Status": status, "FailingStreak": streak, "Log": log}
    streak += 1
    if streak >= seconds(check, "Retries"):
        status = "unhealthy"
    return {"Status": status, "FailingStreak": streak, "Log": log}


# -- drivers ------------------------------------------------------------------------------------
def run_probe(sup_path: str, cid: str, process: dict, timeout: float, exec_id: str | None = None) -> dict:
    """Run one probe through the supervisor and wait for it (blocking: call it in a thread)."""
    from orch.node.runtime import superproto as proto

    start = time.time()
    r, w = os.pipe2(os.O_CLOEXEC)
    sock = None
    try:
        sock = proto.connect(sup_path)
        msg = {"op": "exec", "id": cid, "process": process, "attach": ["stdout", "stderr"]}
        if exec_id:
            msg["exec_id"] = exec_id
        proto.send(sock, msg, [w, w])
        os.close(w)
        w = -1
        answer, _ = proto.recv(sock)
        if not answer or not answer.get("ok"):
            message = (answer or {}).get("message", "the supervisor did not answer")
            return {"Start": start, "End": time.time(), "ExitCode": (answer or {}).get("exit_code") or 1, "Output": message}
        exec_id = answer.get("exec_id")
        output = bytearray()
        deadline = start + timeout
        code = None
        open_fds = [r, sock]
        while code is None:
            left = deadline - time.time()
            if left <= 0:
                try:
                    proto.call(sup_path, {"op": "kill", "id": exec_id, "signal": 9}, timeout=5)
                except OrchError:
                    pass
                return {"Start": start, "End": time.time(), "ExitCode": -1, "Output": f"Health check exceeded timeout ({timeout:g}s)"}
            ready, _, _ = select.select(open_fds, [], [], left)
            if r in ready:
                chunk = os.read(r, 65536)
                if chunk:
                    output += chunk[: max(0, OUTPUT_LIMIT - len(output))]
                else:
                    open_fds.remove(r)
            if sock in ready:
                event, extra = proto.recv(sock)
                for fd in extra:
                    os.close(fd)
                if event is None:
                    return {"Start": start, "End": time.time(), "ExitCode": -1, "Output": "the supervisor went away during the probe"}
                if event.get("event") == "exit":
                    code = int(event["exit_code"])
        os.set_blocking(r, False)
        try:
            output += os.read(r, 65536)[: max(0, OUTPUT_LIMIT - len(output))]
        except (BlockingIOError, OSError):
            pass
        return {"Start": start, "End": time.time(), "ExitCode": code, "Output": output.decode("utf-8", "replace")}
    except (OSError, OrchError) as err:
        return {"Start": start, "End": time.time(), "ExitCode": -1, "Output": f"the probe could not run: {err}"}
    finally:
        if w >= 0:
            os.close(w)
        os.close(r)
        if sock is not None:
            sock.close()


async def monitor(node, rec: dict, pid: int) -> None:
    """Probe a running container until it exits (its pid changes) or is removed."""
    import trio

    from orch.api.models import ExecRequest
    from orch.node.agent.views import parse_time

    check = rec["Config"].get("Healthcheck")
    state = rec["State"]
    started_at = parse_time(state.get("StartedAt", "")) or time.time()
    args = probe_args(check)
    if not isinstance(state.get("Health"), dict) or state["Health"].get("Status") not in ("starting", "healthy", "unhealthy"):
        state["Health"] = initial_health()
    alive = lambda: rec["Id"] in node.records and state["Status"] in ("running", "paused") and state.get("Pid") == pid  # noqa: E731
    while True:
        await trio.sleep(compute_probe_delay(check, state["Health"], started_at=started_at, now=time.time()))
        if not alive():
            return
        if state["Status"] == "paused":
            continue  # a frozen container cannot answer; docker skips probes while paused
        try:
            process = node.exec_process(rec, ExecRequest(cmd=args))
        except OrchError:
            return
        # docker's events of a probe: exec_create and exec_start here, exec_die from the
        # supervisor's news of the exit, health_status when the status changes.
        exec_id = secrets.token_hex(32)
        command = " ".join(args)
        node.events.container(rec, f"exec_create: {command}", execID=exec_id)
        node.events.container(rec, f"exec_start: {command}", execID=exec_id)
        result = await trio.to_thread.run_sync(run_probe, node.sup_path, rec["Id"], process, seconds(check, "Timeout"), exec_id,
                                               abandon_on_cancel=True)
        if not alive():
            return
        before = state["Health"].get("Status")
        state["Health"] = apply_probe_result(check, state["Health"], result, started_at=started_at)
        node.save(rec, durable=False)
        if state["Health"]["Status"] != before:
            node.events.container(rec, f"health_status: {state['Health']['Status']}")
