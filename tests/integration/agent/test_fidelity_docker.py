"""The commands of issue 14 beside the same commands on a private dockerd (bench/peers.py starts
it with a data root of its own; busybox goes in by `orch save | docker load`, there is no
Docker Hub): columns, `--format` placeholders, exit codes and messages, and where orch and
docker must differ (ids, times, docker's network "none" events), the shapes.

dockerd here is Debian's 20.10 (Engine API 1.41) and the docker CLI 28; orch's own API
follows 1.41's shapes. Containers on both sides run with `--network none` (the private dockerd
has no bridge).
"""

import base64
import json
import os
import pty
import re
import select
import shutil
import subprocess
import tarfile
import time
import uuid

import pytest

from bench.peers import private_dockerd

pytestmark = pytest.mark.privileged

SETUP = "mkdir -p /d/sub; echo hi > /d/f; chown 5:6 /d/f; chmod 640 /d/f; ln -s /d /link; ln -s /etc/passwd /d/abs; sleep 1000"


@pytest.fixture(scope="module")
def docker(node, tmp_path_factory):
    if not shutil.which("dockerd") or not shutil.which("docker"):
        pytest.skip("needs dockerd and the docker CLI (apt-get install docker.io) for the comparison")
    archive = tmp_path_factory.mktemp("busybox") / "busybox.tar"
    node.orch("save", "-o", str(archive), "busybox")
    with private_dockerd(archive) as env:
        if isinstance(env, str):
            pytest.fail(env)  # dockerd is installed but did not start: that is a failure here

        def run(*args, check=True, input=None, timeout=60):
            proc = subprocess.run(["docker", *args], env=env, capture_output=True, text=input is None or isinstance(input, str),
                                  input=input, timeout=timeout)
            if check and proc.returncode != 0:
                raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
            return proc

        run.env = env
        yield run


def both(node, docker, *args, check=True):
    """(orch's, docker's) CompletedProcess of one command line."""
    return node.orch(*args, check=check), docker(*args, check=check)


def name():
    return "f" + uuid.uuid4().hex[:10]


def pair(node, docker, *run_args):
    """The same container on both sides: its name."""
    n = name()
    both(node, docker, "run", "-d", "--name", n, "--network", "none", *run_args)
    return n


def api_get(sock: str, path: str):
    """The JSON answer of GET `path` on a unix socket (the agent's, or dockerd's)."""
    import socket as sockets

    s = sockets.socket(sockets.AF_UNIX)
    s.connect(sock)
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def message(proc) -> str:
    """An error line without its prefix (orch's "orch: ", docker's "Error response from daemon: ")."""
    text = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return re.sub(r"^(orch: |Error response from daemon: |Error: )", "", text)


# -- info and version --------------------------------------------------------------------------
INFO_TEMPLATE = ("{{.OSType}}|{{.Architecture}}|{{.NCPU}}|{{.MemTotal}}|{{.KernelVersion}}|{{.OperatingSystem}}|"
                 "{{.CgroupDriver}}|{{.CgroupVersion}}|{{.LoggingDriver}}|{{.Swarm.LocalNodeState}}|{{.Name}}")


def test_info_fields_are_dockers_and_agree_on_the_host(node, docker):
    ours, theirs = both(node, docker, "info", "--format", INFO_TEMPLATE)
    assert ours.stdout == theirs.stdout  # the host's facts, read by both
    mine = api_get(str(node.run_dir / "orch.sock"), "/info")
    dockers = api_get(docker.env["DOCKER_HOST"].removeprefix("unix://"), "/info")
    # Every field orch reports is one of docker's (and of its type); the rest of docker's do
    # not apply (NGoroutines, Runtimes, the containerd/runc commits...).
    extra = {k for k in mine if k not in dockers}
    assert extra == set(), extra
    for key in ("Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images", "Driver", "ServerVersion",
                "DockerRootDir", "ID", "Plugins", "RegistryConfig", "SecurityOptions", "DriverStatus"):
        assert type(mine[key]) is type(dockers[key]), key
    assert mine["Containers"] == mine["ContainersRunning"] + mine["ContainersPaused"] + mine["ContainersStopped"]


