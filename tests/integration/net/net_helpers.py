"""Fixtures for networking tests on real bridges, veths, namespaces, nftables and DNS.

Every name a test makes starts with a random `orchT<hex>` prefix (bridges, the nft table), so
tests of other engineers running at the same time on this machine never collide with ours.
Every fixture tears down in `finally`, and a last sweep deletes whatever an aborted test left.
No packet leaves the machine: the subnets are the ones orch allocates, DNS forwarding goes to a
fake upstream on loopback, and the "outside world" is a namespace the test makes.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import DNSLogger, DNSServer

from orch.net.dns import DnsService
from orch.net.kernel import RealKernel
from orch.net.manager import Networks

PYTHON = sys.executable
FAKE_UPSTREAM_NAME = "upstream.example.test."
FAKE_UPSTREAM_ADDRESS = "198.51.100.77"


class QuietLogger(DNSLogger):
    """dnslib's server logs every query to stdout by default."""

    def __init__(self):
        super().__init__("-recv,-send,-request,-reply,-truncated,-error,-data")


@contextmanager
def serving(dns: DnsService):
    """Run `dns` on a trio loop of its own, in a thread, as the agent runs it in its nursery;
    the test then calls start and stop from its own thread, as the agent's worker threads do."""
    started = threading.Event()
    loop: dict = {}

    async def main():
        async with trio.open_nursery() as nursery:
            loop["scope"], loop["token"] = nursery.cancel_scope, trio.lowlevel.current_trio_token()
            await nursery.start(dns.serve)
            started.set()

    def run():
        try:
            trio.run(main)
        except BaseException as err:
            loop["error"] = err
        finally:
            started.set()

    thread = threading.Thread(target=run, name="dns-loop", daemon=True)
    thread.start()
    started.wait()
    if "error" in loop:
        raise loop["error"]
    try:
        yield dns
    finally:
        trio.from_thread.run_sync(loop["scope"].cancel, trio_token=loop["token"])
        thread.join()
        if "error" in loop:
            raise loop["error"]


class _FakeUpstream:
    """Answers one name with a documentation address; everything else is NXDOMAIN."""

    def resolve(self, request, handler):
        reply = request.reply()
        if str(request.q.qname).lower() == FAKE_UPSTREAM_NAME and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(FAKE_UPSTREAM_ADDRESS), ttl=5))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture
def fake_upstream():
    server = DNSServer(_FakeUpstream(), address="127.0.0.1", port=0, logger=QuietLogger())
    # serve_forever's default poll of 0.5 s would make every shutdown wait that long.
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server.server.server_address
    finally:
        server.server.shutdown()
        server.server.server_close()


@dataclass
class Env:
    networks: Networks
    prefix: str
    run_dir: Path
    _procs: list = field(default_factory=list)

    def container(self, network: str, cid: str, names=(), **kw):
        """A "container": a pinned namespace connected to `network`, with its files written."""
        path = self.networks.netns_path(cid)
        if not os.path.exists(path):
            self.networks.create_netns(cid)
        ep = self.networks.connect(network, cid, path, names=tuple(names), **kw)
        files = self.networks.container_files(cid, names[0] if names else cid)
        cdir = self.run_dir / "files" / cid
        cdir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (cdir / name).write_text(text)
        return ep

    def _argv(self, cid: str, code: str) -> list[str]:
        # A mount namespace of its own gives the process the container's resolv.conf and hosts,
        # so glibc's resolver asks orch's DNS as a real container's would.
        cdir = self.run_dir / "files" / cid
        script = 'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && exec "$3" -c "$4"'
        return ["nsenter", f"--net={self.networks.netns_path(cid)}", "unshare", "--mount", "--propagation",
                "private", "sh", "-c", script, "sh", str(cdir / "resolv.conf"), str(cdir / "hosts"),
                PYTHON, textwrap.dedent(code)]

    def run(self, cid: str, code: str, timeout: float = 15) -> subprocess.CompletedProcess:
        return subprocess.run(self._argv(cid, code), capture_output=True, text=True, timeout=timeout)

    def start(self, cid: str, code: str) -> subprocess.Popen:
        """Start a server in the container; returns once it printed its first line ("ready")."""
        proc = subprocess.Popen(self._argv(cid, code), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise AssertionError(f"server in {cid} did not start: {line!r} {proc.stderr.read()}")
        self._procs.append(proc)
        return proc


def _sweep(table: str, run_dir: Path, state) -> None:
    """Delete what a failed test may have left: links, namespaces, the table."""
    k = RealKernel()
    for ep in state.endpoints:
        k.delete_link(ep.host_ifname)
    for net in state.networks.values():
        k.delete_link(net.bridge)
    netns_dir = run_dir / "netns"
    if netns_dir.exists():
        for f in netns_dir.iterdir():
            k.remove_netns(str(f))
    subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)


