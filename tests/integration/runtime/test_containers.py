"""Real containers on a busybox rootfs: namespaces, mounts, user, capabilities, limits, exec, pty.

Each test starts the container through `spawn.start` exactly as the supervisor will, reads
what the program printed, and waits for it. The `containers` fixture kills and reaps anything
left and removes the cgroups, also on failure.
"""

import os
import select
import signal
import socket
import statistics
import time
from pathlib import Path

import pytest

from orch.errors import SystemFailure
from orch.node.runtime import spawn
from orch.node.runtime.config import Process, Resources
from orch.node.runtime.init import StartError
from orch.node.runtime.mount import Mount

pytestmark = pytest.mark.privileged


def read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


def run(containers, config, stdin: int | None = None) -> tuple[int, str]:
    """Start `config`, collect stdout+stderr until the program exits; (exit code, output)."""
    r, w = os.pipe()
    try:
        pid = containers.track(spawn.start(config, spawn.Stdio(stdin=stdin, stdout=w, stderr=w)))
    finally:
        os.close(w)
    output = read_all(r)
    return containers.wait(pid), output


def read_pty(master: int) -> str:
    """Everything the pty shows until its last slave closes (then read fails with EIO)."""
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return out.decode().replace("\r", "")


def sh(containers, script: str, **kwargs) -> tuple[int, str]:
    return run(containers, containers.config("sh", "-c", script, **kwargs))


