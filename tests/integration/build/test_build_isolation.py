"""Issue 10 from a Dockerfile: a RUN step reached the host's cgroups and the host's loopback
(it ran in the host's network namespace with the host's /sys), and had no seccomp. Each test
tries the attack from a RUN step and checks that it failed; the network modes (BuildKit's
`RUN --network=`, the build's default) are checked on the way."""

import shutil
import subprocess
import sys

import pytest

from orch.build.builder import BuildFailed, Builder, BuildRequest
from tests.integration.probe import parse, probe_binary

pytestmark = pytest.mark.privileged


def build(store, ctx, lines, build_network=None, **request):
    return Builder(store, out=lines.append, network=build_network).build(BuildRequest(context=ctx, no_cache=True, **request))


LISTENER = """
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(8)
print(server.getsockname()[1], flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        data = b""
        while b"\\r\\n\\r\\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 8\\r\\n\\r\\nREACHED\\n")
"""


@pytest.fixture
def loopback_service():
    """An HTTP service on the host's 127.0.0.1 only (a process of its own: no thread in the
    process that forks the build's containers); its port."""
    proc = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


CGROUP_ESCAPE = ("RUN for h in pids memory devices freezer blkio; do (echo $$ > /sys/fs/cgroup/$h/cgroup.procs) 2>/dev/null "
                 "&& echo moved-$h; done; ls /sys/fs/cgroup/*/release_agent 2>/dev/null; "
                 "grep -c ' /sys' /proc/mounts; grep ' /sys' /proc/mounts | grep -vc ' ro,'; echo end\n")


@pytest.mark.parametrize("network", ["host", "default", "none"])
def test_a_run_step_cannot_leave_its_cgroups(store, context, build_network, network):
    ctx = context({"Dockerfile": f"FROM busybox\n{CGROUP_ESCAPE.replace('RUN ', f'RUN --network={network} ')}"})
    lines: list[str] = []
    build(store, ctx, lines, build_network, allow=("network.host",))
    at = lines.index("end")
    mounts, writable = int(lines[at - 2]), int(lines[at - 1])
    output = lines[lines.index(next(line for line in lines if line.startswith(" ---> Running in"))) + 1:]
    assert not [line for line in output if line.startswith("moved-") or "release_agent" in line], output
    assert mounts > 3 and writable == 0  # sysfs, the cgroup tmpfs and the hierarchies: all read-only


def test_a_run_step_has_dockers_seccomp_profile(store, context, build_network):
    ctx = context({"Dockerfile": "FROM busybox\nCOPY probe /probe\nRUN /probe keyctl add_key unshare_user io_uring_setup getpid\n"})
    shutil.copy(probe_binary(), ctx / "probe")
    lines: list[str] = []
    build(store, ctx, lines, build_network)
    assert parse("\n".join(lines)) == {"keyctl": "errno 1", "add_key": "errno 1", "unshare_user": "errno 1",
                                       "io_uring_setup": "errno 1", "getpid": "ok"}


def test_the_hosts_loopback_is_out_of_reach_unless_the_host_network_is_allowed(store, context, build_network, loopback_service):
    # (busybox-static 1.35's wget crashes with -T: no timeout is given; a refusal is immediate.)
    reach = f"wget -q -O- http://127.0.0.1:{loopback_service}/ || echo BLOCKED"
    ctx = context({"Dockerfile": f"FROM busybox\nRUN ls /sys/class/net; {reach}\nRUN --network=none ls /sys/class/net; {reach}\n"})
    lines: list[str] = []
    build(store, ctx, lines, build_network)
    first, second = lines.index("Step 2/3 : RUN ls /sys/class/net; " + reach), lines.index(f"Step 3/3 : RUN --network=none ls /sys/class/net; {reach}")
    assert [line for line in lines[first:second] if line in ("eth0", "lo", "BLOCKED", "REACHED")] == ["eth0", "lo", "BLOCKED"]
    assert [line for line in lines[second:] if line in ("eth0", "lo", "BLOCKED", "REACHED")] == ["lo", "BLOCKED"]
    assert sum("Connection refused" in line for line in lines) == 2, lines

    # RUN --network=host needs BuildKit's entitlement.
    host = context({"Dockerfile": f"FROM busybox\nRUN --network=host {reach}\n"}, name="host")
    with pytest.raises(BuildFailed, match="RUN --network=host needs the network.host entitlement; build with --allow network.host"):
        build(store, host, [], build_network)
    lines.clear()
    build(store, host, lines, build_network, allow=("network.host",))
    assert "REACHED" in lines and "BLOCKED" not in lines
    # The build's own --network host sets every step's default.
    lines.clear()
    build(store, context({"Dockerfile": f"FROM busybox\nRUN {reach}\n"}, name="all-host"), lines, build_network, network="host")
    assert "REACHED" in lines