@pytest.fixture
def env(fake_upstream):
    prefix = "orchT" + secrets.token_hex(2)
    table = prefix
    run_dir = Path(tempfile.mkdtemp(prefix="orchT-net-"))
    dns = DnsService([fake_upstream], timeout=1.0)
    nets = Networks(RealKernel(), run_dir=run_dir, dns=dns, table=table, bridge_prefix=prefix)
    e = Env(nets, prefix, run_dir)
    with serving(dns):
        try:
            yield e
        finally:
            for proc in e._procs:
                proc.kill()
                proc.wait()
            state = nets.state
            try:
                for cid in sorted({ep.container_id for ep in state.endpoints}):
                    nets.release_container(cid)
                for name in list(nets.state.networks):
                    nets.remove_network(name)
            finally:
                nets.close()
                _sweep(table, run_dir, state)
                subprocess.run(["rm", "-rf", str(run_dir)])


def host_address() -> str:
    """An address of this host outside orch's networks and loopback (the default route's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # connect() on UDP sends nothing; it only picks the source address for that route.
        s.connect(("192.0.2.1", 9))
        return s.getsockname()[0]


TCP_SERVER = """
    import socket, sys
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", {port})); srv.listen(16)
    print("ready", flush=True)
    while True:
        conn, peer = srv.accept()
        conn.sendall(("{name} " + peer[0]).encode()); conn.close()
"""

UDP_SERVER = """
    import socket
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("0.0.0.0", {port}))
    print("ready", flush=True)
    while True:
        data, peer = srv.recvfrom(512)
        srv.sendto(b"{name} " + data, peer)
"""

TCP_CLIENT = """
    import socket
    try:
        with socket.create_connection(("{host}", {port}), timeout={timeout}) as c:
            print(c.recv(100).decode())
    except OSError as err:
        print("FAILED", type(err).__name__, err)
"""

UDP_CLIENT = """
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout({timeout})
    s.sendto(b"ping", ("{host}", {port}))
    try:
        print(s.recv(100).decode())
    except OSError as err:
        print("FAILED", type(err).__name__, err)
"""

RESOLVE = """
    import socket
    try:
        print(" ".join(socket.gethostbyname_ex("{name}")[2]))
    except OSError as err:
        print("FAILED", type(err).__name__, err)
"""


def tcp_from_host(host: str, port: int, timeout: float = 3) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout) as c:
            return c.recv(100).decode()
    except OSError as err:
        return f"FAILED {type(err).__name__} {err}"


def udp_from_host(host: str, port: int, timeout: float = 3) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(b"ping", (host, port))
        try:
            return s.recv(100).decode()
        except OSError as err:
            return f"FAILED {type(err).__name__} {err}"


@dataclass
class Outside:
    address: str  # the outside server's address
    host_address: str  # the host's address on the link to it (what masquerade makes the source)


@pytest.fixture
def outside(env):
    """A stand-in for the world beyond the host: a namespace behind a veth with its own subnet.

    The subnet comes from orch's IPAM (so it is free on this machine); its host route then
    keeps orch's networks away from it. A TCP server there answers "outside <peer address>".
    """
    from orch.net import ipam, netns

    k = env.networks.kernel
    subnet = ipam.compute_subnet(env.networks.state.ipam, k.host_routes())
    hosts = list(subnet.hosts())
    host_ip, out_ip = str(hosts[0]), str(hosts[1])
    host_end, out_end = env.prefix + "o", env.prefix + "p"
    path = str(env.run_dir / "outside.ns")
    proc = None
    try:
        netns.create(path)
        ip = ["ip"]
        subprocess.run(ip + ["link", "add", host_end, "type", "veth", "peer", "name", out_end, "netns", path], check=True)
        subprocess.run(ip + ["addr", "add", f"{host_ip}/{subnet.prefixlen}", "dev", host_end], check=True)
        subprocess.run(ip + ["link", "set", host_end, "up"], check=True)
        inside = ["nsenter", f"--net={path}", "ip"]
        subprocess.run(inside + ["addr", "add", f"{out_ip}/{subnet.prefixlen}", "dev", out_end], check=True)
        subprocess.run(inside + ["link", "set", out_end, "up"], check=True)
        code = textwrap.dedent(TCP_SERVER.format(port=7100, name="outside"))
        proc = subprocess.Popen(["nsenter", f"--net={path}", PYTHON, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        yield Outside(out_ip, host_ip)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        netns.remove(path)
