"""Builds in the agent: one stream of build messages for both doors, and `orch build`'s
command over its own socket.

`stream_build(node, req)` yields docker's build stream as dicts ({"stream": text}, then
{"aux": {"ID"}} or {"error", "kind"}): a build whose every step is cached is answered in the
agent, in a thread (orch.build.worker.build_cached: it reads files and records the image,
but forks and mounts nothing); any other build runs in a worker process, because it forks
containers and mounts overlays, which a multi-threaded trio process must not do. If the
consumer goes away the worker is stopped (SIGTERM, which unwinds the running step).

POST /build (routes_build.py) sends the stream as JSON lines. `BuildCommand` serves the
`orch build` client (orch/cli/fastrun.py) on ORCH_RUN/build.sock, in run.sock's protocol
(runsock.py): the agent parses the command line
(orch.build.flags), prints the stream to the client ({"out"}/{"err"} messages), and answers
{"exit": code}; a signal the client forwards (Ctrl-C) cancels the build, as docker's does.
"""

import json
import marshal
import secrets
import subprocess
import sys
import traceback
from contextlib import aclosing

import trio

from orch.errors import OrchError, from_kind
from orch.node.agent.runsock import Command, _close, _recv, _send


def _cached(node, req: dict) -> list[dict] | None:
    """orch.build.worker.build_cached, here: a bug in it is logged and the worker builds."""
    from orch.build.worker import build_cached

    if node.images is None:
        return None
    try:
        return build_cached(node.images, req)
    except Exception:
        traceback.print_exc()
        return None


async def stream_build(node, req: dict, mark=None):
    """The build's messages, as they come. `req` is POST /build's body (absolute paths);
    `mark(what)`, when given, notes which way the build went (for ORCH_TRACE)."""
    req = dict(req, root=str(node.root))
    answered = await trio.to_thread.run_sync(_cached, node, req)
    if answered is not None:
        mark and mark("cached in the agent")
        for message in answered:
            yield message
        return
    mark and mark("not all cached")
    # The RUN steps' network (default): a namespace on the node's default bridge, made here
    # through the node's networking, the one door to bridges, and released when the build
    # ends, however it ends.
    build_id = None
    if (req.get("network") or "default") == "default" and node.net is not None:
        build_id = "build-" + secrets.token_hex(12)
        try:
            path, resolv = await trio.to_thread.run_sync(node.net.setup_build, build_id)
        except OrchError as err:
            yield {"error": f"the build's network: {err}", "kind": err.kind}
            return
        req["build_network"] = {"netns": path, "resolv_conf": resolv}
    try:
        async with aclosing(_worker(req)) as messages:
            async for message in messages:
                yield message
    finally:
        if build_id is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(node._release_network, build_id)


async def _worker(req: dict):
    """The worker process's messages; it is stopped if the consumer goes away."""
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
                    yield _message(line)
        if buf.strip():
            yield _message(buf)
        code = await proc.wait()
        if code not in (0, 1, 70):
            yield {"error": f"the build worker died (exit status {code}); see the agent's log", "kind": "system"}
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


def _message(line: bytes) -> dict:
    try:
        value = json.loads(line)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return {"stream": line.decode("utf-8", "replace") + "\n"}  # not the worker's: shown as is
    return value


class BuildCommand(Command):
    """One `orch build` on build.sock."""

    async def run(self) -> int:
        from orch.build.flags import HelpShown, parse_build

        for fd in self.fds:
            _close(fd)  # the build's output travels in messages; the client prints it
        self.fds.clear()
        try:
            body, quiet = parse_build(self.request["argv"], environ=self.request.get("env") or {}, cwd=self.request.get("cwd") or "/")
        except HelpShown as shown:
            await _send(self.conn, {"out": shown.text})
            return 0
        self.mark("parsed")
        code = 0
        signalled: list[int] = []
        async with trio.open_nursery() as nursery:

            async def from_client():
                while True:
                    data, extra = await _recv(self.conn)
                    for fd in extra:
                        _close(fd)
                    message = marshal.loads(data) if data else {}
                    if not data or "signal" in message:
                        # Ctrl-C (or another forwarded signal), or the client left: the build
                        # stops, its worker with it.
                        if data:
                            signalled.append(int(message["signal"]))
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(from_client)
            image_id = None
            async for message in stream_build(self.node, body, self.mark):
                if "stream" in message and not quiet:
                    await _send(self.conn, {"out": message["stream"]})
                elif "error" in message:
                    err = from_kind(message.get("kind", "error"), message["error"])
                    await _send(self.conn, {"err": "".join(f"orch: {line}\n" for line in str(err).splitlines() or [""])})
                    code = err.exit_code
                elif "aux" in message:
                    image_id = message["aux"].get("ID")
            self.mark("answered")
            if code == 0 and image_id is None:
                await _send(self.conn, {"err": "orch: the build ended without a result; see the agent's log\n"})
                code = 1
            elif code == 0 and quiet:
                await _send(self.conn, {"out": image_id + "\n"})
            nursery.cancel_scope.cancel()
        if signalled:
            return 128 + signalled[0]
        if self.marks:
            await _send(self.conn, self.steps())
        return code
