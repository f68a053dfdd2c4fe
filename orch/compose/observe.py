"""What the node has for a project: its containers as the reconciler's ObservedState.

One call to the agent (GET /containers/json?all=1&full=1 filtered by the project label) gives
every container's record; `observed_from_records` (pure) reads them. Containers without
compose's labels are not the project's and are never touched.
"""

from __future__ import annotations

import json
import urllib.parse

from orch.api.times import parse_time
from orch.compose import translate as t
from orch.scheduler.model import ObservedContainer, ObservedState

_STATES = {"created": "created", "running": "running", "paused": "paused", "exited": "exited", "dead": "dead", "removing": "dead"}


def list_records(client, project: str, service: str | None = None, *, all_: bool = True) -> list[dict]:
    query = urllib.parse.urlencode({"all": "1" if all_ else "0", "full": "1", "filters": json.dumps(t.project_filter(project, service))})
    records = client.call("GET", f"/containers/json?{query}")
    return sorted(records, key=lambda r: (_labels(r).get(t.SERVICE, ""), _number(r)))


def observed_from_records(project: str, records: list[dict]) -> ObservedState:
    containers = []
    for r in records:
        labels = _labels(r)
        state = r["State"]
        health = (state.get("Health") or {}).get("Status") or "none"
        containers.append(ObservedContainer(
            id=r["Id"], name=r["Name"].lstrip("/"), service=labels.get(t.SERVICE, ""), number=_number(r),
            config_hash=labels.get(t.CONFIG_HASH, ""), state=_STATES.get(state["Status"], "dead"),
            health=health if state["Status"] in ("running", "paused") else "none",
            exit_code=state.get("ExitCode") if state["Status"] == "exited" else None,
            created_at=parse_time(r.get("Created", "")), started_at=parse_time(state.get("StartedAt", "")),
            finished_at=parse_time(state.get("FinishedAt", "")),
            health_changed_at=_health_changed_at(state),
            restart_count=int(r.get("RestartCount") or 0),
            stopped_by_user=False if state.get("Restarting") else state["Status"] == "exited" and _stopped_by_user(r),
            one_off=labels.get(t.ONEOFF) == "True",
            network_container=_network_container(r),
        ))
    return ObservedState(project, tuple(containers))


def _labels(r: dict) -> dict:
    return (r.get("Config") or {}).get("Labels") or r.get("Labels") or {}


def _network_container(r: dict) -> str | None:
    """The id in HostConfig.NetworkMode "container:<id>" (network_mode: service:X), else None."""
    mode = (r.get("HostConfig") or {}).get("NetworkMode") or ""
    return mode.removeprefix("container:") if mode.startswith("container:") else None


def _number(r: dict) -> int:
    try:
        return int(_labels(r).get(t.NUMBER, "0"))
    except ValueError:
        return 0


def _health_changed_at(state: dict) -> float | None:
    """When the health last changed: the end of the first probe of the current streak."""
    health = state.get("Health") or {}
    log = health.get("Log") or []
    if health.get("Status") != "healthy" or not log:
        return None
    first = len(log) - 1
    while first > 0 and log[first - 1].get("ExitCode") == 0:
        first -= 1
    return parse_time(log[first].get("End", ""))


def _stopped_by_user(r: dict) -> bool:
    return bool(r.get("StoppedByUser"))
