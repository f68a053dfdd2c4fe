"""docker's exec instances: POST /containers/{id}/exec makes one (its config, kept in memory as
dockerd keeps it), POST /exec/{id}/start runs it (detached, or attached on the hijacked
connection: streams.py), GET /exec/{id}/json shows it, POST /exec/{id}/resize sizes its
terminal. The process itself is the agent's exec (node.exec_process, exec_attached,
exec_detached).
"""

from __future__ import annotations

import secrets

import trio
from starlette.requests import Request
from starlette.responses import Response

from orch.dockerapi.common import answer, canonical, json_body, node_of
from orch.dockerapi.containers import Taken, resize_target, state_of, stream_type
from orch.dockerapi.streams import Hub, Session, parse_detach_keys
from orch.errors import Conflict, InvalidArgument, NotFound

# Exec instances a container may keep that have ended (dockerd drops them with the container;
# orch keeps the newest ones, so a client that never asks cannot make the agent hold more).
MAX_ENDED = 256
EXEC_CONFIG = ("User", "Privileged", "Tty", "ConsoleSize", "AttachStdin", "AttachStderr", "AttachStdout", "Detach", "DetachKeys",
               "Env", "WorkingDir", "Cmd")


class ExecInstance:
    def __init__(self, container_id: str, config: dict):
        self.id = secrets.token_hex(32)
        self.container_id = container_id
        self.config = config
        self.running = False
        self.started = False
        self.exit_code: int | None = None
        self.pid = 0

    def view(self) -> dict:
        cmd = self.config.get("Cmd") or []
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": bool(self.config.get("Tty")), "entrypoint": cmd[0] if cmd else "", "arguments": cmd[1:],
                              "privileged": bool(self.config.get("Privileged")), "user": self.config.get("User") or ""},
            "OpenStdin": bool(self.config.get("AttachStdin")), "OpenStderr": bool(self.config.get("AttachStderr")),
            "OpenStdout": bool(self.config.get("AttachStdout")), "CanRemove": False, "ContainerID": self.container_id,
            "DetachKeys": self.config.get("DetachKeys") or "", "Pid": self.pid,
        }


def _get(request: Request) -> ExecInstance:
    found = state_of(request).execs.get(request.path_params["id"])
    if found is None:
        raise NotFound(f"No such exec instance: {request.path_params['id']}")
    return found


def _forget_old(state) -> None:
    ended = [e for e in state.execs.values() if e.started and not e.running]
    for e in ended[:max(0, len(ended) - MAX_ENDED)]:
        state.execs.pop(e.id, None)


async def create(request: Request):
    node, state = node_of(request), state_of(request)
    rec = node.get(request.path_params["ref"])
    body = canonical(await json_body(request, "POST /containers/{id}/exec"), EXEC_CONFIG)
    cmd = body.get("Cmd")
    if isinstance(cmd, str):
        cmd = [cmd]
    if not cmd or not all(isinstance(c, str) for c in cmd):
        raise InvalidArgument("No exec command specified: give Cmd, a list of strings")
    if body.get("Privileged"):
        raise InvalidArgument("a privileged exec is not supported by orch (it would hand the process every capability)")
    if rec["State"]["Status"] != "running":
        raise Conflict(f"Container {rec['Id']} is not running" if rec["State"]["Status"] != "paused"
                       else f"Container {rec['Id']} is paused, unpause the container before exec")
    try:
        parse_detach_keys(body.get("DetachKeys") or None)
    except ValueError as err:
        raise InvalidArgument(f"invalid DetachKeys {body.get('DetachKeys')!r}: {err} is not a key") from None
    instance = ExecInstance(rec["Id"], dict(body, Cmd=cmd))
    _forget_old(state)
    state.execs[instance.id] = instance
    return answer({"Id": instance.id}, 201)


def _request_of(instance: ExecInstance, tty: bool, detach: bool):
    from orch.api.models import ExecRequest

    c = instance.config
    return ExecRequest(cmd=c["Cmd"], env=list(c.get("Env") or []), workdir=c.get("WorkingDir") or None, user=c.get("User") or None,
                       tty=tty, interactive=bool(c.get("AttachStdin")), detach=detach)


async def start(request: Request):
    node, state = node_of(request), state_of(request)
    instance = _get(request)
    body = canonical(await json_body(request, "POST /exec/{id}/start"), ("Detach", "Tty", "ConsoleSize"))
    if instance.started:
        raise Conflict(f"exec {instance.id[:12]} has already been started; create another")
    rec = node.get(instance.container_id)
    # As dockerd: the process has a terminal if the exec was created with one; the stream is
    # raw if the start says Tty, else in frames (docker-py starts with Tty false unless told).
    tty = bool(instance.config.get("Tty"))
    raw = bool(body.get("Tty"))
    detach = bool(body.get("Detach"))
    process = node.exec_process(rec, _request_of(instance, tty, detach))
    instance.started = True
    if detach:
        await node.exec_detached(rec, process, instance.id)
        return Response(status_code=200)
    config = instance.config
    size = body.get("ConsoleSize") or None
    conn = await request.scope["extensions"]["orch.hijack"](stream_type(request, raw))
    session = Session(conn, tty=raw, stdout=bool(config.get("AttachStdout")), stderr=bool(config.get("AttachStderr")),
                      stdin=bool(config.get("AttachStdin")), detach_keys=parse_detach_keys(config.get("DetachKeys") or None))
    hub = Hub(tty=tty, stdin_once=True, keep_stdin=session.stdin)
    hub.add(session)
    roles, fds = hub.make_ends(exec_=True)
    reply: dict = {}
    try:
        sup = await node.exec_attached(rec, process, roles, fds, size, exec_id=instance.id, answer=reply)
    except BaseException as err:
        hub.release_theirs()
        await hub.close_ends()
        instance.exit_code = getattr(err, "exit_code", 126) or 126
        if not isinstance(err, trio.Cancelled):
            await _say(session, tty, err)
        await session.close()
        return Taken()
    hub.release_theirs()
    instance.running, instance.pid = True, reply.get("pid", 0)

    def ended(code):
        # Before the client's stream ends: its next request is GET /exec/{id}/json.
        instance.running = False
        instance.exit_code = code if code is not None else 255

    hub.on_exit = ended
    # The hub runs in the door's nursery: a client that detaches (its detach keys) leaves the
    # process running, and its connection closes now.
    state.nursery.start_soon(hub.run, sup)
    await session.done.wait()
    return Taken()


async def _say(session: Session, tty: bool, err: BaseException) -> None:
    """An exec that could not start: dockerd writes the runtime's error on the stream."""
    try:
        await session.send("stderr" if not tty else "stdout", f"{err}\r\n".encode())
    except (trio.BrokenResourceError, OSError):
        pass


async def inspect(request: Request):
    return answer(_get(request).view())


async def resize(request: Request):
    node = node_of(request)
    instance = _get(request)
    if not instance.running:
        raise Conflict(f"exec {instance.id[:12]} is not running")
    await resize_target(node, instance.id, request)
    return Response(status_code=200)