def test_info_layout(node, docker):
    ours, theirs = both(node, docker, "info")

    def labels(text: str) -> list[str]:
        return [line.split(":")[0] for line in text.splitlines() if ":" in line and not line.startswith("WARNING")]

    mine, dockers = labels(ours.stdout), labels(theirs.stdout)
    # orch prints docker's lines in docker's order, those that apply.
    assert [line for line in dockers if line in mine] == [line for line in mine if line in dockers]
    for line in ("Server", " Containers", "  Running", "  Paused", "  Stopped", " Images", " Server Version", " Storage Driver",
                 " Logging Driver", " Cgroup Driver", " Cgroup Version", " Swarm", " Kernel Version", " Operating System", " OSType",
                 " Architecture", " CPUs", " Total Memory", " Name", " ID", " Docker Root Dir"):
        assert line in mine and line in dockers, line


def test_version_layout_and_format(node, docker):
    ours, theirs = both(node, docker, "version")

    def labels(text: str) -> list[str]:
        return [line.split(":")[0].strip() for line in text.splitlines() if line.strip()]

    mine = labels(ours.stdout)
    dockers = [label.replace("Go version", "Python version") for label in labels(theirs.stdout)]
    assert mine == dockers[: len(mine)]  # docker's server lists containerd, runc and docker-init after the Engine
    # Values start in the same column (docker's tabwriter: minimum width 20, padding 1).
    column = {line.index(line.split(":", 1)[1].strip()) for line in ours.stdout.splitlines() if re.match(r"\s+\w[\w /]*:\s+\S", line)}
    assert column == {20}
    fmt = "{{.Client.APIVersion}} {{.Server.APIVersion}} {{.Server.Os}}/{{.Server.Arch}} {{range .Server.Components}}{{.Name}} {{end}}"
    o, d = both(node, docker, "version", "--format", fmt)
    assert o.stdout.split()[1:3] == d.stdout.split()[1:3] == ["1.41", "linux/amd64"]
    assert o.stdout.split()[3] == d.stdout.split()[3] == "Engine"
    assert set(json.loads(node.orch("version", "--format", "{{json .}}").stdout)["Server"]) <= \
        set(json.loads(docker("version", "--format", "{{json .}}").stdout)["Server"])


# -- events ---------------------------------------------------------------------------------------------
def scenario(run, n):
    run("create", "--name", n, "--network", "none", "--label", "a=b", "busybox", "sleep", "1000")
    run("start", n)
    run("exec", n, "sh", "-c", "exit 3", check=False)
    run("pause", n)
    run("unpause", n)
    run("rename", n, n + "x")
    run("update", "--memory", "64m", "--memory-swap", "128m", n + "x")
    run("kill", "-s", "TERM", n + "x")
    run("rm", "-f", n + "x")
    run("tag", "busybox", n + ":1")
    run("rmi", n + ":1")
    run("volume", "create", n + "v")
    run("volume", "rm", n + "v")


def _events(run, since, until, *flags):
    return run("events", "--since", since, "--until", until, *flags).stdout


