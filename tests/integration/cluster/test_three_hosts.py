"""The cluster end to end on three hosts (network namespaces on an underlay bridge, each with
its own node agent), driven by the CLI as a user would: swarm init and join, node ls, a stack
spread one replica per node, a constraint that pins a task, a host cut off the underlay that
goes Down and whose task comes back elsewhere (and, back, leaves exactly the replica count),
drain, scale, stack rm that leaves nothing of the stack on any host or in etcd, a bad token
that joins nothing, and a worker that may not steer."""

import json
import subprocess

import pytest

from tests.integration.cluster.lab_fixture import containers, open_lab, tasks, wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.tools("/usr/bin/etcd", package="etcd-server")]

STACK = """
services:
  web:
    image: busybox:latest
    command: ["sleep", "100000"]
    init: true
    deploy:
      replicas: 3
  pinned:
    image: busybox:latest
    command: ["sleep", "100000"]
    init: true
    deploy:
      placement:
        constraints: [node.hostname == h2]
"""


@pytest.fixture(scope="module")
def lab():
    yield from open_lab(3, "orchc3")


@pytest.fixture(scope="module")
def cluster(lab):
    h1, h2, h3 = lab.hosts
    out = h1.orch("swarm", "init", "--advertise-addr", h1.addr).stdout
    assert "Swarm initialized: current node" in out and "orch swarm join --token" in out
    token = h1.orch("swarm", "join-token", "-q", "worker").stdout.strip()
    for h in (h2, h3):
        assert "This node joined a swarm as a worker." in h.orch("swarm", "join", "--token", token, f"{h1.addr}:2377").stdout
    return lab


def node_rows(host) -> list[dict]:
    return [json.loads(line) for line in host.orch("node", "ls", "--format", "{{json .}}").stdout.splitlines()]


def running_on(lab, service: str) -> dict[str, int]:
    """How many of the service's task containers run on each host (the hosts' own `orch ps`)."""
    return {h.name: sum(1 for c in containers(h) if c["Names"].startswith(f"{service}.")) for h in lab.hosts}


def test_nodes_join_and_are_listed(cluster):
    h1 = cluster.hosts[0]
    def ready():
        rows = node_rows(h1)
        return rows if len(rows) == 3 and all(r["Status"] == "Ready" for r in rows) else None

    rows = wait_for(ready, 30, "three Ready nodes")
    assert sorted(r["Hostname"] for r in rows) == ["h1", "h2", "h3"]
    assert [r["ManagerStatus"] for r in rows if r["Hostname"] == "h1"] == ["Leader"]
    assert {r["Availability"] for r in rows} == {"Active"}


def test_a_bad_token_joins_nothing_and_a_worker_may_not_steer(cluster, tmp_path):
    h1, h2, _ = cluster.hosts
    token = h1.orch("swarm", "join-token", "-q", "worker").stdout.strip()
    bad = h2.orch("swarm", "join", "--token", token[:-4] + "zzzz", f"{h1.addr}:2377", check=False)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "already part of a swarm" in bad.stderr
    for args in (("node", "ls"), ("node", "update", "--availability", "drain", "h1"), ("service", "ls")):
        proc = h2.orch(*args, check=False)
        assert proc.returncode != 0 and "not a swarm manager" in proc.stderr and proc.stderr.count("\n") == 1, args
    assert len(node_rows(h1)) == 3


