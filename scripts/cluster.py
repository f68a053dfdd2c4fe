"""scripts/cluster: N hosts, a cluster across them, the example web app deployed and curled
through the routing mesh on every host; `down` takes everything away.

The hosts are orch.cluster.lab's (network namespaces joined by an underlay bridge, each with its
own ORCH_ROOT and node agent). They have no way out to Debian's mirrors, so the stack's images
are built on this machine by a build node of the script's own (its own ORCH_ROOT, the
machine's network), loaded into h1, and pushed from h1 to a docker-registry that runs on the
underlay at h1's address; the stack file names the pushed images, and every node pulls them
from there. Everything lives under ORCH_CLUSTER_DIR (default /var/lib/orch-cluster).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orch.cluster.lab import Lab  # noqa: E402

BASE = Path(os.environ.get("ORCH_CLUSTER_DIR", "/var/lib/orch-cluster"))
PREFIX = "orchcl"
SUBNET = "10.214.0.0/24"
WEBAPP = REPO / "examples" / "stacks" / "webapp"
IMAGES = {"web": "webapp-web:latest", "redis": "webapp-redis:latest"}


def say(text: str) -> None:
    print(f"cluster: {text}", flush=True)


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"cluster: {' '.join(argv[:6])} ... failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return proc


def lab_of(size: int) -> Lab:
    registry = f"{Lab(BASE / 'hosts', 1, prefix=PREFIX, subnet=SUBNET).hosts[0].addr}:5000"
    return Lab(BASE / "hosts", size, prefix=PREFIX, subnet=SUBNET, env={"ORCH_INSECURE_REGISTRIES": registry})


def build_images() -> Path:
    """The stack's images, built by a build node on this machine, saved to one archive."""
    root, run_dir = BASE / "build" / "root", BASE / "build" / "run"
    env = dict(os.environ, ORCH_ROOT=str(root), ORCH_RUN=str(run_dir), PYTHONPATH=str(REPO))
    orch = [sys.executable, "-m", "orch"]
    try:
        if subprocess.run([*orch, "image", "inspect", "debian:bookworm"], env=env, capture_output=True).returncode != 0:
            say("making the Debian base image on the build node (orch bootstrap debian, about 30 s)")
            run([*orch, "bootstrap", "debian"], env=env)
        for name, image in IMAGES.items():
            say(f"building {image} (examples/stacks/webapp/{name})")
            run([*orch, "build", "-q", "-t", image, str(WEBAPP / name)], env=env)
        archive = BASE / "build" / "images.tar"
        run([*orch, "save", "-o", str(archive), *IMAGES.values()], env=env)
        return archive
    finally:
        stop_node(root, run_dir, env)


