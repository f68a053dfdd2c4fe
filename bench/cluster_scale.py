"""The control plane at scale, with hollow nodes (issue 13): K real managers (each with its
embedded etcd member, its leader election, orchestrator, placement and dispatcher), and N
hollow nodes in one process that join with a token and keep real TLS sessions, but run no
containers (a task "runs" once its node has created it). Prints each figure beside the
published anchors, which come from other hardware and are marked as such.

--profile DIR records py-spy profiles (collapsed stacks) of the leader and the fleet during
the deploy. ORCH_BENCH_KEEP=1 keeps the temporary directory (the processes' logs).

Usage:  python bench/cluster_scale.py [--nodes 1000] [--tasks 100000] [--managers 1]

Each manager and the fleet are separate processes on 127.0.0.1 (ports picked free), so the
leader is killed with SIGKILL, as a crash. The bench itself reads etcd with the managers'
client certificate to deploy (through orch.cluster.control, what `orch stack deploy` does on
a manager) and to watch tasks, so its observation costs the managers nothing. Everything
lives in a temporary directory removed at the end; every process is killed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ANCHORS = {
    "deploy": "published: Nomad C1M ~3,750 containers/s, C2M ~1,500/s (thousands of hosts); "
              "swarm classic 1,000 nodes / 30,000 containers",
    "placement": "published: Nomad C2M schedules on 6,100 hosts",
    "down": "published: swarm marks a node Down after 3 missed 5 s heartbeats (15 s)",
    "leader": "published: k8s API HA targets; swarm raft elects in ~seconds",
}


def stamp() -> str:
    """The time of day to a tenth of a second, for the logs."""
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 10) % 10}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sizes_for(total: int) -> list[int]:
    """Services of 1 to 1,000 replicas that add up to `total`."""
    pattern = [1000, 500, 200, 100, 50, 20, 10, 5, 2, 1, 1000, 300, 100, 7, 3]
    out, left, i = [], total, 0
    while left > 0:
        n = min(pattern[i % len(pattern)], left)
        out.append(n)
        left -= n
        i += 1
    return out


# -- roles run as child processes ---------------------------------------------------------------

def role_manager(args) -> None:
    import gc

    import trio

    from orch.cluster.hollow import HollowRuntime
    from orch.cluster.node import ClusterNode

    # ORCH_BENCH_GC=1: each manager logs the time its cyclic garbage collector took, by
    # generation, every 5 s (a collection pauses the whole event loop), and each stall of its
    # event loop over half a second.
    gc_time = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
    member_box = []
    gc_began = [0.0]

    def on_gc(phase, info):
        if phase == "start":
            gc_began[0] = time.perf_counter()
        else:
            entry = gc_time[info["generation"]]
            entry[0] += 1
            entry[1] += time.perf_counter() - gc_began[0]

    if os.environ.get("ORCH_BENCH_GC"):
        gc.callbacks.append(on_gc)

    async def watch_stalls():
        # The event loop held for over half a second (the lease's keepalives wait meanwhile).
        while True:
            before = time.perf_counter()
            await trio.sleep(0.05)
            late = time.perf_counter() - before - 0.05
            if late > 0.5:
                print(f"stall: {time.strftime('%H:%M:%S')} the event loop was held {late:.2f} s", file=sys.stderr, flush=True)

    async def report_gc():
        while True:
            await trio.sleep(5)
            manager = getattr(member_box[0], "manager", None) if member_box else None
            dispatcher = manager.dispatcher if manager is not None else None
            if dispatcher is not None:
                stats = dispatcher._full_pushes.statistics()
                pending = sum(1 for s in dispatcher.sessions.values() if s.changed.is_set())
                print(f"dispatcher: {time.strftime('%H:%M:%S')} {len(dispatcher.sessions)} sessions, "
                      f"{stats.borrowed_tokens} full pushes under way, {stats.tasks_waiting} waiting, "
                      f"{pending} with changes not yet pushed, {len(dispatcher.down)} down", file=sys.stderr, flush=True)
            print(f"gc: {time.strftime('%H:%M:%S')} " + ", ".join(f"gen{g} {n} in {t:.2f} s" for g, (n, t) in gc_time.items())
                  + f"; counts {gc.get_count()}, {gc.get_freeze_count()} frozen", file=sys.stderr, flush=True)

    async def report_sessions():
        # While nodes come to this manager (after it took over), how many it serves, each half second.
        last = -1
        while True:
            await trio.sleep(0.5)
            manager = getattr(member_box[0], "manager", None) if member_box else None
            dispatcher = manager.dispatcher if manager is not None else None
            count = len(dispatcher.sessions) if dispatcher is not None else -1
            if count != last and dispatcher is not None:
                print(f"sessions: {stamp()} {count}", file=sys.stderr, flush=True)
            last = count

    async def main() -> None:
        if os.environ.get("ORCH_BENCH_GC"):
            trio.lowlevel.spawn_system_task(report_gc)
            trio.lowlevel.spawn_system_task(watch_stalls)
            trio.lowlevel.spawn_system_task(report_sessions)
        member = ClusterNode(Path(args.dir), node=None, runtime=HollowRuntime(), etcd_ports=(args.etcd_client, args.etcd_peer))
        member_box.append(member)
        async with trio.open_nursery() as nursery:
            await nursery.start(member.run)
            if args.join:
                await member.join(remote=args.join, token=args.token, advertise_addr=args.addr)
            else:
                await member.init(advertise_addr=args.addr)
            print(json.dumps({"ready": member.state.node_id}), flush=True)
            await trio.sleep_forever()

    trio.run(main)


def role_fleet(args) -> None:
    import trio

    import gc

    from orch.cluster.hollow import HollowFleet
    from orch.cluster.manager import GC_THRESHOLDS

    # The fleet stands in for a thousand worker processes of a hundred tasks each: with the
    # collector's defaults, its one heap of 100,000 tasks cost it full collections no worker has.
    gc.set_threshold(*GC_THRESHOLDS)

    async def main() -> None:
        fleet = HollowFleet(Path(args.dir))
        async with trio.open_nursery() as nursery:
            began = time.monotonic()
            await fleet.add(nursery, args.nodes, args.manager, args.token, parallel=64)
            while fleet.connected() < args.nodes:
                await trio.sleep(0.1)
            print(json.dumps({"connected": args.nodes, "seconds": time.monotonic() - began}), flush=True)
            stdin = trio.lowlevel.FdStream(os.dup(0))
            by_id = {n.node_id: n for n in fleet.nodes}
            buf = b""
            while True:
                data = await stdin.receive_some(4096)
                if not data:
                    nursery.cancel_scope.cancel()
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    cmd = json.loads(line)
                    if cmd["op"] == "drop":
                        by_id[cmd["node_id"]].drop()
                        print(json.dumps({"dropped": cmd["node_id"]}), flush=True)

    trio.run(main)


# -- the bench ---------------------------------------------------------------------------------

class Proc:
    def __init__(self, argv: list[str], stdin=subprocess.DEVNULL, log: Path | None = None):
        self.log = open(log, "wb") if log else subprocess.DEVNULL
        self.p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=self.log, cwd=REPO)

    def read(self, key: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit(f"bench: a child exited ({self.p.poll()}); see its log")
            msg = json.loads(line)
            if key in msg:
                return msg
        raise SystemExit(f"bench: no {key} within {timeout} s")

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_of(fragment: str) -> int:
    """The process whose command line holds `fragment` (this bench's own etcd members)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if fragment.encode() in f.read():
                        return int(entry)
            except OSError:
                continue
    return 0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True, slots=True)
