"""docker.sock's container routes that are more than the agent's own handler: create (docker's
body translated, createbody.py), list and inspect (docker's shapes, inspectview.py), start
(with the connections attached before it), attach, wait (its answer's head at once, as dockerd
sends it), logs (docker's stream format) and resize.
"""

from __future__ import annotations

import json
import time

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from orch.dockerapi import inspectview, versions
from orch.dockerapi.common import answer, boolean, forward, integer, json_body, node_of, validated
from orch.dockerapi.createbody import compute_create_request
from orch.dockerapi.streams import Hub, Session, frame, join_running, parse_detach_keys, replay_log
from orch.errors import InvalidArgument, OrchError
from orch.node.agent import routes_containers as agent


def state_of(request: Request):
    return request.app.state.docker


class Taken(Response):
    """The answer of a handler that took the connection over (server.Hijacked): nothing more
    goes out through ASGI."""

    def __init__(self):
        super().__init__(status_code=200)

    async def __call__(self, scope, receive, send) -> None:
        return None


def stream_type(request: Request, tty: bool) -> str:
    if not tty and versions.at_least(request.scope.get("docker.version"), "1.42"):
        return "application/vnd.docker.multiplexed-stream"
    return "application/vnd.docker.raw-stream"


# -- create, list, inspect ---------------------------------------------------------------------------
async def create(request: Request) -> JSONResponse:
    from orch.api.models import CreateRequest

    body = await json_body(request, "POST /containers/create")
    fields, warnings = compute_create_request(body, request.query_params.get("name") or None)
    node = node_of(request)
    rec = await node.create(validated(CreateRequest, fields, "POST /containers/create"))
    size = (body.get("HostConfig") or {}).get("ConsoleSize") or [0, 0]
    if body.get("Tty") and len(size) == 2 and all(size):
        state_of(request).console[rec["Id"]] = (size[0], size[1])
    return answer({"Id": rec["Id"], "Warnings": warnings}, 201)


async def list_(request: Request) -> JSONResponse:
    from orch.node.agent.filters import container_matches, parse_filters
    from orch.node.agent.views import summary

    node = node_of(request)
    limit = integer(request, "limit", -1)
    show_all = boolean(request, "all") or (limit is not None and limit > 0)
    filters = parse_filters(request.query_params.get("filters"))
    records = [r for r in node.records.values()
               if (show_all or r["State"]["Status"] in ("running", "paused")) and container_matches(r, filters)]
    records.sort(key=lambda r: r["Created"], reverse=True)
    if limit is not None and limit > 0:
        records = records[:limit]
    now = time.time()
    return answer([inspectview.compute_list_row(summary(r, now), network_settings(node, r), mounts(node, r), r)
                   for r in records])


def network_settings(node, rec) -> dict | None:
    if node.net is None or rec.orch.net is None:
        return None
    return node.net.settings(rec)


def mounts(node, rec) -> list:
    from orch.node.agent.wiring import mounts_view

    if rec.orch.net is None:
        return []
    return mounts_view(node, rec)


async def inspect(request: Request) -> JSONResponse:
    node = node_of(request)
    view = json.loads(bytes((await forward(agent.inspect, request)).body))
    rec = node.get(request.path_params["ref"])
    image = await trio.to_thread.run_sync(_image_config, node, rec["Image"])
    state = state_of(request)
    execs = [e.id for e in state.execs.values() if e.container_id == rec["Id"] and e.running]
    return answer(inspectview.compute_inspect(view, image, exec_ids=execs, console=state.console.get(rec["Id"]),
                                              mount_plan=list(rec.orch.mounts or [])))


def _image_config(node, image_id: str) -> dict:
    try:
        return (node.images.resolve(image_id).config.get("config") or {})
    except Exception:
        return {}  # an image removed with --force: inspect still answers