def test_events_types_actions_and_attributes(node, docker):
    n = name()
    start = f"{time.time() - 1:.3f}"
    scenario(lambda *a, check=True: node.orch(*a, check=check), n)
    scenario(docker, n)
    end = f"{time.time() + 1:.3f}"
    fmt = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"
    filters = ("--filter", f"container={n}", "--filter", "type=container")
    ours = _events(node.orch, start, end, "--format", fmt, *filters).splitlines()
    theirs = _events(docker, start, end, "--format", fmt, *filters).splitlines()
    assert ours == theirs and len(ours) >= 13, (ours, theirs)
    # Images and volumes: the same actions for the same objects.
    fmt = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}{{.Actor.Attributes.driver}}"
    for kind, who in (("image", f"{n}:1"), ("volume", n + "v")):
        select = ("--filter", f"type={kind}", "--filter", f"{kind}={who}" if kind == "volume" else f"image={who}")
        assert _events(node.orch, start, end, "--format", fmt, *select) == _events(docker, start, end, "--format", fmt, *select)
    # The JSON message: docker's keys, for every type.
    for kind in ("container", "image", "volume"):
        mine = [json.loads(x) for x in _events(node.orch, start, end, "--format", "{{json .}}", "--filter", f"type={kind}").splitlines()]
        dockers = [json.loads(x) for x in _events(docker, start, end, "--format", "{{json .}}", "--filter", f"type={kind}").splitlines()]
        assert mine and dockers
        assert {tuple(m) for m in mine} <= {tuple(d) for d in dockers} | {tuple(k for k in d if k != "from") for d in dockers}
    # Attributes a container's events carry (labels, image, name, and the action's own).
    def keys(run):
        return [(m["Action"], sorted(m["Actor"]["Attributes"])) for m in
                map(json.loads, _events(run, start, end, "--format", "{{json .}}", *filters).splitlines())]

    assert keys(node.orch) == keys(docker)


def test_events_default_line_and_until_in_the_past(node, docker):
    n = name()
    start = f"{time.time() - 1:.3f}"
    for run in (lambda *a: node.orch(*a), docker):
        run("volume", "create", n)
        run("volume", "rm", n)
    end = f"{time.time() + 0.5:.3f}"
    time.sleep(0.6)  # `until` must be in the past for the stream to end at once
    pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d) volume (create|destroy) " + n + r" \(driver=local\)"
    for run in (node.orch, docker):
        lines = _events(run, start, end, "--filter", f"volume={n}").splitlines()
        assert len(lines) == 2 and all(re.fullmatch(pattern, line) for line in lines), lines
    # An unknown filter: dockerd 20.10 ignores it (and streams nothing); orch says so, as newer
    # dockerds do ("invalid filter").
    o = node.orch("events", "--filter", "colour=red", "--until", "0s", check=False)
    assert (o.returncode, message(o)) == (1, "invalid filter 'colour'")


# -- stats -------------------------------------------------------------------------------------------------------
STATS_FMT = "{{.Container}}|{{.Name}}|{{.ID}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.NetIO}}|{{.BlockIO}}|{{.PIDs}}"


def test_stats_table_and_placeholders(node, docker):
    n = pair(node, docker, "-m", "64m", "--pids-limit", "20", "busybox", "sleep", "1000")
    stopped = name()
    both(node, docker, "create", "--name", stopped, "--network", "none", "busybox", "true")
    ours, theirs = both(node, docker, "stats", "--no-stream", n)
    assert ours.stdout.splitlines()[0] == theirs.stdout.splitlines()[0]  # headers, aligned alike
    o = node.orch("stats", "--no-stream", "--format", STATS_FMT, n).stdout.strip().split("|")
    d = docker("stats", "--no-stream", "--format", STATS_FMT, n).stdout.strip().split("|")
    assert o[0] == d[0] == n and o[1] == d[1] == n
    assert re.fullmatch(r"[0-9a-f]{12}", o[2]) and re.fullmatch(r"\d+\.\d\dKi?B / 64MiB|\d+(\.\d+)?[KM]iB / 64MiB", o[4]), o
    assert o[4].split(" / ")[1] == d[4].split(" / ")[1] == "64MiB"
    for i in (3, 5):
        assert re.fullmatch(r"\d+\.\d\d%", o[i]) and re.fullmatch(r"\d+\.\d\d%", d[i])
    assert o[6] == d[6] == "0B / 0B"  # no network
    assert o[8] == d[8] == "1"
    # A stopped container, with --all: docker's zeros.
    o = node.orch("stats", "--no-stream", "--format", STATS_FMT, stopped).stdout.strip().split("|")
    d = docker("stats", "--no-stream", "--format", STATS_FMT, stopped).stdout.strip().split("|")
    assert o[3:] == d[3:] == ["0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"]
    o, d = both(node, docker, "stats", "--no-stream", "nosuch" + n, check=False)
    assert o.returncode == d.returncode == 1 and message(o).lower() == message(d).lower() == f"no such container: nosuch{n}"
    both(node, docker, "rm", "-f", n, stopped)


