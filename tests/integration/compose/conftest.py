"""One node for the stack tests: ORCH_ROOT and ORCH_RUN in a temporary directory, busybox made
by the store's bootstrap (once per machine: build/conftest.py cached_base), and the agent started
by the first CLI command, as a user's is.

Every test writes its stack into its own directory and gets a unique project name; at the end
the node's containers are removed, the agent and supervisor stopped, and the test checks that
no mount, cgroup, veth or nftables rule of this node is left.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.integration.processes import remove_node_cgroups, remove_node_networks, stop_process

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable


class Node:
    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        self.run_dir = base / "run"
        # ORCH_NET_PREFIX: this node's own nftables table and bridge names, so a node of another
        # test run on this machine neither rewrites our port rules nor we theirs.
        self.net_prefix = "orchK" + os.urandom(2).hex()
        self.env = dict(os.environ, ORCH_ROOT=str(self.root), ORCH_RUN=str(self.run_dir), NO_COLOR="1",
                        ORCH_NET_PREFIX=self.net_prefix,
                        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))

    def orch(self, *args, check=True, timeout=120, cwd=None) -> subprocess.CompletedProcess:
        proc = subprocess.run([PYTHON, "-m", "orch", *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or self.base, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"orch {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def inspect(self, ref: str) -> dict:
        return json.loads(self.orch("inspect", ref).stdout)[0]

    def pid(self, name: str) -> int | None:
        try:
            return int((self.run_dir / name).read_text())
        except (FileNotFoundError, ValueError):
            return None




def _supervisor_pid(node: Node):
    from orch.node.runtime import superproto

    try:
        return superproto.call(str(node.run_dir / "supervisor.sock"), {"op": "ping"}, timeout=2)["pid"]
    except Exception:
        return None



@pytest.fixture(scope="session")
def node():
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, mounts, cgroups); run as root, as CI does")
    base = Path(tempfile.mkdtemp(prefix="orch-compose-test-"))
    n = Node(base)
    try:
        n.root.mkdir()
        from orch.node.runtime.images import ImageStore
        from tests.integration.build.conftest import cached_base

        ImageStore(n.root).load(cached_base("busybox"))  # the bootstrap's image, made once per machine
        n.orch("ps")
        yield n
    finally:
        try:
            ids = n.orch("ps", "-aq", "--no-trunc", check=False).stdout.split()
            if ids:
                n.orch("rm", "-f", *ids, check=False)
            for net in n.orch("network", "ls", "-q", check=False).stdout.split():
                n.orch("network", "rm", net, check=False)
        finally:
            sup = _supervisor_pid(n)
            stop_process(n.pid("agent.pid"))
            stop_process(sup)
        remove_node_networks(n.root, n.net_prefix)
        remove_node_cgroups(n.root)
        mounts = [line for line in open("/proc/self/mounts") if str(base) in line]
        shutil.rmtree(base, ignore_errors=True)
        assert not mounts, f"mounts left behind: {mounts}"


@contextlib.contextmanager
def busy_cores():
    """Every core kept busy, as on a machine doing other work: one `yes` per core, killed when
    the block ends, however it ends."""
    procs = []
    try:
        for _ in range(os.cpu_count() or 2):
            procs.append(subprocess.Popen(["yes"], stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stack(node, tmp_path, request):
    """write(yaml) puts a stack file in a fresh directory; the project is taken down after."""
    project = "t" + str(abs(hash(request.node.name)) % 10**8)

    class Stack:
        name = project
        dir = tmp_path
        file = tmp_path / "compose.yaml"

        def write(self, text: str) -> None:
            self.file.write_text(f"name: {project}\n" + text)

        def compose(self, *args, check=True, timeout=120):
            return node.orch("compose", "-f", str(self.file), *args, check=check, timeout=timeout)

        def ids(self) -> dict[str, str]:
            out = self.compose("ps", "-a", "--format", "{{.Name}} {{.ID}}").stdout.split("\n")
            return dict(line.split() for line in out if line.strip())

    s = Stack()
    try:
        yield s
    finally:
        if s.file.exists():
            s.compose("down", "-v", "--remove-orphans", "-t", "0", check=False)  # a test's sleep ignores SIGTERM: no 10 s wait
