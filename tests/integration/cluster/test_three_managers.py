"""Three managers on three hosts (each an etcd member): kill -9 the leader's agent; another
manager leads within 10 s, and a service update issued then completes on the hosts left."""

import json
import signal
import time

import pytest

from tests.integration.cluster.lab_fixture import containers, open_lab, wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.tools("/usr/bin/etcd", package="etcd-server")]


@pytest.fixture(scope="module")
def lab():
    yield from open_lab(3, "orchm3")


def leader(host) -> str:
    rows = [json.loads(line) for line in host.orch("node", "ls", "--format", "{{json .}}").stdout.splitlines()]
    return next((r["Hostname"] for r in rows if r["ManagerStatus"] == "Leader"), "")


def test_killing_the_leader_elects_another_that_completes_an_update(lab):
    h1, h2, h3 = lab.hosts
    h1.orch("swarm", "init", "--advertise-addr", h1.addr)
    token = h1.orch("swarm", "join-token", "-q", "manager").stdout.strip()
    for h in (h2, h3):
        assert "as a manager" in h.orch("swarm", "join", "--token", token, f"{h1.addr}:2377", timeout=120).stdout
    rows = wait_for(lambda: [r for r in (json.loads(line) for line in h1.orch("node", "ls", "--format", "{{json .}}")
                                        .stdout.splitlines()) if r["Status"] == "Ready"], 60, "nodes listed")
    wait_for(lambda: sorted(r["ManagerStatus"] for r in (json.loads(line) for line in h2.orch(
        "node", "ls", "--format", "{{json .}}").stdout.splitlines())) == ["Leader", "Reachable", "Reachable"], 60,
        "one leader and two reachable managers")
    assert rows
    # Tasks only on h2 and h3, so the update can complete without the host whose agent dies.
    h2.orch("node", "update", "--availability", "drain", "h1")
    # --init: the sleep stops at once on SIGTERM (as pid 1 it would wait out the ten seconds of
    # grace), so the update's task changes come right in the handover (this hung in 2 of 5 runs
    # before a rejected status write went again and a node's hello stopped rewriting tasks).
    h2.orch("service", "create", "--name", "app", "--replicas", "2", "--init", "-d", "busybox:latest", "sleep", "100000")
    wait_for(lambda: sum(1 for h in (h2, h3) for c in containers(h) if c["Names"].startswith("app.")) == 2, 60, "app running")
    assert leader(h2) == "h1"

    began = time.monotonic()
    h1.kill_agent(signal.SIGKILL)
    def new_leader():
        lead = leader(h2)
        return lead if lead in ("h2", "h3") else None
    new = wait_for(new_leader, 15, "a new leader")
    took = time.monotonic() - began
    assert took <= 10, f"a new leader ({new}) after {took:.1f} s"
    h2.orch("service", "update", "--env-add", "V=2", "-d", "app")

    def updated():
        names = [c["Names"] for h in (h2, h3) for c in containers(h) if c["Names"].startswith("app.")]
        envs = [json.loads(h.orch("inspect", "--format", "{{json .Config.Env}}", n).stdout)
                for h in (h2, h3) for n in (c["Names"] for c in containers(h) if c["Names"].startswith("app."))]
        return len(names) == 2 and all("V=2" in e for e in envs)
    wait_for(updated, 90, "the update completed on h2 and h3")
