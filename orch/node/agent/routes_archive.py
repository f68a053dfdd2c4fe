"""docker's archive routes: a container's files as tar streams, through the worker of
orch/node/runtime/fsworker.py (which resolves every path inside the container's root).

- HEAD /containers/{id}/archive?path=P: docker's X-Docker-Container-Path-Stat header (base64
  of {"name", "size", "mode", "mtime", "linkTarget"}), 404 when P is not there.
- GET  /containers/{id}/archive?path=P: the same header and a tar of P (a link at the end of
  P is archived as a link; "P/" or "P/." archives what it names, as docker does).
- PUT  /containers/{id}/archive?path=DIR&noOverwriteDirNonDir=&copyUIDGID=: a tar body
  extracted into DIR (which must be a directory; a link to one is followed).
- GET  /containers/{id}/export: the container's file system (its upper dir over the image's
  layers, no volumes) as a tar.

A PUT's body is streamed to the worker and never held, so it is the one body larger than the
agent's MAX_BODY (limits.py lets it through, still bounded in time between chunks). While a
worker has a stopped container's overlay mounted, that container does not start (Conflict):
one upper directory in two overlays at once is undefined in the kernel.
"""

import base64
import json
import subprocess
import sys

import trio
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from orch.errors import Conflict, SystemFailure, from_kind
from orch.node.agent.routes_containers import flag, node_of

STAT_HEADER = "X-Docker-Container-Path-Stat"


def _running(rec: dict) -> bool:
    return rec["State"]["Status"] in ("running", "paused")


class Worker:
    """One fsworker process for `rec`, its first line read."""

    def __init__(self, node, rec: dict, op: str, **spec):
        self.node, self.rec, self.op = node, rec, op
        running = _running(rec) and op != "export"
        self.spec = {"op": op, "config": node.store.config_path(rec["Id"]), "pid": rec["State"].get("Pid") if running else 0,
                     "pid_start": rec.orch.pid_start if running else None, "name": rec["Name"].lstrip("/"),
                     "user": rec["Config"].get("User") or "", **spec}
        self.mounts_overlay = not running  # a stopped container's overlay (and export's, read-only)
        self.proc = None
        self.rest = b""

    async def start(self) -> dict:
        """Start the worker; return its first line ({"stat": ...} or {"ok": true}); raise the
        error it reports."""
        if self.mounts_overlay and self.op != "export":
            if self.rec["Id"] in self.node.busy:
                raise Conflict(f"container {self.rec['Name'].lstrip('/')} is busy with another copy; try again")
            self.node.busy.add(self.rec["Id"])
        try:
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "orch.node.runtime.fsworker", json.dumps(self.spec)],
                stdin=subprocess.PIPE if self.op == "put" else subprocess.DEVNULL, stdout=subprocess.PIPE)
            first = await self.line()
        except BaseException:
            await self.close()
            raise
        if "error" in first:
            await self.close()
            raise from_kind(first["error"]["kind"], first["error"]["message"])
        return first

    async def line(self) -> dict:
        buf = self.rest
        while b"\n" not in buf:
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                await self.proc.wait()
                raise SystemFailure(f"the file worker for container {self.spec['name']} ended without answering "
                                    f"(exit {self.proc.returncode}); see ORCH_ROOT/agent.log")
            buf += chunk
        line, _, self.rest = buf.partition(b"\n")
        return json.loads(line)

    async def chunks(self):
        """The rest of the worker's output (the tar stream)."""
        if self.rest:
            yield self.rest
            self.rest = b""
        while True:
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                return
            yield chunk

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            if self.proc is not None:
                if self.proc.returncode is None:
                    self.proc.kill()
                await self.proc.wait()
                for stream in (self.proc.stdin, self.proc.stdout):
                    if stream is not None:
                        await stream.aclose()
            if self.mounts_overlay and self.op != "export":
                self.node.busy.discard(self.rec["Id"])


def _stat_header(info: dict) -> dict:
    text = json.dumps(info, separators=(",", ":")).encode()
    return {STAT_HEADER: base64.b64encode(text).decode()}


async def _stream(worker: Worker, headers: dict) -> StreamingResponse:
    async def body():
        try:
            async for chunk in worker.chunks():
                yield chunk
            await worker.proc.wait()
        finally:
            await worker.close()

    return StreamingResponse(body(), media_type="application/x-tar", headers=headers)


async def archive_get(request):
    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    path = request.query_params.get("path", "")
    if not path:
        from orch.errors import InvalidArgument

        raise InvalidArgument("GET archive: give the path in the container (?path=/some/where)")
    worker = Worker(node, rec, "stat" if request.method == "HEAD" else "get", path=path)
    first = await worker.start()
    headers = _stat_header(first["stat"])
    if request.method == "HEAD":
        await worker.close()
        return Response(status_code=200, headers=headers)
    return await _stream(worker, headers)


async def archive_put(request):
    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    path = request.query_params.get("path", "")
    if not path:
        from orch.errors import InvalidArgument

        raise InvalidArgument("PUT archive: give the directory in the container to extract to (?path=/some/where)")
    worker = Worker(node, rec, "put", path=path, copy_uid_gid=flag(request, "copyUIDGID"),
                    no_overwrite_dir_non_dir=flag(request, "noOverwriteDirNonDir"))
    try:
        await worker.start()
        try:
            async for chunk in request.stream():
                if chunk:
                    await worker.proc.stdin.send_all(chunk)
        except trio.BrokenResourceError:
            pass  # the worker stopped reading: its answer says why
        await worker.proc.stdin.aclose()
        answer = await worker.line()
        await worker.proc.wait()
    finally:
        await worker.close()
    if "error" in answer:
        raise from_kind(answer["error"]["kind"], answer["error"]["message"])
    return Response(status_code=200)


async def export(request):
    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    worker = Worker(node, rec, "export")
    await worker.start()
    return await _stream(worker, {})


ROUTES = [
    Route("/containers/{ref}/archive", archive_get, methods=["GET", "HEAD"]),
    Route("/containers/{ref}/archive", archive_put, methods=["PUT"]),
    Route("/containers/{ref}/export", export, methods=["GET"]),
]
