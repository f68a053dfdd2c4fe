"""The builder's commands through the real agent and CLI: build with progress, history,
inspect's layers, a container changed by hand, diff, commit, tag, run from the new image."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.processes import remove_node_cgroups, remove_node_networks, stop_process

from orch.node.runtime.images import ImageStore

from .conftest import cached_base

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[3]


class Node:
    def __init__(self, base: Path):
        self.base = base
        # ORCH_NET_PREFIX: builds attach their RUN steps to this node's own default bridge.
        self.net_prefix = "orchC" + os.urandom(2).hex()
        self.env = dict(os.environ, ORCH_ROOT=str(base / "root"), ORCH_RUN=str(base / "run"), ORCH_NET_PREFIX=self.net_prefix,
                        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        self.env.pop("SOURCE_DATE_EPOCH", None)

    def orch(self, *args, check=True) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "orch", *args]
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=120, cwd=self.base)
        if check and proc.returncode != 0:
            raise AssertionError(f"orch {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc




@pytest.fixture(scope="module")
def node():
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, mounts, cgroups); run as root, as CI does")
    base = Path(tempfile.mkdtemp(prefix="orch-build-cli-"))
    n = Node(base)
    (base / "root").mkdir()
    ImageStore(base / "root").load(cached_base("busybox"))
    log = open(base / "agent.log", "wb")
    agent = subprocess.Popen([sys.executable, "-m", "orch", "agent"], env=n.env, cwd=REPO,
                             stdout=log, stderr=log, start_new_session=True)
    try:
        sock = base / "run" / "orch.sock"
        deadline = time.monotonic() + 15
        while not sock.exists() and time.monotonic() < deadline and agent.poll() is None:
            time.sleep(0.02)
        assert sock.exists(), (base / "agent.log").read_text()
        yield n
    finally:
        ids = n.orch("ps", "-aq", "--no-trunc", check=False).stdout.split()
        if ids:
            n.orch("rm", "-f", *ids, check=False)
        sup = None
        try:
            from orch.node.runtime import superproto

            sup = superproto.call(str(base / "run" / "supervisor.sock"), {"op": "ping"}, timeout=2)["pid"]
        except Exception:
            pass
        stop_process(agent.pid)
        agent.wait(timeout=10)
        if sup:
            stop_process(sup)
        remove_node_networks(base / "root", n.net_prefix)
        remove_node_cgroups(base / "root")
        log.close()
        mounts = [line for line in open("/proc/self/mounts") if str(base) in line]
        shutil.rmtree(base, ignore_errors=True)
        assert not mounts, f"mounts left behind: {mounts}"


def test_build_history_inspect_through_the_agent(node):
    ctx = node.base / "hello"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM busybox\nRUN echo building\nCOPY . /app\nWORKDIR /app\nCMD ["cat", "index.js"]\n')
    (ctx / "index.js").write_text("v1\n")
    out = node.orch("build", "-t", "hello:v0.1", str(ctx)).stdout
    assert out.startswith("Step 1/5 : FROM busybox\n") and "\nbuilding\n" in out and out.endswith("Successfully tagged hello:v0.1\n")
    assert node.orch("run", "--rm", "hello:v0.1").stdout == "v1\n"

    (ctx / "index.js").write_text("v2\n")
    out = node.orch("build", "-t", "hello:v0.2", str(ctx)).stdout
    assert "Step 2/5 : RUN echo building\n ---> Using cache\n" in out and "Step 3/5 : COPY . /app\n ---> Using cache" not in out
    assert node.orch("run", "--rm", "hello:v0.2").stdout == "v2\n"

    rows = node.orch("history", "hello:v0.2").stdout.splitlines()
    assert rows[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert "CMD [\"cat\" \"index.js\"]" in rows[1] and "0B" in rows[1]
    assert all(r.startswith("<missing>") for r in rows[2:])
    assert len(rows) == 1 + 5  # the base's import row and four instructions
    assert node.orch("history", "-q", "hello:v0.2").stdout.splitlines()[1:] == ["<missing>"] * 4

    layers = json.loads(node.orch("image", "inspect", "--format", "{{json .RootFS.Layers}}", "hello:v0.2").stdout)
    v1 = json.loads(node.orch("image", "inspect", "--format", "{{json .RootFS.Layers}}", "hello:v0.1").stdout)
    assert len(layers) == 3 and layers[:2] == v1[:2] and layers[2] != v1[2]

    other = node.base / "other.Dockerfile"
    other.write_text("FROM busybox\nARG WHO\nRUN echo \"hi $WHO\" > /hi\nCMD [\"cat\", \"/hi\"]\n")
    quiet = node.orch("build", "-q", "-f", str(other), "--build-arg", "WHO=you", "-t", "quiet", str(ctx)).stdout
    assert quiet.startswith("sha256:") and len(quiet.split()) == 1
    assert node.orch("run", "--rm", "quiet").stdout == "hi you\n"

    failed = node.orch("build", str(node.base / "nowhere"), check=False)
    assert failed.returncode == 1 and failed.stderr.startswith("orch: orch build: unable to prepare context")
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN exit 3\n")
    failed = node.orch("build", str(ctx), check=False)
    assert (failed.returncode, failed.stderr) == (1, "orch: Dockerfile:2: step 2/2 RUN exit 3: exit code 3\n")


def test_a_container_changed_by_hand_diff_commit_tag_run(node):
    node.orch("run", "--name", "figlet-by-hand", "busybox", "sh", "-c",
              "mkdir -p /usr/local/bin && printf '#!/bin/sh\\necho HELLO \"$@\"\\n' > /usr/local/bin/figlet && "
              "chmod +x /usr/local/bin/figlet && rm /etc/group && echo changed >> /etc/passwd")
    diff = node.orch("diff", "figlet-by-hand").stdout.splitlines()
    assert diff == ["C /etc", "D /etc/group", "C /etc/passwd", "C /usr", "A /usr/local", "A /usr/local/bin", "A /usr/local/bin/figlet"]

    image_id = node.orch("commit", "-m", "figlet by hand", "-a", "me", "-c", 'CMD ["figlet", "committed"]', "figlet-by-hand").stdout.strip()
    assert image_id.startswith("sha256:")
    node.orch("tag", image_id, "ourfiglet")
    assert node.orch("run", "--rm", "ourfiglet").stdout == "HELLO committed\n"
    assert node.orch("run", "--rm", "ourfiglet", "figlet", "hello").stdout == "HELLO hello\n"
    assert node.orch("run", "--rm", "ourfiglet", "cat", "/etc/group", check=False).returncode != 0
    history = node.orch("history", "--no-trunc", "ourfiglet").stdout.splitlines()
    assert "figlet by hand" in history[1]

    # commit NAME:TAG in one go, on a running container (paused meanwhile).
    node.orch("run", "-d", "--name", "running", "busybox", "sh", "-c", "echo state > /state; sleep 60")
    deadline = time.monotonic() + 5
    while "A /state" not in node.orch("diff", "running").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    node.orch("commit", "running", "snap:1")
    assert node.orch("run", "--rm", "snap:1", "cat", "/state").stdout == "state\n"
    assert json.loads(node.orch("inspect", "running").stdout)[0]["State"]["Status"] == "running"
    missing = node.orch("diff", "no-such-container", check=False)
    assert missing.returncode == 1 and missing.stderr == "orch: no such container: no-such-container\n"


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` with its size and mtime."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def _wait_for_retired_endpoints(root: Path) -> None:
    """Until the agent has freed the endpoints of containers and build steps that are gone: it
    rewrites networks/state.json once the kernel has deleted their veths."""
    state = root / "networks" / "state.json"
    deadline = time.monotonic() + 20
    while state.exists() and json.loads(state.read_text()).get("retiring") and time.monotonic() < deadline:
        time.sleep(0.05)  # the kernel's veth cleanup: nothing to wait on from here
    assert not (state.exists() and json.loads(state.read_text()).get("retiring")), state.read_text()


def test_a_cached_rebuild_is_answered_by_the_agent_and_writes_nothing(node):
    ctx = node.base / "cached"
    (ctx / "lib").mkdir(parents=True)
    for i in range(20):
        (ctx / "lib" / f"m{i}.txt").write_text(f"module {i}\n")
    (ctx / "app.txt").write_text("v1\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nARG V=1\nCOPY lib/ /lib2/\nRUN echo $V > /v\nCOPY app.txt /\nCMD [\"cat\", \"/app.txt\"]\n")
    first = node.orch("build", "-q", "-t", "cached:1", str(ctx)).stdout.strip()
    root = node.base / "root"
    _wait_for_retired_endpoints(root)  # the RUN step's (and earlier tests') network release ends with a write
    before = _files(root)
    traced = subprocess.run([sys.executable, "-m", "orch", "build", "-q", "-t", "cached:1", str(ctx)], env=dict(node.env, ORCH_TRACE="1"),
                            capture_output=True, text=True, timeout=120, cwd=node.base)
    assert (traced.returncode, traced.stdout.strip()) == (0, first)
    assert "cached in the agent" in traced.stderr  # no worker process was started
    out = node.orch("build", "-t", "cached:1", str(ctx)).stdout
    assert out.count(" ---> Using cache\n") == 5 and out.endswith(f"Successfully built {first[7:19]}\nSuccessfully tagged cached:1\n")
    assert _files(root) == before  # nothing written: no blob, no record, no cache entry, no sync

    # One file changed: the agent hands the build to a worker, which runs the steps from it on.
    (ctx / "app.txt").write_text("v2\n")
    traced = subprocess.run([sys.executable, "-m", "orch", "build", "-t", "cached:2", str(ctx)], env=dict(node.env, ORCH_TRACE="1"),
                            capture_output=True, text=True, timeout=120, cwd=node.base)
    assert traced.returncode == 0 and "not all cached" in traced.stderr
    assert traced.stdout.count(" ---> Using cache\n") == 3  # ARG, COPY lib/, RUN
    assert node.orch("run", "--rm", "cached:2").stdout == "v2\n"


def test_build_command_line_is_read_by_the_agent(node):
    assert oct(os.stat(node.base / "run" / "build.sock").st_mode & 0o777) == "0o600"  # root only, as run.sock
    help_text = node.orch("build", "--help").stdout
    assert help_text.startswith("usage: orch build") and "--build-arg" in help_text
    misuse = node.orch("build", "--nope", ".", check=False)
    assert (misuse.returncode, misuse.stderr) == (1, "orch: unrecognized arguments: --nope; see 'orch build --help'\n")
    no_path = node.orch("build", check=False)  # was checked in the CLI (tests/unit/test_cli_dispatch.py), now in the agent
    assert (no_path.returncode, no_path.stderr) == (1, "orch: the following arguments are required: PATH; see 'orch build --help'\n")
    missing = node.orch("build", "no-such-dir", check=False)
    assert (missing.returncode, missing.stderr) == (1, "orch: orch build: unable to prepare context: path 'no-such-dir' not found or not a directory\n")
    # Relative paths start at the client's working directory; --build-arg NAME takes the client's environment.
    ctx = node.base / "relative"
    ctx.mkdir()
    (ctx / "other.Dockerfile").write_text("FROM busybox\nARG WHO\nRUN echo \"hi $WHO\" > /who\nCMD [\"cat\", \"/who\"]\n")
    proc = subprocess.run([sys.executable, "-m", "orch", "build", "-q", "-f", "relative/other.Dockerfile", "--build-arg", "WHO",
                           "-t", "rel:1", "relative"], env=dict(node.env, WHO="you"), capture_output=True, text=True, timeout=120,
                          cwd=node.base)
    assert proc.returncode == 0, proc.stderr
    assert node.orch("run", "--rm", "rel:1").stdout == "hi you\n"
    failed = node.base / "failing"
    failed.mkdir()
    (failed / "Dockerfile").write_text("FROM busybox\nRUN exit 3\n")
    bad = node.orch("build", str(failed), check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("orch: Dockerfile:2: step 2/2 RUN exit 3: exit code 3"), bad.stderr


def _workers_of(agent_pid: int) -> list[int]:
    """The agent's build worker processes."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == agent_pid and b"orch.build.worker" in cmdline:
            out.append(int(entry))
    return out


