"""`orch run` with --cap-add, --cap-drop, --read-only, --sysctl and --ulimit, through the CLI, the
agent and the supervisor; what `inspect` shows; one-line refusals."""

import uuid

import pytest

pytestmark = pytest.mark.privileged

NET_ADMIN, NET_RAW = 1 << 12, 1 << 13
DEFAULT_MASK = 0xA80425FB


def name():
    return "t" + uuid.uuid4().hex[:10]


def cap_eff(text: str) -> int:
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("CapEff:")), 16)


def test_capabilities_reach_the_program_and_exec(node):
    n = name()
    node.orch("run", "-d", "--name", n, "--cap-add", "net_admin", "--cap-drop", "CAP_NET_RAW", "busybox", "sleep", "100")
    try:
        host = node.inspect(n)["HostConfig"]
        assert (host["CapAdd"], host["CapDrop"], host["Privileged"]) == (["CAP_NET_ADMIN"], ["CAP_NET_RAW"], False)
        out = node.orch("exec", n, "sh", "-c", "grep CapEff /proc/1/status; grep CapEff /proc/self/status; "
                        "ip link add xx0 type veth peer name xx1 && echo added; ping -c 1 -W 1 127.0.0.1 2>&1; true").stdout
        lines = out.splitlines()
        assert cap_eff(lines[0]) == cap_eff(lines[1]) == (DEFAULT_MASK | NET_ADMIN) & ~NET_RAW
        assert "added" in out and "permission denied" in out
    finally:
        node.orch("rm", "-f", n)


def test_read_only_root_with_a_tmpfs_and_a_volume(node):
    volume = name()
    out = node.orch("run", "--rm", "--read-only", "--tmpfs", "/tmp", "-v", f"{volume}:/data", "busybox", "sh", "-c",
                    "touch /x 2>&1; touch /tmp/a && echo tmp; touch /data/a && echo data; touch /dev/shm/a && echo shm; "
                    "cat /etc/hostname >/dev/null && echo hostname; { echo >> /etc/hosts; } 2>&1; true").stdout
    assert out.splitlines() == ["touch: /x: Read-only file system", "tmp", "data", "shm", "hostname",
                                "sh: can't create /etc/hosts: Read-only file system"]
    node.orch("volume", "rm", volume)


def test_sysctls_in_the_containers_network_namespace(node):
    host = open("/proc/sys/net/core/somaxconn").read()
    value = "778" if host.strip() == "777" else "777"
    out = node.orch("run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", f"net.core.somaxconn={value}", "busybox",
                    "cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/core/somaxconn").stdout
    assert out.split() == ["1", value]
    assert open("/proc/sys/net/core/somaxconn").read() == host


def test_ulimits_and_inspect(node):
    n = name()
    node.orch("create", "--name", n, "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=300", "--read-only",
              "--sysctl", "kernel.shmmni=1234", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u")
    try:
        host = node.inspect(n)["HostConfig"]
        assert host["Ulimits"] == [{"Name": "nofile", "Hard": 2048, "Soft": 1024}, {"Name": "nproc", "Hard": 300, "Soft": 300}]
        assert (host["ReadonlyRootfs"], host["Sysctls"], host["CapAdd"]) == (True, {"kernel.shmmni": "1234"}, None)
        assert node.orch("start", "-a", n).stdout.split() == ["1024", "2048", "300"]
    finally:
        node.orch("rm", "-f", n)


@pytest.mark.parametrize("args, code, message", [
    (("--cap-add", "FLY"), 1, "orch: invalid --cap-add 'FLY': unknown capability CAP_FLY"),
    (("--cap-add", "SYS_RESOURCE"), 1, "orch: capability CAP_SYS_RESOURCE is not available on this node"),
    (("--sysctl", "vm.swappiness=1"), 1, "orch: invalid --sysctl 'vm.swappiness=1': sysctl 'vm.swappiness' is not whitelisted"),
    (("--network", "host", "--sysctl", "net.ipv4.ip_forward=1"), 1, "is not allowed in the host network namespace"),
    (("--ulimit", "nofile=10:5"), 1, "orch: invalid --ulimit 'nofile=10:5': nofile soft limit must be less than or equal"),
    (("--privileged",), 1, "orch: --privileged is not supported by orch"),
])
def test_refusals_are_one_line(node, args, code, message):
    proc = node.orch("run", "--rm", *args, "busybox", "true", check=False)
    assert (proc.returncode, proc.stderr.count("\n")) == (code, 1) and message in proc.stderr


def test_a_hard_limit_above_the_nodes_fails_cleanly(node):
    import resource

    from orch.node.runtime.kernel import capget_effective

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or capget_effective() & (1 << 24):
        pytest.skip("this node may raise its nofile hard limit (CAP_SYS_RESOURCE or no limit): the refusal cannot be shown")
    n = name()
    proc = node.orch("run", "--name", n, "--ulimit", f"nofile=1024:{hard + 1}", "busybox", "true", check=False)
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1
    assert f"the node's hard limit is {hard}" in proc.stderr and f"use a hard limit of at most {hard}" in proc.stderr
    assert node.inspect(n)["State"]["Status"] == "created"
    node.orch("rm", n)


def probe(node, *args, attempts=("keyctl", "unshare_user", "io_uring_setup", "userfaultfd", "personality")):
    from tests.integration.probe import parse, probe_binary

    proc = node.orch("run", "--rm", "-v", f"{probe_binary()}:/probe:ro", *args, "busybox", "/probe", *attempts, check=False)
    assert proc.returncode == 0, proc.stderr
    return parse(proc.stdout)


def test_seccomp_by_default_and_security_opt(node, tmp_path):
    # Issue 10: without seccomp a container read and planted keys in host root's keyring and
    # made user namespaces with every capability inside.
    denied = {"keyctl": "errno 1", "unshare_user": "errno 1", "io_uring_setup": "errno 1", "userfaultfd": "errno 1",
              "personality": "errno 1"}
    assert probe(node) == denied
    assert probe(node, "--network", "host") == denied
    assert probe(node, "--security-opt", "seccomp=unconfined")["keyctl"] == "ok"
    # A profile file, relative to the client's directory, in docker's format.
    (tmp_path / "p.json").write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}]}')
    proc = node.orch("run", "--rm", "-v", "{}:/probe:ro".format(__import__("tests.integration.probe", fromlist=["x"]).probe_binary()),
                     "--security-opt", "seccomp=p.json", "busybox", "/probe", "keyctl", "unshare_user", cwd=tmp_path)
    assert proc.stdout.split("\n")[:2] == ["keyctl errno 95", "unshare_user ok"]


