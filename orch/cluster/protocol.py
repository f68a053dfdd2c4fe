"""The session between a worker and the leading manager's dispatcher: its messages.

One TCP connection with mutual TLS per worker; framed JSON (wire.py). The worker's
certificate names its node id and role, so no message carries a claim of identity.

    worker                                   manager (dispatcher)
    hello {description, tasks it runs}  ──▶
                                        ◀──  welcome {session, heartbeat_period, managers}
                                             | redirect {leader} | refused {message}
                                        ◀──  assign {full, tasks, removed, secrets, configs}
    status {updates: [...]}             ──▶  (batched; any time)
    heartbeat {}                        ──▶
                                        ◀──  heartbeat {period}
                                        ◀──  logs {request, task_id, follow, tail, since} | logs_cancel
    log {request, lines, end}           ──▶

- `assign` with `full` replaces the worker's whole set (the first one of a session, and after
  the dispatcher lost track); without it, `tasks` are added or changed and `removed` are
  gone. A task carries its desired state: the worker runs it, or stops it when the desired
  state is shutdown, and removes the container when the task leaves its set.
- Secrets and configs travel only with the assignments that need them.
- `net` and `net_removed` carry the overlay networks the node needs, every endpoint on them,
  their services and the nodes' underlay addresses (orch.cluster.netview), as differences like
  tasks; a worker applies them before the tasks of the same message, so a task's network is
  there when its container is made.
- A worker whose heartbeats stop for the grace period (period x misses) is marked Down by
  the dispatcher; the worker, for its part, ends a session that sends it nothing for the
  same time and reconnects (to any manager it knows: a follower redirects to the leader).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeDescription(Message):
    hostname: str
    addr: str = ""  # the node's underlay address, as other nodes reach it
    os: str = "linux"
    architecture: str = "x86_64"
    nano_cpus: int = 0
    memory_bytes: int = 0
    engine_version: str = ""
    labels: dict[str, str] = Field(default_factory=dict)  # engine labels


class TaskStatusUpdate(Message):
    task_id: str
    state: str  # docker's TaskState: accepted, preparing, starting, running, complete, failed, shutdown, rejected, ...
    message: str = ""
    err: str = ""
    exit_code: int | None = None
    container_id: str = ""
    healthy: bool | None = None  # None: no healthcheck
    timestamp: float = 0.0


def status_update(task_id: str, state: str, *, message: str = "", err: str = "", exit_code: int | None = None,
                  container_id: str = "", healthy: bool | None = None, timestamp: float = 0.0) -> dict[str, Any]:
    """A TaskStatusUpdate as it goes on the wire, made without pydantic: a worker reports
    every state each of its tasks passes (four or more a task), and building and dumping a
    model for each was a tenth of a hollow fleet's CPU. Fields at their defaults are left out,
    as model_dump(exclude_defaults=True) leaves them; the manager's parse fills them in."""
    out: dict[str, Any] = {"task_id": task_id, "state": state}
    if message:
        out["message"] = message
    if err:
        out["err"] = err
    if exit_code is not None:
        out["exit_code"] = exit_code
    if container_id:
        out["container_id"] = container_id
    if healthy is not None:
        out["healthy"] = healthy
    if timestamp:
        out["timestamp"] = timestamp
    return out


class Hello(Message):
    op: Literal["hello"] = "hello"
    description: NodeDescription
    tasks: list[TaskStatusUpdate] = Field(default_factory=list)  # what it runs now
    # The manager this node's last session was with, or the last it could not reach: a manager
    # that knows that one as the leader holds the session until another leads (the leader
    # likely died) rather than sending the node back to it.
    lost: str = ""


class Welcome(Message):
    op: Literal["welcome"] = "welcome"
    session: str
    heartbeat_period: float
    managers: list[str] = Field(default_factory=list)


class Redirect(Message):
    op: Literal["redirect"] = "redirect"
    leader: str  # host:port of the leader's dispatcher, "" when no leader is known yet


class Refused(Message):
    op: Literal["refused"] = "refused"
    message: str


class Assign(Message):
    op: Literal["assign"] = "assign"
    full: bool = False
    tasks: list[dict[str, Any]] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    secrets: list[dict[str, Any]] = Field(default_factory=list)
    configs: list[dict[str, Any]] = Field(default_factory=list)
    # The overlay networks' entries the node needs (orch.cluster.netview), by id like tasks.
    net: list[dict[str, Any]] = Field(default_factory=list)
    net_removed: list[str] = Field(default_factory=list)


class Status(Message):
    op: Literal["status"] = "status"
    updates: list[TaskStatusUpdate]


class Heartbeat(Message):
    op: Literal["heartbeat"] = "heartbeat"
    period: float | None = None


class LogsRequest(Message):
    """The manager asks for a task's log (`service logs`): what is there, then, with `follow`,
    what comes, until `logs_cancel` or the container is gone."""

    op: Literal["logs"] = "logs"
    request: str
    task_id: str
    follow: bool = False
    tail: int | None = None
    since: float | None = None


class LogsCancel(Message):
    op: Literal["logs_cancel"] = "logs_cancel"
    request: str


class LogLines(Message):
    """A batch of a task's log lines: the node's json-file entries ({"log", "stream", "time"}),
    as JSON text. The last batch of a request has `end` (and `error` when it failed)."""

    op: Literal["log"] = "log"
    request: str
    lines: list[str] = Field(default_factory=list)
    end: bool = False
    error: str = ""


TO_MANAGER = {"hello": Hello, "status": Status, "heartbeat": Heartbeat, "log": LogLines}
TO_WORKER = {"welcome": Welcome, "redirect": Redirect, "refused": Refused, "assign": Assign, "heartbeat": Heartbeat,
             "logs": LogsRequest, "logs_cancel": LogsCancel}


def parse(msg: dict, table: dict[str, type[Message]]) -> Message:
    """A received frame as its message type; an unknown op or a bad field is a FrameError."""
    from pydantic import ValidationError

    from orch.cluster.wire import FrameError

    kind = table.get(msg.get("op", ""))
    if kind is None:
        raise FrameError(f"unexpected message {msg.get('op')!r} in this session")
    try:
        return kind.model_validate(msg)
    except ValidationError as err:
        first = err.errors()[0]
        raise FrameError(f"bad {msg['op']} message: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
