"""Flags docker refuses are refused in one line, by the agent (so every client gets them); the
host's pid and ipc namespaces can be shared; names in URLs never reach another route."""

import json
import os

import pytest

from tests.integration.agent.test_commands import name

pytestmark = pytest.mark.privileged


def one_line_error(proc, text):
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and text in proc.stderr, proc.stderr


@pytest.mark.parametrize("flags, text", [
    (["--cpus", "100000"], f"range of CPUs is from 0.01 to {len(os.sched_getaffinity(0))}.00"),
    (["--cpus", "0.001"], "range of CPUs is from 0.01"),
    (["--user", "4294967296"], "uids and gids must be in range 0-2147483647"),
    (["--user", "0:2147483648"], "uids and gids must be in range 0-2147483647"),
    (["-m", "9223372036854775808"], "it is more than 2^63-1 bytes"),
    (["-v", ":/x"], "empty section between colons"),
    (["--pid", "container:other"], "does not join another container's"),
    (["--ipc", "container:other"], "it does not join another container's"),
    (["--ipc", "none"], "nor run one without /dev/shm"),
    (["--userns", "auto"], "it has no user namespace remapping"),
    (["--device", "/dev/fuse"], "--device /dev/fuse is not supported by orch"),
    (["--pid", "host", "--pids", "3"], "unrecognized arguments: --pids"),
])
@pytest.mark.parametrize("command", ["run", "create"])
def test_refused_in_one_line(node, command, flags, text):
    n = name()
    one_line_error(node.orch(command, "--name", n, *flags, "busybox", "true", check=False), text)
    assert n not in node.orch("ps", "-a", "--format", "{{.Names}}").stdout  # nothing was made


def test_exec_with_a_user_out_of_range_is_refused(node):
    n = name()
    node.orch("run", "-d", "--name", n, "busybox", "sleep", "300")
    try:
        one_line_error(node.orch("exec", "-u", "99999999999", n, "true", check=False), "uids and gids must be in range")
    finally:
        node.orch("rm", "-f", n)


def test_pid_and_ipc_host_share_the_hosts_namespaces(node):
    out = node.orch("run", "--rm", "--pid", "host", "--ipc", "host", "--userns", "host", "busybox", "sh", "-c",
                    "for ns in pid ipc uts; do readlink /proc/self/ns/$ns; done; echo $$").stdout.split()
    assert out[:2] == [os.readlink("/proc/self/ns/pid"), os.readlink("/proc/self/ns/ipc")]
    assert out[2] != os.readlink("/proc/self/ns/uts")  # the rest stays the container's own
    assert out[3] != "1"
    n = name()
    node.orch("create", "--name", n, "--pid", "host", "busybox", "true")
    host_config = node.inspect(n)["HostConfig"]
    assert (host_config["PidMode"], host_config["IpcMode"], host_config["UsernsMode"]) == ("host", "private", "")
    node.orch("rm", n)
    default = node.orch("run", "--rm", "busybox", "sh", "-c", "readlink /proc/self/ns/pid; echo $$").stdout.split()
    assert default[0] != os.readlink("/proc/self/ns/pid") and default[1] == "1"


@pytest.mark.parametrize("ref", ["x/kill?signal=9&", "x?force=1", "%2e%2e", "x/../y"])
def test_a_name_in_a_url_never_reaches_another_route(node, ref):
    """`orch stop 'web/kill?signal=9&'` must not kill web: the name is one path segment."""
    n = name()
    node.orch("run", "-d", "--name", n, "busybox", "sleep", "300")
    try:
        bad = ref.replace("x", n)
        for verb in ("stop", "kill", "rm", "logs", "inspect"):
            proc = node.orch(verb, bad, check=False)
            missing = f"no such object: {bad}" if verb == "inspect" else f"no such container: {bad.replace('/', '%2F')}"
            assert proc.returncode != 0 and missing in proc.stderr, (verb, proc.stderr)
        assert json.loads(node.orch("inspect", n).stdout)[0]["State"]["Running"] is True
    finally:
        node.orch("rm", "-f", n)


def test_an_unknown_route_is_not_implemented_not_not_found(node):
    """errdefs' two categories: a missing object is not-found (404), a missing route is
    not-implemented (501); a client must never read one as the other."""
    from orch.client import Client
    from orch.errors import NotFound, NotImplementedHere

    client = Client(str(node.run_dir / "orch.sock"))
    with pytest.raises(NotImplementedHere, match="the agent has no API POST /containers/x/fly"):
        client.call("POST", "/containers/x/fly")
    with pytest.raises(NotImplementedHere, match="the agent has no API PUT /containers/json"):
        client.call("PUT", "/containers/json")
    with pytest.raises(NotFound, match="no such container: x"):
        client.call("POST", "/containers/x/stop")