# -- start, attach, wait ------------------------------------------------------------------------------
async def start(request: Request) -> Response:
    """POST /containers/{id}/start: with connections attached beforehand (docker run, start -a,
    compose up), the container starts with the hub's pipes as its stdio."""
    from orch.node.agent import wiring

    node, state = node_of(request), state_of(request)
    rec = node.get(request.path_params["ref"])
    cid = rec["Id"]
    waiting = [s for s in state.pending.pop(cid, []) if not s.done.is_set()]
    if not waiting or rec["State"]["Status"] in ("running", "paused"):
        for session in waiting:
            state.pending.setdefault(cid, []).append(session)
        if rec["State"]["Status"] == "running":
            return Response(status_code=304)  # dockerd: already started
        await node.start(rec)
        return Response(status_code=204)
    config = rec["Config"]
    tty = bool(config.get("Tty"))
    hub = Hub(tty=tty, stdin_once=bool(config.get("StdinOnce")),
              keep_stdin=bool(config.get("OpenStdin")) and any(s.stdin for s in waiting))
    for session in waiting:
        hub.add(session)
    before = rec.orch.exited_pid
    try:
        node.change(rec, "start")
        roles, fds = hub.make_ends(exec_=False)
        await trio.to_thread.run_sync(wiring.setup_network, node, rec)
        sup = await node.start_attached(rec, roles, fds, state.console.get(cid))
    except BaseException:
        hub.release_theirs()
        await hub.close_ends()
        for session in waiting:
            await session.close()
        raise
    hub.release_theirs()
    state.hubs[cid] = hub
    state.nursery.start_soon(_run_hub, state, cid, hub, sup)
    await node.wait_until(lambda: rec["State"]["Status"] == "running" or rec.orch.exited_pid != before or cid not in node.records, 10)
    return Response(status_code=204)


async def _run_hub(state, cid: str, hub: Hub, sup) -> None:
    try:
        await hub.run(sup)
    finally:
        if state.hubs.get(cid) is hub:
            del state.hubs[cid]


async def attach(request: Request) -> Response:
    node, state = node_of(request), state_of(request)
    rec = node.get(request.path_params["ref"])
    cid = rec["Id"]
    try:
        keys = parse_detach_keys(request.query_params.get("detachKeys"))
    except ValueError as err:
        raise InvalidArgument(f"invalid detachKeys {request.query_params.get('detachKeys')!r}: {err} is not a key; "
                              "use ctrl-<letter> or single characters, separated by commas") from None
    await request.body()
    tty = bool(rec["Config"].get("Tty"))
    stream, logs = boolean(request, "stream"), boolean(request, "logs")
    session: Session | None = None
    registered = False

    def taken(conn) -> None:
        """Before the 101 goes out (no checkpoint here): the session, holding its own sending
        lock until the log is replayed, and, for a container that is not running, its place in
        `pending`, so the start the client sends on reading the 101 finds it."""
        nonlocal session, registered
        session = Session(conn, tty=tty, stdout=boolean(request, "stdout"), stderr=boolean(request, "stderr"),
                          stdin=boolean(request, "stdin") and bool(rec["Config"].get("OpenStdin")), detach_keys=keys)
        session._sending.acquire_nowait()
        hub = state.hubs.get(cid)
        if stream and (hub is None or hub.exited.is_set()) and rec["State"]["Status"] not in ("running", "paused"):
            state.pending.setdefault(cid, []).append(session)
            registered = True

    try:
        await request.scope["extensions"]["orch.hijack"](stream_type(request, tty), taken)
        node.events.container(rec, "attach")  # dockerd's, at the attach (before a start)
        try:
            if logs:
                await replay_log(node, rec, session)
        finally:
            session._sending.release()
        if not stream:
            return Taken()
        hub = state.hubs.get(cid)
        if not registered and hub is not None and not hub.exited.is_set():
            hub.add(session)
            await session.done.wait()
        elif not registered and rec["State"]["Status"] in ("running", "paused"):
            await join_running(node, rec, session, state.console.get(cid))
        else:
            if not registered:
                state.pending.setdefault(cid, []).append(session)
            # Waiting for the start (or in its hub already, if it came during the replay).
            async with trio.open_nursery() as nursery:
                async def removed():
                    await node.wait_until(lambda: cid not in node.records)
                    nursery.cancel_scope.cancel()
                nursery.start_soon(removed)
                await session.done.wait()
                nursery.cancel_scope.cancel()
    except (trio.BrokenResourceError, OSError):
        pass
    except OrchError as err:
        # The answer's head went out already: dockerd writes such an error on the stream.
        if session is not None:
            with trio.move_on_after(2):
                try:
                    await session.conn.send(f"Error: {err}\r\n".encode())
                except (trio.BrokenResourceError, OSError):
                    pass
    finally:
        if session is not None:
            waiting = state.pending.get(cid)
            if waiting and session in waiting:
                waiting.remove(session)
                if not waiting:
                    del state.pending[cid]
            await session.close()
    return Taken()