def test_ctrl_c_stops_the_build_and_its_worker(node):
    import signal

    ctx = node.base / "slow"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo started && sleep 60\n")
    agent_pid = int((node.base / "run" / "agent.pid").read_text())
    client = subprocess.Popen([sys.executable, "-m", "orch", "build", "--no-cache", str(ctx)], env=node.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=node.base)
    try:
        seen = b""
        while b"started\n" not in seen:
            chunk = client.stdout.read1(4096)
            assert chunk, f"the build ended early: {client.stderr.read()!r}"
            seen += chunk
        assert _workers_of(agent_pid)
        client.send_signal(signal.SIGINT)
        assert client.wait(timeout=30) == 130
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    deadline = time.monotonic() + 20
    while _workers_of(agent_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _workers_of(agent_pid) == []


def test_build_network_modes_through_the_agent(node):
    # Issue 10: RUN steps ran in the host's network namespace. Now the agent gives each build
    # a namespace on its default bridge; --network none leaves only lo; host needs asking.
    ctx = node.base / "net"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo $(ls /sys/class/net) > /ifaces\nCMD [\"cat\", \"/ifaces\"]\n")
    node.orch("build", "--no-cache", "-t", "net:default", str(ctx))
    assert node.orch("run", "--rm", "net:default").stdout == "eth0 lo\n"
    node.orch("build", "--no-cache", "--network", "none", "-t", "net:none", str(ctx))
    assert node.orch("run", "--rm", "net:none").stdout == "lo\n"
    # The build's namespace is gone with the build: nothing of it is left attached.
    assert not [p for p in (node.base / "run" / "netns").glob("build-*")]
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN --network=host true\n")
    refused = node.orch("build", str(ctx), check=False)
    assert refused.returncode == 1 and "RUN --network=host needs the network.host entitlement" in refused.stderr
    node.orch("build", "--allow", "network.host", str(ctx))
    bad = node.orch("build", "--allow", "security.insecure", str(ctx), check=False)
    assert bad.returncode == 1 and "unknown entitlement 'security.insecure'" in bad.stderr