def test_no_new_privileges_and_inspect(node):
    n = name()
    node.orch("create", "--name", n, "--security-opt", "no-new-privileges=false", "--security-opt", "seccomp=unconfined",
              "busybox", "grep", "NoNewPrivs", "/proc/self/status")
    try:
        assert node.inspect(n)["HostConfig"]["SecurityOpt"] == ["seccomp=unconfined", "no-new-privileges=false"]
        assert node.orch("start", "-a", n).stdout.split() == ["NoNewPrivs:", "0"]
    finally:
        node.orch("rm", "-f", n)
    assert node.orch("run", "--rm", "busybox", "grep", "NoNewPrivs", "/proc/self/status").stdout.split() == ["NoNewPrivs:", "1"]


@pytest.mark.parametrize("opt, message", [
    ("label=level:s0:c100,c200", "orch: invalid --security-opt 'label=level:s0:c100,c200': this node has no SELinux"),
    ("apparmor=docker-default", "orch: invalid --security-opt 'apparmor=docker-default': this node has no AppArmor"),
    ("seccomp=/nonexistent.json", "orch: invalid --security-opt seccomp=/nonexistent.json: cannot read /nonexistent.json"),
    ("no-new-privileges=perhaps", "no-new-privileges takes true or false"),
])
def test_security_opt_refusals_are_one_line(node, opt, message):
    proc = node.orch("run", "--rm", "--security-opt", opt, "busybox", "true", check=False)
    assert (proc.returncode, proc.stderr.count("\n")) == (1, 1) and message in proc.stderr, proc.stderr


def test_a_host_network_container_cannot_leave_its_cgroups(node):
    # Issue 10: the host's cgroup hierarchies were writable from --network host containers.
    out = node.orch("run", "--rm", "--network", "host", "busybox", "sh", "-c",
                    "for h in pids memory devices freezer blkio; do (echo $$ > /sys/fs/cgroup/$h/cgroup.procs) 2>/dev/null && echo moved-$h; done; "
                    "ls /sys/fs/cgroup/*/release_agent 2>/dev/null; cut -d: -f3 /proc/self/cgroup | sort -u").stdout
    assert out.split() == ["/"], out


def test_with_cap_sys_admin_a_container_sees_only_its_nodes_group_in_the_v2_hierarchy(node):
    # Issue 10 on a hybrid host: containers do not join the v2 hierarchy, so its root in their
    # cgroup namespace was the supervisor's, the host's root, with docker's and podman's groups
    # (cgroup.freeze, cgroup.kill) in reach of a container with CAP_SYS_ADMIN.
    from orch.node.runtime.cgroups import Cgroups

    if Cgroups().mode != "hybrid":
        pytest.skip("only a hybrid host has a v2 hierarchy beside the v1 ones")
    out = node.orch("run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c",
                    "mkdir /v2 && mount -t cgroup2 none /v2 && ls /v2 | grep -c . && for d in /v2/*/; do echo group $d; done; "
                    "grep -c . /v2/cgroup.procs").stdout.split("\n")
    assert not [line for line in out if line.startswith("group /v2/") and line != "group /v2/*/"], out
