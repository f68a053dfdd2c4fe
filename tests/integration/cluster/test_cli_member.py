"""The CLI's swarm, node and service commands through the agent's cluster routes against the
real ClusterNode (embedded etcd with mutual TLS, the manager, worker sessions over TLS on
loopback), with FakeRuntime in place of containers: the contract of CLUSTER-API.md between
orch/cluster/routes.py and orch/cluster/node.py, end to end in one process.

The CLI is synchronous: it runs in a worker thread and reaches the app in the test's trio
loop through trio.from_thread."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import tempfile
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

import orch.cli
from orch.cluster.fakes import FakeRuntime
from orch.cluster.node import ClusterNode
from orch.errors import from_kind
from orch.node.agent.app import build_app
from tests.integration.cluster.conftest import free_port

pytestmark = pytest.mark.tools("/usr/bin/etcd", package="etcd-server")


class Agent:
    """An agent's Node as the routes use it, with the real ClusterNode, and a CLI client."""

    def __init__(self, member: ClusterNode):
        self.cluster = member
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(self)), base_url="http://orch")

    async def cluster_member(self) -> ClusterNode:
        return self.cluster

    def call(self, method: str, path: str, body=None, headers=None):
        """orch.client.Client.call, from the CLI's thread into the test's trio loop."""
        content = None if body is None else json.dumps(body).encode()
        resp = trio.from_thread.run(partial(self.http.request, method, path, content=content, headers=headers))
        value = resp.json() if resp.content and "json" in resp.headers.get("content-type", "") else None
        if resp.status_code >= 400:
            raise from_kind(value.get("kind", "error"), value["message"])
        return value

    async def orch(self, monkeypatch, *argv: str) -> tuple[int, str, str]:
        """`orch ARGV...` against this agent: (exit code, stdout, stderr)."""
        def run():
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = orch.cli.main(list(argv))
            return code, out.getvalue(), err.getvalue()

        monkeypatch.setattr("orch.cli._agent.client", lambda: self)
        return await trio.to_thread.run_sync(run)


@pytest.fixture
async def agents():
    base = Path(tempfile.mkdtemp(prefix="orch-cli-member-"))
    made: list[ClusterNode] = []
    try:
        async with trio.open_nursery() as nursery:

            async def new(name: str) -> Agent:
                member = ClusterNode(base / name, node=None, runtime=FakeRuntime(), etcd_ports=(free_port(), free_port()))
                await nursery.start(member.run)
                made.append(member)
                return Agent(member)

            try:
                yield new
            finally:
                for member in reversed(made):
                    if member.state is not None:
                        with trio.move_on_after(20):
                            await member.leave(force=True)
                nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def wait_for(predicate, timeout=20.0):
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.05)


async def test_cli_against_a_real_member(agents, monkeypatch):
    manager = await agents("m1")
    port = free_port()
    code, out, err = await manager.orch(monkeypatch, "swarm", "init", "--advertise-addr", f"127.0.0.1:{port}",
                                        "--task-history-limit", "2")
    assert code == 0, err
    node_id = manager.cluster.state.node_id
    token = re.search(r"orch swarm join --token (\S+) 127\.0\.0\.1:(\d+)", out)
    assert out.startswith(f"Swarm initialized: current node ({node_id}) is now a manager.\n") and token, out
    assert int(token.group(2)) == port
    code, out, err = await manager.orch(monkeypatch, "swarm", "join-token", "-q", "worker")
    assert (code, out.strip()) == (0, token.group(1)), err
    assert (await manager.orch(monkeypatch, "swarm", "update", "--dispatcher-heartbeat", "2s"))[:2] == (0, "Swarm updated.\n")

    worker = await agents("w1")
    code, out, err = await worker.orch(monkeypatch, "swarm", "join", "--token", token.group(1), "--advertise-addr",
                                       "127.0.0.1", f"127.0.0.1:{port}")
    assert (code, out) == (0, "This node joined a swarm as a worker.\n"), err
    code, out, err = await worker.orch(monkeypatch, "node", "ls")
    assert code == 125 and "Worker nodes can't be used to view or modify cluster state" in err

    worker_id = worker.cluster.state.node_id

    async def worker_ready():
        # The worker's node only: the manager's own record can stay Unknown (a race in init that
        # node.py's test_membership shows too; reported to the lead), which is not this test's.
        code, out, _ = await manager.orch(monkeypatch, "node", "ls", "--filter", "role=worker", "--format", "{{.ID}} {{.Status}}")
        return out == f"{worker_id} Ready\n"
    await wait_for(worker_ready)
    code, out, _ = await manager.orch(monkeypatch, "node", "ls", "--filter", "role=manager", "--format", "{{.ID}}{{.Self}} {{.ManagerStatus}}")
    assert out == f"{node_id}true Leader\n"

    code, out, err = await manager.orch(monkeypatch, "service", "create", "-d", "--name", "web", "--replicas", "2", "busybox", "top")
    assert code == 0, err

    async def two_running():
        code, out, _ = await manager.orch(monkeypatch, "service", "ls", "--format", "{{.Name}} {{.Replicas}}")
        return out == "web 2/2\n"
    await wait_for(two_running)
    code, out, _ = await manager.orch(monkeypatch, "service", "ps", "--format", "{{.Name}} {{.DesiredState}} {{.Node}}", "web")
    names = sorted(line.split()[0] for line in out.splitlines())
    assert names == ["web.1", "web.2"] and all(" Running " in line for line in out.splitlines())

    code, out, err = await manager.orch(monkeypatch, "service", "scale", "-d", "web=1")
    assert (code, out) == (0, "web scaled to 1\n"), err

    async def one_running():
        code, out, _ = await manager.orch(monkeypatch, "service", "ls", "--format", "{{.Replicas}}")
        return out == "1/1\n"
    await wait_for(one_running)
    assert (await manager.orch(monkeypatch, "service", "rm", "web"))[:2] == (0, "web\n")
    assert (await worker.orch(monkeypatch, "swarm", "leave"))[:2] == (0, "Node left the swarm.\n")
    code, out, err = await manager.orch(monkeypatch, "swarm", "leave")
    assert code == 1 and "Use `--force`" in err
    assert (await manager.orch(monkeypatch, "swarm", "leave", "--force"))[:2] == (0, "Node left the swarm.\n")
    code, out, err = await manager.orch(monkeypatch, "node", "ls")
    assert code == 125 and 'This node is not a swarm manager. Use "orch swarm init"' in err
