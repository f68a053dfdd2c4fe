"""Cluster membership in one process on loopback: a manager's `swarm init` with its embedded
etcd (real etcd, mutual TLS), workers that join over TLS with tokens, tasks that reach them,
a wrong or rotated token that joins nothing, a removed node that no longer gets in, leave."""

import shutil
import tempfile
from pathlib import Path

import pytest
import trio

from orch.cluster import records as r
from orch.cluster.fakes import FakeRuntime
from orch.cluster.node import ClusterNode
from orch.cluster.state import NODES
from orch.errors import InvalidArgument, PermissionDenied, Unavailable
from orch.scheduler import fakecluster as fc
from tests.integration.cluster.conftest import free_port

pytestmark = pytest.mark.tools("/usr/bin/etcd", package="etcd-server")


class Members:
    def __init__(self, base: Path, nursery):
        self.base = base
        self.nursery = nursery
        self.nodes: list[ClusterNode] = []

    async def new(self, name: str) -> ClusterNode:
        member = ClusterNode(self.base / name, node=None, runtime=FakeRuntime(), etcd_ports=(free_port(), free_port()))
        await self.nursery.start(member.run)
        self.nodes.append(member)
        return member


@pytest.fixture
async def members():
    base = Path(tempfile.mkdtemp(prefix="orch-membership-"))
    try:
        async with trio.open_nursery() as nursery:
            m = Members(base, nursery)
            try:
                yield m
            finally:
                for node in reversed(m.nodes):
                    if node.state is not None:
                        with trio.move_on_after(20):
                            await node.leave(force=True)
                nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def wait_for(predicate, timeout=20.0, describe=None):
    with trio.move_on_after(timeout):
        while not await predicate():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out waiting for {predicate.__name__}" + (f": {await describe()}" if describe else ""))


async def test_init_join_run_tasks_and_refuse_bad_tokens(members):
    m = await members.new("m1")
    port = free_port()
    node_id = await m.init(advertise_addr=f"127.0.0.1:{port}")
    assert m.local_info()["LocalNodeState"] == "active" and m.local_info()["NodeID"] == node_id
    tokens = await m.join_tokens()
    assert tokens["Worker"].startswith("SWMTKN-1-") and tokens["Worker"] != tokens["Manager"]
    control = m.require_manager()

    w1 = await members.new("w1")
    await w1.join(remote=f"127.0.0.1:{port}", token=tokens["Worker"], advertise_addr="127.0.0.1")
    assert w1.state.role == "worker"
    with pytest.raises(Unavailable, match="not a swarm manager"):
        w1.require_manager()

    # A token with a wrong secret, a malformed one, and one for another cluster join nothing.
    bad = await members.new("bad")
    wrong_secret = tokens["Worker"][:-5] + "aaaaa"
    with pytest.raises(PermissionDenied, match="not valid"):
        await bad.join(remote=f"127.0.0.1:{port}", token=wrong_secret, advertise_addr="127.0.0.1")
    with pytest.raises(InvalidArgument, match="invalid join token"):
        await bad.join(remote=f"127.0.0.1:{port}", token="SWMTKN-1-nope", advertise_addr="127.0.0.1")
    other_cluster = "SWMTKN-1-" + "0" * 50 + "-" + tokens["Worker"].rsplit("-", 1)[1]
    with pytest.raises(PermissionDenied, match="digest"):
        await bad.join(remote=f"127.0.0.1:{port}", token=other_cluster, advertise_addr="127.0.0.1")
    assert bad.state is None and not (bad.root / "cluster").exists()
    assert len(await control.nodes()) == 2

    # A rotated token no longer joins; the new one does.
    await m.rotate_tokens(worker=True, manager=False)
    with pytest.raises(PermissionDenied, match="rotated"):
        await bad.join(remote=f"127.0.0.1:{port}", token=tokens["Worker"], advertise_addr="127.0.0.1")
    w2 = await members.new("w2")
    await w2.join(remote=f"127.0.0.1:{port}", token=(await m.join_tokens())["Worker"], advertise_addr="127.0.0.1")

    async def all_ready():
        nodes = await control.nodes()
        return len(nodes) == 3 and all(n.record.status.state == "ready" for n in nodes)
    async def node_states():
        return [(n.id, n.record.status.state, n.record.spec.role) for n in await control.nodes()]
    await wait_for(all_ready, describe=node_states)

    # A service's three replicas land one per node and run.
    await control.create_service(fc.service("web", replicas=3).spec)
    runtimes = [m._runtime, w1._runtime, w2._runtime]

    async def three_running():
        return [len(rt.running_tasks()) for rt in runtimes] == [1, 1, 1]
    await wait_for(three_running)

    # A removed node's certificate no longer gets a session.
    w2_id = w2.state.node_id
    await control.remove_node(w2_id, force=True)
    assert await control.store.get(NODES, w2_id) is None

    async def refused():
        return w2.worker is not None and "removed from the cluster" in w2.worker.last_error
    await wait_for(refused)
