"""`kill -9` of the node supervisor (issue 10): its containers keep running, the next
supervisor adopts them, nothing starts them a second time, their logs go on, `rm -f` leaves no
process; a container that ended while no supervisor watched reports 255, as docker does."""

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from orch.node.runtime.cgroups import Cgroups, node_cgroup_parent

pytestmark = pytest.mark.privileged

# Each copy of the writer draws its own token, so two copies writing one volume show as two.
WRITER = ('t=$(cat /proc/sys/kernel/random/uuid); while true; do echo "$t" >> /data/log; echo "tick $t"; '
          "usleep 20000; done")


def name():
    return "t" + uuid.uuid4().hex[:10]


def writers(log: Path, last: int = 40) -> set[str]:
    lines = log.read_text().split()
    return set(lines[-last:])


def cgroup_pids(node, cid) -> list[int]:
    return Cgroups().pids(f"{node_cgroup_parent(node.root)}/{cid}")


def alive(pid: int) -> bool:
    """Running, not a zombie: an adopted pid 1's parent is the host's init, which reaps it
    in its own time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def kill_supervisor(node) -> int:
    old = node.supervisor_pid()
    os.kill(old, signal.SIGKILL)
    node.wait_for(lambda: node.supervisor_pid() not in (None, old), 20, "the agent to start a new supervisor")
    return old


def grows(node, log: Path, count: int = 5) -> None:
    size = len(log.read_text().split())
    node.wait_for(lambda: len(log.read_text().split()) >= size + count, 10, "the writer to go on writing")


def test_containers_survive_a_supervisor_kill_and_are_never_started_twice(node):
    n, volume = name(), name()
    node.orch("run", "-d", "--name", n, "--restart", "always", "-v", f"{volume}:/data", "busybox", "sh", "-c", WRITER)
    log = Path(node.orch("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip()) / "log"
    try:
        node.wait_for(lambda: log.exists() and len(log.read_text().split()) >= 5, 10, "the first lines")
        before = node.inspect(n)["State"]
        token = writers(log).pop()
        cid = node.inspect(n)["Id"]
        kill_supervisor(node)
        # The container lived through it, and the new supervisor adopted it: same pid.
        node.wait_for(lambda: node.inspect(n)["State"]["Pid"] == before["Pid"] and node.inspect(n)["State"]["Status"] == "running",
                      10, "the adoption")
        assert alive(before["Pid"])
        # Neither `start` nor the restart policy makes a second copy.
        node.orch("start", n)
        grows(node, log, 20)
        assert writers(log) == {token}
        state = node.inspect(n)["State"]
        assert (state["Status"], state["Pid"], state["StartedAt"]) == ("running", before["Pid"], before["StartedAt"])
        # The output pipe outlived the supervisor (the agent held a copy): logs go on.
        node.wait_for(lambda: node.orch("logs", "--tail", "3", n).stdout.count(f"tick {token}") == 3, 10, "fresh log lines")
        count = len(node.orch("logs", n).stdout.splitlines())
        grows(node, log, 10)
        assert len(node.orch("logs", n).stdout.splitlines()) > count
        # `stop` and `rm -f` reach the adopted container; nothing of it is left.
        assert cgroup_pids(node, cid)
        node.orch("rm", "-f", n)
        assert cgroup_pids(node, cid) == [] and not alive(before["Pid"])
        size = len(log.read_text().split())
        time.sleep(0.2)  # a writer left behind would add a line every 20 ms
        assert len(log.read_text().split()) == size
    finally:
        node.orch("rm", "-f", n, check=False)
        node.orch("volume", "rm", volume, check=False)


def test_a_container_that_ends_while_no_supervisor_watches_reports_255(node):
    n = name()
    node.orch("run", "-d", "--name", n, "busybox", "sleep", "1000")
    try:
        pid = node.inspect(n)["State"]["Pid"]
        # Agent and supervisor both gone (the agent would start a new supervisor at once),
        # then the container's pid 1 ends: nobody sees how.
        agent = node.agent_pid()
        supervisor = node.supervisor_pid()
        os.kill(agent, signal.SIGKILL)
        os.kill(supervisor, signal.SIGKILL)
        node.wait_for(lambda: not alive(supervisor), 10, "the supervisor to die")
        os.kill(pid, signal.SIGKILL)
        node.wait_for(lambda: not alive(pid), 10, "the container to die")
        state = node.inspect(n)["State"]  # the CLI starts the agent again, which adopts
        assert (state["Status"], state["ExitCode"]) == ("exited", 255)
        assert "exit status is unknown" in state["Error"]
        # The cgroup went with the adoption, and the container starts again normally.
        assert cgroup_pids(node, node.inspect(n)["Id"]) == []
        node.orch("start", n)
        assert node.inspect(n)["State"]["Status"] == "running"
    finally:
        node.orch("rm", "-f", n, check=False)


def test_a_start_is_refused_while_the_cgroup_still_has_processes(node):
    n = name()
    node.orch("run", "-d", "--name", n, "busybox", "sleep", "1000")
    try:
        cid, pid = node.inspect(n)["Id"], node.inspect(n)["State"]["Pid"]
        # A supervisor that lost track of it (here: the agent is told nothing and the
        # supervisor is asked directly) must not start a second copy beside it.
        from orch.node.runtime import superproto

        sock = str(node.run_dir / "supervisor.sock")
        config = str(node.root / "containers" / cid / "config.json")
        with pytest.raises(Exception, match="already running"):
            superproto.call(sock, {"op": "start", "id": cid, "config": config})
        kill_supervisor(node)
        node.wait_for(lambda: node.inspect(n)["State"]["Pid"] == pid, 10, "the adoption")
    finally:
        node.orch("rm", "-f", n, check=False)
