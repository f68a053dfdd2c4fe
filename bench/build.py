"""Build benchmark: a cold build and cached rebuilds of one 10-step Dockerfile with orch,
docker's classic builder and buildah, in one run on this machine; prints medians and ratios.

    sudo PYTHONPATH=. .venv/bin/python bench/build.py [--runs N] [--cached-runs M] [--no-buildah] [--no-docker]

What is measured, for each tool, is the wall-clock time of the whole command, as a user runs it:
- cold:     an empty build cache, the busybox base already there;
- cached:   the same build again, nothing changed (every step from the cache), the median of
            --cached-runs rebuilds;
- one file: app.txt edited, so the steps from its COPY on run again.

The tools:
- orch: `orch build -q -t bench:latest CTX`, its CLI (scripts/setup's launcher) and its own
  agent in a fresh ORCH_ROOT per run (busybox loaded from the docker-archive orch makes);
- docker: `docker build -q` with DOCKER_BUILDKIT=0 (the classic builder) on a private dockerd
  (bench/peers.py: own data root and socket, no iptables rules, no bridge) with the same
  busybox archive loaded; before each cold build the previous image and its intermediate
  images are removed (`docker rmi`), which empties the classic builder's cache;
- buildah: `buildah bud --layers --isolation chroot` in fresh --root/--runroot directories
  (Debian's package; its cache is off without --layers).

Also printed: where orch's cached rebuild spends its time (ORCH_TRACE=1: milliseconds since
the client was exec'd when it sent its request and when it exited, and the agent's steps),
and Python's bare start as the floor.
"""

import argparse
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
sys.path.insert(0, str(REPO / "tests"))

from bench.peers import private_dockerd  # noqa: E402
from bench.run_startup import OrchNode  # noqa: E402

DOCKERFILE = """\
FROM busybox
ENV APP=/app
WORKDIR /app
RUN mkdir -p /app/data && echo one > /app/data/one
COPY lib/ /app/lib/
RUN ls -R /app/lib > /app/lib.list
COPY app.txt /app/
RUN wc -c /app/app.txt > /app/size
LABEL bench=orch
CMD ["cat", "/app/app.txt"]
"""
CASES = ["cold", "cached", "one file"]


def make_context(d: Path) -> None:
    (d / "lib").mkdir(parents=True)
    for i in range(200):
        (d / "lib" / f"mod{i:03}.txt").write_text(f"module {i}\n" * 50)
    (d / "app.txt").write_text("version 1\n")
    (d / "Dockerfile").write_text(DOCKERFILE)


def timed(argv, env=None) -> float:
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


class Orch:
    name = "orch"

    def __init__(self, work: Path, archive: Path):
        self.node = OrchNode(work / "orch")
        self.node.root.mkdir(parents=True)
        from orch.node.runtime.images import ImageStore

        ImageStore(self.node.root).load(archive)
        subprocess.run([sys.executable, "-m", "orch", "agent", "--detach"], env=self.node.env, check=True, stdout=subprocess.DEVNULL)

    def build(self, ctx: Path) -> float:
        return timed(self.node.cmd("build", "-q", "-t", "bench:latest", str(ctx)), self.node.env)

    def trace(self, ctx: Path) -> str:
        env = dict(self.node.env, ORCH_TRACE="1")
        return subprocess.run(self.node.cmd("build", "-q", "-t", "bench:latest", str(ctx)), env=env, capture_output=True,
                              text=True, check=True).stderr

    def close(self) -> None:
        self.node.stop()


class Docker:
    """The classic builder of one private dockerd, shared by the runs (its start takes seconds)."""

    name = "docker"

    def __init__(self, env: dict):
        self.env = dict(env, DOCKER_BUILDKIT="0")

    def reset(self) -> None:
        subprocess.run(["docker", "rmi", "-f", "bench:latest"], env=self.env, capture_output=True)
        subprocess.run(["docker", "image", "prune", "-f"], env=self.env, capture_output=True)

    def build(self, ctx: Path) -> float:
        return timed(["docker", "build", "-q", "-t", "bench:latest", str(ctx)], self.env)

    def close(self) -> None:
        self.reset()


class Buildah:
    name = "buildah"

    def __init__(self, work: Path, archive: Path):
        self.work = work
        self.base = ["buildah", "--root", str(work / "bh-root"), "--runroot", str(work / "bh-run"), "--storage-driver", "overlay"]
        timed(self.base + ["pull", "-q", f"docker-archive:{archive}"])
        timed(self.base + ["tag", "localhost/busybox:latest", "busybox:latest"])

    def build(self, ctx: Path) -> float:
        return timed(self.base + ["bud", "--layers", "--isolation", "chroot", "-q", "-t", "bench:latest", str(ctx)])

    def close(self) -> None:
        subprocess.run(self.base + ["rmi", "-a", "-f"], capture_output=True)
        subprocess.run(["umount", "-R", str(self.work / "bh-root" / "overlay")], capture_output=True)


