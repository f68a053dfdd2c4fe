"""A stand-in node agent for the CLI tests: the image routes on ORCH_RUN/orch.sock via hypercorn.

Run as `python -m tests.integration.store.image_agent`; it serves until killed. The real agent
(orch/node/agent/app.py) mounts the same ROUTES.
"""

from types import SimpleNamespace

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.responses import JSONResponse

from orch import paths
from orch.errors import OrchError
from orch.node.agent.events import EventBus
from orch.node.agent.routes_images import ROUTES
from orch.node.runtime.images import ImageStore


async def on_error(request, err: OrchError):
    return JSONResponse({"kind": err.kind, "message": str(err)}, status_code=err.http_status)


def main():
    app = Starlette(routes=ROUTES, exception_handlers={OrchError: on_error})
    app.state.node = SimpleNamespace(root=paths.root(), images=ImageStore(paths.root()), events=EventBus())
    config = Config()
    sock = paths.agent_socket()
    sock.parent.mkdir(parents=True, exist_ok=True)
    config.bind = [f"unix:{sock}"]
    config.umask = 0o077
    config.accesslog = None
    trio.run(serve, app, config)


if __name__ == "__main__":
    main()
