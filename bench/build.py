"""Build benchmark: a cold build and cached rebuilds of one 10-step Dockerfile, orch beside
buildah, on this machine.

    sudo PYTHONPATH=. .venv/bin/python bench/build.py [--runs N] [--no-buildah]

What is measured, for each tool, as wall-clock time of the whole command:
- cold:     an empty cache (orch: a fresh ORCH_ROOT with busybox loaded; buildah: fresh
            --root/--runroot with the same busybox image pulled from orch's docker-archive);
- cached:   the same build again, nothing changed (every step from the cache);
- one file: app.txt edited, so the steps from its COPY on run again.

orch runs as its agent runs it: `python -m orch.build.worker` per build (interpreter start,
imports, the build; the agent's HTTP hop adds a few milliseconds); `orch-lib` is the same
builder called in the benchmark's own process, to show what the interpreter start costs. buildah runs
`buildah bud --layers` (its cache is off without --layers) with the chroot isolation; it is
Debian's package (`apt-get install buildah`). docker is not used: dockerd is not running
here; to add it, start `dockerd --data-root $(mktemp -d) &` by hand and `docker load` the same
archive. The printed ratios are cached/cold per tool and orch/buildah per case.
"""

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


def make_context(d: Path) -> None:
    (d / "lib").mkdir(parents=True)
    for i in range(200):
        (d / "lib" / f"mod{i:03}.txt").write_text(f"module {i}\n" * 50)
    (d / "app.txt").write_text("version 1\n")
    (d / "Dockerfile").write_text(DOCKERFILE)


def timed(argv, **kw) -> float:
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


class Orch:
    name = "orch"

    def __init__(self, work: Path, archive: Path):
        from orch.node.runtime.images import ImageStore

        self.root = work / "orch-root"
        ImageStore(self.root).load(archive)

    def build(self, ctx: Path) -> float:
        req = json.dumps({"root": str(self.root), "context": str(ctx), "tags": ["bench:latest"]})
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("SOURCE_DATE_EPOCH", None)
        # As an installed orch runs: with its bytecode cached (this machine's shell sets
        # PYTHONDONTWRITEBYTECODE, which makes every start compile orch again, ~80 ms).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return timed([sys.executable, "-m", "orch.build.worker"], input=req, env=env)


class OrchInProcess(Orch):
    """The builder alone, called in this process: what a build costs without a Python start."""

    name = "orch-lib"

    def build(self, ctx: Path) -> float:
        from orch.build.builder import Builder, BuildRequest
        from orch.node.runtime.images import ImageStore

        t = time.perf_counter()
        Builder(ImageStore(self.root), out=lambda line: None).build(BuildRequest(context=ctx, tags=["bench:latest"]))
        return time.perf_counter() - t


class Buildah:
    name = "buildah"

    def __init__(self, work: Path, archive: Path):
        self.base = ["buildah", "--root", str(work / "bh-root"), "--runroot", str(work / "bh-run"), "--storage-driver", "overlay"]
        timed(self.base + ["pull", "-q", f"docker-archive:{archive}"])
        timed(self.base + ["tag", "localhost/busybox:latest", "busybox:latest"])

    def build(self, ctx: Path) -> float:
        return timed(self.base + ["bud", "--layers", "--isolation", "chroot", "-q", "-t", "bench:latest", str(ctx)])


def measure(tool, ctx: Path) -> dict:
    (ctx / "app.txt").write_text("version 1\n")
    cold = tool.build(ctx)
    cached = tool.build(ctx)
    (ctx / "app.txt").write_text("version 2\n")
    one_file = tool.build(ctx)
    return {"cold": cold, "cached": cached, "one file": one_file}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="repetitions; the median is printed")
    p.add_argument("--no-buildah", action="store_true")
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/build.py needs root (overlay mounts, namespaces), as orch's agent does")
    sys.path.insert(0, str(REPO / "tests"))
    from integration.build.conftest import cached_base

    archive = cached_base("busybox")
    results: dict[str, list[dict]] = {}
    use_buildah = not args.no_buildah and shutil.which("buildah")
    for _ in range(args.runs):
        for cls in ([Orch, OrchInProcess, Buildah] if use_buildah else [Orch, OrchInProcess]):
            work = Path(tempfile.mkdtemp(prefix=f"bench-build-{cls.name}-"))
            try:
                ctx = work / "ctx"
                make_context(ctx)
                tool = cls(work, archive)
                results.setdefault(cls.name, []).append(measure(tool, ctx))
            finally:
                if cls is Buildah:
                    subprocess.run(["buildah", "--root", str(work / "bh-root"), "--runroot", str(work / "bh-run"), "rmi", "-a", "-f"],
                                   capture_output=True)
                    subprocess.run(["umount", "-R", str(work / "bh-root" / "overlay")], capture_output=True)
                shutil.rmtree(work, ignore_errors=True)
    cases = ["cold", "cached", "one file"]
    med = {tool: {c: statistics.median(r[c] for r in runs) for c in cases} for tool, runs in results.items()}
    print(f"10-step Dockerfile (busybox, 3 RUN, 2 COPY of 201 files), median of {args.runs} runs, seconds")
    print(f"{'tool':10}" + "".join(f"{c:>12}" for c in cases) + f"{'cached/cold':>14}{'one file/cold':>15}")
    for tool, m in med.items():
        print(f"{tool:10}" + "".join(f"{m[c]:12.3f}" for c in cases) + f"{m['cached'] / m['cold']:14.2f}{m['one file'] / m['cold']:15.2f}")
    if "buildah" in med:
        print(f"{'orch/buildah':10}" + "".join(f"{med['orch'][c] / med['buildah'][c]:12.2f}" for c in cases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