class TaskSeen:
    service_id: str
    node_id: str
    running: bool  # desired running and reported running
    image: str


class TaskWatch:
    """Every task's few fields the bench needs, from one raw etcd watch over the tasks' keys
    (json.loads, not the records' models: cheap enough to run beside the managers)."""

    def __init__(self, client, root: str):
        from orch.cluster.etcd import prefix_end

        self.client = client
        self.prefix = f"{root}v1/tasks/".encode()
        self.end = prefix_end(self.prefix)
        self.tasks: dict[bytes, TaskSeen] = {}
        self.events = 0
        self.count = 0  # tasks running
        self.by_node: dict[str, int] = {}  # node -> its tasks running

    def _set(self, key: bytes, value: bytes | None) -> None:
        self.events += 1
        old = self.tasks.pop(key, None)
        if old is not None and old.running:
            self.count -= 1
            self.by_node[old.node_id] -= 1
        if value is None:
            return
        t = json.loads(value)
        status = t.get("status", {})
        running = t.get("desired_state", "running") == "running" and status.get("state") == "running"
        image = t.get("spec", {}).get("container_spec", {}).get("image", "")
        new = self.tasks[key] = TaskSeen(t["service_id"], t.get("node_id", ""), running, image)
        if running:
            self.count += 1
            self.by_node[new.node_id] = self.by_node.get(new.node_id, 0) + 1

    async def run(self, *, task_status) -> None:
        import trio

        self.changed = trio.Event()
        listing = await self.client.range(self.prefix, self.end)
        for kv in listing.kvs:
            self._set(kv.key, kv.value)
        async with self.client.open_watch(self.prefix, self.end, start_revision=listing.revision + 1) as stream:
            task_status.started()
            async for resp in stream:
                for ev in resp.events:
                    self._set(ev.kv.key, None if ev.type == "delete" else ev.kv.value)
                self.changed.set()
                self.changed = trio.Event()

    def running(self, exclude_node: str = "") -> int:
        return self.count - self.by_node.get(exclude_node, 0)

    async def wait(self, done, timeout: float = 1800) -> None:
        import trio

        with trio.move_on_after(timeout):
            while not done():
                await self.changed.wait()
            return
        raise SystemExit(f"bench: not done after {timeout} s ({self.running()} tasks running)")