def test_stats_api_shape(node, docker):
    n = pair(node, docker, "-m", "64m", "busybox", "sleep", "1000")
    mine = api_get(str(node.run_dir / "orch.sock"), f"/containers/{n}/stats?stream=false")
    dockers = api_get(docker.env["DOCKER_HOST"].removeprefix("unix://"), f"/containers/{n}/stats?stream=false")
    assert list(mine) == list(dockers)
    for key in ("cpu_stats", "precpu_stats", "blkio_stats", "pids_stats"):
        assert list(mine[key]) == list(dockers[key]), key
    assert list(mine["cpu_stats"]["cpu_usage"]) == list(dockers["cpu_stats"]["cpu_usage"])
    assert set(mine["memory_stats"]) <= set(dockers["memory_stats"]) | {"failcnt"}
    assert set(mine["memory_stats"]["stats"]) == set(dockers["memory_stats"]["stats"])
    assert mine["memory_stats"]["limit"] == dockers["memory_stats"]["limit"] == 64 << 20
    both(node, docker, "rm", "-f", n)


# -- cp and export -----------------------------------------------------------------------------------------------
def _stat(run_path, sock: str, cid: str, path: str) -> dict:
    import socket as sockets
    from urllib.parse import quote

    s = sockets.socket(sockets.AF_UNIX)
    s.connect(sock)
    s.sendall(f"HEAD /containers/{cid}/archive?path={quote(path)} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    status = int(head.split()[1])
    for line in head.split("\r\n"):
        if line.lower().startswith("x-docker-container-path-stat:"):
            return {"status": status, **json.loads(base64.b64decode(line.split(":", 1)[1].strip()))}
    return {"status": status}


def _listing(root) -> list[tuple]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in sorted(dirnames + filenames):
            p = os.path.join(dirpath, entry)
            st = os.lstat(p)
            out.append((os.path.relpath(p, root), oct(st.st_mode), st.st_size if not os.path.isdir(p) else 0,
                        os.readlink(p) if os.path.islink(p) else ""))
    return sorted(out)


def _tar_listing(data: bytes) -> list[tuple]:
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        # Permission bits: Go's tar writer also puts the file type's bits in the mode field
        # (040755 for a directory), which Python's leaves out; readers take the type from
        # the type flag.
        return [(m.name.rstrip("/"), m.type, m.mode & 0o7777, m.uid, m.gid, m.size, m.linkname, m.uname, m.gname)
                for m in tar.getmembers()]


def test_cp_path_stat_is_dockers(node, docker):
    n = pair(node, docker, "busybox", "sh", "-c", SETUP)
    node.orch("exec", n, "sh", "-c", "while [ ! -L /d/abs ]; do sleep 0.05; done")
    docker("exec", n, "sh", "-c", "while [ ! -L /d/abs ]; do sleep 0.05; done")
    sock = docker.env["DOCKER_HOST"].removeprefix("unix://")
    for path in ("/d", "/link", "/link/", "/d/f", "/d/abs", "/d/.", "/nonexist", "/"):
        mine = _stat(None, str(node.run_dir / "orch.sock"), n, path)
        dockers = _stat(None, sock, n, path)
        mine.pop("mtime", None), dockers.pop("mtime", None)
        assert mine == dockers, path
    both(node, docker, "rm", "-f", n)


def test_cp_from_a_container(node, docker, tmp_path):
    n = pair(node, docker, "busybox", "sh", "-c", SETUP)
    for run in (node.orch, docker):
        run("exec", n, "sh", "-c", "while [ ! -L /d/abs ]; do sleep 0.05; done")
    for side, run in (("orch", node.orch), ("docker", docker)):
        out = tmp_path / side
        out.mkdir()
        run("cp", f"{n}:/d", str(out / "x"))
        run("cp", f"{n}:/link/.", str(out / "dot"))
        run("cp", f"{n}:/link", str(out / "linkcopy"))
        (out / "file").write_text("old")
        run("cp", f"{n}:/d/f", str(out / "file"))
    assert _listing(tmp_path / "orch") == _listing(tmp_path / "docker")
    # To standard output: the container's own archive, owners included.
    o = subprocess.run([*node_cmd(node), "cp", f"{n}:/d", "-"], env=node.env, capture_output=True, timeout=60)
    d = subprocess.run(["docker", "cp", f"{n}:/d", "-"], env=docker.env, capture_output=True, timeout=60)
    assert o.returncode == d.returncode == 0
    assert _tar_listing(o.stdout) == _tar_listing(d.stdout)
    # docker's refusals, its exit codes and words.
    (tmp_path / "afile").write_text("x")
    for args, words in (([f"{n}:/nonexist", str(tmp_path / "y")], f"could not find the file /nonexist in container {n}"),
                        ([f"{n}:/d/f", str(tmp_path / "nodir") + "/"], "no such directory"),
                        ([f"{n}:/d", str(tmp_path / "afile")], "cannot copy directory")):
        o, d = both(node, docker, "cp", *args, check=False)
        assert o.returncode == d.returncode == 1, args
        assert message(o).lower() == message(d).lower() == words
    both(node, docker, "rm", "-f", n)


def node_cmd(node):
    import sys

    return [sys.executable, "-m", "orch"]


def test_cp_into_a_container_running_and_stopped(node, docker, tmp_path):
    n = pair(node, docker, "busybox", "sh", "-c", SETUP)
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "dir" / "a").write_text("a")
    (src / "h").write_text("hi\n")
    os.chown(src / "h", 7, 8)
    os.chmod(src / "h", 0o4750)
    os.symlink("a", src / "dir" / "l")
    cases = [[str(src / "h"), f"{n}:/tmp/"], ["-a", str(src / "h"), f"{n}:/tmp/a-h"], [str(src / "dir"), f"{n}:/tmp/newdir"],
             [str(src / "dir") + "/.", f"{n}:/tmp/"], [str(src / "h"), f"{n}:/tmp/renamed"]]
    for args in cases:
        both(node, docker, "cp", *args)
    listing = "ls -lnR /tmp | sed 's/ [A-Z][a-z][a-z] .* \\([^ ]*\\)$/ \\1/'"
    o, d = both(node, docker, "exec", n, "sh", "-c", listing)
    assert o.stdout == d.stdout
    for args, code, words in (([str(src / "h"), f"{n}:/nodir/"], 1, None), ([str(src / "h"), f"{n}:/d/f/"], 1, None)):
        o, d = both(node, docker, "cp", *args, check=False)
        assert o.returncode == d.returncode == code, (args, o.stderr, d.stderr)
    o = subprocess.run([*node_cmd(node), "cp", "-", f"{n}:/d/f"], env=node.env, capture_output=True, text=True, input="")
    d = subprocess.run(["docker", "cp", "-", f"{n}:/d/f"], env=docker.env, capture_output=True, text=True, input="")
    assert o.returncode == d.returncode == 1 and message(o) == message(d) == f'destination "{n}:/d/f" must be a directory'
    # A stopped container: its overlay (and volumes) mounted for the copy only.
    both(node, docker, "stop", "-t", "0", n)
    both(node, docker, "cp", str(src / "h"), f"{n}:/stopped")
    for side, run in (("orch", node.orch), ("docker", docker)):
        run("cp", f"{n}:/stopped", str(tmp_path / f"back-{side}"))
    assert (tmp_path / "back-orch").read_text() == (tmp_path / "back-docker").read_text() == "hi\n"
    both(node, docker, "rm", "-f", n)


