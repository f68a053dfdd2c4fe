"""A stand-in for the agent's cluster member (orch.cluster.node.ClusterNode) over a real
`Control` on a MemoryStore, for the tests of the cluster's routes and of the CLI above them.

It does what a ClusterNode does to the store (init writes the cluster and its own node,
join tokens rotate, settings update with a version check) without the parts that need hosts:
no etcd, no TLS listener, no worker session. `join` adds a node record as a manager would on
the joiner's behalf. The store, the records and every rule of Control are the real ones.

`FakeAgentNode` is the agent's Node as the routes see it: `cluster_member()`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from orch.cluster import records as r
from orch.cluster.control import Control
from orch.cluster.memstore import MemoryStore
from orch.cluster.secretbox import Keyring
from orch.cluster.state import CLUSTER, LEADER, LeaderRecord, NODES, TASKS
from orch.errors import Conflict, PermissionDenied, Unavailable

NOT_IN_SWARM = "This node is not part of a swarm"
NOT_MANAGER = ('This node is not a swarm manager. Use "orch swarm init" or "orch swarm join" to connect this node '
               'to swarm and try again.')


@dataclass
class FakeState:
    node_id: str
    role: str
    advertise_addr: str


@dataclass
class FakeMember:
    store: MemoryStore
    hostname: str = "node-1"
    clock: callable = time.time
    state: FakeState | None = None
    control: Control | None = None
    tokens: dict = field(default_factory=dict)
    error: str = ""
    calls: list = field(default_factory=list)

    # -- what a ClusterNode answers ---------------------------------------------------------------
    def require_manager(self) -> Control:
        if self.state is None or self.state.role != "manager" or self.control is None:
            raise Unavailable(NOT_MANAGER)
        return self.control

    def local_info(self) -> dict:
        s = self.state
        if s is None:
            return {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                    "Error": self.error, "RemoteManagers": None}
        return {"NodeID": s.node_id, "NodeAddr": s.advertise_addr.split(":")[0], "LocalNodeState": "active",
                "ControlAvailable": s.role == "manager", "Error": "",
                "RemoteManagers": [{"NodeID": "", "Addr": s.advertise_addr}], "IsLeader": s.role == "manager"}

    async def init(self, *, advertise_addr: str = "", listen_addr: str = "", etcd_endpoints=None,
                   settings: r.ClusterSettings | None = None) -> str:
        self.calls.append(("init", advertise_addr, listen_addr, list(etcd_endpoints or []), settings))
        if self.state is not None:
            raise Conflict('This node is already part of a swarm. Use "orch swarm leave" to leave this swarm and join another one.')
        now = self.clock()
        node_id = r.new_id(f"node {self.hostname}")
        addr = advertise_addr or "10.0.0.1"
        addr = addr if ":" in addr else f"{addr}:2377"
        self.control = Control(self.store, Keyring.generate(), clock=self.clock)
        cluster = r.Cluster(id=r.new_id("cluster"), created_at=now, updated_at=now, ca_certificate="-----BEGIN CERTIFICATE-----\n",
                            settings=settings or r.ClusterSettings())
        me = r.Node(id=node_id, created_at=now, updated_at=now, spec=r.NodeSpec(role="manager"),
                    description=r.NodeDescription(hostname=self.hostname, engine_version="0.1.0",
                                                  resources=r.Resources(nano_cpus=2_000_000_000, memory_bytes=4 << 30)),
                    status=r.NodeStatus(state="ready", addr=addr.split(":")[0]),
                    manager_status=r.ManagerStatus(addr=addr, reachability="reachable", leader=True))
        await self.store.create(CLUSTER, cluster)
        await self.store.create(NODES, me)
        await self.store.create(LEADER, LeaderRecord(node_id=node_id, addr=addr))  # what a manager's election writes
        self.state = FakeState(node_id, "manager", addr)
        self.tokens = {"Worker": "SWMTKN-1-fake-worker0", "Manager": "SWMTKN-1-fake-manager0"}
        return node_id

    async def join(self, *, remote: str, token: str, advertise_addr: str = "", listen_addr: str = "") -> None:
        self.calls.append(("join", remote, token, advertise_addr, listen_addr))
        if self.state is not None:
            raise Conflict('This node is already part of a swarm. Use "orch swarm leave" to leave this swarm and join another one.')
        if not token.startswith("SWMTKN-1-"):
            raise PermissionDenied(f"manager {remote} refused: invalid join token")
        self.state = FakeState(r.new_id(f"node {self.hostname}"), "worker", advertise_addr or "10.0.0.2:2377")

    async def leave(self, *, force: bool = False) -> None:
        self.calls.append(("leave", force))
        if self.state is None:
            raise Unavailable(NOT_IN_SWARM)
        if self.state.role == "manager" and not force:
            raise Conflict("You are attempting to leave the swarm on a node that is participating as a manager. "
                           "Removing the last manager erases all current state of the swarm. Use `--force` to "
                           "ignore this message.")
        self.state = self.control = None

    async def join_tokens(self) -> dict[str, str]:
        self.require_manager()
        return dict(self.tokens)

    async def rotate_tokens(self, *, worker: bool, manager: bool) -> None:
        self.require_manager()
        for key, on in (("Worker", worker), ("Manager", manager)):
            if on:
                n = int(self.tokens[key][-1]) + 1
                self.tokens[key] = self.tokens[key][:-1] + str(n)

    async def update_settings(self, version: int | None, settings: r.ClusterSettings) -> None:
        control = self.require_manager()
        cluster = await control.cluster()
        if version is not None and version != cluster.mod_revision:
            raise Conflict("update out of sequence: the swarm changed since it was read; read it again and retry")
        await self.store.put(CLUSTER, cluster.record.model_copy(update={"settings": settings}), expect=cluster.mod_revision)

    # -- what tests add: the cluster's other nodes and the tasks a leader would have made ------------
    async def add_node(self, hostname: str, *, role: str = "worker", state: str = "ready", labels=None,
                       availability: str = "active") -> str:
        now = self.clock()
        node_id = r.new_id(f"node {hostname}")
        manager = r.ManagerStatus(addr=f"10.0.0.{len(hostname)}:2377", reachability="reachable") if role == "manager" else None
        await self.store.create(NODES, r.Node(
            id=node_id, created_at=now, updated_at=now,
            spec=r.NodeSpec(role=role, availability=availability, labels=labels or {}),
            description=r.NodeDescription(hostname=hostname, engine_version="0.1.0"),
            status=r.NodeStatus(state=state, addr="10.0.0.9"), manager_status=manager))
        return node_id

    async def add_task(self, service_ref: str, *, slot: int = 0, node_id: str = "", state: str = "running",
                       desired: str = "running", at: float | None = None, err: str = "", ports=()) -> str:
        service = (await self.control.service(service_ref)).record
        when = self.clock() if at is None else at
        task_id = r.new_id(f"task {service.id} {service.spec_version} {slot} {node_id} {when} {state}")
        status = r.TaskStatus(state=r.TaskState(state), timestamp=when, err=err,
                              port_status=r.PortStatus(ports=list(ports)) if ports else None)
        await self.store.create(TASKS, r.Task(
            id=task_id, created_at=when, updated_at=when, service_id=service.id, service_name=service.spec.name, slot=slot,
            node_id=node_id, spec=service.spec.task_template, spec_version=service.spec_version,
            desired_state=r.TaskState(desired), status=status))
        return task_id


class FakeAgentNode:
    """The agent's Node as the cluster's routes use it."""

    def __init__(self, member: FakeMember):
        self.cluster = member

    async def cluster_member(self) -> FakeMember:
        return self.cluster