def etcd_metrics(url: str, tls) -> dict[str, float]:
    """etcd's Prometheus counters (GET /metrics over mutual TLS), by name and labels."""
    import urllib.request

    out: dict[str, float] = {}
    with urllib.request.urlopen(url + "/metrics", context=tls.context(), timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
    return out


def etcd_requests(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """The gRPC requests etcd handled between two samples, by method (the JSON gateway's
    calls count here too: it forwards to the gRPC server)."""
    out: dict[str, int] = {}
    for name, value in after.items():
        if name.startswith("grpc_server_handled_total{") and 'grpc_type="unary"' in name:
            method = name.split('grpc_method="', 1)[1].split('"', 1)[0]
            out[method] = out.get(method, 0) + int(value - before.get(name, 0))
    for counter in ("etcd_debugging_mvcc_put_total", "etcd_debugging_mvcc_delete_total", "etcd_mvcc_put_total",
                    "etcd_mvcc_delete_total", "etcd_debugging_mvcc_txn_total", "etcd_mvcc_txn_total",
                    "etcd_debugging_mvcc_events_total"):
        if counter in after:
            out[counter] = int(after[counter] - before.get(counter, 0))
    return {k: v for k, v in out.items() if v}


def start_profiles(where: str | None, pids: dict[str, int]) -> list[subprocess.Popen]:
    """py-spy recording each process in `pids` until stop_profiles (SIGINT makes it write)."""
    if not where:
        return []
    Path(where).mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return [subprocess.Popen([spy, "record", "--nonblocking", "--format", "raw", "--rate", "50", "--pid", str(pid),
                              "-o", str(Path(where) / f"{name}.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in pids.items()]


def stop_profiles(spies: list[subprocess.Popen]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        spy.wait(timeout=60)


def row(name: str, value: str, anchor: str = "") -> None:
    print(f"{name:<48} {value:<34} {anchor}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--managers", type=int, default=1)
    ap.add_argument("--profile", metavar="DIR", help="record py-spy profiles (raw collapsed stacks) of the leader and "
                    "the fleet during the deploy into DIR (needs py-spy on PATH or in the venv)")
    ap.add_argument("--role", choices=["manager", "fleet"])
    ap.add_argument("--dir")
    ap.add_argument("--addr")
    ap.add_argument("--join")
    ap.add_argument("--token")
    ap.add_argument("--manager")
    ap.add_argument("--etcd-client", type=int)
    ap.add_argument("--etcd-peer", type=int)
    args = ap.parse_args()
    if args.role == "manager":
        return role_manager(args)
    if args.role == "fleet":
        return role_fleet(args)
    import gc

    import trio

    from orch.cluster.manager import GC_THRESHOLDS

    gc.set_threshold(*GC_THRESHOLDS)  # the bench's own watch holds every task too
    trio.run(bench, args)


async def bench(args) -> None:
    import trio

    async with trio.open_nursery() as nursery:
        await run_bench(args, nursery)
        nursery.cancel_scope.cancel()


async def run_bench(args, nursery) -> None:
    import trio

    from orch.cluster.control import Control
    from orch.cluster.etcd import EtcdClient, TLSFiles
    from orch.cluster.node import LocalState
    from orch.cluster.state import LEADER, NODES
    from orch.cluster.store import EtcdStore, Limits
    from orch.scheduler import fakecluster as fc
    from orch.scheduler.placement import compute_placements

    base = Path(tempfile.mkdtemp(prefix="orch-bench-scale-"))
    procs: list[Proc] = []
    me = [sys.executable, str(Path(__file__).resolve())]
    print(f"orch control plane at scale: {args.nodes} hollow nodes, {args.tasks} tasks, {args.managers} manager(s); "
          f"this machine: {os.cpu_count()} CPUs", flush=True)
    try:
        # Placement alone, pure (bench/placement.py's cluster and services).
        from bench.placement import make_demands, make_nodes

        nodes, demands = make_nodes(args.nodes), make_demands(args.tasks)
        t0 = time.perf_counter()
        results = compute_placements(nodes, (), demands)
        dt = time.perf_counter() - t0
        placed = sum(len(g.assigned) for g in results)
        row("placement alone (pure)", f"{placed:,} tasks on {args.nodes:,} nodes: {dt:.2f} s, {placed / dt:,.0f}/s",
            "target: under 2 s")

        managers = []
        etcd_urls = []
        first_addr = f"127.0.0.1:{free_port()}"
        for k in range(args.managers):
            d = base / f"m{k + 1}"
            addr = first_addr if k == 0 else f"127.0.0.1:{free_port()}"
            argv = me + ["--role", "manager", "--dir", str(d), "--addr", addr,
                         "--etcd-client", str(free_port()), "--etcd-peer", str(free_port())]
            if k:
                argv += ["--join", first_addr, "--token", manager_token]
            etcd_urls.append(f"https://127.0.0.1:{argv[argv.index('--etcd-client') + 1]}")
            proc = Proc(argv, log=base / f"m{k + 1}.log")
            procs.append(proc)
            node_id = proc.read("ready", 120)["ready"]
            managers.append((proc, d, node_id, addr))
            if k == 0:
                state = LocalState.model_validate_json((d / "cluster" / "node.json").read_bytes())
                tls_dir = d / "cluster" / "etcd-tls"
                tls = TLSFiles(str(tls_dir / "ca.pem"), str(tls_dir / f"{state.node_id}.pem"),
                               str(tls_dir / f"{state.node_id}-key.pem"))
                client = EtcdClient(etcd_urls[:1], tls=tls)
                store = EtcdStore(client, limits=Limits(1024, 1572864))
                from orch.cluster.node import JOIN_TOKENS
                from orch.cluster.secretbox import Keyring

                ring = Keyring.from_json((d / "cluster" / "manager" / "keyring.json").read_text())
                sealed = (await store.get(JOIN_TOKENS)).record
                worker_token = ring.open(sealed.worker, record_id="join-tokens").decode()
                manager_token = ring.open(sealed.manager, record_id="join-tokens").decode()
        if args.managers > 1:
            # Every member's endpoint, so that the bench's reads outlive the leader it kills.
            await client.aclose()
            client = EtcdClient(etcd_urls, tls=tls)
            store = EtcdStore(client, limits=Limits(1024, 1572864))
        control = Control(store)
        # Managers run no tasks here (drained), as production managers often do.
        for _, _, node_id, _ in managers:
            n = await control.node(node_id)
            await control.update_node(node_id, None, n.record.spec.model_copy(update={"availability": "drain"}))

        fleet = Proc(me + ["--role", "fleet", "--dir", str(base / "fleet"), "--manager", first_addr,
                           "--token", worker_token, "--nodes", str(args.nodes)], stdin=subprocess.PIPE,
                     log=base / "fleet.log")
        procs.append(fleet)
        joined = fleet.read("connected", 1800)
        row("hollow nodes joined (TLS, CSR) and in session", f"{args.nodes} in {joined['seconds']:.1f} s")

        # The bench follows the tasks through one etcd watch (a listing every half second
        # would cost this 2-core machine more CPU than the managers at 100,000 tasks).
        tasks = TaskWatch(client, store.root)
        await nursery.start(tasks.run)

        # Deploy: every service in one commit (as stack deploy does), then until all run.
        from orch.cluster.stackspec import StackDeployment

        specs = tuple(fc.service(f"app{i}", replicas=n).spec for i, n in enumerate(sizes_for(args.tasks)))
        spies = start_profiles(args.profile, {"leader": managers[0][0].p.pid, "fleet": fleet.p.pid})
        metrics_before = await trio.to_thread.run_sync(etcd_metrics, etcd_urls[0], tls)
        watched = {"leader": managers[0][0].p.pid, "fleet": fleet.p.pid,
                   "etcd": pid_of(f"--data-dir={managers[0][1]}/cluster/etcd"), "bench": os.getpid()}
        # The other managers (hot standbys following every change) and their etcd members share
        # the same two cores.
        for k, (proc, d, _, _) in enumerate(managers[1:], start=2):
            watched[f"m{k}"] = proc.p.pid
            watched[f"etcd{k}"] = pid_of(f"--data-dir={d}/cluster/etcd")
        cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        load_before = os.getloadavg()[0]
        began = time.monotonic()
        await control.deploy_stack(StackDeployment("scale", specs, (), (), ()))
        await tasks.wait(lambda: tasks.running() >= args.tasks)
        took = time.monotonic() - began
        stop_profiles(spies)
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in watched.items()}
        row("stack deploy until all running", f"{took:.1f} s, {args.tasks / took:,.0f} tasks/s", ANCHORS["deploy"])
        row("  CPU used meanwhile (s)", ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()) + f"; all {sum(cpu.values()):.1f}",
            f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores, shared)")
        row("  leader CPU per task", f"{cpu['leader'] / args.tasks * 1e6:.0f} µs")
        row("  fleet CPU per task", f"{cpu['fleet'] / args.tasks * 1e6:.0f} µs",
            "the worker's side: sessions, assignments, controllers, status reports")

        status = await client.status()
        leader = (await store.get(LEADER)).record
        leader_proc = next(p for p, _, nid, _ in managers if nid == leader.node_id)
        row("leader manager RSS", f"{rss_mb(leader_proc.p.pid):.0f} MB")
        standbys = [p for p, _, nid, _ in managers if nid != leader.node_id]
        if standbys:
            row("  the standby managers' RSS", ", ".join(f"{rss_mb(p.p.pid):.0f} MB" for p in standbys))
        row("etcd database size", f"{status.db_size / 1e6:.1f} MB")
        used = etcd_requests(metrics_before, await trio.to_thread.run_sync(etcd_metrics, etcd_urls[0], tls))
        row("etcd requests per 1,000 tasks (deploy)", f"{sum(v for k, v in used.items() if k[0].isupper()) * 1000 / args.tasks:.1f}"
            f" ({', '.join(f'{k} {v:,}' for k, v in sorted(used.items()))})")

        # A node drops off.
        victim = next(t.node_id for t in tasks.tasks.values() if t.running)
        began = time.monotonic()
        fleet.p.stdin.write((json.dumps({"op": "drop", "node_id": victim}) + "\n").encode())
        fleet.p.stdin.flush()
        while (await store.get(NODES, victim)).record.status.state != "down":
            await trio.sleep(0.2)
        down = time.monotonic() - began
        await tasks.wait(lambda: tasks.running(exclude_node=victim) >= args.tasks)
        moved = time.monotonic() - began
        row("a node drops off: Down after", f"{down:.1f} s", ANCHORS["down"])
        row("  ... its tasks running elsewhere after", f"{moved:.1f} s")

        if args.managers == 2:
            row("leader killed", "skipped: two etcd members lose quorum with one gone; use --managers 3")
        if args.managers > 2:
            began = time.monotonic()
            print(f"bench: {stamp()} killing the leader", file=sys.stderr, flush=True)
            os.kill(leader_proc.p.pid, signal.SIGKILL)
            while True:
                stored = await store.get(LEADER)
                if stored is not None and stored.record.node_id != leader.node_id:
                    break
                await trio.sleep(0.1)
            leads = time.monotonic() - began
            svc = min(await control.services(), key=lambda s: s.record.spec.replicas)
            spec = svc.record.spec
            new = spec.model_copy(update={"task_template": spec.task_template.model_copy(update={
                "container_spec": spec.task_template.container_spec.model_copy(update={"image": "busybox:2"})})})
            await control.update_service(svc.id, None, new)

            def acted() -> bool:  # the new leader wrote the update's first task
                return any(t.service_id == svc.id and t.image == "busybox:2" for t in tasks.tasks.values())

            await tasks.wait(acted)
            acts = time.monotonic() - began

            def updated() -> bool:
                mine = [t for t in tasks.tasks.values() if t.service_id == svc.id and t.running]
                return len(mine) == spec.replicas and all(t.image == "busybox:2" for t in mine)

            await tasks.wait(updated)
            row("leader killed: another leads after", f"{leads:.1f} s", ANCHORS["leader"])
            row("  ... acts on a service update (its first task written) after", f"{acts:.1f} s")
            row("  ... and a service update completes after", f"{time.monotonic() - began:.1f} s")
        await client.aclose()
    finally:
        for p in procs:
            p.kill()
        subprocess.run(["pkill", "-9", "-f", f"data-dir={base}/"], capture_output=True)
        if os.environ.get("ORCH_BENCH_KEEP"):
            print(f"bench: kept {base}", flush=True)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
