"""The agent's container API: docker's Engine API paths, JSON bodies, errors as {kind, message}."""

import json
import signal

import trio
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from orch.errors import InvalidArgument
from orch.api.models import CreateRequest, CreateResponse, ExecRequest, ExecResponse, WaitResponse
from orch.node.agent.views import full_view, inspect_view, summary


def node_of(request):
    return request.app.state.node


async def parse(request, model):
    """The request's JSON body as `model`; a body that does not fit is one InvalidArgument line."""
    from pydantic import ValidationError

    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidArgument(f"{request.method} {request.url.path}: {where}: {first['msg'].lower()}") from None


def flag(request, name: str, default=False) -> bool:
    value = request.query_params.get(name)
    return default if value is None else value.lower() in ("1", "true", "yes")


def number(request, name: str, default=None):
    value = request.query_params.get(name)
    if value in (None, ""):
        return default
    try:
        return float(value) if "." in value else int(value)
    except ValueError:
        raise InvalidArgument(f"query parameter {name}={value!r} is not a number") from None


async def create(request):
    req = await parse(request, CreateRequest)
    rec = await node_of(request).create(req)
    return JSONResponse(CreateResponse(Id=rec["Id"], Name=rec["Name"]).model_dump(), status_code=201)


async def list_(request):
    node = node_of(request)
    show_all = flag(request, "all")
    from orch.node.agent.filters import container_matches, parse_filters

    filters = parse_filters(request.query_params.get("filters"))
    records = [r for r in node.records.values()
               if (show_all or r["State"]["Status"] in ("running", "paused")) and container_matches(r, filters)]
    records.sort(key=lambda r: r["Created"], reverse=True)  # newest first; RFC 3339 stamps sort as text
    # full=1 (orch's own): whole inspect records, so `orch compose` observes a stack in one call.
    view = full_view if flag(request, "full") else summary
    rows = [view(r) for r in records]
    if node.net is not None:
        for row in rows:
            row["Ports"] = node.net.ports_text(row["Id"])
    return JSONResponse(rows)


async def inspect(request):
    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    view = inspect_view(rec)
    if node.net is not None and rec.orch.net is not None:
        from orch.node.agent.wiring import mounts_view

        view["NetworkSettings"] = node.net.settings(rec)
        view["Mounts"] = mounts_view(node, rec)
    return JSONResponse(view)


async def start(request):
    node = node_of(request)
    await node.start(node.get(request.path_params["ref"]))
    return Response(status_code=204)


async def stop(request):
    node = node_of(request)
    await node.stop(node.get(request.path_params["ref"]), number(request, "t"))
    return Response(status_code=204)


async def restart(request):
    node = node_of(request)
    await node.restart(node.get(request.path_params["ref"]), number(request, "t"))
    return Response(status_code=204)


async def kill(request):
    from orch.node.agent.node import _signal_number

    node = node_of(request)
    await node.kill(node.get(request.path_params["ref"]), _signal_number(request.query_params.get("signal") or signal.SIGKILL))
    return Response(status_code=204)


async def pause(request):
    node = node_of(request)
    await node.pause(node.get(request.path_params["ref"]))
    return Response(status_code=204)


async def unpause(request):
    node = node_of(request)
    await node.unpause(node.get(request.path_params["ref"]))
    return Response(status_code=204)


async def remove(request):
    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    if flag(request, "stop") and rec["State"]["Status"] in ("running", "paused"):
        # ?stop=1: a graceful stop first (as POST /stop, with ?t=), so that `compose down`
        # takes one request per container instead of two.
        await node.stop(rec, number(request, "t"))
    await node.remove(rec, force=flag(request, "force"), volumes=flag(request, "v"))
    return Response(status_code=204)


async def remove_many(request):
    """POST /containers/remove {"ids": [...], "stop": bool, "t": seconds, "force": bool, "v":
    bool}: what DELETE /containers/{id}?stop=1 does, for many containers at once, side by side
    (`compose down` of a stage: one request instead of one per container). Answers
    {"removed": [ids], "errors": [{"id", "kind", "message"}]}; an id not found counts as removed."""
    from orch.errors import OrchError

    try:
        body = json.loads(await request.body() or b"{}")
        ids, t = body["ids"], body.get("t")
        if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)) or not (t is None or isinstance(t, (int, float))):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument('POST /containers/remove: give {"ids": ["<container id>", ...]} and, optionally, '
                              '"stop": true, "t": <seconds>, "force": true, "v": true') from None
    node = node_of(request)
    removed, errors = [], []

    async def one(ref: str) -> None:
        try:
            rec = node.get(ref)
        except OrchError:
            removed.append(ref)
            return
        try:
            if body.get("stop") and rec["State"]["Status"] in ("running", "paused"):
                await node.stop(rec, t)
            await node.remove(rec, force=bool(body.get("force")), volumes=bool(body.get("v")))
            removed.append(ref)
        except OrchError as err:
            errors.append({"id": ref, "kind": err.kind, "message": str(err)})

    async with trio.open_nursery() as nursery:
        for ref in dict.fromkeys(ids):
            nursery.start_soon(one, ref)
    return JSONResponse({"removed": removed, "errors": errors})


