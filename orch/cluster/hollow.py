"""Hollow nodes: the real node side of the cluster (join with a token and a CSR, mutual TLS,
the worker session, heartbeats, assignments, batched status reports) over a runtime that
creates no containers, many nodes to one process, as kubemark's hollow nodes are for
Kubernetes. They measure the control plane at sizes this machine cannot run for real.

A hollow task "starts" after `start_delay` seconds of the trio clock and runs until it is
stopped; nothing touches the kernel. Each hollow node keeps its key and certificate in a
directory of its own under `base` (Python's ssl loads certificates from files only).
"""

from __future__ import annotations

import itertools
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import trio

from orch.cluster import pki, transport
from orch.cluster import protocol as p
from orch.cluster.wire import Framed
from orch.cluster.worker import Observed, Worker
from orch.errors import PermissionDenied, Unavailable


@dataclass(slots=True)
class _Hollow:
    task_id: str
    running: bool = False
    exit_code: int | None = None
    stopped: bool = False
    waiter: trio.lowlevel.Task | None = None  # the controller in wait()

    def stop(self, exit_code: int) -> None:
        self.running, self.exit_code, self.stopped = False, exit_code, True
        if self.waiter is not None:
            trio.lowlevel.reschedule(self.waiter)
            self.waiter = None


class HollowRuntime:
    """worker.Runtime that keeps tasks as values."""

    _ids = itertools.count(1)

    def __init__(self, start_delay: float = 0.0):
        self.start_delay = start_delay
        self.containers: dict[str, _Hollow] = {}

    async def observe(self) -> list[Observed]:
        return [Observed(c.task_id, cid, c.running, c.exit_code) for cid, c in self.containers.items()]

    async def prepare(self, task, secrets, configs) -> None:
        return None

    async def create(self, task) -> str:
        cid = f"hollow{next(self._ids)}"
        self.containers[cid] = _Hollow(task["id"])
        return cid

    async def start(self, cid: str) -> None:
        if self.start_delay:
            await trio.sleep(self.start_delay)
        self.containers[cid].running = True

    async def wait(self, cid: str, on_health) -> int:
        c = self.containers.get(cid)
        if c is None:
            return 137
        if c.stopped:
            await trio.lowlevel.checkpoint()
        else:
            # What trio.Event does, without an event (and its set of waiters) per container:
            # a container has one waiter, its task's controller.
            def abort(_raise_cancel) -> trio.lowlevel.Abort:
                c.waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            c.waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(abort)
        return c.exit_code or 0

    async def stop(self, cid: str, timeout) -> None:
        c = self.containers.get(cid)
        if c is not None and c.running:
            c.stop(0)

    async def remove(self, cid: str) -> None:
        c = self.containers.pop(cid, None)
        if c is not None and not c.stopped:
            c.stop(137)

    async def logs(self, cid, *, follow, tail, since):
        """A hollow task writes nothing."""
        return
        yield

    def running(self) -> int:
        return sum(1 for c in self.containers.values() if c.running)


@dataclass
class HollowNode:
    name: str
    node_id: str
    identity: transport.Identity
    runtime: HollowRuntime
    worker: Worker
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with self.scope:
            await self.worker.run(task_status=task_status)

    def drop(self) -> None:
        """The node is gone, as a host that lost power: its session ends without a word."""
        self.scope.cancel()


async def join_hollow(base: Path, name: str, manager: str, token: str, *, start_delay: float = 0.0,
                      addr: str = "127.0.0.1") -> HollowNode:
    """Join one hollow node to the cluster at `manager` with the same protocol `swarm join`
    uses (CA pinned by the token, CSR signed by the manager)."""
    stream = await transport.open_connection(manager, transport.unverified_context(), want_role=None)
    framed = Framed(stream)
    try:
        await framed.send({"op": "ca"})
        reply = await framed.receive()
        if not reply or reply.get("op") != "ca":
            raise Unavailable(f"manager {manager} did not send its CA")
        pki.pin_ca(token, reply["ca"].encode())
        key = pki.new_key()
        await framed.send({"op": "join", "token": token, "csr": pki.make_csr(key).decode(), "hostname": name, "addr": addr})
        joined = await framed.receive()
        if not joined or joined.get("op") != "joined":
            raise PermissionDenied(f"manager {manager} refused {name}: {(joined or {}).get('message', 'no answer')}")
        identity = transport.Identity(base / name)
        await trio.to_thread.run_sync(identity.write, reply["ca"].encode(), joined["cert"].encode(), pki.key_pem(key))
        await framed.send({"op": "done"})
    finally:
        await trio.aclose_forcefully(stream)
    runtime = HollowRuntime(start_delay)
    ctx = identity.client_context()

    async def connect(addr_: str):
        return await transport.open_connection(addr_, ctx)

    description = p.NodeDescription(hostname=name, addr=addr, nano_cpus=4_000_000_000, memory_bytes=16 << 30,
                                    engine_version="hollow")
    worker = Worker(joined["managers"], connect, runtime, lambda: description, rng=random.Random(name))
    return HollowNode(name, joined["node_id"], identity, runtime, worker)


class HollowFleet:
    """Many hollow nodes in one trio process."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.nodes: list[HollowNode] = []

    async def add(self, nursery: trio.Nursery, count: int, manager: str, token: str, *, start_delay: float = 0.0,
                  parallel: int = 32, prefix: str = "hollow") -> None:
        """Join `count` nodes (`parallel` joins at a time) and start their sessions."""
        limit = trio.CapacityLimiter(parallel)
        first = len(self.nodes)

        async def one(i: int) -> None:
            async with limit:
                node = await join_hollow(self.base, f"{prefix}{i}", manager, token, start_delay=start_delay)
            self.nodes.append(node)
            await nursery.start(node.run)

        async with trio.open_nursery() as joins:
            for i in range(first, first + count):
                joins.start_soon(one, i)

    def running(self) -> int:
        return sum(n.runtime.running() for n in self.nodes)

    def connected(self) -> int:
        return sum(1 for n in self.nodes if n.worker.connected.is_set())

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
