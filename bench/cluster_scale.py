"""The control plane at scale, with hollow nodes (issue 13): K real managers (each with its
embedded etcd member, its leader election, orchestrator, placement and dispatcher), and N
hollow nodes in one process that join with a token and keep real TLS sessions, but run no
containers (a task "runs" once its node has created it). Prints each figure beside the
published anchors, which come from other hardware and are marked as such.

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
    import trio

    from orch.cluster.hollow import HollowRuntime
    from orch.cluster.node import ClusterNode

    async def main() -> None:
        member = ClusterNode(Path(args.dir), node=None, runtime=HollowRuntime(), etcd_ports=(args.etcd_client, args.etcd_peer))
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

    from orch.cluster.hollow import HollowFleet

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


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def row(name: str, value: str, anchor: str = "") -> None:
    print(f"{name:<48} {value:<34} {anchor}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--managers", type=int, default=1)
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
    import trio

    trio.run(bench, args)


async def bench(args) -> None:
    import trio

    from orch.cluster import records as r
    from orch.cluster.control import Control
    from orch.cluster.etcd import EtcdClient, TLSFiles
    from orch.cluster.state import LEADER
    from orch.cluster.node import LocalState
    from orch.cluster.state import NODES, SERVICES, TASKS
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
        first_addr = f"127.0.0.1:{free_port()}"
        for k in range(args.managers):
            d = base / f"m{k + 1}"
            addr = first_addr if k == 0 else f"127.0.0.1:{free_port()}"
            argv = me + ["--role", "manager", "--dir", str(d), "--addr", addr,
                         "--etcd-client", str(free_port()), "--etcd-peer", str(free_port())]
            if k:
                argv += ["--join", first_addr, "--token", manager_token]
            proc = Proc(argv, log=base / f"m{k + 1}.log")
            procs.append(proc)
            node_id = proc.read("ready", 120)["ready"]
            managers.append((proc, d, node_id, addr))
            if k == 0:
                state = LocalState.model_validate_json((d / "cluster" / "node.json").read_bytes())
                tls_dir = d / "cluster" / "etcd-tls"
                tls = TLSFiles(str(tls_dir / "ca.pem"), str(tls_dir / f"{state.node_id}.pem"),
                               str(tls_dir / f"{state.node_id}-key.pem"))
                client = EtcdClient([f"https://127.0.0.1:{argv[argv.index('--etcd-client') + 1]}"], tls=tls)
                store = EtcdStore(client, limits=Limits(1024, 1572864))
                from orch.cluster.node import JOIN_TOKENS
                from orch.cluster.secretbox import Keyring

                ring = Keyring.from_json((d / "cluster" / "manager" / "keyring.json").read_text())
                sealed = (await store.get(JOIN_TOKENS)).record
                worker_token = ring.open(sealed.worker, record_id="join-tokens").decode()
                manager_token = ring.open(sealed.manager, record_id="join-tokens").decode()
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

        async def count_running(exclude_node: str = "") -> int:
            listing = await store.list(TASKS)
            return sum(1 for t in listing.items if t.record.status.state == r.TaskState.RUNNING
                       and t.record.desired_state == r.TaskState.RUNNING and t.record.node_id != exclude_node)

        async def wait_running(n: int, exclude_node: str = "", timeout: float = 1800) -> float:
            began = time.monotonic()
            while time.monotonic() - began < timeout:
                if await count_running(exclude_node) >= n:
                    return time.monotonic() - began
                await trio.sleep(0.5)
            raise SystemExit(f"bench: fewer than {n} tasks running after {timeout} s")

        # Deploy: every service in one commit (as stack deploy does), then until all run.
        from orch.cluster.stackspec import StackDeployment

        specs = tuple(fc.service(f"app{i}", replicas=n).spec for i, n in enumerate(sizes_for(args.tasks)))
        began = time.monotonic()
        await control.deploy_stack(StackDeployment("scale", specs, (), (), ()))
        took = await wait_running(args.tasks)
        took = time.monotonic() - began
        row("stack deploy until all running", f"{took:.1f} s, {args.tasks / took:,.0f} tasks/s", ANCHORS["deploy"])

        status = await client.status()
        leader = (await store.get(LEADER)).record
        leader_proc = next(p for p, _, nid, _ in managers if nid == leader.node_id)
        row("leader manager RSS", f"{rss_mb(leader_proc.p.pid):.0f} MB")
        row("etcd database size", f"{status.db_size / 1e6:.1f} MB")

        # A node drops off.
        victim_tasks = [t for t in (await store.list(TASKS)).items if t.record.status.state == r.TaskState.RUNNING]
        victim = victim_tasks[0].record.node_id
        began = time.monotonic()
        fleet.p.stdin.write((json.dumps({"op": "drop", "node_id": victim}) + "\n").encode())
        fleet.p.stdin.flush()
        while (await store.get(NODES, victim)).record.status.state != "down":
            await trio.sleep(0.2)
        down = time.monotonic() - began
        await wait_running(args.tasks, exclude_node=victim)
        moved = time.monotonic() - began
        row("a node drops off: Down after", f"{down:.1f} s", ANCHORS["down"])
        row("  ... its tasks running elsewhere after", f"{moved:.1f} s")

        if args.managers == 2:
            row("leader killed", "skipped: two etcd members lose quorum with one gone; use --managers 3")
        if args.managers > 2:
            began = time.monotonic()
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
            while True:
                tasks = [t.record for t in (await store.list(TASKS)).items if t.record.service_id == svc.id
                         and t.record.desired_state == r.TaskState.RUNNING and t.record.status.state == r.TaskState.RUNNING]
                if len(tasks) == spec.replicas and all(t.spec.container_spec.image == "busybox:2" for t in tasks):
                    break
                await trio.sleep(0.2)
            row("leader killed: another leads after", f"{leads:.1f} s", ANCHORS["leader"])
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
