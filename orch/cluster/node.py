"""A node's membership of a cluster, inside its agent: `swarm init`, `join` and `leave`, and
the services a member runs (the embedded etcd member, the manager and its TLS listener on a
manager; the worker session on every node).

What a member keeps on disk, under ORCH_ROOT/cluster (0700; keys 0600):
- node.json: who the node is (`LocalState`: cluster id, node id, role, addresses, the
  managers it knows, how a manager reaches etcd), written last by init and join, so a node
  that has no node.json is in no cluster, whatever else a failed attempt left (removed);
- tls/: the cluster CA's certificate, the node's certificate and key (transport.Identity);
- manager/ (managers only): the cluster CA's key (to sign joiners' certificates), the etcd
  CA and its key, the secrets keyring, and the plaintext join tokens sealed with the keyring
  live in etcd (`v1/join-tokens`), their hashes in the cluster record;
- etcd/ and etcd-tls/ (embedded etcd): the member's data and certificates.

Joining, as swarmkit does it: the joiner fetches the CA certificate over a connection it does
not trust yet, pins it against the digest its token carries, checks that the manager's TLS
certificate is signed by that CA, and only then sends the token's secret with a CSR. The
manager checks the token, makes the node's record, signs the CSR with the role the token
grants, and (for a manager) adds the joiner as an etcd member and hands it the managers'
keys. A joiner that fails after that tells the manager, which takes the record (and the etcd
member) back: nothing is left half-joined.
"""

from __future__ import annotations

import os
import shutil
from functools import partial
import socket
import sys
from pathlib import Path
from typing import Literal

import trio
from pydantic import BaseModel, ConfigDict, Field

from orch.cluster import pki
from orch.cluster import records as r
from orch.cluster import transport
from orch.cluster.control import Control
from orch.cluster.etcd import EtcdClient, TLSFiles
from orch.cluster.manager import Manager, ManagerIdentity
from orch.cluster.protocol import NodeDescription
from orch.cluster.runtime import NodeRuntime
from orch.cluster.secretbox import Keyring
from orch.cluster.state import CLUSTER, NODES, _RecordKind
from orch.cluster.store import EtcdStore, Limits
from orch.cluster.wire import Framed, FrameError
from orch.cluster.worker import SESSION_ERRORS, Worker, describe_error, first_leaf
from orch.errors import Conflict, InvalidArgument, OrchError, PermissionDenied, SystemFailure, Unavailable

NOT_IN_SWARM = "This node is not part of a swarm"
NOT_MANAGER = ('This node is not a swarm manager. Use "orch swarm init" or "orch swarm join" to connect this node '
               'to swarm and try again.')
JOIN_WAIT = 30.0
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380


class EtcdSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embedded: bool = True
    endpoints: list[str] = Field(default_factory=list)  # for an external etcd
    member: str = ""  # our member's name (the node id), embedded only
    client_port: int = 2379
    peer_port: int = 2380
    initial_cluster: list[tuple[str, str]] = Field(default_factory=list)
    state: Literal["new", "existing"] = "new"
    learner_id: int = 0  # set while our member is a learner that still has to be promoted
    voters: list[str] = Field(default_factory=list)  # client URLs of the members that joined us


class LocalState(BaseModel):
    """ORCH_ROOT/cluster/node.json."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    cluster_id: str
    node_id: str
    role: Literal["manager", "worker"]
    advertise_addr: str  # host:port others reach this node's listener at (managers) / its host (workers)
    listen_addr: str = ""
    managers: list[str] = Field(default_factory=list)
    etcd: EtcdSettings | None = None


class JoinTokens(BaseModel):
    """The plaintext join tokens, sealed with the managers' keyring (`swarm join-token` prints them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")
    version: int = 1
    worker: bytes = b""
    manager: bytes = b""

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