def test_the_program_is_pid_1(containers):
    code, out = sh(containers, "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
    assert code == 0
    assert out.splitlines() == ["1", "sh -c echo $$; cat /proc/1/cmdline | tr '\\0' ' ' "]


def test_hostname_is_set(containers):
    assert sh(containers, "hostname", hostname="web-1") == (0, "web-1\n")


def test_ps_sees_only_the_containers_processes(containers):
    code, out = sh(containers, "ps -o pid,comm; true")
    assert code == 0
    pids = [line.split()[0] for line in out.splitlines()[1:]]
    assert pids[0] == "1" and len(pids) == 2  # sh and ps itself


@pytest.mark.parametrize(
    "user, groups, expected",
    [
        # The kernel keeps the supplementary groups sorted.
        ("", (), "uid=0(root) gid=0(root) groups=0(root)"),
        ("user", (), "uid=1000(user) gid=1000(user) groups=50(staff),1000(user)"),
        ("1000", (), "uid=1000(user) gid=1000(user) groups=50(staff),1000(user)"),
        ("nobody", (), "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"),
        ("1234:777", (), "uid=1234 gid=777 groups=777"),
        ("user:tty", ("staff", "99"), "uid=1000(user) gid=5(tty) groups=5(tty),50(staff),99"),
    ],
)
def test_user_and_groups(containers, user, groups, expected):
    code, out = run(containers, containers.config("id", user=user, additional_groups=groups))
    assert (code, out.strip()) == (0, expected)


def test_env_cwd_and_home(containers):
    # /tmp/work does not exist in the image: it is created, as docker does for -w.
    config = containers.config("sh", "-c", "echo $FOO; pwd; echo $HOME", cwd="/tmp/work", user="user",
                               env=("PATH=/bin", "FOO=bar"))
    assert run(containers, config) == (0, "bar\n/tmp/work\n/home/user\n")


def test_capabilities_and_no_new_privs_for_root(containers):
    code, out = sh(containers, "grep -E '^(CapEff|CapPrm|CapBnd|CapInh|NoNewPrivs)' /proc/self/status")
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert code == 0
    assert fields == {"CapInh": "0000000000000000", "CapPrm": "00000000a80425fb", "CapEff": "00000000a80425fb",
                      "CapBnd": "00000000a80425fb", "NoNewPrivs": "1"}


def test_signals_are_not_ignored_or_blocked(containers):
    # Python ignores SIGPIPE; a container must not inherit that (`yes | head` would hang).
    code, out = sh(containers, "grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -n 1")
    assert (code, out) == (0, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\ny\n")


def test_a_non_root_user_has_no_effective_capabilities(containers):
    code, out = sh(containers, "grep -E '^(CapEff|CapBnd)' /proc/self/status", user="1000")
    assert (code, out) == (0, "CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n")


def test_masked_and_readonly_proc_paths(containers):
    # This kernel has no /proc/kcore (masking skips missing paths); /proc/keys and
    # /proc/timer_list have content on the host and must read empty.
    script = "cat /proc/keys /proc/timer_list | wc -c; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname && echo writable; grep ' /proc/sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1"
    code, out = sh(containers, script)
    lines = out.splitlines()
    assert lines[0] == "0" and lines[1] == "0"
    assert "writable" not in out and "Read-only file system" in out
    assert lines[-1] == "ro"


def test_memory_limit_oom_kills_with_137(containers, cgroups):
    # Doubling a shell variable allocates anonymous memory in pid 1 itself: 10 B * 2^22 = 40 MB.
    config = containers.config("sh", "-c", "x=0123456789; while :; do x=$x$x; done", resources=Resources(memory=20 * 2**20))
    code, _ = run(containers, config)
    assert code == 137
    assert cgroups.oom_killed(config.cgroup_path)


def test_pids_limit_refuses_forks(containers, cgroups):
    config = containers.config("sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 30 & done", resources=Resources(pids=4))
    code, out = run(containers, config)
    # sh and three sleeps fit in 4 pids; the fifth fork fails and the shell gives up.
    assert code == 2 and out == "sh: can't fork: Resource temporarily unavailable\n"
    assert (cgroups.v1["pids"] / config.cgroup_path / "pids.max").read_text() == "4\n"


def test_a_limit_the_kernel_refuses_fails_the_start_and_leaves_no_cgroup(containers, cgroups):
    # memory+swap below memory: the kernel refuses the second write, after the groups exist.
    limit = "memory.memsw.limit_in_bytes" if cgroups.version == "v1" else "memory.swap.max"
    config = containers.config("true", resources=Resources(memory=64 * 1024 * 1024, memory_swap=32 * 1024 * 1024))
    if cgroups.version == "v1" and not (cgroups.v1["memory"] / limit).exists():
        pytest.skip("this kernel has no swap accounting (memory.memsw.*), so there is no swap limit to refuse")
    if cgroups.version == "v2":
        pytest.skip("v2 takes any swap.max (orch writes the difference, never below 0): no limit to refuse")
    with pytest.raises(SystemFailure, match=limit):
        spawn.start(config, spawn.Stdio())
    assert not [d for d in cgroups.dirs(config.cgroup_path) if d.exists()]


def test_cpus_sets_the_cfs_quota(containers, cgroups):
    config = containers.config("sleep", "100", resources=Resources(cpus=0.5))
    pid = containers.track(spawn.start(config, spawn.Stdio()))
    quota = (cgroups.v1["cpu"] / config.cgroup_path / "cpu.cfs_quota_us").read_text().strip()
    period = (cgroups.v1["cpu"] / config.cgroup_path / "cpu.cfs_period_us").read_text().strip()
    assert (quota, period) == ("50000", "100000")
    assert cgroups.pids(config.cgroup_path) == [pid]
    os.kill(pid, signal.SIGKILL)
    assert containers.wait(pid) == 137


def test_freeze_and_thaw(containers, cgroups):
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    config = containers.config("sh", "-c", "read x; echo got $x")
    pid = containers.track(spawn.start(config, spawn.Stdio(stdin=in_r, stdout=out_w)))
    os.close(in_r)
    os.close(out_w)
    cgroups.freeze(config.cgroup_path)
    assert (cgroups.v1["freezer"] / config.cgroup_path / "freezer.state").read_text().strip() == "FROZEN"
    os.write(in_w, b"hi\n")
    # A frozen container cannot answer; 200 ms is ample for a running one to do so.
    assert select.select([out_r], [], [], 0.2)[0] == []
    cgroups.thaw(config.cgroup_path)
    assert read_all(out_r) == "got hi\n"
    os.close(in_w)
    assert containers.wait(pid) == 0


def test_exec_in_a_running_container(containers):
    config = containers.config("sleep", "100", hostname="box")
    pid = containers.track(spawn.start(config, spawn.Stdio()))
    r, w = os.pipe()
    process = Process(args=("sh", "-c", "hostname; ps -o pid,comm; pwd; id -u"), env=config.process.env, cwd="/tmp", user="1000")
    exec_pid = spawn.exec_in(pid, config, process, spawn.Stdio(stdout=w, stderr=w))
    os.close(w)
    out = read_all(r)
    _, status = os.waitpid(exec_pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    lines = out.splitlines()
    assert lines[0] == "box"
    assert lines[2].split() == ["1", "sleep"]
    assert lines[-2:] == ["/tmp", "1000"]


def test_exec_with_a_terminal(containers, cgroups):
    config = containers.config("sleep", "100")
    pid = containers.track(spawn.start(config, spawn.Stdio()))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    process = Process(args=("sh",), env=config.process.env, terminal=True)
    exec_pid = spawn.exec_in(pid, config, process, spawn.Stdio(console_socket=theirs.fileno()))
    theirs.close()
    master = socket.recv_fds(ours, 16, 1)[1][0]
    ours.close()
    # The exec'd shell waits for input on its pty: it is in the container's cgroup.
    assert sorted(cgroups.pids(config.cgroup_path)) == sorted([pid, exec_pid])
    os.write(master, b"echo $((6*7)) $(ps -o pid= | wc -l); exit 5\n")
    text = read_pty(master)
    _, status = os.waitpid(exec_pid, 0)
    assert os.waitstatus_to_exitcode(status) == 5
    # sleep, the exec'd sh, the command substitution's subshell, ps and wc.
    assert "42 5\n" in text


def test_exec_of_a_missing_program_fails_with_127(containers):
    config = containers.config("sleep", "100")
    pid = containers.track(spawn.start(config, spawn.Stdio()))
    process = Process(args=("nosuch",), env=config.process.env)
    with pytest.raises(StartError) as info:
        spawn.exec_in(pid, config, process, spawn.Stdio())
    assert info.value.exit_code == 127
    assert str(info.value) == f'exec in container {config.id}: exec: "nosuch": executable file not found in $PATH'


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("nosuchprog",), 127, 'exec: "nosuchprog": executable file not found in $PATH'),
        (("/bin/nosuch",), 127, 'exec: "/bin/nosuch": stat /bin/nosuch: no such file or directory'),
        (("/etc/passwd",), 126, 'exec: "/etc/passwd": permission denied'),
    ],
)
def test_start_failures_name_the_step_and_leave_nothing(containers, cgroups, args, code, message):
    config = containers.config(*args)
    with pytest.raises(StartError) as info:
        spawn.start(config, spawn.Stdio())
    assert info.value.exit_code == code
    assert str(info.value) == f"start container {config.id}: {message}"
    assert not any(d.exists() for d in cgroups.dirs(config.cgroup_path))


