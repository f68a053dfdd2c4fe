"""The embedded DNS under attack from a container: a TCP flood (hundreds of connections opened
and held) and a UDP flood, while another container on the same network keeps asking.

The attacker and the victim are processes of this test inside the network namespaces of two
real containers (nsenter --net), so the agent sees them at the containers' addresses, on the
network's gateway, as it would see the containers' own resolvers. The agent must go on
answering the victim, and its threads and descriptors must stay bounded (orch.net.dns: the
limits). The figures are printed (pytest -s) for the record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from orch.net import dns  # noqa

pytestmark = pytest.mark.privileged

# The attackers run until SIGTERM, then print what they did as JSON. TCP: holds N connections
# to the server, opening another as soon as the server closes one; prints "ready" once it has
# tried N. UDP: sends queries as fast as it can (and reads what comes back).
TCP_ATTACKER = """
    import json, selectors, signal, socket, sys
    def stop(*_):
        raise SystemExit
    signal.signal(signal.SIGTERM, stop)
    gw, n = sys.argv[1], int(sys.argv[2])
    sel = selectors.DefaultSelector()
    def open_one():
        s = socket.socket(); s.setblocking(False)
        try:
            s.connect((gw, 53))
        except BlockingIOError:
            pass
        sel.register(s, selectors.EVENT_READ)
    for _ in range(n):
        open_one()
    print("ready", flush=True)
    reopened = 0
    try:
        while True:
            for key, _ in sel.select():
                s = key.fileobj
                try:
                    gone = s.recv(4096) == b""
                except OSError:
                    gone = True
                if gone:
                    sel.unregister(s); s.close(); open_one(); reopened += 1
    finally:
        print(json.dumps({"closed_by_server": reopened}), flush=True)
"""

UDP_ATTACKER = """
    import json, signal, socket, sys
    from dnslib import DNSRecord
    def stop(*_):
        raise SystemExit
    signal.signal(signal.SIGTERM, stop)
    gw = sys.argv[1]
    query = DNSRecord.question("attacker").pack()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.setblocking(False)
    print("ready", flush=True)
    sent = answered = 0
    try:
        while True:
            for _ in range(1000):
                try:
                    udp.sendto(query, (gw, 53))
                    sent += 1
                except BlockingIOError:
                    break
            try:
                while udp.recv(4096):
                    answered += 1
            except BlockingIOError:
                pass
    finally:
        print(json.dumps({"sent": sent, "answered": answered}), flush=True)
"""

# Asks `rounds` queries for `name` over UDP, one after another (a fresh TCP connection for
# every fourth), and prints the latencies in ms as JSON (None: no answer within a second).
VICTIM = """
    import json, socket, sys, time
    from dnslib import DNSRecord
    gw, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = []
    for i in range(rounds):
        q = DNSRecord.question(name)
        start = time.perf_counter()
        try:
            reply = DNSRecord.parse(q.send(gw, 53, tcp=(i % 4 == 3), timeout=1.0))
            ok = [str(rr.rdata) for rr in reply.rr]
            out.append(((time.perf_counter() - start) * 1000, ok))
        except (socket.timeout, OSError) as err:
            out.append((None, repr(err)))
        time.sleep(0.02)
    print(json.dumps(out))
"""


def _netns(node, name: str) -> str:
    return str(node.run_dir / "netns" / node.inspect(name)["Id"])


def _in_netns(node, name: str, code: str, *args) -> list[str]:
    return ["nsenter", f"--net={_netns(node, name)}", sys.executable, "-c", textwrap.dedent(code), *args]


def _counts(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def test_a_container_flooding_the_dns_does_not_stop_it_answering_others(node):
    node.ok("network", "create", "flood")
    for name in ("attacker", "victim", "target"):
        node.ok("run", "-d", "--name", name, "--network", "flood", "busybox", "sleep", "600")
    gateway = node.inspect("victim")["NetworkSettings"]["Networks"]["flood"]["Gateway"]
    target = node.inspect("target")["NetworkSettings"]["Networks"]["flood"]["IPAddress"]
    agent = node.agent_pid()
    before = _counts(agent)

    samples: list[tuple[int, int]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(_counts(agent))
            stop.wait(0.05)

    attackers = [subprocess.Popen(_in_netns(node, "attacker", code, gateway, "600"), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for code in (TCP_ATTACKER, UDP_ATTACKER)]
    sampler = threading.Thread(target=sample)
    try:
        for attacker in attackers:
            assert attacker.stdout.readline().strip() == "ready", attacker.stderr.read()
        sampler.start()
        victim = subprocess.run(_in_netns(node, "victim", VICTIM, gateway, "target", "60"), capture_output=True,
                                text=True, timeout=120)
        assert victim.returncode == 0, victim.stderr
    finally:
        stop.set()
        for attacker in attackers:
            attacker.terminate()
        tcp, udp = (json.loads(attacker.communicate(timeout=30)[0].strip() or "{}") for attacker in attackers)
        if sampler.is_alive():
            sampler.join()

    results = json.loads(victim.stdout)
    lost = [r for r in results if r[0] is None]
    assert not lost, f"queries of the victim went unanswered during the flood: {lost[:3]}"
    assert all(addrs == [target] for _, addrs in results), results[:3]
    latencies = sorted(ms for ms, _ in results)
    median, worst = latencies[len(latencies) // 2], latencies[-1]
    threads, fds = max(t for t, _ in samples), max(f for _, f in samples)
    print(f"\nDNS under a flood from one container ({udp['sent']} UDP queries sent, {udp['answered']} answered; "
          f"600 TCP connections held, {tcp['closed_by_server']} closed by the server): the victim's median "
          f"{median:.1f} ms, worst {worst:.1f} ms over {len(latencies)} queries; agent threads {before[0]} -> max {threads}, "
          f"fds {before[1]} -> max {fds}")
    # The flood was one: more than the agent answers, and connections beyond the limit refused.
    assert udp["sent"] > udp["answered"] and tcp["closed_by_server"] > 0, (udp, tcp)
    # The agent holds no thread per connection or query, and at most MAX_TCP_PER_CLIENT
    # connections of the attacker (plus the victim's one at a time, and forwards: none here).
    assert threads <= before[0] + 4, f"agent threads grew from {before[0]} to {threads} under the flood"
    assert fds <= before[1] + dns.MAX_TCP_PER_CLIENT + 8, f"agent fds grew from {before[1]} to {fds} under the flood"
    assert median < 50, f"the victim's median answer took {median:.1f} ms under the flood"
