"""The memory orch's own processes hold (agent + supervisor) with 1 and with 50 idle containers
(busybox `sleep`), beside podman's conmon processes for the same, and docker's shims
(containerd-shim-runc-v2, under a private dockerd from bench/peers.py). Prints RSS and PSS (from /proc/PID/smaps_rollup) and the cost of each
extra container. The containers' own processes (busybox sleep) are not counted: they are the
same for every runtime.

Usage (as root):  python bench/memory.py [--count 50]

A temporary orch node is made and removed as in bench/run_startup.py. Target: well under 2 MB
per extra container, and no Python interpreter per container.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_startup import OrchNode, in_private_mounts, podman_flags  # noqa: E402


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes of one process."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key == "Rss":
                rss = int(rest.split()[0]) * 1024
            elif key == "Pss":
                pss = int(rest.split()[0]) * 1024
    return rss, pss


def pids_named(name: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == name:
                        out.append(int(entry))
            except OSError:
                pass
    return out


def total(pids) -> tuple[int, int]:
    rss = pss = 0
    for pid in pids:
        try:
            r, p = memory(pid)
        except OSError:
            continue
        rss, pss = rss + r, pss + p
    return rss, pss


def mb(n: float) -> str:
    return f"{n / 1024 / 1024:8.2f} MB"


def python_children_of(pid: int) -> int:
    """How many Python interpreters run below the supervisor (there should be none)."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            exe = os.readlink(f"/proc/{entry}/exe")
        except OSError:
            continue
        if ppid == pid and "python" in os.path.basename(exe):
            count += 1
    return count


def grow(start, sample, count: int) -> dict:
    """{"one": sample() with 1 idle container, "many": with `count`}; `start(n)` starts n more."""
    start(1)
    time.sleep(1)
    one = sample()
    start(count - 1)
    time.sleep(1)
    return {"one": one, "many": sample()}


def orch_figures(node: OrchNode, count: int) -> dict:
    from orch.node.runtime import superproto

    sup = superproto.call(str(node.run / "supervisor.sock"), {"op": "ping"})["pid"]
    agent = int((node.run / "agent.pid").read_text())

    def start(n):
        for _ in range(n):
            subprocess.run(node.cmd("run", "-d", "--network", "none", "busybox", "sleep", "1000000"), env=node.env, check=True, stdout=subprocess.DEVNULL)

    figures = grow(start, lambda: {"agent": memory(agent), "supervisor": memory(sup)}, count)
    return dict(figures, pythons=python_children_of(sup))


def podman_figures(node: OrchNode, base: Path, count: int) -> dict | str:
    if not shutil.which("podman"):
        return "not installed (apt-get install podman)"
    flags = podman_flags(node, base)
    if isinstance(flags, str):
        return flags
    names = []
    try:
        def start(n):
            for _ in range(n):
                name = f"orch-bench-{len(names)}"
                subprocess.run(in_private_mounts(["podman", "run", *flags, "-d", "--name", name, "--network", "none", "busybox", "sleep", "1000000"]),
                               check=True, stdout=subprocess.DEVNULL)
                names.append(name)

        return grow(start, lambda: total(pids_named("conmon")), count)
    finally:
        if names:
            subprocess.run(["podman", "rm", "-f", "-t", "0", *names], capture_output=True)
        subprocess.run(["podman", "rmi", "-f", "busybox"], capture_output=True)


def docker_figures(node: OrchNode, base: Path, count: int) -> dict | str:
    """containerd-shim-runc-v2 processes (one per container) of a private dockerd
    (bench/peers.py), with the same busybox image."""
    from peers import private_dockerd

    archive = base / "busybox-docker.tar"
    node.store.save(["busybox:latest"], archive)
    with private_dockerd(archive) as env:
        if isinstance(env, str):
            return env
        docker = ["docker", "-H", env["DOCKER_HOST"]]

        def start(n):
            for _ in range(n):
                subprocess.run([*docker, "run", "-d", "--network", "none", "busybox", "sleep", "1000000"], check=True, stdout=subprocess.DEVNULL)

        try:
            return grow(start, lambda: total(pids_named("containerd-shim")), count)
        finally:
            ids = subprocess.run([*docker, "ps", "-aq"], capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run([*docker, "rm", "-f", *ids], capture_output=True)


def row(name: str, one: tuple[int, int], many: tuple[int, int], count: int) -> None:
    """One line: RSS / PSS with 1 and with `count` containers, and the cost of each extra one."""
    (r1, p1), (rn, pn), n = one, many, count - 1
    print(f"  {name:<13} 1: {mb(r1)} / {mb(p1)}   {count}: {mb(rn)} / {mb(pn)}   "
          f"per extra container: {(rn - r1) / n / 1024:7.1f} kB / {(pn - p1) / n / 1024:7.1f} kB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: containers need namespaces, mounts and cgroups")
        return 2
    base = Path(tempfile.mkdtemp(prefix="orch-bench-mem-"))
    node = OrchNode(base)
    try:
        node.setup()
        o = orch_figures(node, args.count)
        print(f"\nMemory of orch's own processes with 1 and {args.count} idle busybox containers (RSS / PSS):\n")
        for proc in ("agent", "supervisor"):
            row(proc, o["one"][proc], o["many"][proc], args.count)
        together = [tuple(sum(o[k][p][i] for p in ("agent", "supervisor")) for i in (0, 1)) for k in ("one", "many")]
        row("together", *together, args.count)
        print(f"  Python interpreters under the supervisor: {o['pythons']} (the containers' processes are busybox)\n")
        for name, figures in (("podman conmon", podman_figures(node, base, args.count)), ("docker shims", docker_figures(node, base, args.count))):
            if isinstance(figures, str):
                print(f"  {name}: not available: {figures}")
            else:
                row(name, figures["one"], figures["many"], args.count)
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