async def wait(request: Request) -> StreamingResponse:
    """POST /containers/{id}/wait: the head goes out at once, the status when the condition
    holds. docker's client starts a container only once this answer's head is in."""
    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    condition = request.query_params.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition {condition!r}: use not-running, next-exit or removed")

    async def body():
        yield b""
        code = await node.wait(rec, condition)
        error = rec["State"].get("Error") or None
        yield json.dumps({"Error": {"Message": error} if error else None, "StatusCode": code}).encode() + b"\n"

    return StreamingResponse(body(), media_type="application/json")


async def kill(request: Request) -> Response:
    """The agent's kill; for SIGKILL (docker's default) the answer waits until the container
    is gone, as dockerd's does, so the client's next inspect shows its exit."""
    from orch.node.agent.node import _signal_number

    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    sig = _signal_number(request.query_params.get("signal") or "SIGKILL")
    await forward(agent.kill, request, query={"signal": str(sig)})
    if sig == 9:
        cid = rec["Id"]
        await node.wait_until(lambda: cid not in node.records or rec["State"]["Status"] not in ("running", "paused"), 30)
    return Response(status_code=204)


# -- logs, resize -----------------------------------------------------------------------------------
async def logs(request: Request) -> StreamingResponse:
    from orch.node.agent.logstream import entries

    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    want = {"stdout": boolean(request, "stdout"), "stderr": boolean(request, "stderr")}
    if not any(want.values()):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    tail_text = request.query_params.get("tail") or "all"
    if tail_text != "all" and not tail_text.lstrip("-").isdigit():
        raise InvalidArgument(f"invalid tail {tail_text!r}: give a number of lines or all")
    tail = None if tail_text == "all" or int(tail_text) < 0 else int(tail_text)
    since = timestamp(request, "since")
    until = timestamp(request, "until")
    stamps = boolean(request, "timestamps")
    tty = bool(rec["Config"].get("Tty"))
    follow = boolean(request, "follow")

    async def body():
        async for entry in entries(node, rec, follow=follow, tail=tail, since=since, until=until):
            stream = entry.get("stream", "stdout")
            if not want.get(stream):
                continue
            data = entry.get("log", "").encode()
            if stamps:
                data = entry.get("time", "").encode() + b" " + data
            yield data if tty else frame(stream, data)

    return StreamingResponse(body(), media_type=stream_type(request, tty))


def timestamp(request: Request, name: str) -> float | None:
    """docker's since/until: seconds since the epoch, with a fraction ("1700000000.000000001");
    the client turns "10m" or a date into one. 0 (or none) is no bound."""
    text = request.query_params.get(name) or "0"
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f"invalid {name} {text!r}: give seconds since the epoch") from None
    return value or None


async def resize(request: Request) -> Response:
    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    await resize_target(node, rec["Id"], request)
    node.events.container(rec, "resize", height=integer(request, "h", 0), width=integer(request, "w", 0))
    return Response(status_code=200)


async def resize_target(node, target_id: str, request: Request) -> None:
    from orch.errors import Conflict, NotFound

    rows, cols = integer(request, "h", 0), integer(request, "w", 0)
    if rows < 0 or cols < 0 or rows > 65535 or cols > 65535:
        raise InvalidArgument(f"invalid size h={rows} w={cols}: give rows and columns from 0 to 65535")
    try:
        await node.call({"op": "resize", "id": target_id, "rows": rows, "cols": cols})
    except NotFound as err:
        raise Conflict(f"cannot resize {target_id[:12]}: {err}") from None
