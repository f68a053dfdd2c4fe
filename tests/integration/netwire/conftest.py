"""One node for the networks-and-volumes tests, driven through the real CLI, agent and supervisor.

The node is E's `OrchNode` (tests/integration/agent/conftest.py) with its own ORCH_NET_PREFIX,
so its nftables table and bridge names cannot collide with another node on this machine.
After every test the containers, user networks and volumes it made are removed and the test
checks that no veth, namespace file, published-port rule or mount is left; at the end of the
module the agent and supervisor stop, the default bridge and the table are deleted, and the
module checks that no link of its prefix and no mount under its directory remain.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.processes import remove_node_cgroups, stop_process

_AGENT = Path(__file__).resolve().parents[1] / "agent" / "conftest.py"
_spec = importlib.util.spec_from_file_location("orch_agent_test_node", _AGENT)
_agent = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_agent)
OrchNode = _agent.OrchNode

# The host's /usr, read-only, gives a busybox container a Python (for UDP and the bench).
HOST_PYTHON = ["-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro"]


def links_with_prefix(prefix: str) -> list[str]:
    return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(prefix))


def nft_table(table: str) -> str | None:
    proc = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def host_address() -> str:
    """This host's address on its default route (connect() on UDP sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        return s.getsockname()[0]


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


class NetNode(OrchNode):
    def __init__(self, base: Path, prefix: str):
        super().__init__(base)
        self.prefix = prefix
        self.env["ORCH_NET_PREFIX"] = prefix

    def ok(self, *args, **kw) -> str:
        return self.orch(*args, **kw).stdout

    def fails(self, *args, **kw) -> str:
        proc = self.orch(*args, check=False, **kw)
        assert proc.returncode != 0, f"orch {' '.join(args)} should have failed: {proc.stdout}"
        return proc.stderr

    def net_state(self) -> dict:
        try:
            return json.loads((self.root / "networks" / "state.json").read_text())
        except FileNotFoundError:
            return {}

    def bridges(self) -> dict[str, str]:
        return {name: n["bridge"] for name, n in self.net_state().get("networks", {}).items()}

    def leftovers(self) -> list[str]:
        """What a test must not leave: namespaces, veths on our bridges, published-port rules, mounts."""
        found = []
        netns = self.run_dir / "netns"
        if netns.is_dir() and any(netns.iterdir()):
            found.append(f"namespace files: {sorted(p.name for p in netns.iterdir())}")
        for name, bridge in self.bridges().items():
            ports = os.listdir(f"/sys/class/net/{bridge}/brif") if os.path.isdir(f"/sys/class/net/{bridge}/brif") else []
            if ports:
                found.append(f"veths on bridge {bridge} of network {name}: {ports}")
        table = nft_table(self.prefix) or ""
        if "dnat to" in table:
            found.append(f"published-port rules in table {self.prefix}")
        mounts = [line.split()[1] for line in open("/proc/self/mounts") if str(self.base) in line]
        if mounts:
            found.append(f"mounts: {mounts}")
        return found


@pytest.fixture(scope="module")
def node():
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, bridges, nftables); run as root, as CI does")
    base = Path(tempfile.mkdtemp(prefix="orch-netwire-test-"))
    n = NetNode(base, "orchW" + secrets.token_hex(2))
    try:
        n.root.mkdir()
        from orch.node.runtime.images import ImageStore
        from tests.integration.build.conftest import cached_base

        ImageStore(n.root).load(cached_base("busybox"))  # the bootstrap's image, made once per machine
        n.orch("ps")  # the first command starts the agent
        yield n
    finally:
        try:
            _clean(n)
        finally:
            sup = n.supervisor_pid()
            stop_process(n.agent_pid())
            stop_process(sup)
            remove_node_cgroups(n.root)
            bridges = n.bridges()
            # The default bridge stays between agents, as docker0 does; the test node deletes it.
            for bridge in bridges.values():
                subprocess.run(["ip", "link", "del", bridge], capture_output=True)
            subprocess.run(["nft", "delete", "table", "ip", n.prefix], capture_output=True)
            links = links_with_prefix(n.prefix)
            mounts = [line for line in open("/proc/self/mounts") if str(base) in line]
            shutil.rmtree(base, ignore_errors=True)
            assert not links, f"links left behind: {links}"
            assert not mounts, f"mounts left behind: {mounts}"


def _clean(n: NetNode) -> None:
    ids = n.orch("ps", "-aq", "--no-trunc", check=False).stdout.split()
    if ids:
        n.orch("rm", "-f", "-v", *ids, check=False)
    for name in n.orch("network", "ls", "--format", "{{.Name}}", check=False).stdout.split():
        if name != "bridge":
            n.orch("network", "rm", name, check=False)
    vols = n.orch("volume", "ls", "-q", check=False).stdout.split()
    if vols:
        n.orch("volume", "rm", *vols, check=False)


@pytest.fixture(autouse=True)
def clean_after(node):
    """Every test ends with nothing of its own left: containers, networks, volumes, and what
    they made in the kernel."""
    yield
    _clean(node)
    try:
        node.wait_for(lambda: not node.leftovers(), timeout=5, what="the test's networking to be released")
    except AssertionError:
        pass
    assert node.leftovers() == []


class Outside:
    def __init__(self, address: str, host_address: str):
        self.address, self.host_address = address, host_address


OUTSIDE_SERVER = """
import socket
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 7100)); srv.listen(16)
print("ready", flush=True)
while True:
    conn, peer = srv.accept()
    conn.recv(1000)
    conn.sendall(("outside " + peer[0] + "\\n").encode()); conn.close()
"""


@pytest.fixture
def outside(node):
    """A stand-in for the world beyond the host: a namespace behind a veth, with a TCP server
    on port 7100 that answers "outside <client address>". Its subnet is one orch's IPAM would
    choose now; its route then keeps orch's networks away from it."""
    import sys

    from orch.net import ipam, netns
    from orch.net.kernel import RealKernel

    subnet = ipam.compute_subnet(ipam.IpamState(), RealKernel().host_routes())
    hosts = list(subnet.hosts())
    host_ip, out_ip = str(hosts[0]), str(hosts[1])
    host_end, out_end = node.prefix + "o", node.prefix + "p"
    path = str(node.base / "outside.ns")
    proc = None
    try:
        netns.create(path)
        subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", out_end, "netns", path], check=True)
        subprocess.run(["ip", "addr", "add", f"{host_ip}/{subnet.prefixlen}", "dev", host_end], check=True)
        subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
        inside = ["nsenter", f"--net={path}", "ip"]
        subprocess.run(inside + ["addr", "add", f"{out_ip}/{subnet.prefixlen}", "dev", out_end], check=True)
        subprocess.run(inside + ["link", "set", out_end, "up"], check=True)
        proc = subprocess.Popen(["nsenter", f"--net={path}", sys.executable, "-c", OUTSIDE_SERVER], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        yield Outside(out_ip, host_ip)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        netns.remove(path)
