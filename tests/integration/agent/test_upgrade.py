"""A node whose state was written by the orch before typed records restarts on this code and
keeps everything.

The old orch is the real one: commit BEFORE_RECORDS's tree (tests/data/upgrade: its `git archive`,
kept in the repository so that a shallow checkout runs the test too), runs its own CLI, agent and supervisor on a fresh node and makes containers
(running, exited, created, stopped by the user), a network, a volume, a published port and a
project's state. Its agent stops; its supervisor, and the containers under it, go on, as they
do when orch is upgraded in place. This code's agent then starts on the same ORCH_ROOT: it reads
the version 1 records, migrates them, adopts what runs, and shows the same `inspect` of every
container, network and volume (the old inspect already left out the private keys, so the two
must be equal); the running container still works, through the old supervisor.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from orch.client import Client
from orch.node.runtime import superproto
from tests.integration.processes import remove_node_cgroups, remove_node_networks, stop_process

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[3]
# The last commit whose records had no version: main when typed records were written.
BEFORE_RECORDS = "1fa95f60e7fa3e30449dab550aa28d510d098a8f"


ARCHIVE = REPO / "tests" / "data" / "upgrade" / f"orch-{BEFORE_RECORDS[:7]}.tar.gz"


def _old_tree(base: Path) -> Path:
    tree = base / "old-orch"
    tree.mkdir()
    subprocess.run(["tar", "-xzf", str(ARCHIVE), "-C", str(tree)], check=True)
    return tree


class Node:
    def __init__(self, base: Path):
        self.base = base
        self.root, self.run_dir = base / "root", base / "run"
        self.prefix = "orchU" + os.urandom(2).hex()
        self.old = _old_tree(base)

    def orch(self, code: Path, *args, check=True) -> subprocess.CompletedProcess:
        env = dict(os.environ, ORCH_ROOT=str(self.root), ORCH_RUN=str(self.run_dir), ORCH_NET_PREFIX=self.prefix, PYTHONPATH=str(code))
        proc = subprocess.run([sys.executable, "-m", "orch", *args], env=env, capture_output=True, text=True, timeout=120, cwd=self.base)
        if check and proc.returncode != 0:
            raise AssertionError(f"orch {' '.join(args)} ({code}) exited {proc.returncode}: {proc.stderr}")
        return proc

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

    def api(self) -> Client:
        return Client(str(self.run_dir / "orch.sock"))


# The old orch made every node's container groups under one parent, `orch` (the default node's
# parent now); this code makes them under node_cgroup_parent(ORCH_ROOT).
OLD_CGROUP_PARENT = "orch"


def _old_parents() -> set[Path]:
    return set(Path("/sys/fs/cgroup").glob(f"*/{OLD_CGROUP_PARENT}"))


@pytest.fixture
def node():
    base = Path(tempfile.mkdtemp(prefix="orch-upgrade-test-"))
    old_parents_before = _old_parents()
    n = Node(base)
    try:
        n.root.mkdir()
        from orch.node.runtime.images import ImageStore
        from tests.integration.build.conftest import cached_base

        ImageStore(n.root).load(cached_base("busybox"))  # the bootstrap's image, made once per machine
        yield n
    finally:
        try:
            ids = n.orch(REPO, "ps", "-aq", "--no-trunc", check=False).stdout.split()
            if ids:
                n.orch(REPO, "rm", "-f", *ids, check=False)
            n.orch(REPO, "volume", "rm", "-f", "upvol", check=False)
        finally:
            sup = n.supervisor_pid()
            stop_process(n.agent_pid())
            stop_process(sup)
            remove_node_networks(n.root, n.prefix)
            remove_node_cgroups(n.root)
            # The old orch's parent, where this test made it (a group still in use stays: rmdir fails).
            for parent in _old_parents() - old_parents_before:
                try:
                    parent.rmdir()
                except OSError:
                    pass
            shutil.rmtree(base, ignore_errors=True)


def _inspect(n: Node, code: Path, kind: str, ref: str) -> dict:
    return json.loads(n.orch(code, *([kind] if kind else []), "inspect", ref).stdout)[0]


def test_a_node_written_by_the_orch_before_typed_records_restarts_and_keeps_everything(node):
    n, old, new = node, node.old, REPO
    name = lambda what: f"up{what}{uuid.uuid4().hex[:6]}"  # noqa: E731
    keep, done, fresh, byuser = name("keep"), name("done"), name("fresh"), name("byuser")
    # -- the old orch makes the node's state ---------------------------------------------------
    n.orch(old, "network", "create", "upnet")
    n.orch(old, "volume", "create", "upvol")
    n.orch(old, "run", "-d", "--name", keep, "--network", "upnet", "--network-alias", "web", "-v", "upvol:/data",
           "-p", "127.0.0.1::80", "--restart", "always", "-l", "tier=front", "busybox", "sh", "-c", "echo kept > /data/f; exec sleep 600")
    assert n.orch(old, "run", "--name", done, "busybox", "sh", "-c", "exit 3", check=False).returncode == 3
    n.orch(old, "create", "--name", fresh, "-e", "A=1", "busybox", "true")
    n.orch(old, "run", "-d", "--name", byuser, "busybox", "sleep", "600")
    n.orch(old, "stop", "-t", "0", byuser)
    n.api().call("PUT", "/projects/upproj/state", {"rolled_back": {"web": {"hash": "h2", "reason": "web-2 is unhealthy", "at": "T"}}})
    containers = [keep, done, fresh, byuser]
    before = {c: _inspect(n, old, "", c) for c in containers}
    networks, volume = _inspect(n, old, "network", "upnet"), _inspect(n, old, "volume", "upvol")
    project = n.api().call("GET", "/projects/upproj/state")
    old_agent, sup = n.agent_pid(), n.supervisor_pid()
    stored = json.loads((n.root / "containers" / before[keep]["Id"] / "state.json").read_text())
    assert "version" not in stored and "_net" in stored and "_cgroup" in stored  # version 1, with private keys
    assert before[keep]["State"]["Running"] and not [k for c in before.values() for k in c if k.startswith("_")]

    # -- upgrade: the old agent stops, its supervisor and containers go on ----------------------
    os.kill(old_agent, signal.SIGTERM)
    for _ in range(500):
        if n.agent_pid() is None:
            break
        subprocess.run(["sleep", "0.02"])  # waiting for a process we signalled to remove its pid file
    assert n.agent_pid() is None and n.supervisor_pid() == sup
    n.orch(new, "ps")  # the first command starts this code's agent
    assert n.agent_pid() not in (None, old_agent) and n.supervisor_pid() == sup

    # -- everything is there, as it was ---------------------------------------------------------
    after = {c: _inspect(n, new, "", c) for c in containers}
    for c in containers:
        assert after[c] == before[c], c
    assert _inspect(n, new, "network", "upnet") == networks
    assert _inspect(n, new, "volume", "upvol") == volume
    assert n.api().call("GET", "/projects/upproj/state") == project
    # The running container works, through the old supervisor: exec, and its published port's rules.
    assert n.orch(new, "exec", keep, "cat", "/data/f").stdout == "kept\n"
    assert n.orch(new, "port", keep).stdout == n.orch(old, "port", keep).stdout
    # The files are in the current format now, private keys apart from docker's view.
    stored = json.loads((n.root / "containers" / before[keep]["Id"] / "state.json").read_text())
    assert stored["version"] == 2 and set(stored) == {"version", "docker", "orch"} and stored["orch"]["cgroup"] == f"orch/{before[keep]['Id']}"
    assert json.loads((n.root / "networks" / "state.json").read_text())["version"] == 2
    # And the node goes on: the exited container starts again and reports, a new one runs.
    assert n.orch(new, "start", "-a", done, check=False).returncode == 3
    assert n.orch(new, "run", "--rm", "--network", "upnet", "busybox", "nslookup", "web").returncode == 0
