"""The agent's ASGI app and its server: starlette routes from routes_*.py, served by
hypercorn on ORCH_RUN/orch.sock (mode 0600) under trio, with request bodies and idle
connections bounded (limits.py).

An OrchError raised by a handler becomes `{"kind", "message"}` with the error's HTTP status;
the CLI's client (orch/client.py) raises the same class again, so the user reads one line.
Any other exception is a bug: it is logged with its traceback and answered as a one-line
internal error.
"""

import importlib
import os
import sys
import traceback
from pathlib import Path

import trio
from starlette.applications import Starlette
from starlette.responses import JSONResponse

from orch import paths
from orch.errors import OrchError
from orch.node.agent import limits

ROUTE_MODULES = ("routes_containers", "routes_system", "routes_images", "routes_build", "routes_registry",
                 "routes_networks", "routes_volumes", "routes_drain", "routes_projects", "routes_cluster", "routes_stats",
                 "routes_archive")


def collect_routes() -> list:
    return [route for name in ROUTE_MODULES for route in importlib.import_module(f"orch.node.agent.{name}").ROUTES]


async def on_orch_error(request, err: OrchError):
    return JSONResponse({"kind": err.kind, "message": str(err)}, status_code=err.http_status, headers=limits.error_headers(err))


async def on_bug(request, err: Exception):
    traceback.print_exception(err, file=sys.stderr)
    return JSONResponse({"kind": "error", "message": f"internal error in the agent: {type(err).__name__}: {err} (see ORCH_ROOT/agent.log)"}, status_code=500)


async def on_no_route(request, err):
    """A route the agent does not have: not-implemented (501), never not-found, which says an
    object is missing (a client must not take one for the other)."""
    return JSONResponse({"kind": "not-implemented", "message": f"the agent has no API {request.method} {request.url.path}"},
                        status_code=501)


def build_app(node):
    handlers = {OrchError: on_orch_error, Exception: on_bug, 404: on_no_route, 405: on_no_route}
    app = Starlette(routes=collect_routes(), exception_handlers=handlers)
    app.state.node = node
    return segments_kept(app)


def segments_kept(app):
    """Route on the path's segments as the client encoded them: a name with "/" in it
    ("web/kill", sent as web%2Fkill) stays one segment, and so a path parameter, instead of
    being decoded into two and reaching another route. ASGI hands apps the decoded path, so
    the path is rebuilt from raw_path with "/" kept encoded inside a segment."""
    from urllib.parse import unquote

    async def asgi(scope, receive, send):
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and b"%2f" in raw.lower():
            segments = raw.split(b"?", 1)[0].decode("latin-1").split("/")
            scope = dict(scope, path="/".join(unquote(s).replace("/", "%2F") for s in segments))
        await app(scope, receive, send)

    return asgi


def open_networks_and_volumes(node, root: Path, run_dir: Path) -> None:
    from orch.node.agent.networking import NodeNetworking
    from orch.node.runtime.volumes import VolumeStore

    node.volumes = VolumeStore(root)
    # docker's volume create and destroy events, wherever a volume is made or removed.
    node.volumes.listener = lambda action, name: node.events.publish("volume", action, name, {"driver": "local"})
    node.net = NodeNetworking(root, run_dir)
    node.net.open()


async def serve(root: Path | None = None, run_dir: Path | None = None, *, doors=(), task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the node: orch.sock, run.sock, build.sock, and each of `doors` (an async function
    `door(node, run_dir, task_status=...)` that serves another API on the node's operations:
    the agent's program passes docker.sock's, orch.dockerapi.door.serve)."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    from orch.node.agent.node import Node

    root = Path(root or paths.root())
    run_dir = Path(run_dir or paths.run_dir())
    # Root only, fixed here for what an older orch made 0755 (see orch.paths).
    for loose in paths.secure_store(root, run_dir):
        print(f"agent: {loose} was open to other users; made it private", file=sys.stderr, flush=True)
    sock = run_dir / "orch.sock"
    # One agent per node: an flock held for the process's life (two CLIs may auto-start one at
    # the same moment; the second agent stops here).
    import fcntl

    lock_fd = os.open(run_dir / "agent.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise AgentRunning(f"an agent already serves {sock} (its pid is in {run_dir / 'agent.pid'})") from None
    if sock.exists():
        sock.unlink()  # a socket left by an agent that was killed
    from orch.node.runtime.images import ImageStore

    node = Node(root, run_dir, images=ImageStore(root))
    open_networks_and_volumes(node, root, run_dir)
    node.load()
    config = Config()
    config.bind = [f"unix:{sock}"]
    config.umask = 0o077
    config.accesslog = None
    config.errorlog = "-"
    config.graceful_timeout = 1.0
    # What a client can make the agent hold: see limits.py.
    config.keep_alive_timeout = limits.KEEP_ALIVE
    config.h11_max_incomplete_size = limits.MAX_HEAD
    app = limits.limit_bodies(build_app(node))
    (run_dir / "agent.pid").write_text(str(os.getpid()))
    try:
        async with trio.open_nursery() as nursery:
            node.nursery = nursery
            if node.net is not None and node.net.dns is not None:
                # The embedded DNS: the networks restored above are served from here on.
                await nursery.start(node.net.dns.serve)
            await nursery.start(node.watch_supervisor)
            from orch.node.agent import runsock

            from orch.node.agent.building import BuildCommand

            # run.sock before orch.sock: a CLI that started this agent waits for orch.sock.
            await nursery.start(runsock.serve, node, str(run_dir / "run.sock"))
            await nursery.start(runsock.serve, node, str(run_dir / "build.sock"), BuildCommand)
            # The node's cluster membership, if it is in one (else made on the first swarm request:
            # orch.cluster costs about 0.5 s of imports, which an agent outside a cluster never pays).
            if (root / "cluster" / "node.json").exists():
                await node.cluster_member()
            await nursery.start(lambda task_status: hypercorn_serve(app, config, task_status=task_status))
            os.chmod(sock, 0o600)
            for door in doors:
                await nursery.start(door, node, run_dir)
            print(f"agent: pid {os.getpid()} serving {sock}", file=sys.stderr, flush=True)
            task_status.started(node)
            nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
    finally:
        if node.net is not None:
            node.net.close()  # DNS listeners and held ports; bridges and rules stay for the next agent
        # A clean stop leaves no socket behind (after kill -9 the next agent removes it).
        for leftover in (sock, run_dir / "agent.pid"):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    """SIGTERM and SIGINT stop the agent; containers keep running under the supervisor."""
    import signal

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


class AgentRunning(OrchError):
    exit_code = 0


def main(doors=()) -> int:
    from functools import partial

    try:
        trio.run(partial(serve, doors=doors))
    except KeyboardInterrupt:
        pass
    except AgentRunning as err:
        print(f"orch: {err}", file=sys.stderr)
    return 0