def test_export(node, docker, tmp_path):
    n = pair(node, docker, "busybox", "sh", "-c", "echo x > /made; rm /bin/vi; sleep 1000")
    for run in (node.orch, docker):
        run("exec", n, "sh", "-c", "while [ ! -f /made ]; do sleep 0.05; done")
    both(node, docker, "export", "-o", str(tmp_path / "x.tar"), n, check=False)  # (the second overwrites: fine)
    o = subprocess.run([*node_cmd(node), "export", n], env=node.env, capture_output=True, timeout=60)
    d = subprocess.run(["docker", "export", n], env=docker.env, capture_output=True, timeout=60)
    mine = {m[0] for m in _tar_listing(o.stdout)}
    dockers = {m[0] for m in _tar_listing(d.stdout)}
    assert "made" in mine and "bin/vi" not in mine and "bin/sh" in mine
    # docker's own files in every container (.dockerenv, the init layer's /dev and /proc entries).
    assert mine ^ dockers <= {".dockerenv", "dev/console", "dev/pts", "dev/shm", "proc", "sys", "etc/mtab", "dev", "etc/hostname",
                              "etc/hosts", "etc/resolv.conf"}, mine ^ dockers
    tty = subprocess.run(["script", "-qc", " ".join([*node_cmd(node), "export", n]), "/dev/null"], env=node.env,
                         capture_output=True, text=True, timeout=60)
    assert "cowardly refusing to save to a terminal" in tty.stdout
    both(node, docker, "rm", "-f", n)


