"""Container start-up, side by side: `orch run --rm busybox true` against crun, runc, podman and
docker running the same busybox `true`, without a network (a new empty network namespace) and
with the host's network, in one run on one machine. Prints medians and ratios to orch.

Usage (as root):  python bench/run_startup.py [--runs 30] [--keep]

Also timed: orch with `--security-opt seccomp=unconfined`, so the cost of seccomp (docker's
profile, compiled once by the supervisor, loaded with one call by each container's init) is
printed beside the rest, from runs paired back to back (a block of runs each would drift
with the machine's load by more than the millisecond measured).

What it sets up, all under a temporary directory removed at the end:
- an orch node (ORCH_ROOT, ORCH_RUN) with busybox:latest from `orch bootstrap`'s code and its
  own agent + supervisor, stopped at the end; the CLI's .pyc files are compiled first and
  PYTHONDONTWRITEBYTECODE is dropped, as an installed orch would run;
- an OCI bundle for runc and crun: busybox's layer as the rootfs (read-only, shared by the
  runs), config.json from `runc spec` with args ["true"], no terminal; the "host" variant drops
  the network namespace; crun runs with --cgroup-manager=disabled where it refuses this
  machine's hybrid cgroups;
- podman: the same image loaded with `podman load` (docker-archive from `orch save`'s code),
  `podman run --rm --network none|host`.
- docker: the machine's daemon when one answers (`docker info`), else a private dockerd
  (bench/peers.py: own data root and socket, no iptables rules, no bridge) with busybox loaded
  from the same docker-archive, stopped and removed at the end.

Needs: apt-get install hyperfine runc crun podman (each one missing is reported as "not
available: why"). Timings come from hyperfine (-N: no shell, 3 warm-up runs).
Also printed: the floors (python's own start, the CLI's import cost, a bare `unshare`), and
where orch's time goes (`python -X importtime` of the CLI, `strace -c -f` of one run).
"""

import argparse
import contextlib
import json
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


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


# crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported, drop all controllers
# from cgroupv2") even with --cgroup-manager=disabled. In a private mount namespace without
# the v2 mount at /sys/fs/cgroup/unified it runs; so every timed command runs in one such
# namespace (orch's CLI only talks to sockets, its containers are made by the supervisor
# outside it). The host's mounts are untouched.
HYBRID_V2 = "/sys/fs/cgroup/unified"


def in_private_mounts(argv: list[str]) -> list[str]:
    if not os.path.ismount(HYBRID_V2):
        return argv
    import shlex

    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"umount {HYBRID_V2} && exec {shlex.join(argv)}"]