def measure(tool, ctx: Path, cached_runs: int) -> dict:
    (ctx / "app.txt").write_text("version 1\n")
    cold = tool.build(ctx)
    cached = statistics.median(tool.build(ctx) for _ in range(cached_runs))
    (ctx / "app.txt").write_text("version 2\n")
    one_file = tool.build(ctx)
    return {"cold": cold, "cached": cached, "one file": one_file}


def where_time_goes(traces: list[str]) -> None:
    """The medians of ORCH_TRACE's marks over the traced cached rebuilds."""
    client: dict[str, list[float]] = {}
    agent: dict[str, list[float]] = {}
    for text in traces:
        for line in text.splitlines():
            if line.startswith("orch-trace agent: "):
                for step in line[len("orch-trace agent: "):].removesuffix(" ms").split(", "):
                    what, ms = step.rsplit(" +", 1)
                    agent.setdefault(what, []).append(float(ms))
            elif line.startswith("orch-trace "):
                what, ms = line[len("orch-trace "):].removesuffix(" ms").rsplit(" ", 1)
                client.setdefault(what, []).append(float(ms))
    print("\nWhere orch's cached rebuild goes (ORCH_TRACE=1, median ms):")
    print("  the client, since it was exec'd: " + ", ".join(f"{what} at {statistics.median(v):.1f}" for what, v in client.items()))
    print("  the agent, each step: " + ", ".join(f"{what} +{statistics.median(v):.1f}" for what, v in agent.items()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="repetitions of the whole sequence; the median is printed")
    p.add_argument("--cached-runs", type=int, default=10, help="cached rebuilds per run (their median counts)")
    p.add_argument("--no-buildah", action="store_true")
    p.add_argument("--no-docker", action="store_true")
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/build.py needs root (overlay mounts, namespaces), as orch's agent does")
    from integration.build.conftest import cached_base

    archive = cached_base("busybox")
    # As an installed orch runs: its bytecode compiled once (OrchNode also drops
    # PYTHONDONTWRITEBYTECODE, which this machine's shell sets).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "orch")], check=True, stdout=subprocess.DEVNULL)
    results: dict[str, list[dict]] = {}
    unavailable: dict[str, str] = {}
    traces: list[str] = []
    docker_env = None
    with private_dockerd(archive) if not args.no_docker else _none("--no-docker") as daemon:
        if isinstance(daemon, str):
            unavailable["docker"] = daemon
        else:
            docker_env = daemon
        use_buildah = not args.no_buildah and shutil.which("buildah")
        if not use_buildah:
            unavailable["buildah"] = "--no-buildah" if args.no_buildah else "not installed (apt-get install buildah)"
        for _ in range(args.runs):
            tools = ["orch"] + (["docker"] if docker_env else []) + (["buildah"] if use_buildah else [])
            for name in tools:
                work = Path(tempfile.mkdtemp(prefix=f"bench-build-{name}-"))
                tool = None
                try:
                    ctx = work / "ctx"
                    make_context(ctx)
                    if name == "orch":
                        tool = Orch(work, archive)
                    elif name == "docker":
                        tool = Docker(docker_env)
                        tool.reset()
                    else:
                        tool = Buildah(work, archive)
                    results.setdefault(name, []).append(measure(tool, ctx, args.cached_runs))
                    if name == "orch":
                        traces += [tool.trace(ctx) for _ in range(5)]
                finally:
                    if tool is not None:
                        tool.close()
                    shutil.rmtree(work, ignore_errors=True)
    med = {tool: {c: statistics.median(r[c] for r in runs) for c in CASES} for tool, runs in results.items()}
    print(f"10-step Dockerfile (busybox, 3 RUN, 2 COPY of 201 files), median of {args.runs} runs "
          f"(cached: of {args.runs} x {args.cached_runs} rebuilds), seconds")
    print(f"{'tool':14}" + "".join(f"{c:>12}" for c in CASES) + f"{'cached/cold':>14}")
    for tool, m in med.items():
        print(f"{tool:14}" + "".join(f"{m[c]:12.3f}" for c in CASES) + f"{m['cached'] / m['cold']:14.2f}")
    for peer in ("docker", "buildah"):
        if peer in med:
            print(f"{'orch/' + peer:14}" + "".join(f"{med['orch'][c] / med[peer][c]:12.2f}" for c in CASES))
    for tool, why in unavailable.items():
        print(f"{tool}: not available: {why}")
    floor = statistics.median(timed([sys.executable, "-S", "-c", "pass"]) for _ in range(10))
    print(f"\nFloor: python -S -c pass {floor * 1000:.1f} ms")
    if traces:
        where_time_goes(traces)
    return 0


class _none:
    """A context manager that yields the reason a peer is not started."""

    def __init__(self, why: str):
        self.why = why

    def __enter__(self):
        return self.why

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    raise SystemExit(main())
