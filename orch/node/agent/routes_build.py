"""The agent's build and image-change API: POST /build (a streamed build), container commit
and changes. Shapes follow docker's Engine API. (Image history is the store's route, in
routes_images.)

A build runs in a worker process (orch.build.worker), not in the agent: it forks containers
and mounts overlays, which a multi-threaded trio process must not do. The worker's JSON lines
are passed through to the client as they come; if the client goes away the worker is killed.
"""

import json
import os
import subprocess
import sys
from contextlib import aclosing

import trio
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from orch.errors import Conflict, InvalidArgument, OrchError


def node_of(request):
    return request.app.state.node


async def _body(request) -> dict:
    raw = await request.body()
    try:
        value = json.loads(raw or b"{}")
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"bad request to {request.url.path}: not JSON ({err})") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"bad request to {request.url.path}: want a JSON object")
    return value


BUILD_NETWORKS = ("default", "none", "host")


async def build(request):
    """Body: {"context", "dockerfile"?, "tags"?, "build_args"?, "target"?, "no_cache"?, "labels"?,
    "network"?, "allow"?}; the answer is a stream of JSON lines ({"stream"}, then {"aux": {"ID"}}
    or {"error", "kind"}).

    With network "default" (the default) the RUN steps share a network namespace on the node's
    default bridge, made here through the node's networking (the one door to bridges) and
    released when the build ends; "none" gives each step only `lo`; "host" the host's network."""
    node = node_of(request)
    req = await _body(request)
    if not isinstance(req.get("context"), str) or not os.path.isabs(req["context"]):
        raise InvalidArgument("POST /build: 'context' must be the absolute path of the build context on the node")
    network = req.get("network") or "default"
    if network not in BUILD_NETWORKS:
        raise InvalidArgument(f"invalid build network {network!r}; use one of: {', '.join(BUILD_NETWORKS)}")
    req["root"] = str(node.root)

    async def lines():
        # Made here, inside the stream, so that its `finally` always releases it.
        build_id = None
        try:
            if network == "default" and node.net is not None:
                build_id = "build-" + os.urandom(12).hex()
                try:
                    path, resolv = await trio.to_thread.run_sync(node.net.setup_build, build_id)
                except OrchError as err:
                    yield json.dumps({"error": f"the build network: {err}", "kind": err.kind}) + "\n"
                    return
                req["build_network"] = {"netns": path, "resolv_conf": resolv}
            async with aclosing(_worker_lines(req)) as worker:  # its `finally` stops the worker
                async for line in worker:
                    yield line
        finally:
            if build_id is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(node._release_network, build_id)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def _worker_lines(req):
    proc = await trio.lowlevel.open_process([sys.executable, "-m", "orch.build.worker"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=None, cwd="/")
    try:
        await proc.stdin.send_all(json.dumps(req).encode())
        await proc.stdin.aclose()
        buf = b""
        while True:
            chunk = await proc.stdout.receive_some(65536)
            if not chunk:
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            for line in done:
                if line:
                    yield line.decode("utf-8", "replace") + "\n"
        if buf:
            yield buf.decode("utf-8", "replace") + "\n"
        code = await proc.wait()
        if code not in (0, 1, 70):
            yield json.dumps({"error": f"the build worker died (exit status {code}); see the agent's log", "kind": "system"}) + "\n"
    finally:
        if proc.returncode is None:
            # SIGTERM lets the worker clean up the running step; SIGKILL if it does not.
            proc.terminate()
            with trio.CancelScope(shield=True):
                with trio.move_on_after(10):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


async def commit(request):
    """Body: {"repo": "NAME[:TAG]"?, "comment"?, "author"?, "changes"?: [...], "pause"?: true}."""
    from orch.build.commit import commit_container

    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    req = await _body(request)
    pause = req.get("pause", True) and rec["State"]["Status"] == "running"
    if rec["State"]["Status"] in ("removing", "dead"):
        raise Conflict(f"container {node.display(rec)} is being removed; nothing to commit")

    def work():
        image = node.images.resolve(rec["Image"])
        cmd = (rec.get("Config") or {}).get("Cmd") or []
        created_by = " ".join(((rec.get("Config") or {}).get("Entrypoint") or []) + list(cmd))
        cgroups = node.cgroups() if pause else None
        if pause:
            cgroups.freeze(rec["_cgroup"])
        try:
            return commit_container(node.images, image, rec["Id"], ref=req.get("repo") or None, comment=req.get("comment") or "",
                                    author=req.get("author") or "", changes=list(req.get("changes") or []), created_by=created_by)
        finally:
            if pause:
                cgroups.thaw(rec["_cgroup"])

    image = await trio.to_thread.run_sync(work)
    return JSONResponse({"Id": image.id}, status_code=201)


ROUTES = [
    Route("/build", build, methods=["POST"]),
    Route("/containers/{ref}/commit", commit, methods=["POST"]),
]
