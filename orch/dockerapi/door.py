"""The agent's door for docker's clients: ORCH_RUN/docker.sock, served beside orch.sock by the
agent's process (orch/node/agent/__main__.py passes `serve` to the agent's serve)."""

from __future__ import annotations

from pathlib import Path

import trio

from orch.dockerapi import server
from orch.dockerapi.app import DockerState, build_app

SOCKET = "docker.sock"


async def serve(node, run_dir: Path, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with trio.open_nursery() as nursery:
        state = DockerState(nursery)
        app = build_app(node, state)
        await nursery.start(server.serve, app, str(Path(run_dir) / SOCKET))
        task_status.started()