# -- rename, update, prune ---------------------------------------------------------------------------------------------
def test_rename_update_and_their_refusals(node, docker):
    n = pair(node, docker, "-m", "64m", "busybox", "sleep", "1000")
    other = pair(node, docker, "busybox", "sleep", "1000")
    both(node, docker, "rename", n, n + "r")
    o, d = both(node, docker, "inspect", "--format", "{{.Name}}", n + "r")
    assert o.stdout == d.stdout == f"/{n}r\n"
    for args in ((n + "r", n + "r"), (n + "r", other)):
        o, d = both(node, docker, "rename", *args, check=False)
        assert o.returncode == d.returncode == 1, args
        # docker's CLI adds "Error: failed to rename container named X" under the daemon's line.
        ids = lambda text: re.sub(r"[0-9a-f]{64}", "<id>", text)  # noqa: E731 (the two sides' ids differ)
        assert ids(message(o)) == ids(re.sub(r"^Error response from daemon: ", "", d.stderr.splitlines()[0])), (o.stderr, d.stderr)
    o, d = both(node, docker, "update", "--memory", "128m", "--memory-swap", "256m", "--pids-limit", "30", "--cpus", "0.5",
                "--restart", "on-failure:3", n + "r")
    assert o.stdout == d.stdout == f"{n}r\n"
    fmt = "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{json .HostConfig.RestartPolicy}}"
    o, d = both(node, docker, "inspect", "--format", fmt, n + "r")
    assert o.stdout == d.stdout
    # The running container's group has the new limits.
    cid = node.inspect(n + "r")["Id"]
    from orch.node.runtime.cgroups import node_cgroup_parent

    group = f"{node_cgroup_parent(node.root)}/{cid}"
    assert open(f"/sys/fs/cgroup/memory/{group}/memory.limit_in_bytes").read().strip() == str(128 << 20)
    assert open(f"/sys/fs/cgroup/pids/{group}/pids.max").read().strip() == "30"
    o, d = both(node, docker, "update", "--memory", "512m", n + "r", check=False)
    assert o.returncode == d.returncode == 1
    assert "Memory limit should be smaller than already set memoryswap limit" in o.stderr + d.stderr
    o, d = both(node, docker, "update", n + "r", check=False)
    assert o.returncode == d.returncode and message(o) == message(d)
    both(node, docker, "rm", "-f", n + "r", other)


