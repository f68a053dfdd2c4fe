"""Overlay networks end to end on three hosts (network namespaces on an underlay bridge, each with
its own node agent), with real containers: a client task resolves a service to its VIP and
reaches replicas on all three hosts, `tasks.NAME` lists them; a published port answers on every
host's underlay address and the task sees the client's own address (a client outside every
host: the lab's switch namespace); no host tracks the VXLAN packets, every host the connections
inside them; a host-mode port answers only where its task runs; two
overlay networks are isolated and an internal one has no way out; `--opt encrypted` is refused;
an agent restart rebuilds the fabric; a rolling update under a client loop through the mesh
loses no request; after `stack rm` nothing of the stack is left on any host or in etcd."""

import json
import socket
import subprocess
import sys
import time

import pytest

from tests.integration.cluster.lab_fixture import containers, open_lab, wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.tools("/usr/bin/etcd", package="etcd-server")]

# busybox's httpd with a CGI script that says which container answered and who asked.
HTTPD = ("mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\n"
         "echo $$(hostname) $$REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 80 -h /www")
HEALTH = """["CMD-SHELL", "printf '' | nc -w 1 127.0.0.1 80 >/dev/null"]"""

STACK = f"""
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "{HTTPD}"]
    init: true
    ports: ["8080:80"]
    healthcheck: {{test: {HEALTH}, interval: 1s, timeout: 2s, retries: 3}}
    deploy:
      replicas: 3
      update_config: {{parallelism: 1, order: start-first, monitor: 1s}}
  client:
    image: busybox:latest
    command: ["sleep", "100000"]
    init: true
  edge:
    image: busybox:latest
    command: ["sh", "-c", "{HTTPD}"]
    init: true
    ports: [{{target: 80, published: 8081, mode: host}}]
    deploy:
      placement: {{constraints: [node.hostname == h2]}}
  other:
    image: busybox:latest
    command: ["sh", "-c", "{HTTPD}"]
    init: true
    networks: [back]
  sealed:
    image: busybox:latest
    command: ["sleep", "100000"]
    init: true
    networks: [inside]
    deploy:
      placement: {{constraints: [node.hostname == h3]}}
networks:
  default: {{}}
  back: {{}}
  inside: {{internal: true}}
"""


@pytest.fixture(scope="module")
def lab():
    yield from open_lab(3, "orchov")


@pytest.fixture(scope="module")
def cluster(lab):
    h1, h2, h3 = lab.hosts
    h1.orch("swarm", "init", "--advertise-addr", h1.addr)
    token = h1.orch("swarm", "join-token", "-q", "worker").stdout.strip()
    for h in (h2, h3):
        h.orch("swarm", "join", "--token", token, f"{h1.addr}:2377")
    wait_for(lambda: h1.orch("node", "ls").stdout.count("Ready") == 3, 30, "three Ready nodes")
    return lab


@pytest.fixture(scope="module")
def stack(cluster, tmp_path_factory):
    h1 = cluster.hosts[0]
    path = tmp_path_factory.mktemp("overlay") / "stack.yml"
    path.write_text(STACK)
    h1.orch("stack", "deploy", "-c", str(path), "ov", timeout=180)
    wait_for(lambda: running(cluster, "ov_web") == 3 and running(cluster, "ov_client") == 1 and running(cluster, "ov_edge") == 1
             and running(cluster, "ov_other") == 1 and running(cluster, "ov_sealed") == 1, 90, "the stack running",
             describe=lambda: h1.orch("stack", "ps", "ov", "--no-trunc").stdout)
    wait_for(lambda: len(serving(cluster, "ov_web")) == 3, 60, "three healthy web tasks")
    return cluster


def running(lab, service: str) -> int:
    return sum(1 for h in lab.hosts for c in containers(h) if c["Names"].startswith(service + "."))


def serving(lab, service: str) -> list[dict]:
    rows = [json.loads(line) for line in lab.hosts[0].orch("service", "ps", service, "--format", "{{json .}}",
                                                            "--no-trunc").stdout.splitlines()]
    return [r for r in rows if r["DesiredState"] == "Running" and r["CurrentState"].startswith("Running")]


def hostnames(lab, service: str) -> dict[str, str]:
    """Container hostname (its short id) -> the host it runs on."""
    return {c["ID"][:12]: h.name for h in lab.hosts for c in containers(h) if c["Names"].startswith(service + ".")}


