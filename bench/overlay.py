"""Overlay networks across hosts: TCP throughput and request round trip between containers on
two hosts over the overlay, beside the same pair of containers joined by a plain veth (the
floor), in the same run; and the time for a new task's address to answer in every node's DNS.

Two hosts of the cluster lab (network namespaces on an underlay bridge, orch.cluster.lab), a
cluster of both, a stack with a server task pinned to h2 and a client task pinned to h1 on one
overlay network (busybox containers running the host's Python, /usr bound read-only, as
bench/network.py does). The client measures, as bench/network.py does:
- throughput: 1 MiB writes for a few seconds, divided by the time until the server says how
  many bytes it got (Gbit/s);
- round trip: 1-byte ping-pong with TCP_NODELAY, one at a time (median and p99, µs).
It runs against the server's overlay address (VXLAN across the underlay), its service's VIP
(the same path plus the DNAT in the client's namespace), and, as the floor, an address on a
veth pair added between the two containers' own namespaces for the bench (no bridge, no
VXLAN, no underlay). The three alternate run by run (ABCABC...), so the machine's load drifts
alike over all of them; each figure is the median of --runs runs. The hosts' own underlay
(host to host, no container) is printed for context.

DNS: a service of one replica is created; from the moment the command returns, every node's
DNS (its server on the network's gateway, asked from the host) is polled for `tasks.NAME`
until it answers with the task's address; printed: until the task runs (its container's start)
and until every node answers, and the gap between the two.

docker's overlay is not run beside it: it needs a swarm of two dockerds on two hosts, and
docker's VIPs and routing mesh need IPVS, which this kernel lacks (KERNEL-NOTES.md).

Usage (as root):  python bench/overlay.py [--runs 5] [--seconds 2] [--rounds 3000] [--dns-runs 5]

Everything is made under a temporary directory and removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from network import CLIENT, SERVER  # noqa: E402  (the same programs as bench/network.py)

HOST_PYTHON = '["/usr:/usr:ro", "/usr/lib:/lib:ro", "/usr/lib64:/lib64:ro"]'
STACK = f"""
services:
  srv:
    image: busybox:latest
    entrypoint: ["/usr/bin/python3", "-c"]
    command: [{json.dumps(SERVER)}]
    volumes: {HOST_PYTHON}
    deploy:
      placement: {{constraints: [node.hostname == h2]}}
  cli:
    image: busybox:latest
    command: ["sleep", "100000"]
    init: true
    volumes: {HOST_PYTHON}
    deploy:
      placement: {{constraints: [node.hostname == h1]}}
"""
FLOOR = ("192.168.251.1", "192.168.251.2")  # the veth pair's addresses (a /30 of their own)


def poll(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"bench: timed out waiting for {what}")


def container(host, prefix: str) -> dict:
    from tests.integration.cluster.lab_fixture import containers

    return next(c for c in containers(host) if c["Names"].startswith(prefix))


def inspect(host, name: str) -> dict:
    return json.loads(host.orch("inspect", name).stdout)[0]


def netns_of(host, name: str) -> str:
    return str(host.run_dir / "netns" / inspect(host, name)["Id"])


def run_client(host, name: str, target: str, args) -> dict:
    proc = host.orch("exec", name, "/usr/bin/python3", "-c", CLIENT, target, str(args.seconds), str(args.rounds), timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def add_floor(h1, h2, cli: str, srv: str) -> None:
    """A veth pair straight between the two containers' namespaces."""
    a, b = netns_of(h1, cli), netns_of(h2, srv)
    subprocess.run(["nsenter", f"--net={a}", "ip", "link", "add", "flr0", "type", "veth", "peer", "name", "flr1"], check=True)
    subprocess.run(["nsenter", f"--net={a}", "ip", "link", "set", "flr1", "netns", b], check=True)
    for path, dev, addr in ((a, "flr0", FLOOR[0]), (b, "flr1", FLOOR[1])):
        subprocess.run(["nsenter", f"--net={path}", "ip", "addr", "add", f"{addr}/30", "dev", dev], check=True)
        subprocess.run(["nsenter", f"--net={path}", "ip", "link", "set", dev, "up"], check=True)


class DnsProbe:
    """A DNS client in a host's namespace: for each `NAME` line it asks the host's DNS (on the
    network's gateway) every 5 ms and prints the time (time.time()) of the first answer with
    an address."""

    CODE = r"""
import socket, sys, time
from dnslib import DNSRecord
gateway = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
for line in sys.stdin:
    query = DNSRecord.question(line.strip()).pack()
    while True:
        s.sendto(query, (gateway, 53))
        try:
            reply = DNSRecord.parse(s.recv(4096))
        except Exception:
            reply = None
        if reply is not None and reply.rr:
            print(time.time(), flush=True)
            break
        time.sleep(0.005)
"""

    def __init__(self, host, gateway: str):
        self.proc = subprocess.Popen(host.argv([sys.executable, "-c", self.CODE, gateway]), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=host.env)

    def ask(self, name: str) -> None:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()

    def answered_at(self) -> float:
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait()