def hyperfine(commands: dict[str, list[str]], runs: int, env: dict, workdir: Path) -> dict[str, float]:
    """Median seconds per command name, measured by hyperfine in one invocation."""
    out = workdir / "hyperfine.json"
    argv = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", str(out), "--style", "none"]
    for name, cmd in commands.items():
        argv += ["-n", name, " ".join(_quote(c) for c in cmd)]
    subprocess.run(in_private_mounts(argv), env=env, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    return {r["command"]: statistics.median(r["times"]) for r in data["results"]}


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def timed(cmd: list[str], runs: int, env: dict) -> float:
    """Fallback without hyperfine: median wall time of subprocess runs."""
    times = []
    for i in range(runs + 3):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if i >= 3:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def paired(a: list[str], b: list[str], pairs: int, env: dict) -> tuple[float, float, float]:
    """Medians of `a`, of `b` and of their paired differences, the two run back to back in
    alternating order (ABBA...): a shared machine's load drifts over a block of runs, which
    hides a difference of a millisecond; a pair sees the same load."""
    ta, tb = [], []
    for i in range(pairs + 2):
        order = (a, b) if i % 2 == 0 else (b, a)
        times = {}
        for cmd in order:
            t = time.perf_counter()
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[id(cmd)] = time.perf_counter() - t
        if i >= 2:
            ta.append(times[id(a)])
            tb.append(times[id(b)])
    return statistics.median(ta), statistics.median(tb), statistics.median(x - y for x, y in zip(ta, tb))


class OrchNode:
    def __init__(self, base: Path):
        self.root, self.run = base / "root", base / "run"
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env.update(ORCH_ROOT=str(self.root), ORCH_RUN=str(self.run), PYTHONPATH=str(REPO))

    def setup(self):
        from orch.node.runtime.bootstrap import bootstrap
        from orch.node.runtime.images import ImageStore

        self.root.mkdir(parents=True)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "orch")], env=self.env, check=True, stdout=subprocess.DEVNULL)
        self.store = ImageStore(self.root)
        bootstrap(self.store, "busybox")
        subprocess.run([sys.executable, "-m", "orch", "agent", "--detach"], env=self.env, check=True, stdout=subprocess.DEVNULL)

    def cmd(self, *args) -> list[str]:
        """How a user runs orch: the `orch` script beside this Python (scripts/setup's launcher,
        executed through its #! line, flags included), or `python -m orch` where there is none."""
        script = Path(sys.executable).parent / "orch"
        return [str(script), *args] if script.exists() else [sys.executable, "-m", "orch", *args]

    def python_args(self, *args) -> list[str]:
        """The same command as arguments to this Python (for -X importtime): the script's
        interpreter flags (the launcher's -S), the script, its arguments."""
        script = Path(sys.executable).parent / "orch"
        if not script.exists():
            return ["-m", "orch", *args]
        flags = script.read_text().splitlines()[0].split()[1:]
        return [*flags, str(script), *args]

    def stop(self):
        from orch.node.runtime import superproto

        try:
            sup = superproto.call(str(self.run / "supervisor.sock"), {"op": "ping"}, timeout=2)["pid"]
        except Exception:
            sup = None
        ids = subprocess.run(self.cmd("ps", "-aq", "--no-trunc"), env=self.env, capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(self.cmd("rm", "-f", *ids), env=self.env, capture_output=True)
        try:
            agent = int((self.run / "agent.pid").read_text())
        except (OSError, ValueError):
            agent = None
        for pid in (agent, sup):
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(pid and os.path.exists(f"/proc/{pid}") for pid in (agent, sup)):
            time.sleep(0.05)  # their exit has nothing to wait on for a process that is not their parent
        # The node's cgroup parent (one per ORCH_ROOT) and the supervisor's v2 leaf in it.
        from orch.node.runtime.cgroups import node_cgroup_parent

        parent = node_cgroup_parent(self.root)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            for group in (hierarchy / parent / "supervisor", hierarchy / parent):
                try:
                    group.rmdir()
                except OSError:
                    pass


def make_bundle(node: OrchNode, base: Path, own_netns: bool) -> Path:
    """An OCI bundle over busybox's unpacked layer (read-only root: the runs share it)."""
    image = node.store.resolve("busybox")
    chain = image.top_layer.split(":", 1)[1]
    bundle = base / ("bundle-none" if own_netns else "bundle-host")
    bundle.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"] = ["true"]
    spec["process"]["terminal"] = False
    # runc wants an absolute path that is no symlink: the committed layer itself, read-only.
    spec["root"] = {"path": str(node.root / "snapshots" / "committed" / chain / "fs"), "readonly": True}
    # No rlimits: raising RLIMIT_NOFILE needs CAP_SYS_RESOURCE, which this machine withholds.
    spec["process"].pop("rlimits", None)
    if not own_netns:
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def crun_flags(bundle: Path) -> list[str] | str:
    """The crun flags that work here: plain, or without cgroups."""
    for flags in ([], ["--cgroup-manager=disabled"]):
        proc = subprocess.run(in_private_mounts(["crun", *flags, "run", "-b", str(bundle), "bench-crun-probe"]), capture_output=True, text=True)
        if proc.returncode == 0:
            return flags
        last = proc.stderr.strip().splitlines()[-1:] or ["no output"]
    return f"crun fails here: {last[0]}"


def podman_flags(node: OrchNode, base: Path) -> list[str] | str:
    """Load busybox into podman; return the run flags that work here (or why none do)."""
    archive = base / "busybox.tar"
    node.store.save(["busybox:latest"], archive)
    proc = subprocess.run(["podman", "load", "-i", str(archive)], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"podman load failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    why = "?"
    # Raising RLIMIT_NOFILE or RLIMIT_NPROC to podman's defaults needs CAP_SYS_RESOURCE, which
    # this machine withholds (even to the current hard limit podman fails): ask for 1024.
    limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    for flags in (limits, ["--runtime", "runc", *limits]):
        cmd = ["podman", "run", *flags, "--rm", "--network", "none", "busybox", "true"]
        proc = subprocess.run(in_private_mounts(cmd), capture_output=True, text=True)
        if proc.returncode == 0:
            return flags
        why = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return f"podman run failed: {why}"


def where_time_goes(node: OrchNode) -> None:
    print("\nWhere orch's time goes (`orch run --rm --network none busybox true`):")
    phases: dict[str, list[float]] = {}
    agent: dict[str, list[float]] = {}
    for _ in range(9):
        proc = subprocess.run(node.cmd("run", "--rm", "--network", "none", "busybox", "true"), env=dict(node.env, ORCH_TRACE="1"), capture_output=True, text=True)
        for line in proc.stderr.splitlines():
            if line.startswith("orch-trace agent: "):
                # "orch-trace agent: parsed +0.2, created +1.9, ... ms": the agent's own steps
                for step in line[len("orch-trace agent: "):].removesuffix(" ms").split(", "):
                    what, _, ms = step.partition(" +")
                    agent.setdefault(what, []).append(float(ms))
            elif line.startswith("orch-trace "):
                _, what, ms, _unit = line.split()
                phases.setdefault(what, []).append(float(ms))
    last = 0.0
    steps = []
    for what, values in phases.items():
        m = statistics.median(values)
        steps.append(f"{what} +{m - last:.1f}")
        last = m
    print("  CLI phases, median ms since exec (ORCH_TRACE=1; exec time has 10 ms resolution): " + ", ".join(steps))
    if agent:
        print("  the agent's steps, median ms each: " + ", ".join(f"{what} {statistics.median(v):.1f}" for what, v in agent.items()))
    proc = subprocess.run([sys.executable, "-X", "importtime", *node.python_args("run", "--rm", "--network", "none", "busybox", "true")],
                          env=node.env, capture_output=True, text=True)
    rows = [line.split("|") for line in proc.stderr.splitlines() if line.startswith("import time:") and "|" in line]
    total = sum(int(r[0].split(":")[1]) for r in rows[1:] if r[0].split(":")[1].strip().isdigit())
    top = sorted(((int(r[1]), r[2].strip()) for r in rows[1:] if r[1].strip().isdigit()), reverse=True)[:6]
    print(f"  imports in the CLI: {total / 1000:.1f} ms in all; largest cumulative: " + ", ".join(f"{n} {us / 1000:.1f} ms" for us, n in top))
    if have("strace"):
        proc = subprocess.run(["strace", "-c", "-f", "-o", "/dev/stdout", *node.cmd("run", "--rm", "--network", "none", "busybox", "true")],
                              env=node.env, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.strip() and not line.startswith("-")]
        print("  strace -c -f of the CLI (syscalls by time):")
        for line in lines[:8]:
            print("   ", line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: containers need namespaces, mounts and cgroups")
        return 2
    base = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    node = OrchNode(base)
    unavailable: dict[str, str] = {}
    peers = contextlib.ExitStack()  # a private dockerd, when the machine runs none
    try:
        node.setup()
        env = dict(node.env)
        commands: dict[str, list[str]] = {}
        for net in ("none", "host"):
            commands[f"orch/{net}"] = node.cmd("run", "--rm", "--network", net, "busybox", "true")
        # The same start without seccomp: what loading docker's profile costs (issue 10).
        commands["orch-unconfined/none"] = node.cmd("run", "--rm", "--network", "none", "--security-opt", "seccomp=unconfined",
                                                    "busybox", "true")
        bundles = {}
        for net in ("none", "host"):
            bundles[net] = make_bundle(node, base, own_netns=(net == "none")) if have("runc") else None
        if have("runc"):
            for net in ("none", "host"):
                commands[f"runc/{net}"] = ["runc", "--root", str(base / "runc-state"), "run", "-b", str(bundles[net]), f"bench-runc-{net}"]
        else:
            unavailable["runc"] = "not installed (apt-get install runc)"
        if have("crun") and bundles["none"]:
            flags = crun_flags(bundles["none"])
            if isinstance(flags, str):
                unavailable["crun"] = flags
            else:
                for net in ("none", "host"):
                    commands[f"crun/{net}"] = ["crun", *flags, "--root", str(base / "crun-state"), "run", "-b", str(bundles[net]), f"bench-crun-{net}"]
        elif not have("crun"):
            unavailable["crun"] = "not installed (apt-get install crun)"
        if have("podman"):
            flags = podman_flags(node, base)
            if isinstance(flags, str):
                unavailable["podman"] = flags
            else:
                for net in ("none", "host"):
                    commands[f"podman/{net}"] = ["podman", "run", *flags, "--rm", "--network", net, "busybox", "true"]
        else:
            unavailable["podman"] = "not installed (apt-get install podman)"
        docker = None
        if have("docker") and subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0:
            docker = ["docker"]  # the machine's own daemon
        else:
            archive = base / "busybox-docker.tar"
            node.store.save(["busybox:latest"], archive)
            daemon = peers.enter_context(private_dockerd(archive))
            if isinstance(daemon, str):
                unavailable["docker"] = daemon
            else:
                docker = ["docker", "-H", daemon["DOCKER_HOST"]]
        if docker:
            for net in ("none", "host"):
                commands[f"docker/{net}"] = [*docker, "run", "--rm", "--network", net, "busybox", "true"]
        floors = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -S -c pass": [sys.executable, "-S", "-c", "pass"],
            "orch --version": node.cmd("--version"),
            "unshare (bare)": ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "true"],
        }
        for name, cmd in list(commands.items()):  # each must work once before it is timed
            proc = subprocess.run(in_private_mounts(cmd), env=env, capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                del commands[name]
                unavailable[name] = f"exit {proc.returncode}: " + ((proc.stderr.strip().splitlines() or ["no output"])[-1])
        if have("hyperfine"):
            medians = hyperfine({**commands, **floors}, args.runs, env, base)
        else:
            unavailable["hyperfine"] = "not installed (apt-get install hyperfine): timed with a python loop instead"
            medians = {name: timed(cmd, args.runs, env) for name, cmd in {**commands, **floors}.items()}
        print(f"\nContainer start-up of busybox `true`, median of {args.runs} runs (ms), ratio to orch with the same network:\n")
        print(f"  {'runtime':<10}{'no network':>14}{'ratio':>8}{'host network':>16}{'ratio':>8}")
        for tool in ("orch", "crun", "runc", "podman", "docker"):
            if f"{tool}/none" not in medians and f"{tool}/host" not in medians:
                continue
            cells = []
            for net in ("none", "host"):
                m = medians.get(f"{tool}/{net}")
                base_m = medians.get(f"orch/{net}")
                cells.append(f"{m * 1000:>14.1f}{(m / base_m if base_m else float('nan')):>8.2f}" if m else f"{'-':>14}{'':>8}")
            print(f"  {tool:<10}{cells[0]}  {cells[1]}")
        if "orch/none" in commands and "orch-unconfined/none" in commands:
            on, off, diff = paired(commands["orch/none"], commands["orch-unconfined/none"], max(args.runs, 40), env)
            print(f"\nseccomp, docker's default profile (no network; {max(args.runs, 40)} pairs run back to back): "
                  f"{on * 1000:.1f} ms, unconfined {off * 1000:.1f} ms; median of the paired differences "
                  f"{diff * 1000:+.2f} ms (target: under 1 ms)")
        print("\nFloors (ms): " + ", ".join(f"{name} {medians[name] * 1000:.1f}" for name in floors))
        for tool, why in unavailable.items():
            print(f"{tool}: not available: {why}")
        print(f"\norch target: <= 25 ms from the CLI's start to its exit without a network; measured {medians.get('orch/none', float('nan')) * 1000:.1f} ms")
        where_time_goes(node)
    finally:
        peers.close()
        node.stop()
        for tool, state in (("runc", base / "runc-state"), ("crun", base / "crun-state")):
            if state.exists():
                for c in state.iterdir():
                    subprocess.run([tool, "--root", str(state), "delete", "-f", c.name], capture_output=True)
        if have("podman"):
            subprocess.run(["podman", "rmi", "-f", "busybox"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
