"""Cluster deploys side by side: `orch stack deploy` of one service of N replicas on a one-node
cluster until all run, beside `docker stack deploy` of the same file on a one-node docker
swarm (a private dockerd, bench/peers.py) in the same run; then, on three orch hosts (network
namespaces on an underlay bridge), the time from a host dropping off the underlay until it is
Down and until its tasks run elsewhere.

Usage (as root):  python bench/cluster_deploy.py [--replicas 100] [--runs 3]

Prints medians and the ratio orch/docker (issue 11's target: 0.3x or better). Everything is
made under temporary directories and removed at the end (agents, etcd members, dockerd,
namespaces, the docker_gwbridge link docker's swarm makes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.peers import private_dockerd  # noqa: E402

STACK = """services:
  app:
    image: busybox:latest
    command: ["sleep", "100000"]
    init: true
    deploy:
      replicas: {replicas}
"""


def poll(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise SystemExit(f"bench: timed out waiting for {what}")


def orch_env(base: Path) -> dict:
    return dict(os.environ, ORCH_ROOT=str(base / "root"), ORCH_RUN=str(base / "run"), PYTHONPATH=str(REPO))


def orch(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "orch", *args], env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise SystemExit(f"bench: orch {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def replicas_of(out: str) -> tuple[int, int]:
    running, _, wanted = out.strip().partition("/")
    return int(running or 0), int(wanted.split()[0] if wanted else 0)


def make_orch_node(base: Path, archive: Path) -> dict:
    """A node with busybox (bootstrap's), saved to `archive` for docker too; its agent starts."""
    from orch.node.runtime.bootstrap import bootstrap
    from orch.node.runtime.images import ImageStore

    env = orch_env(base)
    (base / "root").mkdir(parents=True)
    bootstrap(ImageStore(base / "root"), "busybox")
    orch(env, "save", "-o", str(archive), "busybox:latest")
    return env


def stop_orch_node(base: Path) -> None:
    from tests.integration.processes import remove_node_cgroups, stop_process

    pid = base / "run" / "agent.pid"
    sup = subprocess.run(["pgrep", "-f", f"supervisor --socket {base / 'run'}"], capture_output=True, text=True).stdout.split()
    if pid.exists():
        stop_process(int(pid.read_text()))
    for p in sup:
        stop_process(int(p))
    remove_node_cgroups(base / "root")


def bench_orch(base: Path, stack: Path, replicas: int, runs: int) -> list[float]:
    env = orch_env(base)
    orch(env, "swarm", "init", "--advertise-addr", "127.0.0.1")
    times = []
    try:
        for _ in range(runs):
            began = time.monotonic()
            orch(env, "stack", "deploy", "-d", "-c", str(stack), "b")
            poll(lambda: replicas_of(orch(env, "service", "ls", "--format", "{{.Replicas}}").stdout) == (replicas, replicas),
                 600, "orch: all replicas running")
            times.append(time.monotonic() - began)
            orch(env, "stack", "rm", "b")
            poll(lambda: not orch(env, "ps", "-q").stdout.strip(), 300, "orch: the stack's containers gone")
    finally:
        orch(env, "swarm", "leave", "--force", check=False)
    return times


def bench_docker(env: dict, stack: Path, replicas: int, runs: int) -> list[float]:
    had_gwbridge = subprocess.run(["ip", "link", "show", "docker_gwbridge"], capture_output=True).returncode == 0
    docker = lambda *a: subprocess.run(["docker", *a], env=env, capture_output=True, text=True, timeout=600)  # noqa: E731
    init = docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    if init.returncode != 0:
        raise SystemExit(f"bench: docker swarm init: {init.stderr.strip()}")
    times = []
    try:
        for _ in range(runs):
            began = time.monotonic()
            out = docker("stack", "deploy", "--resolve-image", "never", "-c", str(stack), "b")
            if out.returncode != 0:
                raise SystemExit(f"bench: docker stack deploy: {out.stderr.strip()}")
            poll(lambda: replicas_of(docker("service", "ls", "--format", "{{.Replicas}}").stdout) == (replicas, replicas),
                 900, "docker: all replicas running", interval=0.2)
            times.append(time.monotonic() - began)
            docker("stack", "rm", "b")
            poll(lambda: not docker("ps", "-q").stdout.strip(), 600, "docker: the stack's containers gone", interval=0.2)
            # swarm removes the stack's network a moment after its tasks; the next deploy waits for it
            poll(lambda: "b_default" not in docker("network", "ls", "--format", "{{.Name}}").stdout, 120,
                 "docker: the stack's network gone", interval=0.2)
    finally:
        docker("swarm", "leave", "--force")
        if not had_gwbridge:
            subprocess.run(["ip", "link", "del", "docker_gwbridge"], capture_output=True)
    return times


def bench_dropoff(base: Path, replicas: int) -> tuple[float, float]:
    from tests.integration.cluster.lab_fixture import containers, open_lab

    gen = open_lab(3, "orchbd")
    lab = next(gen)
    try:
        h1, h2, h3 = lab.hosts
        h1.orch("swarm", "init", "--advertise-addr", h1.addr)
        token = h1.orch("swarm", "join-token", "-q", "worker").stdout.strip()
        for h in (h2, h3):
            h.orch("swarm", "join", "--token", token, f"{h1.addr}:2377")
        stack = base / "dropoff.yml"
        stack.write_text(STACK.format(replicas=replicas))
        h1.orch("stack", "deploy", "-d", "-c", str(stack), "d")
        count = lambda hosts: sum(1 for h in hosts for c in containers(h) if c["Names"].startswith("d_app."))  # noqa: E731
        poll(lambda: count(lab.hosts) == replicas and count([h3]) > 0, 300, "orch: the drop-off stack running")
        began = time.monotonic()
        h3.cut()
        poll(lambda: any(json.loads(line)["Hostname"] == "h3" and json.loads(line)["Status"] == "Down"
                         for line in h1.orch("node", "ls", "--format", "{{json .}}").stdout.splitlines()), 120, "h3 Down")
        down = time.monotonic() - began
        poll(lambda: count([h1, h2]) == replicas, 120, "h3's tasks running elsewhere")
        return down, time.monotonic() - began
    finally:
        try:
            next(gen)
        except StopIteration:
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dropoff-replicas", type=int, default=30)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (namespaces, cgroups)")
    base = Path(tempfile.mkdtemp(prefix="orch-bench-cluster-"))
    stack = base / "stack.yml"
    stack.write_text(STACK.format(replicas=args.replicas))
    try:
        print(f"stack deploy of one service, {args.replicas} busybox replicas, one node, until all run "
              f"(median of {args.runs}); this machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
        archive = base / "busybox.tar"
        make_orch_node(base / "orch", archive)
        try:
            orch_times = bench_orch(base / "orch", stack, args.replicas, args.runs)
        finally:
            stop_orch_node(base / "orch")
        print(f"  orch   {statistics.median(orch_times):7.2f} s   runs: {', '.join(f'{t:.2f}' for t in orch_times)}", flush=True)
        with private_dockerd(archive) as env:
            if isinstance(env, str):
                print(f"  docker not available: {env}")
            else:
                docker_times = bench_docker(env, stack, args.replicas, args.runs)
                d = statistics.median(docker_times)
                print(f"  docker {d:7.2f} s   runs: {', '.join(f'{t:.2f}' for t in docker_times)}", flush=True)
                print(f"  orch/docker = {statistics.median(orch_times) / d:.2f}x (target 0.3x or better)", flush=True)
        down, moved = bench_dropoff(base, args.dropoff_replicas)
        print(f"a host drops off the underlay (3 hosts, {args.dropoff_replicas} replicas): Down after {down:.1f} s, "
              f"its tasks running elsewhere after {moved:.1f} s (swarm's defaults: 5 s heartbeats, 3 missed)", flush=True)
    finally:
        from bench.peers import umount_under

        umount_under(base)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