def test_stack_spreads_pins_survives_a_host_cut_off_and_leaves_nothing(cluster, tmp_path):
    h1, h2, h3 = cluster.hosts
    stack = tmp_path / "stack.yml"
    stack.write_text(STACK)
    h1.orch("stack", "deploy", "-c", str(stack), "demo", timeout=180)
    wait_for(lambda: running_on(cluster, "demo_web") == {"h1": 1, "h2": 1, "h3": 1}, 60, "one web task per host")
    assert running_on(cluster, "demo_pinned")["h2"] == 1 and sum(running_on(cluster, "demo_pinned").values()) == 1
    names = [c["Names"] for c in containers(h2) if c["Names"].startswith("demo_web.")]
    labels = json.loads(h2.orch("inspect", "--format", "{{json .Config.Labels}}", names[0]).stdout)
    assert labels["com.docker.swarm.service.name"] == "demo_web" and labels["com.docker.stack.namespace"] == "demo"
    assert names[0].split(".")[2] == labels["com.docker.swarm.task.id"]

    # h3 is cut off the underlay: Down, and its web task starts on another host within 20 s.
    cluster[2].cut()
    try:
        wait_for(lambda: [r for r in node_rows(h1) if r["Hostname"] == "h3" and r["Status"] == "Down"], 30, "h3 Down")
        wait_for(lambda: sum(v for k, v in running_on(cluster, "demo_web").items() if k != "h3") == 3, 20,
                 "three web tasks on h1 and h2")
        assert running_on(cluster, "demo_web")["h3"] == 1  # a partitioned worker keeps its containers
    finally:
        cluster[2].heal()
    # Back: what h3 still runs was replaced, so it stops; exactly three run in all.
    wait_for(lambda: [r for r in node_rows(h1) if r["Hostname"] == "h3" and r["Status"] == "Ready"], 60, "h3 Ready")
    wait_for(lambda: running_on(cluster, "demo_web")["h3"] == 0, 60, "h3's replaced task stopped")
    assert sum(running_on(cluster, "demo_web").values()) == 3

    # Drain empties a node; scale.
    h1.orch("node", "update", "--availability", "drain", "h2")
    wait_for(lambda: running_on(cluster, "demo_web")["h2"] == 0 and sum(running_on(cluster, "demo_web").values()) == 3
             or None, 60, "h2 drained", describe=lambda: h1.orch("service", "ps", "demo_web").stdout + str(running_on(cluster, "demo_web")) + h1.orch("service", "inspect", "demo_web").stdout[-1500:])
    h1.orch("node", "update", "--availability", "active", "h2")
    h1.orch("service", "scale", "demo_web=5", "-d")
    wait_for(lambda: sum(running_on(cluster, "demo_web").values()) == 5, 60, "five web tasks")

    # stack rm: no container of the stack on any host, and nothing of it in etcd.
    h1.orch("stack", "rm", "demo")
    wait_for(lambda: all(not any(c["Names"].startswith("demo_") for c in containers(h, all=True)) for h in cluster.hosts),
             60, "no container of the stack, running or not")
    assert h1.orch("stack", "ls").stdout.strip().splitlines()[1:] == []
    assert h1.orch("service", "ls", "-q").stdout.strip() == ""
    assert tasks(h1, "stack", "ps", "demo") == [] if h1.orch("stack", "ps", "demo", check=False).returncode == 0 else True


def test_service_logs_come_from_every_node(cluster):
    h1 = cluster.hosts[0]
    h1.orch("service", "create", "--name", "talker", "--replicas", "3", "--replicas-max-per-node", "1", "-d",
            "busybox:latest", "sh", "-c", "echo hello from $(hostname); exec sleep 100000")
    try:
        def three_lines():
            out = h1.orch("service", "logs", "talker").stdout.splitlines()
            return out if len(out) == 3 else None
        lines = wait_for(three_lines, 60, "a line from each task")
        assert sorted(line.split("@", 1)[1].split()[0] for line in lines) == ["h1", "h2", "h3"]
        assert all(line.split("| ", 1)[1].startswith("hello from ") for line in lines)
        assert all(line.startswith("talker.") for line in lines)
        # From a worker: docker's refusal.
        worker = cluster.hosts[1].orch("service", "logs", "talker", check=False)
        assert worker.returncode != 0 and "not a swarm manager" in worker.stderr
    finally:
        h1.orch("service", "rm", "talker")


def test_stack_secrets_and_configs_reach_their_tasks_on_tmpfs_only(cluster, tmp_path):
    h1 = cluster.hosts[0]
    (tmp_path / "token.txt").write_text("s3cr3t-value\n")
    (tmp_path / "app.conf").write_text("level=debug\n")
    (tmp_path / "stack.yml").write_text("""
services:
  reader:
    image: busybox:latest
    command: ["sh", "-c", "cat /run/secrets/token /app.conf; exec sleep 100000"]
    init: true
    secrets: [token]
    configs:
      - source: conf
        target: /app.conf
secrets:
  token: {file: ./token.txt}
configs:
  conf: {file: ./app.conf}
""")
    h1.orch("stack", "deploy", "-c", str(tmp_path / "stack.yml"), "sec", timeout=180)
    try:
        def read():
            out = h1.orch("service", "logs", "--raw", "sec_reader").stdout
            return out if "level=debug" in out else None
        assert wait_for(read, 60, "the task's log") == "s3cr3t-value\nlevel=debug\n"
        host = next(h for h in cluster.hosts if any(c["Names"].startswith("sec_reader.") for c in containers(h)))
        mounts = [line.split() for line in open("/proc/self/mounts")]
        files = [m for m in mounts if m[1] == str(host.run_dir / "task-files")]
        assert files and files[0][2] == "tmpfs"  # never on a disk
        others = [h for h in cluster.hosts if h is not host]
        assert all(not (h.run_dir / "task-files").exists() or not any((h.run_dir / "task-files").iterdir()) for h in others)
    finally:
        h1.orch("stack", "rm", "sec")
    wait_for(lambda: not any((h.run_dir / "task-files").exists() and any((h.run_dir / "task-files").iterdir())
                             for h in cluster.hosts), 60, "the task's files removed",
             describe=lambda: [(h.name, [str(p) for p in (h.run_dir / "task-files").rglob("*")]) for h in cluster.hosts
                               if (h.run_dir / "task-files").exists()])
