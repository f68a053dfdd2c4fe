"""What `ps` and `inspect` show, computed from container records (pure: no I/O).

A record's docker view is kept in docker's inspect shape (Id, Created, Path, Args, State{...},
Image, Name, Config{...}, HostConfig{...}), so `inspect` is that view itself (orch's private part
is apart, records.py); `ps` rows and the human
durations ("Up 3 seconds", "Exited (0) 5 seconds ago") follow docker's formatting
(go-units HumanDuration, moby container/state.go `State.String`).
"""

import time

from orch.api.times import human_duration, parse_time  # noqa: F401 (parse_time: the records' stamps)


def status_text(record: dict, now: float) -> str:
    state = record["State"]
    status = state["Status"]
    if status in ("running", "paused"):
        started = parse_time(state.get("StartedAt", "")) or now
        text = f"Up {human_duration(now - started)}"
        if status == "paused":
            return text + " (Paused)"
        health = (state.get("Health") or {}).get("Status")
        return text + {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}.get(health, "")
    if status == "exited" and state.get("Restarting"):
        finished = parse_time(state.get("FinishedAt", "")) or now
        return f"Restarting ({state.get('ExitCode', 0)}) {human_duration(now - finished)} ago"
    if status == "exited":
        finished = parse_time(state.get("FinishedAt", "")) or now
        return f"Exited ({state.get('ExitCode', 0)}) {human_duration(now - finished)} ago"
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    return "Created"


def command_text(record: dict) -> str:
    """docker's Command column: the program and its arguments joined by spaces."""
    return " ".join([record["Path"], *record["Args"]])


def summary(record: dict, now: float | None = None) -> dict:
    """One `ps` row, in the keys of docker's /containers/json plus the formatted columns."""
    now = time.time() if now is None else now
    created = parse_time(record["Created"]) or now
    return {
        "Id": record["Id"],
        "Names": [record["Name"]],
        "Image": record["Config"]["Image"],
        "ImageID": record["Image"],
        "Command": command_text(record),
        "Created": int(created),
        "CreatedSince": f"{human_duration(now - created)} ago",
        "State": record["State"]["Status"],
        "Status": status_text(record, now),
        "Ports": "",
        "Labels": record["Config"].get("Labels") or {},
    }


def inspect_view(record: dict) -> dict:
    """docker's inspect of a record: its docker view, a plain dict (orch's part is `.orch`)."""
    return dict(record)


def full_view(record: dict, now: float | None = None) -> dict:
    """inspect, plus what a stack's reconciler needs that docker does not show: whether a
    person stopped the container (restart policies leave such a container alone), and the ps
    row (`orch compose ps` prints it as `orch ps` does)."""
    return dict(inspect_view(record), StoppedByUser=record.orch.stopped_by_user, Summary=summary(record, now))
