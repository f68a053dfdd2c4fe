"""`orch compose ls|cp|port|images|events|wait|create|attach|stats|version|watch` on busybox
stacks. No docker compose v2 runs on this machine (Debian ships docker-compose v1), so the
shapes are compose v2's as its source writes them (cmd/compose/*.go, pkg/compose/*.go):
ls's "running(2)" and columns, images' columns, events' text and --json forms, wait's exit
code, version's lines."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.privileged

STACK = """
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "echo started; sleep 1000"]
    ports: ["{port}:80"]
  worker:
    image: busybox:latest
    command: ["sh", "-c", "sleep 1000"]
    network_mode: none
"""


def popen(node, *args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orch", *args], env=node.env, cwd=node.base, stdin=subprocess.DEVNULL, **kw)


def wait_for(predicate, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_ls_port_images_cp_stats(node, stack, tmp_path):
    from tests.integration.compose.conftest import free_port

    port = free_port()
    stack.write(STACK.format(port=port))
    stack.compose("up", "-d")
    ls = node.orch("compose", "ls").stdout.splitlines()
    assert re.split(r"\s{2,}", ls[0]) == ["NAME", "STATUS", "CONFIG FILES"]
    assert re.split(r"\s{2,}", next(line for line in ls if line.startswith(stack.name + " "))) == \
        [stack.name, "running(2)", str(stack.file)]
    listed = json.loads(node.orch("compose", "ls", "--format", "json").stdout)
    assert {"Name": stack.name, "Status": "running(2)", "ConfigFiles": str(stack.file)} in listed
    assert stack.name in node.orch("compose", "ls", "-q").stdout.split()
    # port: where the service's port is published.
    assert stack.compose("port", "web", "80").stdout == f"0.0.0.0:{port}\n"
    assert stack.compose("port", "web", "81", check=False).returncode == 1
    # images: compose's columns, one row per container.
    images = stack.compose("images").stdout.splitlines()
    assert re.split(r"\s{2,}", images[0]) == ["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"]
    rows = sorted(re.split(r"\s{2,}", line) for line in images[1:])
    assert [r[:3] for r in rows] == [[f"{stack.name}-web-1", "busybox", "latest"], [f"{stack.name}-worker-1", "busybox", "latest"]]
    assert all(re.fullmatch(r"[0-9a-f]{12}", r[3]) and re.fullmatch(r"[\d.]+[kMG]?B", r[4]) for r in rows)
    # cp: into every container of a service, and back out.
    src = tmp_path / "hello.txt"
    src.write_text("hello\n")
    stack.compose("cp", str(src), "worker:/tmp/")
    stack.compose("cp", "worker:/tmp/hello.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "hello\n"
    # stats: docker's table for the project's containers.
    out = stack.compose("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}").stdout.split("\n")
    assert sorted(filter(None, out)) == [f"{stack.name}-web-1 1", f"{stack.name}-worker-1 1"]
    # After a stop: ls hides the project without -a, shows both states with it. (-t 0: the
    # shells, as pid 1, ignore SIGTERM; ten seconds of grace would change nothing here.)
    stack.compose("stop", "-t", "0")
    assert stack.name not in node.orch("compose", "ls", "-q").stdout.split()
    line = next(line for line in node.orch("compose", "ls", "-a").stdout.splitlines() if line.startswith(stack.name + " "))
    assert re.split(r"\s{2,}", line)[1] == "exited(2)"


def test_events_text_and_json(node, stack):
    stack.write(STACK.format(port=0).replace('    ports: ["0:80"]\n', ""))
    stack.compose("up", "-d")
    proc = popen(node, "compose", "-f", str(stack.file), "events", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    text = popen(node, "compose", "-f", str(stack.file), "events", "worker", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # both readers subscribed (no event of the node says so)
        stack.compose("kill", "worker")
        first = json.loads(proc.stdout.readline())
        assert set(first) == {"action", "attributes", "id", "service", "time", "type"}
        assert (first["type"], first["action"], first["service"]) == ("container", "kill", "worker")
        assert first["attributes"] == {"image": "busybox:latest", "name": f"{stack.name}-worker-1", "signal": "9"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", first["time"])
        line = text.stdout.readline()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} container kill [0-9a-f]{64} \(image=busybox:latest, "
                            rf"name={stack.name}-worker-1, signal=9\)\n", line), line
        assert text.stdout.readline() == "\n"  # compose's String() ends in a newline, and Println adds one
    finally:
        for p in (proc, text):
            p.send_signal(signal.SIGINT)
            p.wait(10)


def test_wait_create_version(node, stack):
    stack.write("""
