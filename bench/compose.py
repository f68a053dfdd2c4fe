"""Stack benchmark: `up -d` and `down` of one 20-service busybox stack, orch beside
docker-compose (v1, against a dockerd this script starts) and podman-compose (against podman).

    sudo PYTHONPATH=. .venv/bin/python bench/compose.py [--runs N] [--services N] [--no-docker] [--no-podman]

Every tool gets the same stack file: N services of busybox `sleep`, each on the project's
default network (a bridge, a veth and an address per container; DNS names), stop_signal
SIGKILL so `down` measures the tools rather than a grace period. Times are the wall clock of
the whole command, median of --runs, with the stack down before each `up`.

- orch: a fresh ORCH_ROOT/ORCH_RUN with busybox loaded from the test cache (one `orch load`);
  the agent is started before timing, as a node's agent runs all the time.
- docker-compose: Debian's docker-compose 1.29 (apt) against `dockerd` started here with its
  own --data-root, exec-root and socket (and --iptables=false, so the host's firewall is not
  touched); busybox comes from the same docker-archive with `docker load`. Stopped and removed
  at the end. Skipped with a printed reason when dockerd or docker-compose is missing.
- podman-compose: Debian's podman-compose 1.0 against rootful podman; the busybox image is
  loaded into podman's store and removed at the end.

Printed: the times, and orch's ratio to each peer and to the faster one (the target: 0.3x).
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.peers import private_dockerd  # noqa: E402
CACHE = Path(os.environ.get("ORCH_TEST_CACHE", "/var/cache/orch-test"))


def stack_text(n: int) -> str:
    lines = ["services:"]
    for i in range(n):
        lines += [f"  s{i:02}:", "    image: busybox:latest", '    command: ["sleep", "100000"]', "    stop_signal: SIGKILL"]
    return "\n".join(lines) + "\n"


def run(argv, env=None, check=True, cwd=None) -> float:
    t = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=cwd)
    elapsed = time.perf_counter() - t
    if check and proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return elapsed


def measure(name: str, up: list[str], down: list[str], runs: int, env=None, cwd=None) -> dict:
    run(down, env=env, check=False, cwd=cwd)
    ups, downs = [], []
    for _ in range(runs):
        ups.append(run(up, env=env, cwd=cwd))
        downs.append(run(down, env=env, cwd=cwd))
    result = {"up": statistics.median(ups), "down": statistics.median(downs)}
    print(f"{name:<16} up -d {result['up']:7.2f}s   down {result['down']:7.2f}s   (median of {runs})", flush=True)
    return result


def busybox_archive() -> Path:
    from tests.integration.build.conftest import cached_base

    return cached_base("busybox")


def bench_orch(stack: Path, runs: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix="orch-bench-compose-"))
    prefix = "orchB" + os.urandom(2).hex()  # its own nftables table and bridges (orch/net/README.md)
    env = dict(os.environ, ORCH_ROOT=str(base / "root"), ORCH_RUN=str(base / "run"), PYTHONPATH=str(REPO), ORCH_NET_PREFIX=prefix)
    orch = [sys.executable, "-m", "orch"]
    try:
        run(orch + ["load", "-i", str(busybox_archive())], env=env)
        return measure("orch", orch + ["compose", "-f", str(stack), "up", "-d"], orch + ["compose", "-f", str(stack), "down"], runs, env=env)
    finally:
        run(orch + ["compose", "-f", str(stack), "down", "-v"], env=env, check=False)
        _stop_pidfile(base / "run" / "agent.pid")
        try:
            from orch.node.runtime import superproto

            pid = superproto.call(str(base / "run" / "supervisor.sock"), {"op": "ping"}, timeout=2)["pid"]
            os.kill(pid, signal.SIGTERM)
        except Exception:  # noqa: BLE001 - already gone
            pass
        time.sleep(0.5)
        import json

        try:
            state = json.loads((base / "root" / "networks" / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            state = {}
        for net in state.get("networks", {}).values():
            subprocess.run(["ip", "link", "del", net["bridge"]], capture_output=True)
        subprocess.run(["nft", "delete", "table", "ip", prefix], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def bench_docker(stack: Path, runs: int) -> dict | None:
    if not shutil.which("docker-compose"):
        print("docker-compose   skipped: needs docker-compose (apt-get install docker-compose)")
        return None
    with private_dockerd(busybox_archive()) as env:
        if isinstance(env, str):
            print(f"docker-compose   skipped: {env}")
            return None
        compose = ["docker-compose", "-f", str(stack), "-p", "benchdocker"]
        try:
            return measure("docker-compose", compose + ["up", "-d"], compose + ["down"], runs, env=env)
        finally:
            subprocess.run(compose + ["down", "-v"], env=env, capture_output=True)


def bench_podman(stack: Path, runs: int) -> dict | None:
    if not shutil.which("podman") or not shutil.which("podman-compose"):
        print("podman-compose   skipped: needs podman and podman-compose (apt-get install podman podman-compose)")
        return None
    had = subprocess.run(["podman", "image", "exists", "busybox:latest"]).returncode == 0
    if not had:
        run(["podman", "load", "-i", str(busybox_archive())])
    compose = ["podman-compose", "-f", str(stack), "-p", "benchpodman"]
    try:
        return measure("podman-compose", compose + ["up", "-d"], compose + ["down"], runs, cwd=stack.parent)
    finally:
        subprocess.run(compose + ["down"], capture_output=True, cwd=stack.parent)
        subprocess.run(["podman", "network", "rm", "-f", "benchpodman_default"], capture_output=True)
        if not had:
            subprocess.run(["podman", "rmi", "busybox:latest"], capture_output=True)


def _stop_pidfile(path: Path) -> None:
    try:
        pid = int(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(250):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--services", type=int, default=20)
    p.add_argument("--no-docker", action="store_true")
    p.add_argument("--no-podman", action="store_true")
    a = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (containers, networks)")
    work = Path(tempfile.mkdtemp(prefix="orch-bench-stack-"))
    stack = work / "compose.yaml"
    stack.write_text("name: benchorch\n" + stack_text(a.services))
    peer_stack = work / "peer" / "compose.yaml"
    peer_stack.parent.mkdir()
    peer_stack.write_text(stack_text(a.services))
    print(f"stack: {a.services} busybox services, one default network")
    try:
        results = {"orch": bench_orch(stack, a.runs)}
        if not a.no_docker:
            results["docker-compose"] = bench_docker(peer_stack, a.runs)
        if not a.no_podman:
            results["podman-compose"] = bench_podman(peer_stack, a.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mine = results["orch"]
    peers = {k: v for k, v in results.items() if k != "orch" and v}
    for step in ("up", "down"):
        parts = [f"{mine[step] / v[step]:.2f}x {k}" for k, v in peers.items()]
        if peers:
            fastest = min(v[step] for v in peers.values())
            parts.append(f"{mine[step] / fastest:.2f}x the faster peer (target 0.3x or better)")
        print(f"orch {step:<5} " + ", ".join(parts or ["no peer measured"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