def task_container(lab, service: str):
    for h in lab.hosts:
        for c in containers(h):
            if c["Names"].startswith(service + "."):
                return h, c["Names"]
    raise AssertionError(f"no container of {service}")


def sh(lab, service: str, script: str, check: bool = False) -> subprocess.CompletedProcess:
    host, name = task_container(lab, service)
    return host.orch("exec", name, "sh", "-c", script, check=check, timeout=30)


def get(lab, target: str, timeout: float = 3) -> str | None:
    """An HTTP GET from the client outside every host; None when nothing answered."""
    proc = subprocess.run(lab.client_argv(["curl", "-s", "-m", str(timeout), f"http://{target}/cgi-bin/ip"]),
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def cgi(line: str) -> tuple[str, str]:
    """(the container that answered, the client address it saw) from the CGI's line."""
    name, remote = line.split()
    return name, remote.strip("[]").rsplit(":", 1)[-1]  # httpd says [::ffff:A.B.C.D]


def http_from_task(lab, service: str, target: str, port: int = 80) -> str:
    out = sh(lab, service, f"printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {target} {port}").stdout
    return out.strip().splitlines()[-1] if out.strip() else ""


def addresses(lab, service: str, network: str) -> list[str]:
    """The service's containers' addresses on a network, as each host's agent has them."""
    out = []
    for h in lab.hosts:
        for c in containers(h):
            if c["Names"].startswith(service + "."):
                nets = json.loads(h.orch("inspect", "--format", "{{json .NetworkSettings.Networks}}", c["Names"]).stdout)
                out.append(nets[network]["IPAddress"])
    return out


def inspect(host, what: str, name: str) -> dict:
    return json.loads(host.orch(what, "inspect", name).stdout)[0]


def test_a_client_resolves_the_vip_and_reaches_replicas_on_every_host(stack):
    h1 = stack.hosts[0]
    service = inspect(h1, "service", "ov_web")
    network = inspect(h1, "network", "ov_default")
    vip = next(v["Addr"].split("/")[0] for v in service["Endpoint"]["VirtualIPs"] if v["NetworkID"] == network["Id"])
    assert f"Address: {vip}" in sh(stack, "ov_client", "nslookup web").stdout  # the stack's short name
    assert f"Address: {vip}" in sh(stack, "ov_client", "nslookup ov_web").stdout

    # tasks.web: every serving task's address, which are the tasks' own on the network.
    answer = sh(stack, "ov_client", "nslookup tasks.web").stdout
    listed = sorted(line.split()[-1] for line in answer.splitlines() if line.startswith("Address:") and ":53" not in line)
    assert len(listed) == 3 and listed == sorted(addresses(stack, "ov_web", "ov_default"))

    # Through the VIP: replicas on all three hosts answer, each seeing the client's own address.
    client_addr = sh(stack, "ov_client", "ip -4 -o addr show eth0").stdout.split()[3].split("/")[0]
    where = hostnames(stack, "ov_web")
    seen = set()
    for _ in range(9):
        line = http_from_task(stack, "ov_client", "web")
        name, remote = cgi(line)
        assert remote == client_addr, line
        seen.add(where[name])
    assert seen == {"h1", "h2", "h3"}


def tracked_to(host, address: str) -> list[dict]:
    """The connections the host's conntrack holds whose replies come from `address`."""
    code = ("import json, sys\nfrom dataclasses import asdict\nfrom orch.net.conntrack import flows_to\n"
            "print(json.dumps([asdict(f) for f in flows_to(sys.argv[1])]))")
    proc = subprocess.run(host.argv([sys.executable, "-c", code, address]), env=host.env, capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout)


def test_vxlan_packets_skip_the_hosts_connection_tracking_and_the_frames_inside_do_not(stack):
    # After the client's requests to replicas on every host (the test above, and these): no
    # host tracks the VXLAN packets it receives (orch's raw `notrack` on its underlay address),
    # and each host with a web task still tracks the connections to it, which the drain reads.
    for _ in range(6):
        http_from_task(stack, "ov_client", "web")
    web = {h.name: addr for h in stack.hosts for c in containers(h) if c["Names"].startswith("ov_web.")
           for addr in [json.loads(h.orch("inspect", "--format", "{{json .NetworkSettings.Networks}}", c["Names"]).stdout)
                        ["ov_default"]["IPAddress"]]}
    for h in stack.hosts:
        rules = subprocess.run(h.argv(["nft", "list", "ruleset"]), capture_output=True, text=True).stdout
        assert f"ip daddr {h.addr} udp dport 4789 notrack" in rules and f"ip saddr {h.addr} udp dport 4789 notrack" in rules
        vxlan = [f for f in tracked_to(h, h.addr) if f["proto"] == socket.IPPROTO_UDP and f["server_port"] == 4789]
        assert vxlan == [], (h.name, vxlan)
        assert any(f["proto"] == socket.IPPROTO_TCP and f["server_port"] == 80 for f in tracked_to(h, web[h.name])), h.name


def test_a_published_port_answers_on_every_host_and_the_task_sees_the_client(stack):
    where = hostnames(stack, "ov_web")
    for h in stack.hosts:
        seen = set()
        for _ in range(6):
            line = get(stack, f"{h.addr}:8080")
            assert line is not None, f"no answer on {h.name}"
            name, remote = cgi(line)
            assert remote == stack.client_addr, line  # the client's own address, not a node's
            seen.add(where[name])
        assert seen == {"h1", "h2", "h3"}, (h.name, seen)
    pretty = stack.hosts[0].orch("service", "inspect", "--pretty", "ov_web").stdout
    assert "Client Address:\tpreserved" in pretty


def test_a_host_mode_port_answers_only_where_its_task_runs(stack):
    h1, h2, h3 = stack.hosts
    assert running_on(stack, "ov_edge") == {"h1": 0, "h2": 1, "h3": 0}
    line = get(stack, f"{h2.addr}:8081")
    assert line is not None and cgi(line)[1] == stack.client_addr
    assert get(stack, f"{h1.addr}:8081") is None and get(stack, f"{h3.addr}:8081") is None


def running_on(lab, service: str) -> dict[str, int]:
    return {h.name: sum(1 for c in containers(h) if c["Names"].startswith(service + ".")) for h in lab.hosts}


def test_two_overlay_networks_are_isolated_and_an_internal_one_has_no_way_out(stack):
    h1 = stack.hosts[0]
    other = inspect(h1, "service", "ov_other")
    back = inspect(h1, "network", "ov_back")
    vip = next(v["Addr"].split("/")[0] for v in other["Endpoint"]["VirtualIPs"] if v["NetworkID"] == back["Id"])
    # On its own network, `other` answers; from the default network it is neither named nor reached.
    assert sh(stack, "ov_other", f"printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {vip} 80").stdout.strip()
    lookups = sh(stack, "ov_client", "nslookup other 2>&1; nslookup ov_other 2>&1").stdout
    assert "Name:" not in lookups and "can't find other" in lookups and "can't find ov_other" in lookups, lookups
    task_addr = sh(stack, "ov_other", "ip -4 -o addr show eth0").stdout.split()[3].split("/")[0]
    for target in (vip, task_addr):
        assert http_from_task(stack, "ov_client", target) == "", target
    # internal: no way out (another host's underlay address), where a task on a network that
    # is not internal gets through (the manager's port on h1).
    assert running_on(stack, "ov_sealed")["h3"] == 1
    probe = f"printf '' | nc -w 2 {h1.addr} 2377 >/dev/null 2>&1; echo rc=$?"
    assert "rc=0" in sh(stack, "ov_other", probe).stdout
    assert "rc=1" in sh(stack, "ov_sealed", probe).stdout


def test_encrypted_overlay_is_refused_in_one_line(cluster):
    proc = cluster.hosts[0].orch("network", "create", "-d", "overlay", "--opt", "encrypted", "secret", check=False)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "encrypted overlay networks are not supported" in proc.stderr
    assert "secret" not in cluster.hosts[0].orch("network", "ls").stdout


def test_an_agent_restart_rebuilds_the_fabric(stack):
    h2 = stack.hosts[1]
    before = fabric(h2)
    assert before["fdb"] and before["rules"]
    h2.kill_agent()
    # What a crash leaves is wrong on purpose: a stray entry the agent must remove.
    vx = next(link for link in before["links"] if "v" in link[len(prefix(h2)):len(prefix(h2)) + 1])
    subprocess.run(h2.argv(["bridge", "fdb", "append", "02:42:0a:ff:ff:fe", "dev", vx, "dst", "10.213.0.99"]), check=True)
    h2.start_agent()
    wait_for(lambda: fabric(h2) == before or None, 30, "the same fabric after the restart",
             describe=lambda: f"{fabric(h2)}\n{before}")
    for h in stack.hosts:
        assert get(stack, f"{h.addr}:8080") is not None


def prefix(host) -> str:
    from orch.node.agent.networking import default_prefix

    return default_prefix(host.root)


def fabric(host) -> dict:
    """What of the overlays is in a host's kernel: its links, VXLAN forwarding entries, the
    mesh's rules and routes."""
    p = prefix(host)
    links = sorted(line.split(": ")[1].split("@")[0] for line in
                   subprocess.run(host.argv(["ip", "-o", "link"]), capture_output=True, text=True).stdout.splitlines()
                   if line.split(": ")[1].startswith((p + "o", p + "v")))
    fdb = sorted(line for line in subprocess.run(host.argv(["bridge", "fdb", "show"]), capture_output=True,
                                                 text=True).stdout.splitlines() if " dst " in line)
    rules = [line for line in subprocess.run(host.argv(["ip", "rule"]), capture_output=True, text=True).stdout.splitlines()
             if line.startswith("4789:")]
    routes = subprocess.run(host.argv(["ip", "route", "show", "table", "all", "proto", "79"]), capture_output=True,
                            text=True).stdout.splitlines()
    return {"links": links, "fdb": fdb, "rules": rules, "routes": sorted(routes)}


LOOP = """
import http.client, sys, time, os, json
targets = sys.argv[1].split(","); stop = sys.argv[2]; ok = fail = 0; errors = []; seen = set()
while not os.path.exists(stop):
    for t in targets:
        try:
            c = http.client.HTTPConnection(t, 8080, timeout=5)
            c.request("GET", "/cgi-bin/ip"); body = c.getresponse().read().decode().split()
            c.close(); ok += 1; seen.add(body[0])
        except Exception as err:
            fail += 1; errors.append(f"{t}: {err!r}")
print(json.dumps({"ok": ok, "fail": fail, "errors": errors[:5], "seen": sorted(seen)}))
"""


def test_a_rolling_update_through_the_mesh_loses_no_request(stack, tmp_path):
    h1 = stack.hosts[0]
    stop = tmp_path / "stop"
    loop = subprocess.Popen(stack.client_argv([sys.executable, "-c", LOOP, ",".join(h.addr for h in stack.hosts), str(stop)]),
                            stdout=subprocess.PIPE, text=True)
    try:
        old = set(hostnames(stack, "ov_web"))
        h1.orch("service", "update", "--detach", "--env-add", "ROUND=2", "ov_web")
        def replaced():
            rows = serving(stack, "ov_web")
            names = set(hostnames(stack, "ov_web"))
            return len(rows) == 3 and not (names & old) and len(names) == 3
        wait_for(replaced, 150, "three new web tasks, the old ones gone",
                 describe=lambda: h1.orch("service", "ps", "ov_web").stdout)
        time.sleep(1)  # a last second of requests against the new tasks alone
    finally:
        stop.touch()
        out, _ = loop.communicate(timeout=30)
    result = json.loads(out)
    assert result["fail"] == 0, result
    assert result["ok"] > 50 and set(result["seen"]) & old and set(result["seen"]) - old, result


def test_stack_rm_leaves_nothing_of_the_stack(stack):
    h1 = stack.hosts[0]
    ids = {n: inspect(h1, "network", n)["Id"] for n in ("ov_default", "ov_back", "ov_inside")}
    h1.orch("stack", "rm", "ov")
    wait_for(lambda: all(not any(c["Names"].startswith("ov_") for c in containers(h)) for h in stack.hosts), 60,
             "no container of the stack")
    empty = {"links": [], "fdb": [], "rules": [], "routes": []}
    wait_for(lambda: all(fabric(h) == empty for h in stack.hosts), 30, "no overlay link, entry, rule or route",
             describe=lambda: "\n".join(f"{h.name}: {fabric(h)}" for h in stack.hosts))
    for h in stack.hosts:
        tables = subprocess.run(h.argv(["nft", "list", "ruleset"]), capture_output=True, text=True).stdout
        assert "dport 8080" not in tables and "mesh_mark" not in tables and "notrack" not in tables
        listed = h.orch("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert not any(name.startswith("ov_") for name in listed), (h.name, listed)
    # In etcd: no service, task or network of the stack (so no address or VIP of it either).
    assert h1.orch("service", "ls", "-q").stdout.strip() == ""
    wait_for(lambda: "nothing found in stack" in h1.orch("stack", "ps", "ov", check=False).stderr, 30, "no task of the stack")
    for net_id in ids.values():
        assert h1.orch("network", "inspect", net_id, check=False).returncode != 0
    assert set(h1.orch("network", "ls", "--format", "{{.Name}}").stdout.split()) - {"bridge"} == {"ingress"}
