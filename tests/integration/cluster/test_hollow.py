"""Issue 13's correctness check at a small size: a real manager (embedded etcd, TLS listener)
and 50 hollow nodes that join with a token and run their sessions in this process; 2,000
replicas over services of 1 to 1,000 replicas are placed once each, none lost, and removing
the services leaves no task or service in etcd. No timings are asserted (bench/cluster_scale.py
measures)."""

import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import trio

from orch.cluster import records as r
from orch.cluster.hollow import HollowFleet, HollowRuntime
from orch.cluster.node import ClusterNode
from orch.cluster.state import SERVICES, TASKS
from orch.scheduler import fakecluster as fc
from tests.integration.cluster.conftest import free_port

pytestmark = pytest.mark.tools("/usr/bin/etcd", package="etcd-server")

SIZES = (1, 9, 40, 150, 300, 500, 1000)


async def test_fifty_hollow_nodes_run_two_thousand_tasks_once_each():
    base = Path(tempfile.mkdtemp(prefix="orch-hollow-"))
    fleet = HollowFleet(base / "fleet")
    manager = ClusterNode(base / "m1", node=None, runtime=HollowRuntime(), etcd_ports=(free_port(), free_port()))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            addr = f"127.0.0.1:{free_port()}"
            await manager.init(advertise_addr=addr)
            control = manager.require_manager()
            token = (await manager.join_tokens())["Worker"]
            await fleet.add(nursery, 50, addr, token)
            with trio.fail_after(60):
                while fleet.connected() < 50:
                    await trio.sleep(0.05)
            for i, size in enumerate(SIZES):
                await control.create_service(fc.service(f"s{i}", replicas=size).spec)
            total = sum(SIZES)
            runtimes = [n.runtime for n in fleet.nodes] + [manager._runtime]

            def running_ids():
                return [c.task_id for rt in runtimes for c in rt.containers.values() if c.running]

            with trio.fail_after(240):
                while True:
                    cache = manager.manager.cache
                    reported = sum(1 for t in cache.tasks.values() if t.status.state == r.TaskState.RUNNING) if cache else 0
                    if len(running_ids()) == total and reported == total:
                        break
                    await trio.sleep(0.2)
            ids = running_ids()
            assert len(set(ids)) == total  # no task runs twice
            tasks = {t.id: t for t in cache.tasks.values()}
            assert set(ids) == set(tasks)
            slots = Counter((t.service_id, t.slot) for t in tasks.values())
            assert len(slots) == total and set(slots.values()) == {1}
            per_service = Counter(t.service_name for t in tasks.values())
            assert sorted(per_service.values()) == sorted(SIZES)

            for service in await control.services():
                await control.remove_service(service.id)
            with trio.fail_after(120):
                while running_ids() or (await control.store.list(TASKS)).items:
                    await trio.sleep(0.2)
            assert (await control.store.list(SERVICES)).items == []
            await manager.leave(force=True)
            nursery.cancel_scope.cancel()
    finally:
        fleet.cleanup()
        shutil.rmtree(base, ignore_errors=True)
