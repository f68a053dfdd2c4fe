"""The real docker CLI (28) against orch's docker.sock and against a private dockerd 20.10,
the same commands, the outputs compared: run (--rm, -it through a pty, -d with -p), ps, logs
-f, exec -it, cp both ways, stats, top, stop, rm, build (DOCKER_BUILDKIT=0), images, tag,
history, inspect, save and load, network and volume commands, events. Pull and push against a
local docker-registry are in test_registry.py.

Where the engines differ by design (ids, timestamps, sizes, orch's network names) the test
compares what a user reads: exit codes, program output, the columns and the names.
"""

import json
import os
import pty
import re
import select
import socket
import subprocess
import time
import urllib.request

import pytest

pytestmark = pytest.mark.privileged


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_both(both, *args, **kw) -> tuple:
    return tuple(e.docker(*args, **kw) for e in both)


def test_run_rm_prints_and_exits_as_dockerd(both):
    for out in on_both(both, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2"):
        assert (out.stdout, out.stderr) == ("out\n", "err\n")
    codes = [e.docker("run", "--rm", "busybox", "sh", "-c", "exit 3", check=False).returncode for e in both]
    assert codes == [3, 3]
    # A program that does not exist: docker's 127, and its words.
    missing = [e.docker("run", "--rm", "busybox", "no-such-program", check=False) for e in both]
    assert [m.returncode for m in missing] == [127, 127]
    for engine in both:  # --rm: nothing left
        assert engine.docker("ps", "-aq").stdout == ""


def pty_run(engine, argv: list[str], keys: list[bytes], timeout=30) -> tuple[int, bytes]:
    """`docker ARGV` on a pseudo-terminal, typing `keys` one after the other once the previous
    one's echo came back; (exit code, everything it printed)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe("docker", ["docker", *argv], engine.env)
    out = b""
    deadline = time.monotonic() + timeout
    pending = list(keys)
    sent = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if pending and (sent is None or sent.strip() in out.replace(b"\r", b"")):
                if b"# " in out or b"$ " in out:  # a prompt: the shell reads
                    sent = pending.pop(0)
                    out += b"\x00"  # a mark, so the next key waits for a prompt after this one
                    os.write(fd, sent)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def test_run_it_through_a_pty(both):
    for engine in both:
        code, out = pty_run(engine, ["run", "-it", "--rm", "busybox", "sh"], [b"echo $((6*7))-$(tty)\r", b"exit 4\r"])
        text = out.replace(b"\r", b"").decode(errors="replace")
        assert "42-/dev/pts/0" in text, (engine.name, text)
        assert code == 4, (engine.name, text)


def test_run_d_with_a_published_port_answers_and_shows_in_ps(both):
    for engine in both:
        port, name = free_port(), unique("web")
        engine.docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", "busybox", "sh", "-c",
                      "mkdir /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 8080 -h /www")
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                        assert answer.read() == b"hello-from-httpd\n"
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)  # httpd starting: polling the port is the only wait
            row = engine.docker("ps", "--filter", f"name={name}", "--format", "{{.Names}}|{{.Image}}|{{.Ports}}|{{.Status}}").stdout
            names, image, ports, status = row.strip().split("|")
            assert (names, image, ports) == (name, "busybox", f"127.0.0.1:{port}->8080/tcp"), engine.name
            assert status.startswith("Up ")
        finally:
            engine.docker("rm", "-f", name)


def test_ps_columns_are_dockerds(both):
    names = {}
    for engine in both:
        names[engine.name] = unique("ps")
        engine.docker("run", "-d", "--name", names[engine.name], "busybox", "sleep", "300")
    try:
        heads = [e.docker("ps").stdout.splitlines()[0].split() for e in both]
        assert heads[0] == heads[1] == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        rows = [e.docker("ps", "--no-trunc", "--filter", f"name={names[e.name]}", "--format", "{{.Command}} {{.Image}} {{.State}}").stdout
                for e in both]
        assert rows[0] == rows[1] == '"sleep 300" busybox running\n'
    finally:
        for engine in both:
            engine.docker("rm", "-f", names[engine.name])


def test_logs_follow_tail_and_timestamps(both):
    outs = []
    for engine in both:
        name = unique("logs")
        engine.docker("run", "-d", "--name", name, "busybox", "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo done >&2")
        follow = engine.docker("logs", "-f", name, timeout=30)
        tail = engine.docker("logs", "--tail", "2", name)
        stamped = engine.docker("logs", "-t", name)
        engine.docker("rm", "-f", name)
        outs.append((follow.stdout, follow.stderr, tail.stdout, tail.stderr))
        assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line\d$", line) for line in stamped.stdout.splitlines()), stamped.stdout
    assert outs[0] == outs[1] == ("line1\nline2\nline3\n", "done\n", "line3\n", "done\n")


def test_exec_it_and_exec_exit_codes(both):
    for engine in both:
        name = unique("exec")
        engine.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
        try:
            code, out = pty_run(engine, ["exec", "-it", name, "sh"], [b"echo in-$(hostname | cut -c1-4)-$(tty)\r", b"exit 5\r"])
            text = out.replace(b"\r", b"").decode(errors="replace")
            assert "/dev/pts/" in text and code == 5, (engine.name, text)
            plain = engine.docker("exec", name, "sh", "-c", "echo out; echo err >&2; exit 2", check=False)
            assert (plain.returncode, plain.stdout, plain.stderr) == (2, "out\n", "err\n"), engine.name
            piped = engine.docker("exec", "-i", name, "cat", input="through stdin\n")
            assert piped.stdout == "through stdin\n"
        finally:
            engine.docker("rm", "-f", name)


def test_cp_both_ways(both, tmp_path):
    (tmp_path / "in.txt").write_text("copied in\n")
    for engine in both:
        name = unique("cp")
        engine.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
        try:
            engine.docker("cp", str(tmp_path / "in.txt"), f"{name}:/tmp/in.txt")
            assert engine.docker("exec", name, "cat", "/tmp/in.txt").stdout == "copied in\n"
            engine.docker("exec", name, "sh", "-c", "mkdir -p /out/d && echo from-container > /out/d/f")
            dest = tmp_path / f"out-{engine.name}"
            engine.docker("cp", f"{name}:/out/d", str(dest))
            assert (dest / "f").read_text() == "from-container\n"
        finally:
            engine.docker("rm", "-f", name)


def test_stats_top_stop_rm(both):
    for engine in both:
        name = unique("st")
        engine.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
        stats = engine.docker("stats", "--no-stream", name).stdout.splitlines()
        assert stats[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%", "NET", "I/O",
                                    "BLOCK", "I/O", "PIDS"], engine.name
        assert stats[1].split()[1] == name
        top = engine.docker("top", name).stdout.splitlines()
        assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], engine.name
        assert top[1].endswith("sleep 300")
        assert engine.docker("stop", "-t", "1", name).stdout == f"{name}\n"
        state = json.loads(engine.docker("inspect", name).stdout)[0]["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 137), engine.name  # sleep ignores SIGTERM as pid 1
        assert engine.docker("rm", name).stdout == f"{name}\n"
        assert engine.docker("inspect", name, check=False).returncode == 1


def test_build_images_tag_history_inspect(both, tmp_path):
    (tmp_path / "Dockerfile").write_text('FROM busybox\nRUN echo built > /b.txt\nENV GREETING=hi\nCMD ["cat", "/b.txt"]\n')
    for engine in both:
        tag = f"dockerapi-built:{engine.name}"
        out = engine.docker("build", "-t", tag, str(tmp_path), env={"DOCKER_BUILDKIT": "0"}, timeout=300).stdout
        steps = [line for line in out.splitlines() if line.startswith("Step ")]
        assert steps == ["Step 1/4 : FROM busybox", "Step 2/4 : RUN echo built > /b.txt", "Step 3/4 : ENV GREETING=hi",
                         'Step 4/4 : CMD ["cat", "/b.txt"]'], engine.name
        assert re.search(r"^Successfully built [0-9a-f]{12}$", out, re.M) and f"Successfully tagged {tag}" in out
        assert engine.docker("run", "--rm", tag).stdout == "built\n"
        engine.docker("tag", tag, f"dockerapi-other:{engine.name}")
        listed = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        assert {tag, f"dockerapi-other:{engine.name}", "busybox:latest"} <= set(listed)
        history = engine.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout.splitlines()
        assert len(history) == 4 and "echo built > /b.txt" in history[2] and "GREETING=hi" in history[1], (engine.name, history)
        fields = engine.docker("inspect", "-f", "{{.Config.Cmd}} {{index .Config.Env 1}} {{.Os}}", tag).stdout
        assert fields == "[cat /b.txt] GREETING=hi linux\n", engine.name
        engine.docker("rmi", f"dockerapi-other:{engine.name}", tag)


def test_container_inspect_fields_agree(both, tmp_path):
    views = []
    for engine in both:
        name = unique("insp")
        engine.docker("create", "--name", name, "-e", "A=1", "-v", f"{tmp_path}:/data:ro", "-p", "127.0.0.1::80", "--restart",
                      "on-failure:2", "--label", "k=v", "busybox", "sleep", "60")
        view = json.loads(engine.docker("inspect", name).stdout)[0]
        engine.docker("rm", name)
        views.append(view)
    keys = [set(v) for v in views]
    assert keys[1] <= keys[0], keys[1] - keys[0]
    for v in views:
        assert v["Config"]["Cmd"] == ["sleep", "60"] and "A=1" in v["Config"]["Env"] and v["Config"]["Labels"] == {"k": "v"}
        assert v["HostConfig"]["Binds"] == [f"{tmp_path}:/data:ro"]
        assert v["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
        assert v["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        assert v["HostConfig"]["NetworkMode"] == "default" and v["State"]["Status"] == "created"
        assert v["Mounts"] == [{"Type": "bind", "Source": str(tmp_path), "Destination": "/data", "Mode": "ro", "RW": False,
                                "Propagation": "rprivate"}]
    assert set(views[1]["HostConfig"]) <= set(views[0]["HostConfig"])


def test_save_and_load(both, tmp_path):
    for engine in both:
        archive = tmp_path / f"{engine.name}.tar"
        engine.docker("tag", "busybox", f"dockerapi-saved:{engine.name}")
        engine.docker("save", "-o", str(archive), f"dockerapi-saved:{engine.name}")
        engine.docker("rmi", f"dockerapi-saved:{engine.name}")
        out = engine.docker("load", "-i", str(archive)).stdout
        assert out.strip().endswith(f"Loaded image: dockerapi-saved:{engine.name}"), (engine.name, out)
        piped = subprocess.run(f"docker save dockerapi-saved:{engine.name} | docker load", shell=True, env=engine.env,
                               capture_output=True, text=True, check=True)
        assert f"Loaded image: dockerapi-saved:{engine.name}" in piped.stdout
        engine.docker("rmi", f"dockerapi-saved:{engine.name}")


def test_networks_and_volumes(both):
    for engine in both:
        net, vol = unique("net"), unique("vol")
        assert len(engine.docker("network", "create", net).stdout.strip()) == 64
        names = engine.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert {"bridge", "host", "none", net} <= set(names), engine.name
        view = json.loads(engine.docker("network", "inspect", net).stdout)[0]
        assert (view["Name"], view["Driver"], view["Scope"], view["Options"]) == (net, "bridge", "local", {})
        assert len(view["IPAM"]["Config"]) == 1 and "Subnet" in view["IPAM"]["Config"][0]
        out = engine.docker("run", "--rm", "--network", net, "--network-alias", "svc", "busybox", "sh", "-c",
                            "ping -c1 -W2 svc >/dev/null && echo reached").stdout
        assert out == "reached\n", engine.name
        assert engine.docker("network", "rm", net).stdout == f"{net}\n"

        assert engine.docker("volume", "create", vol).stdout == f"{vol}\n"
        assert vol in engine.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
        vview = json.loads(engine.docker("volume", "inspect", vol).stdout)[0]
        assert (vview["Name"], vview["Driver"], vview["Scope"]) == (vol, "local", "local")
        engine.docker("run", "--rm", "-v", f"{vol}:/data", "busybox", "sh", "-c", "echo kept > /data/f")
        assert engine.docker("run", "--rm", "-v", f"{vol}:/data", "busybox", "cat", "/data/f").stdout == "kept\n"
        assert engine.docker("volume", "rm", vol).stdout == f"{vol}\n"


def test_events_of_a_containers_life(both):
    actions = []
    for engine in both:
        name = unique("ev")
        since = str(int(time.time()) - 1)
        engine.docker("run", "--name", name, "busybox", "true")
        engine.docker("rm", name)
        until = str(int(time.time()) + 1)
        out = engine.docker("events", "--since", since, "--until", until, "--filter", f"container={name}",
                            "--format", "{{.Type}} {{.Action}}").stdout.split("\n")
        actions.append([line for line in out if line])
    assert actions[0] == actions[1], actions
    assert actions[0][0] == "container create" and "container die" in actions[0] and actions[0][-1] == "container destroy"


def test_stdin_start_attach_wait_pause_diff_port(both):
    for engine in both:
        assert engine.docker("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo end", input="piped in\n").stdout == "piped in\nend\n"
        name = unique("sa")
        engine.docker("create", "--name", name, "busybox", "sh", "-c", "echo started; exit 6")
        attached = engine.docker("start", "-a", name, check=False)
        assert (attached.returncode, attached.stdout) == (6, "started\n"), engine.name
        assert engine.docker("wait", name).stdout == "6\n"
        engine.docker("rm", name)

        name = unique("att")
        port = free_port()
        engine.docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:7000", "busybox", "sh", "-c",
                      "touch /new; trap 'echo bye; exit 0' TERM; while true; do echo tick; sleep 0.2; done")
        try:
            proc = subprocess.Popen(["docker", "attach", "--no-stdin", name], env=engine.env, stdout=subprocess.PIPE, text=True)
            assert proc.stdout.readline() == "tick\n"  # the attach gets the output from now on
            engine.docker("pause", name)
            assert engine.docker("inspect", "-f", "{{.State.Status}}", name).stdout == "paused\n"
            engine.docker("unpause", name)
            assert engine.docker("port", name).stdout == f"7000/tcp -> 127.0.0.1:{port}\n"
            assert "A /new" in engine.docker("diff", name).stdout.splitlines()
            engine.docker("stop", name)
            out, _ = proc.communicate(timeout=30)
            assert out.rstrip().endswith("bye") and proc.returncode == 0, (engine.name, out[-200:], proc.returncode)
        finally:
            engine.docker("rm", "-f", name)
