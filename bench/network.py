"""Container-to-container TCP over a bridge network: orch beside podman, on this machine.

Two containers on one user-defined bridge network, one a server, one a client, each a busybox
container running a small Python program (the host's /usr mounted read-only: busybox has no
iperf, and its nc cannot time itself). The client measures:
- throughput: it sends 1 MiB writes for a few seconds and divides the bytes the server says it
  received by the time until that answer (Gbit/s);
- latency: 1-byte ping-pong with TCP_NODELAY, one round trip at a time (median and p99, µs).
The same programs run over a podman network (netavark bridge, crun), and, as the floor, as two
plain processes on the host's loopback. podman runs with runc where crun refuses this host's
hybrid cgroups (the runtime is not on the data path: both use veths on a Linux bridge). Each figure is the median of --runs client runs;
ratios are podman / orch (above 1 for throughput: orch is faster; for latency, below 1).

Usage (as root):  python bench/network.py [--runs 3] [--seconds 2] [--rounds 5000]

Everything is made under a temporary directory and removed at the end: an orch node with its
own agent, network prefix and busybox; the podman image and network. Needs podman (apt-get
install podman) for the comparison; without it only orch and the floor are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from run_startup import OrchNode, have  # noqa: E402

HOST_PYTHON = ["-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro"]
PORT = 5001

SERVER = r"""
import socket, threading
def serve(conn):
    kind = conn.recv(1)
    if kind == b"t":
        total = 0
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            total += len(data)
        conn.sendall(str(total).encode())
    else:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            b = conn.recv(1)
            if not b:
                break
            conn.sendall(b)
    conn.close()
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", %d)); srv.listen(8)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
""" % PORT

CLIENT = r"""
import json, socket, statistics, sys, time
host, seconds, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + 15
while True:
    try:
        c = socket.create_connection((host, %d), timeout=2); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.05)
c.sendall(b"t")
chunk = b"\0" * (1 << 20)
t0 = time.perf_counter(); end = t0 + seconds
while time.perf_counter() < end:
    c.sendall(chunk)