def stop_node(root: Path, run_dir: Path, env: dict) -> None:
    """The build node's agent and supervisor, and its default bridge (nothing of it stays)."""
    try:
        pid = int((run_dir / "agent.pid").read_text())
    except (OSError, ValueError):
        return
    for line in subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines():
        spid, _, args = line.strip().partition(" ")
        if f"--socket {run_dir / 'supervisor.sock'}" in args or int(spid) == pid:
            try:
                os.kill(int(spid), signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    while (run_dir / "agent.pid").exists() and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        state = json.loads((root / "networks" / "state.json").read_text())
    except (OSError, ValueError):
        state = {}
    from orch.node.agent.networking import default_prefix

    for net in state.get("networks", {}).values():
        subprocess.run(["ip", "link", "del", net["bridge"]], capture_output=True)
    subprocess.run(["nft", "delete", "table", "ip", default_prefix(root)], capture_output=True)
    remove_cgroups(root)


def remove_cgroups(root: Path) -> None:
    from orch.node.runtime.cgroups import node_cgroup_parent

    parent = node_cgroup_parent(root)
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for group in (hierarchy / parent / "supervisor", hierarchy / parent):
            try:
                group.rmdir()
            except OSError:
                pass


def start_registry(h1) -> subprocess.Popen:
    base = BASE / "registry"
    (base / "storage").mkdir(parents=True, exist_ok=True)
    addr = f"{h1.addr}:5000"
    (base / "config.yml").write_text(json.dumps({
        "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(base / "storage")}}, "http": {"addr": addr}}))
    log = open(base / "registry.log", "ab")
    proc = h1.popen(["docker-registry", "serve", str(base / "config.yml")], stdout=log, stderr=log, start_new_session=True)
    (base / "pid").write_text(str(proc.pid))
    wait(lambda: subprocess.run(h1.argv(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{addr}/v2/"]),
                                capture_output=True, text=True).stdout == "200", 15, "the registry")
    return proc


def wait(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"cluster: timed out waiting for {what}")


def up(size: int) -> None:
    if (BASE / "hosts" / "lab.json").exists():
        raise SystemExit(f"cluster: a cluster is up already (in {BASE}); scripts/cluster down first")
    BASE.mkdir(parents=True, exist_ok=True)
    (BASE / "size").write_text(str(size))
    archive = build_images()
    lab = lab_of(size).up()
    h1 = lab.hosts[0]
    say(f"{size} hosts up: " + ", ".join(f"{h.name} {h.addr}" for h in lab.hosts))
    for h in lab.hosts:
        h.start_agent()
    start_registry(h1)
    registry = f"{h1.addr}:5000"
    h1.orch("load", "-i", str(archive))
    for image in IMAGES.values():
        h1.orch("tag", image, f"{registry}/{image}")
        h1.orch("push", f"{registry}/{image}", timeout=600)
    say(f"images pushed to the registry at {registry}")
    h1.orch("swarm", "init", "--advertise-addr", h1.addr)
    token = h1.orch("swarm", "join-token", "-q", "worker").stdout.strip()
    for h in lab.hosts[1:]:
        h.orch("swarm", "join", "--token", token, f"{h1.addr}:2377")
    say(f"cluster formed:\n{h1.orch('node', 'ls').stdout.rstrip()}")
    override = BASE / "stack.yml"
    override.write_text("services:\n" + "".join(
        f"  {svc}:\n    image: {registry}/{IMAGES[src]}\n" for svc, src in (("web", "web"), ("worker", "web"), ("redis", "redis"))))
    say("orch stack deploy -c examples/stacks/webapp/compose.yaml -c stack.yml webapp")
    print(h1.orch("stack", "deploy", "-c", str(WEBAPP / "compose.yaml"), "-c", str(override), "webapp", timeout=300).stdout.rstrip())
    wait(lambda: all(r.split()[3].split("/")[0] == r.split()[3].split("/")[1] for r in
                     h1.orch("service", "ls").stdout.splitlines()[1:]) or None, 300, "every service running")
    say(f"services:\n{h1.orch('stack', 'ps', 'webapp').stdout.rstrip()}")
    for h in lab.hosts:
        def answer(host=h):
            proc = subprocess.run(lab.client_argv(["curl", "-fsS", "-m", "3", f"http://{host.addr}:8080/"]),
                                  capture_output=True, text=True)
            return proc.stdout.strip() if proc.returncode == 0 else None
        say(f"curl http://{h.addr}:8080/ (from the underlay): {wait(answer, 120, f'the web app on {h.name}')}")
    say("the web app answers on every host. Run orch on a host with:\n"
        f"    nsenter --net=/run/netns/{PREFIX}-h1 env ORCH_ROOT={h1.root} ORCH_RUN={h1.run_dir} .venv/bin/orch stack ps webapp\n"
        "and take it all down with: scripts/cluster down")


def down() -> None:
    size = int((BASE / "size").read_text()) if (BASE / "size").exists() else 9
    lab = lab_of(size)
    try:
        pid = int((BASE / "registry" / "pid").read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass
    h1 = lab.hosts[0]
    if (h1.run_dir / "orch.sock").exists():
        h1.orch("stack", "rm", "webapp", check=False, timeout=60)
    lab.down()
    for h in lab.hosts:
        remove_cgroups(h.root)
    stop_node(BASE / "build" / "root", BASE / "build" / "run", dict(os.environ))
    shutil.rmtree(BASE, ignore_errors=True)
    say(f"down: nothing of the cluster is left (namespaces, links, agents, etcd, {BASE})")


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("cluster: run as root (network namespaces, cgroups)", file=sys.stderr)
        return 1
    what = argv[0] if argv else "up"
    if what == "down":
        down()
    elif what == "up" or what.isdigit():
        size = int(argv[1] if what == "up" and len(argv) > 1 else what if what.isdigit() else 3)
        if not 1 <= size <= 9:
            raise SystemExit("cluster: give from 1 to 9 hosts")
        try:
            up(size)
        except BaseException:
            say("failed; taking down what was made")
            down()
            raise
    else:
        print("usage: scripts/cluster [up] [N] | scripts/cluster down", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