services:
  job:
    image: busybox:latest
    command: ["sh", "-c", "sleep 1; exit 5"]
  idle:
    image: busybox:latest
    command: ["sleep", "1000"]
    network_mode: none
""")
    created = stack.compose("create")
    assert f"Container {stack.name}-job-1" in created.stderr + created.stdout
    states = {r.split()[0]: r.split()[1] for r in stack.compose("ps", "-a", "--format", "{{.Name}} {{.State}}").stdout.splitlines()}
    assert states == {f"{stack.name}-idle-1": "created", f"{stack.name}-job-1": "created"}
    again = stack.compose("create")  # the same configuration: kept, not recreated
    assert stack.ids() and "Recreated" not in again.stdout + again.stderr
    stack.compose("up", "-d")
    waited = stack.compose("wait", "job", check=False)
    assert waited.returncode == 5
    assert stack.compose("version").stdout.startswith("orch compose version v")
    assert json.loads(stack.compose("version", "--format", "json").stdout)["version"].startswith("v")
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", stack.compose("version", "--short").stdout)


def test_attach_to_a_service(node, stack):
    stack.write("""
services:
  echo:
    image: busybox:latest
    command: ["sh", "-c", "read line; echo got $$line; exit 3"]
    stdin_open: true
    network_mode: none
""")
    stack.compose("up", "-d")
    proc = subprocess.run([sys.executable, "-m", "orch", "compose", "-f", str(stack.file), "attach", "echo"], env=node.env,
                          input="x\n", capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (3, "got x\n"), proc.stderr


def test_watch_syncs_rebuilds_and_ignores(node, stack):
    app = stack.dir / "app"
    app.mkdir()
    (app / "a.txt").write_text("v1\n")
    (stack.dir / "Dockerfile").write_text("FROM busybox\nCOPY app /app\nCMD [\"sleep\", \"1000\"]\n")
    stack.write(f"""
services:
  web:
    build: .
    image: {stack.name}-web
    network_mode: none
    develop:
      watch:
        - action: sync
          path: ./app
          target: /app
          ignore: [skip/]
        - action: rebuild
          path: Dockerfile
""")
    log = open(stack.dir / "watch.log", "w")
    watcher = popen(node, "compose", "-f", str(stack.file), "watch", stdout=log, stderr=subprocess.STDOUT)
    try:
        def started() -> bool:
            text = (stack.dir / "watch.log").read_text()
            assert watcher.poll() is None or "Watch enabled" in text, f"watch exited {watcher.returncode}:\n{text}"
            return "Watch enabled" in text

        try:
            wait_for(started, "watch to start", 120)
        except AssertionError as err:
            raise AssertionError(f"{err}\nwatch's output:\n{(stack.dir / 'watch.log').read_text()}") from None

        def inside(cmd: str) -> str:
            return stack.compose("exec", "-T", "web", "sh", "-c", cmd, check=False).stdout

        (app / "a.txt").write_text("v2\n")
        (app / "new.txt").write_text("new\n")
        (app / "skip").mkdir()
        (app / "skip" / "s.txt").write_text("s\n")
        (app / "editing.txt~").write_text("tmp\n")
        wait_for(lambda: inside("cat /app/a.txt /app/new.txt") == "v2\nnew\n", "the sync")
        assert inside("ls /app") == "a.txt\nnew.txt\n"  # the ignored ones stayed out
        (app / "new.txt").unlink()
        wait_for(lambda: inside("ls /app") == "a.txt\n", "the removal")
        before = node.inspect(f"{stack.name}-web-1")["Id"]
        (stack.dir / "Dockerfile").write_text("FROM busybox\nCOPY app /app\nLABEL changed=1\nCMD [\"sleep\", \"1000\"]\n")
        wait_for(lambda: node.orch("inspect", "--format", "{{.Id}}", f"{stack.name}-web-1", check=False).stdout.strip() not in
                 (before, ""), "the rebuild", 120)
        assert node.inspect(f"{stack.name}-web-1")["Config"]["Labels"].get("changed") == "1"
        assert "Rebuilding service \"web\"" in (stack.dir / "watch.log").read_text()
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(20)
        log.close()
    assert os.path.exists(stack.dir / "watch.log")