def test_container_prune(node, docker):
    label = "fidelity=" + uuid.uuid4().hex[:6]
    for run in (lambda *a: node.orch(*a), docker):
        run("run", "--name", name(), "--network", "none", "--label", label, "busybox", "sh", "-c", "head -c 12345 /dev/zero > /x")
        run("create", "--name", name(), "--network", "none", "busybox", "true")
    o, d = both(node, docker, "container", "prune", "-f", "--filter", f"label={label}")
    assert re.fullmatch(r"Deleted Containers:\n[0-9a-f]{64}\n\nTotal reclaimed space: (\S+)\n", o.stdout), o.stdout
    assert o.stdout.splitlines()[-1] == d.stdout.splitlines()[-1] == "Total reclaimed space: 12.35kB"
    o, d = both(node, docker, "container", "prune", "-f", "--filter", f"label={label}")
    assert o.stdout == d.stdout == "Total reclaimed space: 0B\n"
    for run in (lambda *a: node.orch(*a), docker):
        rows = [line.split() for line in run("ps", "-a", "--format", "{{.ID}} {{.State}}").stdout.splitlines()]
        created = [row[0] for row in rows if row[1:] == ["created"]]
        if created:
            run("rm", "-f", *created)


# -- attach --------------------------------------------------------------------------------------------------------------
def attach_session(cmd: list[str], env: dict) -> tuple[bytes, int]:
    """Run `cmd` on a terminal, type a command, then ctrl-p ctrl-q one key a read."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(cmd[0], cmd, env)
    out = b""

    def read_for(seconds: float) -> None:
        nonlocal out
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                if not data:
                    return
                out += data

    read_for(1.5)
    os.write(fd, b"echo hello\r")
    read_for(0.7)
    os.write(fd, b"\x10")
    read_for(0.3)
    os.write(fd, b"\x11")
    read_for(2.0)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out, os.waitstatus_to_exitcode(status)


def test_attach_and_detach_keys(node, docker):
    n = pair(node, docker, "-it", "busybox", "sh")
    import sys

    ours = attach_session([sys.executable, "-m", "orch", "attach", n], node.env)
    theirs = attach_session(["docker", "attach", n], docker.env)
    assert ours[1] == theirs[1] == 1
    assert ours[0].endswith(b"read escape sequence\r\n") and theirs[0].endswith(b"read escape sequence\r\n")
    assert b"hello\r\n" in ours[0] and b"hello\r\n" in theirs[0]
    o, d = both(node, docker, "inspect", "--format", "{{.State.Status}}", n)
    assert o.stdout == d.stdout == "running\n"  # detached, not stopped
    o, d = both(node, docker, "attach", n, check=False)  # standard input is not a terminal here
    assert o.returncode == d.returncode == 1 and message(o) == message(d) == "the input device is not a TTY"
    both(node, docker, "stop", "-t", "0", n)
    o, d = both(node, docker, "attach", n, check=False)
    assert o.returncode == d.returncode == 1
    assert message(o) == message(d) == "You cannot attach to a stopped container, start it first"
    both(node, docker, "rm", "-f", n)


def test_attach_without_a_terminal_streams_output_and_ends_with_the_exit_code(node, docker):
    n = pair(node, docker, "-i", "busybox", "sh", "-c", "read line; echo got $line; exit 7")
    o = subprocess.run([*node_cmd(node), "attach", n], env=node.env, input="x\n", capture_output=True, text=True, timeout=30)
    d = subprocess.run(["docker", "attach", n], env=docker.env, input="x\n", capture_output=True, text=True, timeout=30)
    assert o.returncode == d.returncode == 7
    # (docker's CLI often loses output written just before the exit it waits for; orch's does not)
    assert o.stdout == "got x\n" and d.stdout in ("", "got x\n")
    both(node, docker, "rm", "-f", n)