def rfc3339(text: str) -> float:
    main, _, rest = text.partition(".")
    frac = rest.rstrip("Z").split("+")[0]
    return datetime.fromisoformat(main + "+00:00").timestamp() + float("0." + (frac or "0"))


def bench_dns(lab, gateway: str, runs: int) -> list[tuple[float, float]]:
    """(seconds until the task ran, seconds until every node named it), from `service create`."""
    h1 = lab.hosts[0]
    probes = [DnsProbe(h, gateway) for h in lab.hosts]
    out = []
    try:
        for i in range(runs):
            name = f"probe{i}"
            for p in probes:
                p.ask(f"tasks.{name}")  # the only task of the service: any address is its
            began = time.time()
            h1.orch("service", "create", "--detach", "--name", name, "--network", "bo_default", "--init",
                    "busybox:latest", "sleep", "100000")
            every = max(p.answered_at() for p in probes)
            host, c = poll(lambda: next(((h, c) for h in lab.hosts for c in _containers(h)
                                         if c["Names"].startswith(name + ".")), None), 60, f"the task of {name}")
            started = rfc3339(inspect(host, c["Names"])["State"]["StartedAt"])
            out.append((started - began, every - began))
            h1.orch("service", "rm", name)
    finally:
        for p in probes:
            p.close()
    return out


def _containers(host):
    from tests.integration.cluster.lab_fixture import containers

    return containers(host)


def underlay(lab, args) -> dict:
    h1, h2 = lab.hosts
    server = subprocess.Popen(h2.argv(["/usr/bin/python3", "-c", SERVER]))
    try:
        time.sleep(0.2)
        proc = subprocess.run(h1.argv(["/usr/bin/python3", "-c", CLIENT, h2.addr, str(args.seconds), str(args.rounds)]),
                              capture_output=True, text=True, timeout=120)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        server.kill()
        server.wait()


def median(rows: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--dns-runs", type=int, default=5)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("run as root: namespaces, VXLAN and nftables need it", file=sys.stderr)
        return 1
    from tests.integration.cluster.lab_fixture import open_lab

    gen = open_lab(2, "orchbo")
    lab = next(gen)
    try:
        h1, h2 = lab.hosts
        h1.orch("swarm", "init", "--advertise-addr", h1.addr)
        token = h1.orch("swarm", "join-token", "-q", "worker").stdout.strip()
        h2.orch("swarm", "join", "--token", token, f"{h1.addr}:2377")
        stack = lab.base / "stack.yml"
        stack.write_text(STACK)
        h1.orch("stack", "deploy", "-c", str(stack), "bo", timeout=180)
        cli = poll(lambda: container(h1, "bo_cli.") if _has(h1, "bo_cli.") else None, 120, "the client task")["Names"]
        srv = poll(lambda: container(h2, "bo_srv.") if _has(h2, "bo_srv.") else None, 120, "the server task")["Names"]
        nets = inspect(h2, srv)["NetworkSettings"]["Networks"]["bo_default"]
        overlay_addr, gateway = nets["IPAddress"], nets["Gateway"]
        service = json.loads(h1.orch("service", "inspect", "bo_srv").stdout)[0]
        vip = service["Endpoint"]["VirtualIPs"][0]["Addr"].split("/")[0]
        add_floor(h1, h2, cli, srv)
        targets = {"overlay (task address)": overlay_addr, "overlay (service VIP)": vip, "plain veth (floor)": FLOOR[1]}
        results: dict[str, list[dict]] = {k: [] for k in targets}
        for _ in range(args.runs):
            for label, target in targets.items():
                results[label].append(run_client(h1, cli, target, args))
        host = underlay(lab, args)
        dns = bench_dns(lab, gateway, args.dns_runs)
    finally:
        try:
            next(gen)
        except StopIteration:
            pass
    floor = median(results["plain veth (floor)"])
    print(f"TCP between containers on two hosts (median of {args.runs} runs, {args.seconds:g} s each; "
          f"round trip: {args.rounds} 1-byte ping-pongs)")
    print(f"  {'':26} {'Gbit/s':>8} {'x floor':>8} {'p50 µs':>8} {'p99 µs':>8}")
    for label in targets:
        m = median(results[label])
        print(f"  {label:26} {m['gbps']:8.2f} {m['gbps'] / floor['gbps']:8.2f} {m['p50_us']:8.0f} {m['p99_us']:8.0f}")
    print(f"  {'hosts over the underlay':26} {host['gbps']:8.2f} {host['gbps'] / floor['gbps']:8.2f} "
          f"{host['p50_us']:8.0f} {host['p99_us']:8.0f}   (context: no container, no VXLAN)")
    ran = statistics.median(r for r, _ in dns)
    named = statistics.median(n for _, n in dns)
    print(f"A new task's address in every node's DNS (median of {len(dns)}; from `service create`): "
          f"task running after {ran:.2f} s, named on both nodes after {named:.2f} s ({named - ran:+.2f} s)")
    return 0


def _has(host, prefix: str) -> bool:
    from tests.integration.cluster.lab_fixture import containers

    return any(c["Names"].startswith(prefix) for c in containers(host))


if __name__ == "__main__":
    raise SystemExit(main())
