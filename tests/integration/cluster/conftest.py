"""Fixtures for the cluster's store: certificates, one real etcd for the session (mutual TLS,
free ports on 127.0.0.1, a temporary data directory; killed and removed at the end, also on
failure, and killed with the test process if that dies: PR_SET_PDEATHSIG), and a store per
test under a root of its own, emptied afterwards.

`store` is parametrized over MemoryStore and EtcdStore: the conformance suite runs every test
against both. Tests that request `clock` run the memory store on an autojumping MockClock
(leases expire without waiting) and etcd on the real clock.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import signal
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from orch.cluster import pki
from orch.cluster.etcd import EtcdClient, TLSFiles
from orch.cluster.etcdproc import MemberConfig, wait_healthy, write_member_tls
from orch.cluster.memstore import MemoryStore
from orch.cluster.store import EtcdStore, Limits

ETCD = "/usr/bin/etcd"
LIMITS = Limits(max_txn_ops=1024, max_request_bytes=1572864)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: etcd dies with the test process


@dataclass(frozen=True)
class EtcdPKI:
    dir: Path
    ca: pki.CA
    member: TLSFiles  # server, peer and client certificate of the test members
    client: TLSFiles  # a manager's client certificate
    foreign: TLSFiles  # a client certificate from another CA (the cluster CA, as a worker holds)


@pytest.fixture(scope="session")
def etcd_pki():
    directory = Path(tempfile.mkdtemp(prefix="orch-etcd-pki-"))
    try:
        ca = pki.CA.create("orch-etcd-ca")
        member = write_member_tls(directory, ca, "member", ["127.0.0.1"])
        client = _write_client(directory, "client", ca)
        foreign = _write_client(directory, "foreign", pki.CA.create("swarm-ca"), ca_file=member.ca_file)
        yield EtcdPKI(directory, ca, member, client, foreign)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _write_client(directory: Path, name: str, ca: pki.CA, ca_file: str | None = None) -> TLSFiles:
    issued = ca.issue(name, client=True, server=False, unit="swarm-manager")
    (directory / f"{name}.pem").write_bytes(issued.cert_pem)
    key = directory / f"{name}-key.pem"
    key.write_bytes(issued.key_pem)
    key.chmod(0o600)
    return TLSFiles(ca_file or str(directory / "ca.pem"), str(directory / f"{name}.pem"), str(key))


@dataclass(frozen=True)
class EtcdServer:
    url: str
    config: MemberConfig
    tls: TLSFiles

    def client(self, **kw) -> EtcdClient:
        return EtcdClient([self.url], tls=self.tls, **kw)


def start_etcd_process(config: MemberConfig) -> subprocess.Popen:
    log = open(config.log_file, "ab")
    try:
        return subprocess.Popen(config.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                preexec_fn=_die_with_parent)
    finally:
        log.close()


def stop_etcd_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def etcd_server(etcd_pki):
    if not Path(ETCD).exists():
        pytest.fail(f"missing {ETCD}: run scripts/setup (apt-get install etcd-server)", pytrace=False)
    directory = Path(tempfile.mkdtemp(prefix="orch-etcd-"))
    config = MemberConfig(name="test", data_dir=directory / "data", host="127.0.0.1", tls=etcd_pki.member,
                          client_port=free_port(), peer_port=free_port(), max_txn_ops=LIMITS.max_txn_ops,
                          max_request_bytes=LIMITS.max_request_bytes, progress_notify="1s")
    proc = start_etcd_process(config)
    try:
        async def healthy() -> None:
            async with EtcdClient([config.client_url], tls=etcd_pki.client, timeout=2) as client:
                await wait_healthy(client, None, config.log_file)
        # The fixture may be set up from inside a test's trio run: wait in a thread of its own.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(trio.run, healthy).result()
        yield EtcdServer(config.client_url, config, etcd_pki.client)
    finally:
        stop_etcd_process(proc)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["memory", "etcd"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def clock(backend):
    """The memory store's leases run on an autojumping MockClock; etcd's on real time."""
    return trio.testing.MockClock(autojump_threshold=0) if backend == "memory" else None


@pytest.fixture
async def store_factory(backend, request):
    """Makes stores on one backend sharing one root: as several managers see one etcd."""
    root = f"/test-{uuid.uuid4().hex[:12]}/"
    if backend == "memory":
        async with trio.open_nursery() as nursery:
            yield partial(_memory, {}, root, nursery)
            nursery.cancel_scope.cancel()
        return
    server = request.getfixturevalue("etcd_server")
    try:
        yield partial(_etcd, server, root)
    finally:
        # Every client of the test shares the root: it is emptied once, when the test is over.
        with trio.CancelScope(shield=True):
            async with EtcdClient([server.url], tls=server.tls) as cleaner:
                await EtcdStore(cleaner, root=root).delete_all()


class _memory:
    """Stores made by one factory with the same limits are the same MemoryStore (one
    'cluster' that several clients see); its leases expire in the fixture's nursery."""

    def __init__(self, shared: dict, root: str, nursery: trio.Nursery, limits: Limits = LIMITS):
        self.shared, self.root, self.nursery, self.limits = shared, root, nursery, limits

    async def __aenter__(self):
        if self.limits not in self.shared:
            store = self.shared[self.limits] = MemoryStore(root=self.root, limits=self.limits)
            await self.nursery.start(store.run_lease_expiry)
        return self.shared[self.limits]

    async def __aexit__(self, *exc):
        pass


class _etcd:
    def __init__(self, server: EtcdServer, root: str, limits: Limits = LIMITS, endpoints: list[str] | None = None,
                 timeout: float = 5.0):
        self.server, self.root, self.limits, self.endpoints, self.timeout = server, root, limits, endpoints, timeout

    async def __aenter__(self):
        self.client = EtcdClient(self.endpoints or [self.server.url], tls=self.server.tls, timeout=self.timeout)
        self.store = EtcdStore(self.client, root=self.root, limits=self.limits)
        return self.store

    async def __aexit__(self, *exc):
        await self.client.aclose()


@pytest.fixture
async def store(store_factory):
    async with store_factory() as s:
        yield s