async def wait(request):
    node = node_of(request)
    condition = request.query_params.get("condition", "not-running")
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"wait condition {condition!r} is not one of not-running, next-exit, removed")
    code = await node.wait(node.get(request.path_params["ref"]), condition)
    return JSONResponse(WaitResponse(StatusCode=code).model_dump())


async def top(request):
    node = node_of(request)
    return JSONResponse(await node.top(node.get(request.path_params["ref"]), request.query_params.get("ps_args") or "-ef"))


async def changes(request):
    """docker diff: what the container changed in its rootfs, as docker's API shapes it
    (Kind 0 changed, 1 added, 2 deleted)."""
    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    return JSONResponse(await trio.to_thread.run_sync(node.images.changes, rec["Id"]))


async def exec_(request):
    """A detached exec ({"detach": true}): the process runs on its own. An attached one carries
    the client's stdio, which HTTP does not: it is a session on run.sock (runsock.py)."""
    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    req = await parse(request, ExecRequest)
    if not req.detach:
        raise InvalidArgument(f"POST {request.url.path} runs detached execs only (\"detach\": true); an attached exec is "
                              "a session on the agent's run.sock, as 'orch exec' opens it")
    process = node.exec_process(rec, req)
    return JSONResponse(ExecResponse(Id=await node.exec_detached(rec, process)).model_dump(), status_code=201)


async def logs(request):
    """JSON lines, one log entry each ({"log", "stream", "time"}); with follow=1 the stream
    stays open until the container is no longer running and the file is drained."""
    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    follow, tail, since = flag(request, "follow"), number(request, "tail"), number(request, "since")

    async def body():
        async for line in node.log_lines(rec, follow=follow, tail=tail, since=since):
            yield line

    return StreamingResponse(body(), media_type="application/x-ndjson")


async def rename(request):
    """docker's POST /containers/{id}/rename?name=NEW."""
    from orch.node.agent.containerops import rename as rename_container

    node = node_of(request)
    rename_container(node, node.get(request.path_params["ref"]), request.query_params.get("name", ""))
    return Response(status_code=204)


async def update(request):
    """docker's POST /containers/{id}/update (UpdateConfig): limits and restart policy."""
    from orch.node.agent.containerops import update as update_container

    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise InvalidArgument(f"POST {request.url.path}: the body is not JSON; send docker's UpdateConfig") from None
    return JSONResponse({"Warnings": await update_container(node, rec, body)})


async def prune(request):
    """docker's POST /containers/prune?filters={"until": [...], "label": [...], "label!": [...]}."""
    from orch.node.agent.containerops import prune as prune_containers

    try:
        raw = json.loads(request.query_params.get("filters") or "{}")
        filters = {k: [str(x) for x in (v.keys() if isinstance(v, dict) else v)] for k, v in raw.items()}
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument("invalid filters: give JSON such as {\"until\": [\"24h\"], \"label\": [\"k=v\"]}") from None
    return JSONResponse(await prune_containers(node_of(request), filters))


ROUTES = [
    Route("/containers/create", create, methods=["POST"]),
    Route("/containers/remove", remove_many, methods=["POST"]),
    Route("/containers/json", list_, methods=["GET"]),
    Route("/containers/prune", prune, methods=["POST"]),
    Route("/containers/{ref}/json", inspect, methods=["GET"]),
    Route("/containers/{ref}/start", start, methods=["POST"]),
    Route("/containers/{ref}/stop", stop, methods=["POST"]),
    Route("/containers/{ref}/restart", restart, methods=["POST"]),
    Route("/containers/{ref}/kill", kill, methods=["POST"]),
    Route("/containers/{ref}/pause", pause, methods=["POST"]),
    Route("/containers/{ref}/unpause", unpause, methods=["POST"]),
    Route("/containers/{ref}/wait", wait, methods=["POST"]),
    Route("/containers/{ref}/top", top, methods=["GET"]),
    Route("/containers/{ref}/exec", exec_, methods=["POST"]),
    Route("/containers/{ref}/changes", changes, methods=["GET"]),
    Route("/containers/{ref}/logs", logs, methods=["GET"]),
    Route("/containers/{ref}/rename", rename, methods=["POST"]),
    Route("/containers/{ref}/update", update, methods=["POST"]),
    Route("/containers/{ref}", remove, methods=["DELETE"]),
]
