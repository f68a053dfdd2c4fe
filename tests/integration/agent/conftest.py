"""One node for the agent's privileged tests: ORCH_ROOT and ORCH_RUN in a temporary
directory, busybox:latest made by the store's bootstrap (once per machine: build/conftest.py
cached_base), and one agent (with its supervisor) started through the CLI the way a user's
first command starts it.

At the end every container is removed, the agent and supervisor are stopped, and the test
checks that no process, cgroup, mount or socket of this node is left.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.processes import remove_node_cgroups, remove_node_networks, stop_process

from orch.node.runtime import superproto

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable


class OrchNode:
    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        self.run_dir = base / "run"
        # ORCH_NET_PREFIX: this node's own nftables table and bridge names (see remove_node_networks).
        self.net_prefix = "orchA" + os.urandom(2).hex()
        self.env = dict(os.environ, ORCH_ROOT=str(self.root), ORCH_RUN=str(self.run_dir), ORCH_NET_PREFIX=self.net_prefix,
                        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))

    def orch(self, *args, check=True, timeout=60, input=None, env=None, cwd=None) -> subprocess.CompletedProcess:
        proc = subprocess.run([PYTHON, "-m", "orch", *args], env=dict(self.env, **(env or {})), capture_output=True, text=True,
                              timeout=timeout, input=input, cwd=cwd or self.base)
        if check and proc.returncode != 0:
            log = self.root / "agent.log"
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:]) if "agent exited" in proc.stderr and log.exists() else ""
            raise AssertionError(f"orch {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
                                 + (f"\nagent.log (last lines):\n{tail}" if tail else ""))
        return proc

    def popen(self, *args, **kw) -> subprocess.Popen:
        return subprocess.Popen([PYTHON, "-m", "orch", *args], env=self.env, cwd=self.base, **kw)

    def inspect(self, ref: str) -> dict:
        return json.loads(self.orch("inspect", ref).stdout)[0]

    def agent_pid(self) -> int | None:
        try:
            return int((self.run_dir / "agent.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def supervisor_pid(self) -> int | None:
        try:
            return superproto.call(str(self.run_dir / "supervisor.sock"), {"op": "ping"}, timeout=2)["pid"]
        except Exception:
            return None

    def wait_for(self, predicate, timeout=10.0, what="a condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")




def _orch_cgroups(root, ids) -> list[str]:
    from orch.node.runtime.cgroups import node_cgroup_parent

    found = []
    for controller in ("memory", "pids", "cpu", "freezer", "cpuacct", "devices", "blkio", "cpuset", "unified", "systemd"):
        for cid in ids:
            path = f"/sys/fs/cgroup/{controller}/{node_cgroup_parent(root)}/{cid}"
            if os.path.exists(path):
                found.append(path)
    return found



@pytest.fixture(scope="session")
def node():
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, mounts, cgroups); run as root, as CI does")
    # `timeout` and CI runners stop a hung run with SIGTERM, which would end pytest without
    # running this teardown and leave the agent and supervisor behind; as SIGINT, pytest
    # unwinds and tears down.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    base = Path(tempfile.mkdtemp(prefix="orch-agent-test-"))
    n = OrchNode(base)
    seen_ids: set[str] = set()
    try:
        n.root.mkdir()
        from orch.node.runtime.images import ImageStore
        from tests.integration.build.conftest import cached_base

        ImageStore(n.root).load(cached_base("busybox"))  # the bootstrap's image, made once per machine
        n.orch("ps")  # the first command starts the agent
        assert n.agent_pid() and n.supervisor_pid()
        n.seen_ids = seen_ids
        yield n
    finally:
        try:
            ids = n.orch("ps", "-aq", "--no-trunc", check=False).stdout.split()
            seen_ids.update(ids)
            if ids:
                n.orch("rm", "-f", *ids, check=False)
        finally:
            sup = n.supervisor_pid()
            stop_process(n.agent_pid())
            stop_process(sup)
            remove_node_networks(n.root, n.net_prefix)
            remove_node_cgroups(n.root)
        signal.signal(signal.SIGTERM, previous)
        if (n.root / "containers").exists():
            seen_ids.update(p.name for p in (n.root / "containers").glob("*"))
        leftovers = _orch_cgroups(n.root, seen_ids)
        mounts = [line for line in open("/proc/self/mounts") if str(base) in line]
        sockets = list(n.run_dir.glob("*.sock")) if n.run_dir.exists() else []
        shutil.rmtree(base, ignore_errors=True)
        assert not leftovers, f"cgroups left behind: {leftovers}"
        assert not mounts, f"mounts left behind: {mounts}"
        assert not sockets, f"sockets left behind: {sockets}"