c.shutdown(socket.SHUT_WR)
total = int(c.recv(64)); elapsed = time.perf_counter() - t0
c.close()
c = socket.create_connection((host, %d)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.sendall(b"p")
times = []
for _ in range(rounds):
    t = time.perf_counter(); c.sendall(b"x"); c.recv(1); times.append(time.perf_counter() - t)
c.close()
times.sort()
print(json.dumps({"gbps": total * 8 / elapsed / 1e9, "p50_us": times[len(times) // 2] * 1e6,
                  "p99_us": times[int(len(times) * 0.99)] * 1e6}))
""" % (PORT, PORT)


def median_of(results: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def run_json(cmd: list[str], env=None) -> dict:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}...: exit {proc.returncode}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_orch(node: OrchNode, args) -> dict:
    o = node.cmd
    subprocess.run(o("network", "create", "benchnet"), env=node.env, check=True, capture_output=True)
    subprocess.run(o("run", "-d", "--name", "srv", "--network", "benchnet", *HOST_PYTHON, "busybox", "/usr/bin/python3", "-c", SERVER),
                   env=node.env, check=True, capture_output=True)
    info = json.loads(subprocess.run(o("inspect", "srv"), env=node.env, check=True, capture_output=True, text=True).stdout)[0]
    address = info["NetworkSettings"]["Networks"]["benchnet"]["IPAddress"]
    client = o("run", "--rm", "--network", "benchnet", *HOST_PYTHON, "busybox", "/usr/bin/python3", "-c", CLIENT,
               address, str(args.seconds), str(args.rounds))
    return median_of([run_json(client, node.env) for _ in range(args.runs)])


def podman_flags(node: OrchNode, base: Path) -> list[str] | str:
    """Load busybox into podman; the run flags that work here with a bridge network.

    Unlike run_startup.py, podman runs in the host's mount namespace here: it pins each
    container's network namespace under /run/netns, which a private mount namespace would hide
    from the next podman command. crun refuses this machine's hybrid cgroups there, so runc is
    the fallback. Raising RLIMIT_NOFILE/NPROC needs CAP_SYS_RESOURCE, which this machine
    withholds: ask for 1024 (a containers.conf default_ulimits would do the same).
    """
    archive = base / "busybox.tar"
    node.store.save(["busybox:latest"], archive)
    proc = subprocess.run(["podman", "load", "-i", str(archive)], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"podman load failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    why = "?"
    for flags in (limits, ["--runtime", "runc", *limits]):
        proc = subprocess.run(["podman", "run", *flags, "--rm", "busybox", "true"], capture_output=True, text=True)
        if proc.returncode == 0:
            return flags
        why = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return f"podman run failed: {why}"


def bench_podman(node: OrchNode, base: Path, args) -> dict | str:
    flags = podman_flags(node, base)
    if isinstance(flags, str):
        return flags
    net = "orchbench" + secrets.token_hex(2)
    podman = lambda *a: ["podman", *a]  # noqa: E731
    try:
        subprocess.run(podman("network", "create", net), check=True, capture_output=True)
        subprocess.run(podman("run", "-d", *flags, "--name", net + "-srv", "--network", net, *HOST_PYTHON, "busybox",
                              "/usr/bin/python3", "-c", SERVER), check=True, capture_output=True)
        info = json.loads(subprocess.run(["podman", "inspect", net + "-srv"], check=True, capture_output=True, text=True).stdout)[0]
        address = info["NetworkSettings"]["Networks"][net]["IPAddress"]
        client = podman("run", "--rm", *flags, "--network", net, *HOST_PYTHON, "busybox", "/usr/bin/python3", "-c", CLIENT,
                        address, str(args.seconds), str(args.rounds))
        return median_of([run_json(client) for _ in range(args.runs)])
    except (subprocess.CalledProcessError, RuntimeError) as err:
        return f"podman failed: {(getattr(err, 'stderr', None) or str(err)).strip()}"
    finally:
        subprocess.run(["podman", "rm", "-f", net + "-srv"], capture_output=True)
        subprocess.run(["podman", "network", "rm", "-f", net], capture_output=True)


def bench_loopback(args) -> dict:
    server = subprocess.Popen(["/usr/bin/python3", "-c", SERVER])
    try:
        return median_of([run_json(["/usr/bin/python3", "-c", CLIENT, "127.0.0.1", str(args.seconds), str(args.rounds)])
                          for _ in range(args.runs)])
    finally:
        server.kill()
        server.wait()


def remove_networks(node: OrchNode, prefix: str) -> None:
    """The orch node's bridges and table (the default bridge outlives the agent, as docker0)."""
    try:
        state = json.loads((node.root / "networks" / "state.json").read_text())
    except (OSError, ValueError):
        state = {}
    for net in state.get("networks", {}).values():
        subprocess.run(["ip", "link", "del", net["bridge"]], capture_output=True)
    subprocess.run(["nft", "delete", "table", "ip", prefix], capture_output=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=5000)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("run as root: containers, bridges and nftables need it", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="orch-bench-net-"))
    node = OrchNode(base)
    prefix = "orchB" + secrets.token_hex(2)
    node.env["ORCH_NET_PREFIX"] = prefix
    results: dict[str, dict | str] = {}
    try:
        node.setup()
        results["orch"] = bench_orch(node, args)
        results["podman"] = bench_podman(node, base, args) if have("podman") else "not installed (apt-get install podman)"
        results["host loopback"] = bench_loopback(args)
    finally:
        node.stop()
        remove_networks(node, prefix)
        if have("podman"):
            subprocess.run(["podman", "rmi", "-f", "busybox"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    orch = results["orch"]
    print(f"\nContainer to container TCP on one bridge network, median of {args.runs} runs "
          f"({args.seconds:g} s of 1 MiB writes; {args.rounds} 1-byte round trips):\n")
    print(f"  {'':<16}{'Gbit/s':>10}{'ratio':>8}{'p50 µs':>10}{'ratio':>8}{'p99 µs':>10}{'ratio':>8}")
    for name, r in results.items():
        if isinstance(r, str):
            print(f"  {name:<16}not available: {r}")
            continue
        print(f"  {name:<16}{r['gbps']:>10.2f}{r['gbps'] / orch['gbps']:>8.2f}{r['p50_us']:>10.1f}{r['p50_us'] / orch['p50_us']:>8.2f}"
              f"{r['p99_us']:>10.1f}{r['p99_us'] / orch['p99_us']:>8.2f}")
    print("\nratio = that row / orch. The loopback row is two host processes without veths or a bridge: the floor.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
