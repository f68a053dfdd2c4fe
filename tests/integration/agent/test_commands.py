"""Every container command on real containers, through the CLI, the agent and the supervisor."""

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.privileged


def name():
    return "t" + uuid.uuid4().hex[:10]


def test_run_pid1_and_hostname(node):
    out = node.orch("run", "--rm", "busybox", "sh", "-c", "echo $$; hostname; cat /proc/1/cmdline | tr '\\0' ' '").stdout.split("\n")
    assert out[0] == "1"
    assert re.fullmatch(r"[0-9a-f]{12}", out[1])
    assert out[2].strip() == "sh -c echo $$; hostname; cat /proc/1/cmdline | tr '\\0' ' '"
    assert node.orch("run", "--rm", "-h", "myhost", "busybox", "hostname").stdout == "myhost\n"


def test_run_exit_code_streams_and_rm(node):
    n = name()
    proc = node.orch("run", "--rm", "--name", n, "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    assert n not in node.orch("ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_run_missing_program_is_127_in_one_line(node):
    proc = node.orch("run", "--rm", "busybox", "no-such-program", check=False)
    assert proc.returncode == 127
    assert proc.stderr.count("\n") == 1 and "no-such-program" in proc.stderr and "not found" in proc.stderr


def test_unknown_image_and_container_are_one_line(node):
    proc = node.orch("run", "--rm", "nosuchimage", "true", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("orch: no such image: nosuchimage")
    proc = node.orch("logs", "foo", check=False)
    assert (proc.returncode, proc.stderr) == (1, "orch: no such container: foo\n")


def test_memory_limit_kill_is_137_and_oomkilled(node):
    n = name()
    proc = node.orch("run", "--name", n, "-m", "16m", "busybox", "sh", "-c", "x=a; while true; do x=$x$x; done", check=False)
    assert proc.returncode == 137
    state = node.inspect(n)["State"]
    assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == ("exited", 137, True)
    assert node.inspect(n)["HostConfig"]["Memory"] == 16 * 1024 * 1024
    node.orch("rm", n)


def test_pids_limit(node):
    proc = node.orch("run", "--rm", "--pids-limit", "5", "busybox", "sh", "-c",
                     "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait", check=False)
    assert "can't fork" in proc.stderr


def test_cpus_env_workdir_user_entrypoint(node, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("FROM_FILE=1\n")
    out = node.orch("run", "--rm", "--cpus", "0.5", "-e", "A=b", "--env-file", str(env_file), "-w", "/tmp", "-u", "65534:65534",
                    "busybox", "sh", "-c", "echo $A $FROM_FILE; pwd; id -u; id -g; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || true").stdout.split("\n")
    assert out[:4] == ["b 1", "/tmp", "65534", "65534"]
    # The container sees its own cgroup, read-only, at /sys/fs/cgroup (cgroup namespace), as docker shows it.
    assert out[4] == "50000"
    assert node.orch("run", "--rm", "--entrypoint", "echo", "busybox", "hi", "there").stdout == "hi there\n"


def test_run_parses_in_the_agent_with_the_clients_environment_and_directory(node, tmp_path):
    # `orch run` sends its argv, environment and cwd to the agent (run.sock), which parses.
    (tmp_path / "vars").write_text("FROM_FILE=2\n")
    out = node.orch("run", "--rm", "-e", "MINE", "-e", "UNSET_HERE", "--env-file", "vars", "busybox", "sh", "-c",
                    'echo "$MINE $FROM_FILE ${UNSET_HERE-unset}"', env={"MINE": "from-client"}, cwd=tmp_path).stdout
    assert out == "from-client 2 unset\n"
    usage = node.orch("run", "--help")
    assert usage.stdout.startswith("usage: orch run") and usage.returncode == 0
    misuse = node.orch("run", "--cpus", "x", "busybox", check=False)
    assert (misuse.returncode, misuse.stdout, misuse.stderr) == (1, "", "orch: argument --cpus: invalid float value: 'x'; see 'orch run --help'\n")
    assert oct(os.stat(node.run_dir / "run.sock").st_mode & 0o777) == "0o600"


def test_run_socket_survives_a_bad_request_and_bad_values_are_one_line(node):
    import marshal
    import socket

    for data in (b"garbage", marshal.dumps({"no": "argv"})):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(str(node.run_dir / "run.sock"))
        socket.send_fds(s, [data], [0, 1, 2])
        answers = [marshal.loads(s.recv(65536)), marshal.loads(s.recv(65536))]
        s.close()
        assert answers == [{"err": "orch: the run request could not be read; is the CLI from this installation?\n"}, {"exit": 2}]
    bad = node.orch("run", "--rm", "--log-opt", "max-file=x", "busybox", "true", check=False)
    assert (bad.returncode, bad.stderr) == (1, "orch: invalid --log-opt max-file='x': give a whole number of files, 1 or more\n")
    swap = node.orch("run", "--rm", "-m", "64m", "--memory-swap", "32m", "busybox", "true", check=False)
    assert swap.returncode == 1 and swap.stderr.startswith("orch: the memory+swap limit (33554432 bytes) is below the memory limit")
    # docker: a pids limit of 0 or -1 is no limit
    assert node.orch("run", "--rm", "--pids-limit", "-1", "busybox", "echo", "still here").stdout == "still here\n"


def test_network_none_and_host(node):
    none = node.orch("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").stdout.split()
    assert none == ["lo"]
    # Other tests on this machine may add links meanwhile: compare with before and after.
    before = set(os.listdir("/sys/class/net"))
    host = set(node.orch("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net").stdout.split())
    after = set(os.listdir("/sys/class/net"))
    assert before & after <= host <= before | after
    proc = node.orch("run", "--rm", "--network", "bridge9", "busybox", "true", check=False)
    assert proc.returncode == 1 and "network bridge9 not found" in proc.stderr


def test_init_reaps_as_pid1(node):
    out = node.orch("run", "--rm", "--init", "busybox", "sh", "-c", "echo $$; cat /proc/1/comm").stdout.split()
    assert out[0] != "1" and out[1] in ("tini", "tini-static", "docker-init")


def test_detached_ps_logs_stop_timeout_then_sigkill(node):
    n = name()
    cid = node.orch("run", "-d", "--name", n, "busybox", "sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.05; done").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    node.wait_for(lambda: "ready" in node.orch("logs", n).stdout, what="the container's first line")
    row = node.orch("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout
    assert re.search(rf"{cid[:12]} {n} Up ", row)
    started = time.monotonic()
    assert node.orch("stop", "-t", "1", n).stdout == f"{n}\n"
    assert time.monotonic() - started >= 1.0
    state = node.inspect(n)["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 137, False)
    assert re.search(rf"{n} Exited \(137\) ", node.orch("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout)
    assert node.orch("logs", n).stdout == "ready\n"  # logs after the container exited
    node.orch("rm", n)


def test_stop_with_a_handler_exits_cleanly(node):
    n = name()
    node.orch("run", "-d", "--name", n, "busybox", "sh", "-c", "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.05; done")
    node.wait_for(lambda: "up" in node.orch("logs", n).stdout)
    node.orch("stop", n)
    assert node.inspect(n)["State"]["ExitCode"] == 0
    assert node.orch("logs", n).stdout == "up\nbye\n"
    node.orch("rm", n)


def test_exec_into_a_running_container(node):
    n = name()
    node.orch("run", "-d", "--name", n, "busybox", "sleep", "60")
    out = node.orch("exec", "-e", "X=42", "-w", "/etc", "-u", "65534", n, "sh", "-c", "echo $X; pwd; id -u; cat /proc/1/cmdline").stdout
    assert out.split("\n")[:3] == ["42", "/etc", "65534"] and out.split("\n")[3].startswith("sleep")
    proc = node.orch("exec", n, "sh", "-c", "exit 4", check=False)
    assert proc.returncode == 4
    assert node.orch("exec", "-i", n, "cat", input="piped\n").stdout == "piped\n"
    node.orch("exec", "-d", n, "sh", "-c", "echo detached > /tmp/d")
    node.wait_for(lambda: node.orch("exec", n, "cat", "/tmp/d", check=False).stdout == "detached\n")
    node.orch("rm", "-f", n)
    proc = node.orch("exec", n, "true", check=False)
    assert proc.stderr == f"orch: no such container: {n}\n"


def test_top_pause_unpause_kill(node):
    n = name()
    node.orch("run", "-d", "--name", n, "busybox", "sh", "-c", "trap 'exit 9' USR1; while true; do sleep 0.05; done")
    top = node.orch("top", n).stdout.split("\n")
    assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert any("while true" in line for line in top[1:])
    assert node.orch("pause", n).stdout == f"{n}\n"
    assert "(Paused)" in node.orch("ps", "--format", "{{.Names}} {{.Status}}").stdout
    proc = node.orch("exec", n, "true", check=False)
    assert proc.stderr == f"orch: container {n} is paused; unpause it before exec\n"
    proc = node.orch("pause", n, check=False)
    assert proc.stderr == f"orch: container {n} is already paused\n"
    node.orch("unpause", n)
    assert node.inspect(n)["State"]["Status"] == "running"
    node.orch("kill", "-s", "USR1", n)
    assert node.orch("wait", n).stdout == "9\n"
    proc = node.orch("kill", n, check=False)
    assert proc.stderr == f"orch: container {n} is not running; start it first\n"
    node.orch("rm", n)


def test_create_start_attach_restart_wait(node):
    n = name()
    cid = node.orch("create", "--name", n, "busybox", "sh", "-c", "echo run; sleep 0.2; exit 2").stdout.strip()
    assert node.inspect(n)["State"]["Status"] == "created"
    assert "Created" in node.orch("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout
    proc = node.orch("start", "-a", n, check=False)
    assert (proc.returncode, proc.stdout) == (2, "run\n")
    first = node.inspect(n)["State"]["StartedAt"]
    node.orch("restart", n)
    assert node.orch("wait", cid[:8]).stdout == "2\n"
    assert node.inspect(n)["State"]["StartedAt"] != first
    assert node.orch("logs", n).stdout == "run\nrun\n"
    node.orch("start", n)
    assert node.orch("wait", n).stdout == "2\n"
    node.orch("rm", n)


def test_inspect_shape_and_format(node):
    n = name()
    node.orch("create", "--name", n, "-e", "K=V", "-m", "64m", "--pids-limit", "20", "--cpus", "1.5", "busybox", "echo", "x")
    data = node.inspect(n)
    assert set(data) >= {"Id", "Created", "Path", "Args", "State", "Image", "Name", "Config", "HostConfig"}
    assert set(data["State"]) >= {"Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode", "Error", "StartedAt", "FinishedAt"}
    assert (data["Path"], data["Args"], data["Name"]) == ("echo", ["x"], f"/{n}")
    assert "K=V" in data["Config"]["Env"] and data["Config"]["Cmd"] == ["echo", "x"] and data["Config"]["Image"] == "busybox"
    assert (data["HostConfig"]["Memory"], data["HostConfig"]["PidsLimit"], data["HostConfig"]["NanoCpus"]) == (64 << 20, 20, 1_500_000_000)
    assert node.orch("inspect", "--format", "{{.State.Status}}", n).stdout == "created\n"
    assert json.loads(node.orch("inspect", "--format", "{{json .Config}}", n).stdout)["Cmd"] == ["echo", "x"]
    proc = node.orch("inspect", "nosuch", check=False)
    assert proc.returncode == 1 and "nosuch" in proc.stderr
    node.orch("container", "rm", n)


def test_names_rm_conflicts_and_container_group(node):
    n = name()
    cid = node.orch("container", "run", "-d", "--name", n, "busybox", "sleep", "60").stdout.strip()
    proc = node.orch("run", "--name", n, "busybox", "true", check=False)
    assert proc.stderr == f'orch: the container name "/{n}" is already in use by container {cid[:12]}; remove it or pick another name\n'
    proc = node.orch("rm", n, check=False)
    assert proc.returncode == 1
    assert proc.stderr == f'orch: cannot remove container "/{n}": container is running; stop it before removing or force remove (-f)\n'
    assert n in node.orch("container", "ls", "--format", "{{.Names}}").stdout
    assert node.orch("rm", "-f", n).stdout == f"{n}\n"
    assert not (node.root / "containers" / cid).exists()
    unnamed = node.orch("create", "busybox", "true").stdout.strip()
    assert re.fullmatch(r"[a-z]+_[a-z]+\d*", node.inspect(unnamed)["Name"][1:])
    node.orch("rm", unnamed)


def test_logs_tail_timestamps_follow(node):
    n = name()
    node.orch("run", "-d", "--name", n, "busybox", "sh", "-c", "for i in 1 2 3; do echo line$i; done; echo oops >&2; sleep 0.5; echo late")
    follow = node.popen("logs", "-f", n, stdout=-1, stderr=-1, text=True)
    out, err = follow.communicate(timeout=20)
    assert (out, err) == ("line1\nline2\nline3\nlate\n", "oops\n")
    assert node.orch("logs", "--tail", "2", n).stdout == "late\n"  # the last two entries: stderr's and "late"
    stamped = node.orch("logs", "-t", "--tail", "1", n).stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z late\n", stamped)
    assert node.orch("logs", "--since", "1h", n).stdout.startswith("line1")
    node.orch("rm", n)


def test_interactive_stdin(node):
    assert node.orch("run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z", input="hello\n").stdout == "HELLO\n"


def _read_until(fd, marker: bytes, timeout=15.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while marker not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {marker!r} in {buf!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def in_pty(node, *args):
    """The CLI with a pseudo-terminal (40 rows, 120 columns) as its stdin, stdout and stderr,
    as a user's shell would start it; returns the process and the master side to type into."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = node.popen(*args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    finally:
        os.close(slave)
    return proc, master


def test_run_it_through_a_pty(node):
    proc, master = in_pty(node, "run", "-it", "--rm", "busybox", "sh")
    try:
        _read_until(master, b"# ")
        os.write(master, b"stty size; ps aux\n")
        out = _read_until(master, b"ps aux\r\n")
        out += _read_until(master, b"# ")
        assert b"40 120" in out
        assert re.search(rb"\n\s*1 root\s+sh\r\n", out), out
        os.write(master, b"exit 6\n")
        assert proc.wait(20) == 6
    finally:
        os.close(master)
        proc.kill()
        proc.wait()


def test_kill_9_of_the_agent_and_adoption(node):
    keep, dies = name(), name()
    node.orch("run", "-d", "--name", keep, "busybox", "sleep", "300")
    node.orch("run", "-d", "--name", dies, "busybox", "sh", "-c", "echo before; sleep 0.5; echo after; exit 5")
    old = node.agent_pid()
    os.kill(old, signal.SIGKILL)
    node.wait_for(lambda: _gone(old), what="the agent to die")
    # While the agent is away the supervisor keeps the containers, their logs and exit codes.
    node.wait_for(lambda: (node.root / "containers" / node_id(node, dies) / "exit.json").exists(), what="the exit record")
    node.orch("agent", "--detach")
    assert node.agent_pid() != old
    rows = node.orch("ps", "-a", "--format", "{{.Names}}|{{.Status}}").stdout
    assert re.search(rf"{keep}\|Up ", rows)
    assert re.search(rf"{dies}\|Exited \(5\) ", rows)
    assert node.orch("logs", dies).stdout == "before\nafter\n"
    assert node.orch("exec", keep, "echo", "alive").stdout == "alive\n"
    node.orch("rm", "-f", keep, dies)


def _gone(pid: int) -> bool:
    """Dead: no process, or a zombie whose parent has not reaped it yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def node_id(node, ref):
    for d in (node.root / "containers").iterdir():
        rec = json.loads((d / "state.json").read_text())["docker"]  # read while no agent runs
        if rec["Name"] == "/" + ref:
            return rec["Id"]
    raise AssertionError(f"no record for {ref}")


def test_system_df_and_prune(node):
    n = name()
    node.orch("run", "--name", n, "busybox", "sh", "-c", "echo data > /file")
    df = node.orch("system", "df").stdout.split("\n")
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].split()[:2] == ["Images", "1"]
    out = node.orch("system", "prune", "-f").stdout
    assert "Deleted Containers:" in out
    assert n not in node.orch("ps", "-a", "--format", "{{.Names}}").stdout
    assert "Total reclaimed space:" in out


def test_ctrl_c_is_forwarded_to_an_attached_container(node):
    proc = node.popen("run", "--rm", "busybox", "sh", "-c", "trap 'echo got-int; exit 3' INT; echo ready; while true; do sleep 0.05; done",
                      stdout=-1, stderr=-1, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert (proc.returncode, out) == (3, "got-int\n")


def test_ctrl_c_without_sig_proxy_ends_the_client_and_the_container_runs_on(node):
    n = name()
    proc = node.popen("run", "--name", n, "--sig-proxy=false", "busybox", "sh", "-c", "echo ready; sleep 300",
                      stdout=-1, stderr=-1, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130  # 128 + SIGINT, as a shell reports it; docker's client ends the same way
    assert node.inspect(n)["State"]["Running"] is True
    node.orch("rm", "-f", n)


def test_exec_it_and_detached_tty(node):
    n = name()
    node.orch("run", "-dit", "--name", n, "busybox", "sh")
    assert node.inspect(n)["Config"]["Tty"] is True
    proc, master = in_pty(node, "exec", "-it", n, "sh")
    try:
        _read_until(master, b"# ")
        os.write(master, b"tty; exit 4\n")
        _read_until(master, b"/dev/pts/")  # the exec'd shell has its own terminal
        assert proc.wait(20) == 4
    finally:
        os.close(master)
        proc.kill()
        proc.wait()
    node.orch("rm", "-f", n)


def test_detached_interactive_keeps_stdin_open(node):
    n = name()
    node.orch("run", "-di", "--name", n, "busybox", "sh")
    assert node.orch("exec", n, "echo", "still-here").stdout == "still-here\n"
    assert node.inspect(n)["State"]["Status"] == "running"
    node.orch("rm", "-f", n)


def test_one_agent_and_one_supervisor_per_node(node):
    agent, sup = node.agent_pid(), node.supervisor_pid()
    proc = node.popen("agent", stdout=-1, stderr=-1, text=True)  # a second agent in the foreground
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "an agent already serves" in err
    proc = subprocess.run([sys.executable, "-m", "orch.node.runtime.supervisor", "--socket", str(node.run_dir / "supervisor.sock")],
                          env=node.env, capture_output=True, timeout=30)
    assert proc.returncode == 0
    assert (node.agent_pid(), node.supervisor_pid()) == (agent, sup)
    assert node.orch("ps").returncode == 0


def test_containers_start_with_no_signal_ignored_or_blocked(node):
    out = node.orch("run", "--rm", "busybox", "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status").stdout
    assert out == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    assert node.orch("run", "--rm", "busybox", "sh", "-c", "yes | head -n 2").stdout == "y\ny\n"


def test_container_diff(node):
    n = name()
    node.orch("run", "--name", n, "busybox", "sh", "-c", "echo x > /added; rm /bin/ls; echo y >> /etc/passwd")
    lines = node.orch("container", "diff", n).stdout.splitlines()
    assert {"A /added", "D /bin/ls", "C /etc/passwd", "C /etc", "C /bin"} <= set(lines)
    node.orch("rm", n)


def test_remove_many_stops_gracefully_then_removes_each(node):
    from orch.client import Client
    from orch.errors import UserError

    api = Client(str(node.run_dir / "orch.sock"))
    # One ignores SIGTERM (pid 1 has no default handlers): its grace period (t) runs out.
    stubborn, polite = name(), name()
    node.orch("run", "-d", "--name", stubborn, "busybox", "sleep", "1000")
    node.orch("run", "-d", "--name", polite, "--init", "busybox", "sleep", "1000")
    ids = [node.inspect(n)["Id"] for n in (stubborn, polite)]
    answer = api.call("POST", "/containers/remove", {"ids": ids + ["no-such-container"], "stop": True, "t": 0.5, "force": True})
    assert sorted(answer["removed"]) == sorted(ids + ["no-such-container"]) and answer["errors"] == []
    listed = node.orch("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert stubborn not in listed and polite not in listed
    with pytest.raises(UserError, match='give {"ids"'):  # the agent's InvalidArgument, as its kind
        api.call("POST", "/containers/remove", {"ids": "x"})