def test_pty_session_over_a_console_socket(containers):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    config = containers.config("sh", terminal=True)
    pid = containers.track(spawn.start(config, spawn.Stdio(console_socket=theirs.fileno())))
    theirs.close()
    _, fds, _, _ = socket.recv_fds(ours, 16, 1)
    ours.close()
    master = fds[0]
    os.write(master, b"tty; echo hi $((40+2)); exit\n")
    text = read_pty(master)
    assert containers.wait(pid) == 0
    assert "hi 42\n" in text and "/dev/pts/0\n" in text


def test_two_hundred_layers_mount(containers, tmp_path):
    layers = []
    for n in range(200):
        layer = tmp_path / "layers" / f"{n:03}"
        (layer / "layers").mkdir(parents=True)
        (layer / "layers" / f"file{n:03}").write_text(str(n))
        layers.append(str(layer))
    # A long path per layer makes the old mount(2) option string far longer than a page.
    assert len(":".join(layers)) > 4096
    config = containers.config("sh", "-c", "ls /layers | wc -l; cat /layers/file199", lowers=[*layers[::-1], str(containers.rootfs)])
    assert run(containers, config) == (0, "200\n199")


@pytest.mark.tools("/usr/bin/tini-static", package="tini")
def test_init_true_runs_tini_as_pid_1(containers):
    code, out = run(containers, containers.config("sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; exit 3", init=True))
    assert code == 3
    assert out.startswith("/sbin/docker-init -- sh -c")