JOIN_TOKENS = _RecordKind(f"{r.LAYOUT}/join-tokens", JoinTokens, singleton=True)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def default_advertise_host() -> str:
    """The one non-loopback IPv4 address of this host (its network namespace), as docker picks
    it; several or none is a one-line error saying to pass --advertise-addr."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        found = [(a.get_attr("IFA_ADDRESS"), names.get(a["index"], "?")) for a in ipr.get_addr(family=socket.AF_INET)]
    found = [(addr, name) for addr, name in found if not addr.startswith("127.") and not name.startswith(("orch", "veth"))]
    if len(found) == 1:
        return found[0][0]
    if not found:
        raise InvalidArgument("could not find an address to advertise: this host has no IPv4 address but loopback; "
                              "pass --advertise-addr")
    listed = " and ".join(f"{a} on {n}" for a, n in found[:3])
    raise InvalidArgument(f"could not choose an IP address to advertise since this system has multiple addresses "
                          f"({listed}); pass --advertise-addr")


def describe_host(addr_host: str) -> NodeDescription:
    import platform

    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    from orch import __version__

    return NodeDescription(hostname=socket.gethostname(), addr=addr_host, architecture=platform.machine(),
                           nano_cpus=(os.cpu_count() or 1) * 1_000_000_000, memory_bytes=mem_kb * 1024,
                           engine_version=__version__)


class ClusterNode:
    """The agent's cluster membership. Lives in the agent's trio thread."""

    def __init__(self, root: Path, node, *, runtime=None, etcd_ports: tuple[int, int] = (2379, 2380)):
        """`node`: the agent's Node, whose containers run the tasks; `runtime`: a worker.Runtime
        to use instead (tests, hollow nodes); `etcd_ports`: the embedded member's client and
        peer ports when this node starts or joins one."""
        self.root = Path(root)
        self.node = node
        self._runtime = runtime
        self._etcd_ports = etcd_ports
        self.dir = self.root / "cluster"
        self.identity = transport.Identity(self.dir / "tls")
        self.state: LocalState | None = self._load()
        self.status = "active" if self.state else "inactive"
        self.error = ""
        self.manager: Manager | None = None
        self.worker: Worker | None = None
        self.control: Control | None = None
        self.store: EtcdStore | None = None
        self.keyring: Keyring | None = None
        self.ca: pki.CA | None = None
        self._nursery: trio.Nursery | None = None
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self._lock = trio.Lock()  # init, join and leave one at a time
        # The worker starts once the cluster holds this node's record: at once on a restart or
        # after a join (the manager made it), after the records' transaction in init.
        self._records_ready = trio.Event()
        self._worker_up = trio.Event()

    # -- files ----------------------------------------------------------------------------------
    def _load(self) -> LocalState | None:
        try:
            return LocalState.model_validate_json((self.dir / "node.json").read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as err:
            self.error = f"{self.dir / 'node.json'} is not readable ({err}); run orch swarm leave --force"
            return None

    def _save(self, state: LocalState) -> None:
        _write_private(self.dir / "node.json", state.model_dump_json(indent=1).encode())
        self.state = state

    @property
    def manager_dir(self) -> Path:
        return self.dir / "manager"

    def _load_manager_keys(self) -> None:
        d = self.manager_dir
        self.ca = pki.CA.load((self.dir / "tls" / "ca.pem").read_bytes(), (d / "ca-key.pem").read_bytes())
        self.keyring = Keyring.from_json((d / "keyring.json").read_text())

    def _etcd_tls(self) -> TLSFiles:
        d = self.dir / "etcd-tls"
        name = self.state.node_id if self.state else ""
        return TLSFiles(str(d / "ca.pem"), str(d / f"{name}.pem"), str(d / f"{name}-key.pem"))

    # -- running --------------------------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """In the agent's nursery for the agent's life: runs the member's services while the
        node is in a cluster."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            if self.state is not None:
                self._records_ready.set()
                try:
                    await nursery.start(self._services_until_stopped)
                except OrchError as err:
                    self.status, self.error = "error", str(err)
                    print(f"cluster: {err}", file=sys.stderr, flush=True)
            await trio.sleep_forever()

    async def _services(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        state = self.state
        assert state is not None
        self._stopped = trio.Event()
        self._worker_up = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    if state.role == "manager":
                        await self._start_manager(nursery, state)
                    if not self._records_ready.is_set():
                        task_status.started()  # init writes the records now, then the worker starts
                        task_status = trio.TASK_STATUS_IGNORED
                        await self._records_ready.wait()
                    host, _ = transport.split_addr(state.advertise_addr)
                    runtime = self._runtime or NodeRuntime(self.node, lambda: state.node_id, host)
                    client_ctx = self.identity.client_context()

                    async def connect(addr: str):
                        return await transport.open_connection(addr, client_ctx)

                    self.worker = Worker(state.managers or [state.advertise_addr], connect, runtime,
                                         lambda: describe_host(host))
                    self.worker.on_managers = self._remember_managers
                    await nursery.start(self.worker.run)
                    self._worker_up.set()
                    self.status = "active"
                    task_status.started()
        finally:
            self.manager = self.worker = self.control = self.store = None
            self._scope = None
            self._stopped.set()

    async def _start_manager(self, nursery: trio.Nursery, state: LocalState) -> None:
        await trio.to_thread.run_sync(self._load_manager_keys)
        etcd = state.etcd or EtcdSettings()
        if etcd.embedded:
            from orch.cluster.etcdproc import MemberConfig, run_member

            host, _ = transport.split_addr(state.advertise_addr)
            config = MemberConfig(name=state.node_id, data_dir=self.dir / "etcd", host=host, tls=self._etcd_tls(),
                                  client_port=etcd.client_port, peer_port=etcd.peer_port,
                                  initial_cluster=tuple(tuple(m) for m in etcd.initial_cluster), state=etcd.state,
                                  learner_id=etcd.learner_id)
            member = await nursery.start(run_member, config)
            endpoints = [member.client_url, *etcd.voters]
            tls = self._etcd_tls()
            limits = Limits(max_txn_ops=config.max_txn_ops, max_request_bytes=config.max_request_bytes)
            if etcd.learner_id:
                # Our member joined as a learner: promote it once it has caught up (until then it
                # serves no client, and the voters answer us).
                from orch.cluster.etcdproc import promote_when_synced

                async with EtcdClient(list(etcd.voters) or endpoints, tls=tls) as voters:
                    await promote_when_synced(voters, etcd.learner_id)
                state.etcd = etcd.model_copy(update={"learner_id": 0})
                if (self.dir / "node.json").exists():
                    await trio.to_thread.run_sync(self._save, state)
        else:
            endpoints, tls, limits = etcd.endpoints, self._etcd_tls() if Path(self._etcd_tls().cert_file).exists() else None, Limits()
        client = EtcdClient(endpoints, tls=tls)
        self.store = EtcdStore(client, limits=limits)
        self.control = Control(self.store, self.keyring)
        self.manager = Manager(self.store, ManagerIdentity(state.node_id, state.advertise_addr), keyring=self.keyring)
        await nursery.start(self.manager.run)
        await nursery.start(transport.serve, state.listen_addr or state.advertise_addr,
                            self.identity.server_context(), self._handle)

    async def _remember_managers(self, managers: list[str]) -> None:
        state = self.state
        if state is not None and managers and set(managers) != set(state.managers):
            new = state.model_copy(update={"managers": sorted(managers)})
            if (self.dir / "node.json").exists():
                await trio.to_thread.run_sync(self._save, new)
            else:
                self.state = new

    async def _stop_services(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            await self._stopped.wait()

    # -- what the CLI asks ------------------------------------------------------------------------
    def require_manager(self) -> Control:
        if self.state is None:
            raise Unavailable(NOT_MANAGER if not self.error else self.error)
        if self.state.role != "manager" or self.control is None:
            raise Unavailable(NOT_MANAGER)
        return self.control

    def local_info(self) -> dict:
        """docker's SwarmInfo (the Swarm field of GET /info)."""
        s = self.state
        if s is None:
            return {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive" if not self.error else "error",
                    "ControlAvailable": False, "Error": self.error, "RemoteManagers": None}
        host, _ = transport.split_addr(s.advertise_addr)
        connected = self.worker is not None and self.worker.connected.is_set()
        return {"NodeID": s.node_id, "NodeAddr": host,
                "LocalNodeState": "active" if connected else ("error" if self.error else "pending"),
                "ControlAvailable": s.role == "manager", "Error": self.error or (self.worker.last_error if self.worker and not connected else ""),
                "RemoteManagers": [{"NodeID": "", "Addr": a} for a in s.managers],
                "IsLeader": bool(self.manager and self.manager.is_leader())}

    async def join_tokens(self) -> dict[str, str]:
        control = self.require_manager()
        stored = await control.store.get(JOIN_TOKENS)
        if stored is None or self.keyring is None:
            raise SystemFailure("the cluster has no join tokens; this manager's state is damaged")
        return {"Worker": self.keyring.open(stored.record.worker, record_id="join-tokens").decode(),
                "Manager": self.keyring.open(stored.record.manager, record_id="join-tokens").decode()}

    async def rotate_tokens(self, *, worker: bool, manager: bool) -> None:
        control = self.require_manager()
        assert self.ca is not None and self.keyring is not None
        cluster = await control.cluster()
        tokens = await control.store.get(JOIN_TOKENS)
        hashes = cluster.record.join_tokens
        sealed = tokens.record if tokens else JoinTokens()
        if worker:
            t = pki.new_join_token(self.ca.cert_pem)
            hashes = hashes.model_copy(update={"worker_hash": t.secret_hash})
            sealed = sealed.model_copy(update={"worker": self.keyring.seal(t.token.encode(), record_id="join-tokens")})
        if manager:
            t = pki.new_join_token(self.ca.cert_pem)
            hashes = hashes.model_copy(update={"manager_hash": t.secret_hash})
            sealed = sealed.model_copy(update={"manager": self.keyring.seal(t.token.encode(), record_id="join-tokens")})
        from orch.cluster.store import Put

        await control.store.txn([Put(CLUSTER, cluster.record.model_copy(update={"join_tokens": hashes}), cluster.mod_revision),
                                 Put(JOIN_TOKENS, sealed, tokens.mod_revision if tokens else 0)])

    async def update_settings(self, version: int | None, settings: r.ClusterSettings) -> None:
        control = self.require_manager()
        cluster = await control.cluster()
        if version is not None and version != cluster.mod_revision:
            raise Conflict("update out of sequence: the swarm changed since it was read; read it again and retry")
        await control.store.put(CLUSTER, cluster.record.model_copy(update={"settings": settings}), expect=cluster.mod_revision)

    # -- init -----------------------------------------------------------------------------------
    async def init(self, *, advertise_addr: str = "", listen_addr: str = "", etcd_endpoints: list[str] | None = None,
                   settings: r.ClusterSettings | None = None) -> str:
        async with self._lock:
            if self.state is not None:
                raise Conflict('This node is already part of a swarm. Use "orch swarm leave" to leave this swarm and join another one.')
            host, port = await self._advertise(advertise_addr, listen_addr)
            try:
                return await self._init(host, port, listen_addr, etcd_endpoints or [], settings or r.ClusterSettings())
            except BaseException:
                await self._forget()
                raise

    async def _advertise(self, advertise_addr: str, listen_addr: str) -> tuple[str, int]:
        addr = advertise_addr or listen_addr
        if addr:
            host, port = transport.split_addr(addr)
            if host in ("", "0.0.0.0"):
                host = await trio.to_thread.run_sync(default_advertise_host)
        else:
            host, port = await trio.to_thread.run_sync(default_advertise_host), transport.DEFAULT_PORT
        return host, port

    async def _init(self, host: str, port: int, listen_addr: str, etcd_endpoints: list[str],
                    settings: r.ClusterSettings) -> str:
        cluster_id, node_id = r.new_id(), r.new_id()
        ca = pki.CA.create()
        etcd_ca = pki.CA.create("orch-etcd-ca")
        keyring = Keyring.generate()
        key = pki.new_key()
        cert = ca.sign_node_csr(pki.make_csr(key), node_id=node_id, role=pki.MANAGER, cluster_id=cluster_id, hosts=(host,))
        listen = listen_addr or f"0.0.0.0:{port}"
        if listen_addr:
            lhost, lport = transport.split_addr(listen_addr)
            listen = f"{lhost or '0.0.0.0'}:{lport}"

        def write_files() -> None:
            from orch.cluster.etcdproc import write_member_tls

            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.identity.write(ca.cert_pem, cert, pki.key_pem(key))
            _write_private(self.manager_dir / "ca-key.pem", ca.key_pem)
            _write_private(self.manager_dir / "etcd-ca.pem", etcd_ca.cert_pem)
            _write_private(self.manager_dir / "etcd-ca-key.pem", etcd_ca.key_pem)
            _write_private(self.manager_dir / "keyring.json", keyring.to_json().encode())
            write_member_tls(self.dir / "etcd-tls", etcd_ca, node_id, (host,))

        await trio.to_thread.run_sync(write_files)
        advertise = f"{host}:{port}"
        state = LocalState(cluster_id=cluster_id, node_id=node_id, role="manager", advertise_addr=advertise,
                           listen_addr=listen, managers=[advertise],
                           etcd=EtcdSettings(embedded=not etcd_endpoints, endpoints=etcd_endpoints, member=node_id,
                                             client_port=self._etcd_ports[0], peer_port=self._etcd_ports[1]))
        self.state = state  # in memory only until the cluster's records are written
        await self._nursery.start(self._services_until_stopped)
        worker_token, manager_token = pki.new_join_token(ca.cert_pem), pki.new_join_token(ca.cert_pem)
        import time as _time

        now = _time.time()
        cluster = r.Cluster(id=cluster_id, ca_certificate=ca.cert_pem.decode(), settings=settings, created_at=now, updated_at=now,
                            join_tokens=r.JoinTokens(worker_hash=worker_token.secret_hash, manager_hash=manager_token.secret_hash))
        me = r.Node(id=node_id, created_at=now, updated_at=now, spec=r.NodeSpec(role="manager"),
                    description=r.NodeDescription(hostname=socket.gethostname()),
                    status=r.NodeStatus(state="unknown", addr=host),
                    manager_status=r.ManagerStatus(addr=advertise, reachability="reachable", leader=True))
        sealed = JoinTokens(worker=keyring.seal(worker_token.token.encode(), record_id="join-tokens"),
                            manager=keyring.seal(manager_token.token.encode(), record_id="join-tokens"))
        from orch.cluster.store import Put

        store = self.store
        assert store is not None
        if await store.get(CLUSTER) is not None:
            raise Conflict(f"etcd at {', '.join(etcd_endpoints)} already holds a cluster under {store.root}; "
                           f"point at an empty etcd, or leave that cluster first")
        from orch.cluster.control import ingress_ops

        await store.txn([Put(CLUSTER, cluster, 0), Put(NODES, me, 0), Put(JOIN_TOKENS, sealed, 0), *ingress_ops(now)])
        await trio.to_thread.run_sync(self._save, state)
        self._records_ready.set()
        await self._wait_worker()
        await self._wait_connected()
        return node_id

    async def _services_until_stopped(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The member's services; a failure before they are up goes to the caller (init, join),
        one after is logged and kept as the node's error: it never takes the agent down."""
        status = _Started(task_status)
        try:
            await self._services(task_status=status)
        except* OrchError as group:
            err = first_leaf(group)
            if not status.done:
                raise err from None
            self.status, self.error = "error", str(err)
            print(f"cluster: {err}", file=sys.stderr, flush=True)

    async def _wait_worker(self) -> None:
        """Until the worker runs (it starts right after the records are written), or the
        services ended."""
        async with trio.open_nursery() as nursery:
            async def first(event: trio.Event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()
            nursery.start_soon(first, self._worker_up)
            nursery.start_soon(first, self._stopped)
        if self.worker is None:
            raise SystemFailure(f"the cluster services stopped: {self.error or 'see the agent log'}")

    async def _wait_connected(self) -> None:
        worker = self.worker
        if worker is None:
            raise SystemFailure("the cluster services did not start")
        with trio.move_on_after(JOIN_WAIT):
            await worker.connected.wait()
            return
        raise Unavailable(f"this node did not reach a manager within {JOIN_WAIT:.0f} s ({worker.last_error or 'no answer'})")

    async def _forget(self) -> None:
        """Undo a failed init or join, or finish a leave: stop the services, remove the files."""
        await self._stop_services()
        self.state = None
        self._records_ready = trio.Event()
        self.status = "inactive"
        self.keyring = self.ca = None
        await trio.to_thread.run_sync(lambda: shutil.rmtree(self.dir, ignore_errors=True))

    # -- join (the joiner) -------------------------------------------------------------------------
    async def join(self, *, remote: str, token: str, advertise_addr: str = "", listen_addr: str = "") -> None:
        async with self._lock:
            if self.state is not None:
                raise Conflict('This node is already part of a swarm. Use "orch swarm leave" to leave this swarm and join another one.')
            pki.parse_token(token)
            stream = await transport.open_connection(remote, transport.unverified_context(), want_role=None)
            framed = Framed(stream)
            joined = None
            try:
                with trio.fail_after(transport.HANDSHAKE_TIMEOUT * 3):
                    await framed.send({"op": "ca"})
                    reply = await _expect(framed, "ca", remote)
                    ca_cert = pki.pin_ca(token, reply["ca"].encode())
                    der = stream.getpeercert(binary_form=True)
                    from cryptography import x509

                    peer = x509.load_der_x509_certificate(der)
                    pki.verify_signed_by(peer, ca_cert)
                    if pki.role_of(peer) != pki.MANAGER:
                        raise PermissionDenied(f"{remote} is not a manager of the cluster its token names")
                    local_host = stream.transport_stream.socket.getsockname()[0]
                    host, port = (transport.split_addr(advertise_addr) if advertise_addr else (local_host, transport.DEFAULT_PORT))
                    key = pki.new_key()
                    await framed.send({"op": "join", "token": token, "csr": pki.make_csr(key).decode(),
                                       "hostname": socket.gethostname(), "addr": host, "port": port,
                                       "etcd_peer_port": self._etcd_ports[1]})
                    joined = await _expect(framed, "joined", remote)
                try:
                    await self._joined(joined, key, host, port, listen_addr, reply["ca"].encode())
                except BaseException as err:
                    with trio.move_on_after(5) as scope:
                        scope.shield = True
                        try:
                            await framed.send({"op": "abort", "node_id": joined["node_id"], "message": str(err)[:500]})
                            await framed.receive()
                        except (*SESSION_ERRORS, FrameError):
                            pass
                    await self._forget()
                    raise
                await framed.send({"op": "done"})
            except trio.TooSlowError:
                raise Unavailable(f"manager {remote} did not answer the join in time") from None
            finally:
                with trio.move_on_after(1) as scope:
                    scope.shield = True
                    await trio.aclose_forcefully(stream)

    async def _joined(self, joined: dict, key, host: str, port: int, listen_addr: str, ca_pem: bytes) -> None:
        role = joined["role"]
        node_id = joined["node_id"]

        def write_files() -> None:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.identity.write(ca_pem, joined["cert"].encode(), pki.key_pem(key))
            if role == "manager":
                m = joined["manager"]
                _write_private(self.manager_dir / "ca-key.pem", m["ca_key"].encode())
                _write_private(self.manager_dir / "etcd-ca.pem", m["etcd_ca"].encode())
                _write_private(self.manager_dir / "etcd-ca-key.pem", m["etcd_ca_key"].encode())
                _write_private(self.manager_dir / "keyring.json", m["keyring"].encode())
                from orch.cluster.etcdproc import write_member_tls

                write_member_tls(self.dir / "etcd-tls", pki.CA.load(m["etcd_ca"].encode(), m["etcd_ca_key"].encode()),
                                 node_id, (host,))

        await trio.to_thread.run_sync(write_files)
        etcd = None
        listen = ""
        if role == "manager":
            m = joined["manager"]
            etcd = EtcdSettings(embedded=m["etcd_embedded"], endpoints=m.get("etcd_endpoints", []), member=node_id,
                                initial_cluster=[tuple(x) for x in m.get("initial_cluster", [])], state="existing",
                                learner_id=int(m.get("learner_id", 0)), voters=list(m.get("voters", [])),
                                client_port=self._etcd_ports[0], peer_port=self._etcd_ports[1])
            lhost, lport = transport.split_addr(listen_addr) if listen_addr else ("0.0.0.0", port)
            listen = f"{lhost or '0.0.0.0'}:{lport}"
        state = LocalState(cluster_id=joined["cluster_id"], node_id=node_id, role=role,
                           advertise_addr=f"{host}:{port}", listen_addr=listen, managers=joined["managers"], etcd=etcd)
        self.state = state
        self._records_ready.set()
        await self._nursery.start(self._services_until_stopped)
        await self._wait_connected()
        await trio.to_thread.run_sync(self._save, state)

    # -- join (the manager's side) -----------------------------------------------------------------
    async def _handle(self, framed: Framed, peer: transport.Peer) -> None:
        """A connection to this manager's listener."""
        try:
            with trio.fail_after(transport.HANDSHAKE_TIMEOUT):
                first = await framed.receive()
            if first is None:
                return
            if first["op"] == "ca":
                await framed.send({"op": "ca", "ca": self.identity.ca_file.read_text()})
                with trio.fail_after(transport.HANDSHAKE_TIMEOUT):
                    first = await framed.receive()
                if first is None:
                    return
            if first["op"] == "join":
                await self._serve_join(framed, first, peer)
            elif first["op"] == "service_logs":
                await self._serve_logs(framed, first, peer)
            elif first["op"] == "hello":
                await self._serve_session(framed, first, peer)
            else:
                await framed.send({"op": "refused", "message": f"unexpected request {first['op']!r}"})
        except* (*SESSION_ERRORS, FrameError) as group:
            print(f"cluster: connection from {peer.addr}: {describe_error(group)}", file=sys.stderr, flush=True)

    # -- service logs ----------------------------------------------------------------------------
    async def service_logs(self, service_ref: str, *, follow: bool = False, tail: int | None = None,
                           since: float | None = None):
        """(task name, task id, hostname, JSON log line) of every task of a service, from the
        nodes that run them: through this manager's dispatcher when it leads, else through the
        leader's (a manager's TLS connection to it, which only a manager certificate opens)."""
        control = self.require_manager()
        service = await control.service(service_ref)
        manager = self.manager
        if manager is not None and manager.is_leader():
            send, receive = trio.open_memory_channel(0)

            async def produce() -> None:
                # In the member's nursery, which holds the agent's cluster services: whatever
                # goes wrong here ends this reader's stream, never the services.
                try:
                    await manager.send_service_logs(service.id, send, follow=follow, tail=tail, since=since)
                except Exception as err:  # noqa: BLE001 (a bug or a lost leadership: one log line)
                    print(f"cluster: service logs of {service.id}: {describe_error(err)}", file=sys.stderr, flush=True)

            self._nursery.start_soon(produce)
            async with receive:
                async for task, hostname, line in receive:
                    yield task.name, task.id, hostname, line
            return
        leader = manager.leader_addr() if manager is not None else ""
        if not leader:
            raise Unavailable("the cluster has no leader right now; try again in a few seconds")
        stream = await transport.open_connection(leader, self.identity.client_context())
        framed = Framed(stream)
        try:
            await framed.send({"op": "service_logs", "service": service.id, "follow": follow, "tail": tail, "since": since})
            while (msg := await framed.receive()) is not None:
                if msg.get("op") == "refused":
                    raise Unavailable(f"the leader ({leader}) refused: {msg.get('message', '')}")
                if msg.get("end"):
                    return
                for item in msg.get("lines", ()):
                    yield item["task"], item["task_id"], item["node"], item["line"]
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve_logs(self, framed: Framed, req: dict, peer: transport.Peer) -> None:
        """Another manager asks the leader for a service's logs."""
        manager = self.manager
        if peer.role != pki.MANAGER or manager is None or not manager.is_leader():
            await framed.send({"op": "refused", "message": "only the leader serves logs, to managers"})
            return
        send, receive = trio.open_memory_channel(0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(manager.send_service_logs, str(req.get("service", "")), send,
                                       follow=bool(req.get("follow")), tail=req.get("tail"), since=req.get("since")))
            async with receive:
                async for task, hostname, line in receive:
                    await framed.send({"op": "logs", "lines": [{"task": task.name, "task_id": task.id, "node": hostname,
                                                                 "line": line}]})
        await framed.send({"op": "logs", "end": True})

    async def _serve_session(self, framed: Framed, hello: dict, peer: transport.Peer) -> None:
        manager, control = self.manager, self.control
        if not peer.node_id or manager is None or control is None or self.state is None:
            await framed.send({"op": "refused", "message": "a session needs a node certificate of this cluster"})
            return
        if peer.cluster_id != self.state.cluster_id:
            await framed.send({"op": "refused", "message": "the node's certificate is for another cluster"})
            return
        await manager.serve_session(framed, peer.node_id, hello)

    async def _serve_join(self, framed: Framed, req: dict, peer: transport.Peer) -> None:
        control, ca, keyring, state = self.control, self.ca, self.keyring, self.state
        if control is None or ca is None or keyring is None or state is None:
            await framed.send({"op": "refused", "message": "this manager is not ready to accept joins"})
            return
        try:
            cluster = (await control.cluster()).record
            role = pki.role_for_token(str(req.get("token", "")), ca_cert_pem=ca.cert_pem,
                                      worker_hash=cluster.join_tokens.worker_hash,
                                      manager_hash=cluster.join_tokens.manager_hash)
            host = str(req.get("addr") or peer.addr.rsplit(":", 1)[0])
            port = int(req.get("port") or transport.DEFAULT_PORT)
            node_id = r.new_id()
            role_name = "manager" if role == pki.MANAGER else "worker"
            cert = ca.sign_node_csr(str(req["csr"]).encode(), node_id=node_id, role=role, cluster_id=state.cluster_id,
                                    hosts=(host,))
            import time as _time

            now = _time.time()
            node = r.Node(id=node_id, created_at=now, updated_at=now, spec=r.NodeSpec(role=role_name),
                          description=r.NodeDescription(hostname=str(req.get("hostname", ""))[:253]),
                          status=r.NodeStatus(state="unknown", addr=host),
                          manager_status=r.ManagerStatus(addr=f"{host}:{port}") if role_name == "manager" else None)
            reply = {"op": "joined", "node_id": node_id, "role": role_name, "cert": cert.decode(),
                     "cluster_id": state.cluster_id, "managers": self._manager_addrs(state)}
            await control.store.create(NODES, node)
            member_added = False
            if role_name == "manager":
                try:
                    reply["manager"] = await self._manager_extras(node_id, host, int(req.get("etcd_peer_port") or ETCD_PEER_PORT), state)
                except OrchError:
                    await control.store.delete(NODES, node_id)
                    raise
                member_added = bool(state.etcd is None or state.etcd.embedded)
        except OrchError as err:
            await framed.send({"op": "refused", "message": str(err)})
            return
        await framed.send(reply)
        with trio.move_on_after(JOIN_WAIT + 30):
            outcome = await framed.receive()
            if outcome is not None and outcome.get("op") == "done":
                return
        # The joiner failed (or vanished) after it was given its certificate: take it all back.
        print(f"cluster: join of {node_id} ({host}) did not complete; removing it", file=sys.stderr, flush=True)
        with trio.move_on_after(10) as scope:
            scope.shield = True
            try:
                await control.store.delete(NODES, node_id)
                if member_added:
                    from orch.cluster.etcdproc import remove_member

                    await remove_member(control.store.client, node_id)
            except OrchError as err:
                print(f"cluster: undoing the join of {node_id}: {err}", file=sys.stderr, flush=True)
            try:
                await framed.send({"op": "aborted"})
            except (*SESSION_ERRORS, FrameError):
                pass

    def _manager_addrs(self, state: LocalState) -> list[str]:
        found = self.manager.managers() if self.manager is not None else []
        return sorted(set(found) | {state.advertise_addr})

    async def _manager_extras(self, node_id: str, host: str, peer_port: int, state: LocalState) -> dict:
        d = self.manager_dir
        ca_key, etcd_ca, etcd_ca_key, keyring = await trio.to_thread.run_sync(lambda: (
            (d / "ca-key.pem").read_text(), (d / "etcd-ca.pem").read_text(), (d / "etcd-ca-key.pem").read_text(),
            (d / "keyring.json").read_text()))
        extras = {"ca_key": ca_key, "etcd_ca": etcd_ca, "etcd_ca_key": etcd_ca_key, "keyring": keyring,
                  "etcd_embedded": bool(state.etcd is None or state.etcd.embedded),
                  "etcd_endpoints": list(state.etcd.endpoints) if state.etcd else []}
        if extras["etcd_embedded"]:
            from orch.cluster.etcdproc import add_learner

            peer_url = f"https://{_url_host(host)}:{peer_port}"
            cluster, learner_id, voters = await add_learner(self.store.client, node_id, peer_url)
            extras.update(initial_cluster=[list(m) for m in cluster], learner_id=learner_id, voters=list(voters))
        return extras

    # -- leave ------------------------------------------------------------------------------------
    async def leave(self, *, force: bool = False) -> None:
        async with self._lock:
            state = self.state
            if state is None:
                raise Unavailable(NOT_IN_SWARM if not self.error else self.error)
            if state.role == "manager" and not force:
                raise Conflict("You are attempting to leave the swarm on a node that is participating as a manager. "
                               "Removing the last manager erases all current state of the swarm. Use `--force` to "
                               "ignore this message.")
            if state.role == "manager" and self.store is not None:
                await self._leave_as_manager(state)
            await self._remove_task_containers()
            if self.node is not None:
                await trio.to_thread.run_sync(self.node.release_task_files)
            await self._forget()

    async def _leave_as_manager(self, state: LocalState) -> None:
        store = self.store
        try:
            nodes = (await store.list(NODES)).items
            others = [n for n in nodes if n.record.spec.role == "manager" and n.id != state.node_id]
            if not others:
                await store.delete_all()  # the last manager: the cluster's state goes with it
            elif state.etcd and state.etcd.embedded:
                from orch.cluster.etcdproc import remove_member

                await store.delete(NODES, state.node_id)
                await remove_member(store.client, state.node_id)
        except OrchError as err:
            print(f"cluster: leaving: {err}", file=sys.stderr, flush=True)

    async def _remove_task_containers(self) -> None:
        """docker removes a node's task containers when it leaves the swarm."""
        runtime = self._runtime or NodeRuntime(self.node, lambda: "")
        for observed in await runtime.observe():
            try:
                await runtime.remove(observed.container_id)
            except OrchError as err:
                print(f"cluster: removing the container of task {observed.task_id}: {err}", file=sys.stderr, flush=True)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Started:
    """A task_status that remembers whether started() was called."""

    def __init__(self, inner):
        self.inner = inner
        self.done = False

    def started(self, value=None) -> None:
        self.done = True
        self.inner.started(value)


async def _expect(framed: Framed, op: str, remote: str) -> dict:
    msg = await framed.receive()
    if msg is None:
        raise Unavailable(f"manager {remote} closed the connection")
    if msg.get("op") == "refused":
        raise PermissionDenied(f"manager {remote} refused: {msg.get('message', '')}")
    if msg.get("op") != op:
        raise FrameError(f"manager {remote} answered {msg.get('op')!r}, expected {op!r}")
    return msg
