"""The node's store is root's alone (orch.paths): a local user reaches nothing a container left
on the host, neither a setuid-root program nor a device node, in a volume or in an upper dir;
an older install's loose modes are fixed when the agent starts; and containers that run as
another user than root still read their root and volumes, in `run` and in builds.

The attacker is `nobody`, through setpriv, running the system's Python (this test's own
interpreter may live under /root, which nobody cannot reach either). ORCH_ROOT's parent is
opened to 0755 for the test, as /var/lib is (the test node's temporary directory is 0700, which
would hide everything whatever orch did).
"""

import json
import os
import stat
import subprocess

import pytest

from tests.integration.processes import alive, stop_process

from orch import paths

pytestmark = pytest.mark.privileged

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c"]

# For each path: what stat, open and execute give a user who is not root ("ok" or the errno's
# name); for an executable that runs, what `id -u` said through it (0: root through setuid).
PROBE = """
import errno, json, os, subprocess, sys
out = {}
for path in sys.argv[1:]:
    seen = {}
    for what, act in (("stat", lambda: os.stat(path)), ("open", lambda: os.close(os.open(path, os.O_RDONLY)))):
        try:
            act()
            seen[what] = "ok"
        except OSError as err:
            seen[what] = errno.errorcode[err.errno]
    if not path.endswith("zero"):
        try:
            seen["exec"] = "ok: id -u = " + subprocess.run([path, "id", "-u"], capture_output=True, text=True).stdout.strip()
        except OSError as err:
            seen["exec"] = errno.errorcode[err.errno]
    out[path] = seen
print(json.dumps(out))
"""

LEAVE = ("cp /bin/busybox /x && chmod 4755 /x && mknod -m 666 /zero c 1 5 && "
         "cp /bin/busybox /loot/x && chmod 4755 /loot/x && mknod -m 666 /loot/zero c 1 5 && "
         "touch /loot/done && exec sleep 600")




def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_parent(node):
    os.chmod(node.base, 0o755)
    try:
        yield
    finally:
        os.chmod(node.base, 0o700)


def test_an_older_installs_modes_are_fixed_at_agent_start(node, open_parent):
    root, run = node.root, node.run_dir
    # What an orch before this one left: everything 0755, logs 0644.
    loose = [root, run] + [root / d for d in paths.STORE_DIRS if (root / d).is_dir()]
    for d in loose:
        os.chmod(d, 0o755)
    for log in paths.LOGS:
        if (root / log).exists():
            os.chmod(root / log, 0o644)
    pid = node.agent_pid()
    stop_process(pid)  # SIGTERM, and SIGKILL after 5 s: wait until it is gone and its lock free
    node.wait_for(lambda: not alive(pid), timeout=15, what=f"the agent (pid {pid}) to exit")
    node.orch("ps")  # starts the agent again
    assert {str(d): oct(mode(d)) for d in loose} == {str(d): "0o700" for d in loose}
    assert {log: oct(mode(root / log)) for log in paths.LOGS} == {log: "0o600" for log in paths.LOGS}
    for sock in ("orch.sock", "run.sock", "supervisor.sock"):
        assert mode(run / sock) == 0o600, sock


def test_a_local_user_reaches_nothing_a_container_left(node, open_parent, tmp_path):
    node.orch("volume", "create", "loot")
    cid = node.orch("run", "-d", "-v", "loot:/loot", "busybox", "sh", "-c", LEAVE).stdout.strip()
    try:
        data = node.root / "volumes" / "loot" / "_data"
        node.wait_for(lambda: (data / "done").exists(), what="the container to leave its files")
        uppers = list((node.root / "snapshots" / "active").glob("*/fs/x"))
        assert len(uppers) == 1, uppers
        upper = uppers[0].parent
        targets = [str(p) for p in (data / "x", data / "zero", upper / "x", upper / "zero")]
        assert stat.S_ISCHR(os.stat(data / "zero").st_mode) and os.stat(upper / "x").st_mode & stat.S_ISUID
        probe = subprocess.run(NOBODY + [PROBE, *targets], capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
        reached = json.loads(probe.stdout)
        refused = {path: {what: "EACCES" for what in seen} for path, seen in reached.items()}
        assert reached == refused, f"a local user reaches what a container left: {reached}"
    finally:
        node.orch("rm", "-f", cid)
        node.orch("volume", "rm", "loot")


def test_containers_of_other_users_still_read_their_root_and_volumes(node, tmp_path):
    """Their root and volumes are reached through the container's mounts, which root made, so
    the store's 0700 is never in their way: in `run`, and in a build's RUN steps."""
    node.orch("volume", "create", "shared")
    try:
        node.orch("run", "--rm", "-v", "shared:/data", "busybox", "sh", "-c", "echo hello > /data/greeting")
        out = node.orch("run", "--rm", "--user", "1000:1000", "-v", "shared:/data", "busybox", "sh", "-c",
                        "id -u; ls / >/dev/null && cat /etc/passwd >/dev/null && cat /data/greeting && ls /data").stdout
        assert out.split() == ["1000", "hello", "greeting"]
        (tmp_path / "Dockerfile").write_text("FROM busybox\nUSER 1000\nRUN id -u > /tmp/uid && ls /bin/busybox && cat /tmp/uid\n"
                                             "CMD [\"cat\", \"/tmp/uid\"]\n")
        node.orch("build", "-t", "store-private-test:1", str(tmp_path))
        assert node.orch("run", "--rm", "store-private-test:1").stdout.strip() == "1000"
    finally:
        node.orch("rmi", "-f", "store-private-test:1", check=False)
        node.orch("volume", "rm", "shared")