def test_bind_mount_target_symlink_stays_inside_the_root(containers, tmp_path):
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    source = tmp_path / "data"
    source.mkdir()
    (source / "hello").write_text("from the volume")
    config = containers.config("sh", "-c", "cat /escape/hello; touch /escape/x 2>&1 | grep -o Read-only",
                               mounts=[Mount("bind", str(source), "/escape", ("ro",))])
    # The image's /escape is an absolute link to a host path: it must resolve inside the root.
    os.symlink(str(host_dir), Path(config.rootfs).parent / "upper" / "escape")
    assert run(containers, config) == (0, "from the volumeRead-only\n")
    assert list(host_dir.iterdir()) == []


def test_readonly_rootfs(containers):
    code, out = sh(containers, "touch /x 2>&1; touch /tmp/y 2>&1; echo done", readonly_rootfs=True)
    assert "Read-only file system" in out and out.endswith("done\n")


def test_nothing_is_left_behind(containers, cgroups, tmp_path, host_mounts_under):
    config = containers.config("sleep", "100")
    pid = containers.track(spawn.start(config, spawn.Stdio()))
    # While it runs, its overlay, /proc, /dev... are visible in its mount namespace only.
    inside = [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
    assert [m[4] for m in inside if m[m.index("-") + 1] == "overlay"] == ["/"]
    assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"} <= {m[4] for m in inside}
    assert host_mounts_under(tmp_path) == []
    os.kill(pid, signal.SIGKILL)
    containers.wait(pid)
    cgroups.remove(config.cgroup_path)
    assert host_mounts_under(tmp_path) == []
    assert not any(d.exists() for d in cgroups.dirs(config.cgroup_path))


def test_time_from_start_to_exit_of_true(containers, capsys):
    timings = []
    for _ in range(15):
        config = containers.config("true")
        begin = time.perf_counter()
        pid = containers.track(spawn.start(config, spawn.Stdio()))
        assert containers.wait(pid) == 0
        timings.append((time.perf_counter() - begin) * 1000)
        containers.cgroups.remove(config.cgroup_path)
    median = statistics.median(timings)
    with capsys.disabled():
        print(f"\nstart() to exit of `true`: median {median:.1f} ms, min {min(timings):.1f} ms over {len(timings)} runs")


def test_host_network_sees_the_hosts_interfaces(containers):
    config = containers.config("sh", "-c", "ls /sys/class/net; readlink /proc/self/ns/net", namespaces=("pid", "mount", "uts", "ipc"))
    code, out = run(containers, config)
    assert code == 0
    assert out.split() == sorted(os.listdir("/sys/class/net")) + [os.readlink("/proc/self/ns/net")]


def test_own_network_namespace_has_only_loopback_and_it_is_up(containers):
    code, out = sh(containers, "ls /sys/class/net; readlink /proc/self/ns/net; ping -c 1 -W 1 127.0.0.1 >/dev/null && echo ping-ok")
    assert code == 0
    lines = out.split()
    assert lines[0] == "lo" and lines[1] != os.readlink("/proc/self/ns/net")
    assert lines[2] == "ping-ok"


def test_joining_a_prepared_network_namespace(containers):
    import subprocess

    # A helper process holds a fresh network namespace, as networking will prepare one.
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        deadline = time.monotonic() + 5
        while os.readlink(path) == os.readlink("/proc/self/ns/net") and time.monotonic() < deadline:
            time.sleep(0.001)  # unshare has not run yet
        config = containers.config("readlink", "/proc/self/ns/net", netns_path=path,
                                   sysctls={"net.ipv4.ip_local_port_range": "40000 41000"})
        code, out = run(containers, config)
        assert code == 0
        assert out.strip() == os.readlink(path)
        # The sysctl landed in that namespace, not on the host.
        in_ns = subprocess.run(["nsenter", f"--net={path}", "cat", "/proc/sys/net/ipv4/ip_local_port_range"],
                               check=True, capture_output=True, text=True).stdout.split()
        assert in_ns == ["40000", "41000"]
    finally:
        holder.kill()
        holder.wait()


def test_a_host_sysctl_is_refused_before_anything_starts(containers, cgroups):
    from orch.errors import InvalidArgument

    config = containers.config("true", sysctls={"vm.swappiness": "1"})
    with pytest.raises(InvalidArgument):
        spawn.start(config, spawn.Stdio())
    assert not any(d.exists() for d in cgroups.dirs(config.cgroup_path))


def test_a_terminal_without_a_console_socket_is_refused_before_forking(containers, cgroups):
    from orch.errors import InvalidArgument

    config = containers.config("sh", terminal=True)
    with pytest.raises(InvalidArgument, match="no console socket"):
        spawn.start(config, spawn.Stdio())
    assert not any(d.exists() for d in cgroups.dirs(config.cgroup_path))


def test_kill_all_reaches_exec_processes_too(containers, cgroups):
    config = containers.config("sleep", "100")
    pid = containers.track(spawn.start(config, spawn.Stdio()))
    exec_pid = spawn.exec_in(pid, config, Process(args=("sleep", "200"), env=config.process.env), spawn.Stdio())
    assert sorted(cgroups.pids(config.cgroup_path)) == sorted([pid, exec_pid])
    cgroups.kill_all(config.cgroup_path)
    # The exec'd process is our child, not pid 1's: pid 1's death completes only once every
    # process of its namespace is reaped, so it is reaped first.
    _, status = os.waitpid(exec_pid, 0)
    assert os.WTERMSIG(status) == signal.SIGKILL
    assert containers.wait(pid) == 137
    assert not cgroups.oom_killed(config.cgroup_path)
    cgroups.remove(config.cgroup_path)


def test_kill_all_of_a_paused_container(containers, cgroups):
    config = containers.config("sleep", "100")
    pid = containers.track(spawn.start(config, spawn.Stdio()))
    cgroups.freeze(config.cgroup_path)
    assert cgroups.is_frozen(config.cgroup_path)
    cgroups.kill_all(config.cgroup_path)
    assert containers.wait(pid) == 137


def test_kill_all_without_a_pid_namespace_freezes_around_the_kill(containers, cgroups):
    config = containers.config("sh", "-c", "sleep 100 & sleep 100 & wait", namespaces=("mount", "uts", "ipc"))
    pid = containers.track(spawn.start(config, spawn.Stdio()))
    deadline = time.monotonic() + 5
    while len(cgroups.pids(config.cgroup_path)) < 3 and time.monotonic() < deadline:
        time.sleep(0.001)  # the shell is still forking its two sleeps
    assert len(cgroups.pids(config.cgroup_path)) == 3
    cgroups.kill_all(config.cgroup_path)
    assert containers.wait(pid) == 137
    deadline = time.monotonic() + 5
    while cgroups.pids(config.cgroup_path) and time.monotonic() < deadline:
        time.sleep(0.001)  # the orphaned sleeps are reaped by init or by us, the subreaper
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
    assert cgroups.pids(config.cgroup_path) == []


def test_file_bind_and_tmpfs_mounts(containers, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost box\n")
    config = containers.config(
        "sh", "-c", "cat /etc/hosts; grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4; touch /etc/hosts 2>&1 | grep -o Read-only",
        mounts=[Mount("bind", str(hosts), "/etc/hosts", ("ro",)),
                Mount("tmpfs", "tmpfs", "/scratch", ("nosuid", "nodev", "size=1m", "mode=1777"))],
    )
    code, out = run(containers, config)
    assert code == 0
    assert out.splitlines() == ["127.0.0.1 localhost box", "tmpfs rw,nosuid,nodev,relatime,size=1024k", "Read-only"]


def test_exec_in_a_paused_container_is_a_conflict(containers, cgroups):
    from orch.errors import Conflict

    config = containers.config("sleep", "100")
    pid = containers.track(spawn.start(config, spawn.Stdio()))
    cgroups.freeze(config.cgroup_path)
    with pytest.raises(Conflict, match=f"container {config.id} is paused; unpause it before exec"):
        spawn.exec_in(pid, config, Process(args=("true",), env=config.process.env), spawn.Stdio())
    cgroups.thaw(config.cgroup_path)
