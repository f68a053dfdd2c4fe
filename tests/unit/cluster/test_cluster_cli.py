"""`orch swarm|node|service|stack` end to end without an agent process: the CLI's commands run
against the agent's real app (its routes, its error handling) in-process, over FakeMember (a
real Control on a MemoryStore), and the tests read what the user would read."""

from __future__ import annotations

import functools
import json
import re
import types
from pathlib import Path

import httpx
import pytest
from anyio.from_thread import start_blocking_portal

import orch.cli
from orch.cli import converge, node as node_cli, service as service_cli, stack as stack_cli
from orch.cluster.fakemember import FakeAgentNode, FakeMember
from orch.cluster.memstore import MemoryStore
from orch.errors import from_kind
from orch.node.agent.app import build_app

NOW = 1_700_000_000.0
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "stacks"


class AppClient:
    """orch.client.Client's `call` over the agent's app, run by a trio loop in a portal thread."""

    def __init__(self, portal, app):
        self.portal = portal
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orch")
        self.requests: list[tuple[str, str]] = []

    def call(self, method: str, path: str, body=None, headers=None):
        self.requests.append((method, path))
        content = None if body is None else json.dumps(body).encode()
        resp = self.portal.call(functools.partial(self.http.request, method, path, content=content, headers=headers))
        value = resp.json() if resp.content and "json" in resp.headers.get("content-type", "") else None
        if resp.status_code >= 400:
            raise from_kind(value.get("kind", "error"), value["message"])
        return value

    def run(self, fn, *args, **kw):
        """An async call on the member (seeding the store as the leader would)."""
        return self.portal.call(functools.partial(fn, *args, **kw))


@pytest.fixture
def cluster(monkeypatch):
    member = FakeMember(MemoryStore(), clock=lambda: NOW)
    app = build_app(FakeAgentNode(member))
    with start_blocking_portal(backend="trio") as portal:
        client = AppClient(portal, app)
        monkeypatch.setattr("orch.cli._agent.client", lambda: client)
        for module in (service_cli, node_cli):
            monkeypatch.setattr(module, "time", types.SimpleNamespace(time=lambda: NOW + 120))
        yield member, client
        portal.call(client.http.aclose)


def orch_cmd(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `orch ARGV...` through the CLI's dispatcher; (exit code, stdout, stderr)."""
    code = orch.cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def init(capsys, client) -> str:
    code, out, _ = orch_cmd(capsys, "swarm", "init", "--advertise-addr", "10.0.0.5")
    assert code == 0
    return re.search(r"current node \((\w+)\)", out).group(1)


# -- swarm -------------------------------------------------------------------------------------------


def test_swarm_init_join_token_update_leave(cluster, capsys):
    member, client = cluster
    code, out, err = orch_cmd(capsys, "swarm", "init", "--advertise-addr", "10.0.0.5", "--dispatcher-heartbeat", "7s",
                              "--task-history-limit", "3", "--default-addr-pool", "10.20.0.0/16")
    assert code == 0, err
    node_id = member.state.node_id
    assert out == (f"Swarm initialized: current node ({node_id}) is now a manager.\n\n"
                   "To add a worker to this swarm, run the following command:\n\n"
                   "    orch swarm join --token SWMTKN-1-fake-worker0 10.0.0.5:2377\n\n"
                   "To add a manager to this swarm, run 'orch swarm join-token manager' and follow the instructions.\n\n")
    settings = member.calls[0][4]
    assert (settings.heartbeat_period, settings.task_history_limit, settings.default_addr_pool) == (7.0, 3, ["10.20.0.0/16"])
    assert orch_cmd(capsys, "swarm", "join-token", "-q", "manager") == (0, "SWMTKN-1-fake-manager0\n", "")
    code, out, _ = orch_cmd(capsys, "swarm", "join-token", "--rotate", "worker")
    assert out == ("Successfully rotated worker join token.\n\n"
                   "To add a worker to this swarm, run the following command:\n\n"
                   "    orch swarm join --token SWMTKN-1-fake-worker1 10.0.0.5:2377\n\n")
    assert orch_cmd(capsys, "swarm", "update", "--task-history-limit", "9") == (0, "Swarm updated.\n", "")
    assert client.call("GET", "/swarm")["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"] == 9
    code, out, err = orch_cmd(capsys, "swarm", "leave")
    assert code == 1 and out == "" and err.startswith("orch: You are attempting to leave the swarm on a node that is participating")
    assert orch_cmd(capsys, "swarm", "leave", "--force") == (0, "Node left the swarm.\n", "")
    code, out, err = orch_cmd(capsys, "swarm", "leave")
    assert (code, err) == (125, "orch: This node is not part of a swarm\n")


def test_swarm_join_and_a_worker_cannot_list(cluster, capsys):
    member, client = cluster
    assert orch_cmd(capsys, "swarm", "join", "--token", "SWMTKN-1-x-y", "10.0.0.5:2377") == (
        0, "This node joined a swarm as a worker.\n", "")
    code, out, err = orch_cmd(capsys, "node", "ls")
    assert code == 125 and err == ("orch: This node is not a swarm manager. Worker nodes can't be used to view or modify "
                                   "cluster state. Please run this command on a manager node or promote the current node to a "
                                   "manager.\n")
    code, _, err = orch_cmd(capsys, "swarm", "join", "--token", "SWMTKN-1-x-y", "10.0.0.5:2377")
    assert code == 1 and "This node is already part of a swarm" in err
    code, _, err = orch_cmd(capsys, "swarm", "join", "10.0.0.5:2377")
    assert code == 1 and err.startswith("orch: the following arguments are required: --token")


# -- nodes ---------------------------------------------------------------------------------------


def test_node_ls_inspect_update_promote_rm(cluster, capsys):
    member, client = cluster
    me = init(capsys, client)
    w10 = client.run(member.add_node, "worker-10")
    w2 = client.run(member.add_node, "worker-2", state="down", availability="drain")
    code, out, _ = orch_cmd(capsys, "node", "ls")
    assert lines(out) == [
        "ID                            HOSTNAME    STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION",
        f"{me} *   node-1      Ready     Active         Leader           0.1.0",
        f"{w2}     worker-2    Down      Drain                           0.1.0",
        f"{w10}     worker-10   Ready     Active                          0.1.0",
    ]
    assert orch_cmd(capsys, "node", "ls", "-q")[1] == f"{me}\n{w2}\n{w10}\n"
    assert orch_cmd(capsys, "node", "ls", "--filter", "role=worker", "--format", "{{.Hostname}} {{.Status}} {{.Self}}")[1] == (
        "worker-2 Down false\nworker-10 Ready false\n")
    first = json.loads(lines(orch_cmd(capsys, "node", "ls", "--format", "json")[1])[0])
    assert first == {"Availability": "Active", "EngineVersion": "0.1.0", "Hostname": "node-1", "ID": me, "ManagerStatus": "Leader",
                     "Self": True, "Status": "Ready", "TLSStatus": "Unknown"}
    code, out, _ = orch_cmd(capsys, "node", "inspect", "--pretty", "self")
    assert lines(out)[:13] == [
        f"ID:\t\t\t{me}", "Hostname:              \tnode-1", "Joined at:             \t2023-11-14 22:13:20 +0000 utc",
        "Status:", " State:\t\t\tReady", " Availability:         \tActive", " Address:\t\t10.0.0.5", "Manager Status:",
        " Address:\t\t10.0.0.5:2377", " Raft Status:\t\tReachable", " Leader:\t\tYes", "Platform:", " Operating System:\tlinux"]
    assert lines(out)[-4:] == ["Resources:", " CPUs:\t\t\t2", " Memory:\t\t4GiB", "Engine Version:\t\t0.1.0"]
    assert json.loads(orch_cmd(capsys, "node", "inspect", "worker-10")[1])[0]["ID"] == w10
    assert orch_cmd(capsys, "node", "inspect", "--format", "{{.Spec.Role}}", "self", "worker-10")[1] == "manager\nworker\n"
    assert orch_cmd(capsys, "node", "update", "--availability", "drain", "--label-add", "zone=a", "--label-add", "ssd",
                    "worker-10") == (0, "worker-10\n", "")
    assert client.call("GET", f"/nodes/{w10}")["Spec"] == {"Labels": {"zone": "a", "ssd": ""}, "Role": "worker",
                                                           "Availability": "drain"}
    orch_cmd(capsys, "node", "update", "--label-rm", "ssd", "--label-rm", "absent", "worker-10")
    assert client.call("GET", f"/nodes/{w10}")["Spec"]["Labels"] == {"zone": "a"}
    assert orch_cmd(capsys, "node", "promote", "worker-10") == (0, "Node worker-10 promoted to a manager in the swarm.\n", "")
    assert orch_cmd(capsys, "node", "promote", "worker-10") == (0, "Node worker-10 is already a manager.\n", "")
    assert orch_cmd(capsys, "node", "demote", "worker-10") == (0, "Manager worker-10 demoted in the swarm.\n", "")
    code, out, err = orch_cmd(capsys, "node", "demote", "self")
    assert code == 1 and "is the last manager of the cluster" in err
    code, out, err = orch_cmd(capsys, "node", "rm", "worker-10", "worker-2", "nope")
    assert code == 1 and out == "worker-2\n"
    assert lines(err) == ["orch: node worker-10 is not down and can't be removed; stop it (orch swarm leave on it), or use --force",
                          "orch: node nope not found"]
    assert orch_cmd(capsys, "node", "rm", "--force", "worker-10") == (0, "worker-10\n", "")


# -- services ------------------------------------------------------------------------------------


def test_service_create_ls_inspect_ps(cluster, capsys):
    member, client = cluster
    init(capsys, client)
    w1 = client.run(member.add_node, "worker-1")
    code, out, err = orch_cmd(capsys, "service", "create", "-d", "--name", "web", "--replicas", "2", "-p", "8080:80",
                              "-p", "8081:81", "--env", "A=1", "--replicas-max-per-node", "3", "nginx:1.25@sha256:" + "a" * 64)
    assert code == 0, err
    web_id = out.strip()
    code, out, err = orch_cmd(capsys, "service", "create", "-d", "--name", "agent", "--mode", "global", "busybox")
    assert code == 0, err
    t1 = client.run(member.add_task, "web", slot=1, node_id=w1, at=NOW - 60)
    old = client.run(member.add_task, "web", slot=2, node_id=w1, at=NOW - 3600 * 3, state="failed", desired="shutdown",
                     err="task: non-zero exit (1): the program failed badly")
    t2 = client.run(member.add_task, "web", slot=2, node_id=w1, at=NOW - 30, state="starting")
    g = client.run(member.add_task, "agent", node_id=w1, at=NOW - 5)
    code, out, _ = orch_cmd(capsys, "service", "ls")
    agent_id = client.call("GET", "/services/agent")["ID"]
    assert lines(out) == [
        "ID             NAME      MODE         REPLICAS               IMAGE            PORTS",
        f"{agent_id[:12]}   agent     global       1/1                    busybox:latest",
        f"{web_id[:12]}   web       replicated   1/2 (max 3 per node)   nginx:1.25       *:8080-8081->80-81/tcp",
    ]
    assert orch_cmd(capsys, "service", "ls", "-q")[1] == f"{agent_id[:12]}\n{web_id[:12]}\n"
    assert orch_cmd(capsys, "service", "ls", "--filter", "mode=replicated", "--format", "{{.Name}}: {{.Replicas}}")[1] == (
        "web: 1/2 (max 3 per node)\n")
    code, out, _ = orch_cmd(capsys, "service", "ps", "web")
    assert lines(out) == [
        "ID             NAME        IMAGE        NODE       DESIRED STATE   CURRENT STATE            ERROR"
        "                              PORTS",
        f"{t1[:12]}   web.1       nginx:1.25   worker-1   Running         Running 3 minutes ago",
        f"{t2[:12]}   web.2       nginx:1.25   worker-1   Running         Starting 2 minutes ago",
        f"{old[:12]}    \\_ web.2   nginx:1.25   worker-1   Shutdown        Failed 3 hours ago       "
        '"task: non-zero exit (1): the …"',
    ]
    assert orch_cmd(capsys, "service", "ps", "-q", "web")[1] == f"{t1}\n{t2}\n{old}\n"
    code, out, _ = orch_cmd(capsys, "service", "ps", "--no-trunc", "--filter", "desired-state=running", "--format",
                            "{{.ID}} {{.Name}} {{.Image}}", "web")
    assert out == f"{t1} web.1 nginx:1.25@sha256:{'a' * 64}\n{t2} web.2 nginx:1.25@sha256:{'a' * 64}\n"
    code, out, _ = orch_cmd(capsys, "service", "ps", "--no-resolve", "--format", "{{.Name}} {{.Node}}", "agent")
    assert out == f"{agent_id}.{w1} {w1}\n"
    assert orch_cmd(capsys, "service", "ps", "--format", "{{.Name}}", "agent")[1] == f"agent.{w1}\n"
    code, out, err = orch_cmd(capsys, "service", "ps", "web", "nope")
    assert code == 1 and err == "orch: no such service: nope\n" and t1[:12] in out
    code, out, err = orch_cmd(capsys, "service", "ps", "nope")
    assert (code, out, err) == (1, "", "orch: no such service: nope\n")
    inspected = json.loads(orch_cmd(capsys, "service", "inspect", "web")[1])
    assert inspected[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=1"]
    assert orch_cmd(capsys, "service", "inspect", "--format", "{{.Spec.Name}} {{.Spec.Mode.Replicated.Replicas}}", "web")[1] == "web 2\n"
    code, out, _ = orch_cmd(capsys, "service", "inspect", "--pretty", "web")
    assert f"ID:\t\t{web_id}" in out and "Service Mode:\tReplicated\n Replicas:\t2\n" in out
    assert " Max Replicas Per Node:   3" in out and "Ports:\n PublishedPort = 8080\n  Protocol = tcp\n  TargetPort = 80\n" in out
    assert "UpdateConfig:\n Parallelism:\t1\n On failure:\tpause\n Monitoring Period: 5s\n Max failure ratio: 0\n" in out


def test_service_update_scale_rollback_rm(cluster, capsys):
    member, client = cluster
    init(capsys, client)
    assert orch_cmd(capsys, "service", "create", "-d", "--name", "web", "-e", "A=1", "busybox", "top")[0] == 0
    assert orch_cmd(capsys, "service", "update", "-d", "--image", "busybox:1.36", "--env-add", "B=2", "--env-rm", "A",
                    "web") == (0, "web\n", "")
    spec = client.call("GET", "/services/web")["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == "busybox:1.36"
    assert spec["TaskTemplate"]["ContainerSpec"]["Env"] == ["B=2"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Args"] == ["top"]
    assert orch_cmd(capsys, "service", "update", "-d", "--force", "web")[0] == 0
    assert client.call("GET", "/services/web")["Spec"]["TaskTemplate"]["ForceUpdate"] == 1
    assert orch_cmd(capsys, "service", "scale", "-d", "web=5") == (0, "web scaled to 5\n", "")
    assert client.call("GET", "/services/web")["Spec"]["Mode"] == {"Replicated": {"Replicas": 5}}
    assert orch_cmd(capsys, "service", "create", "-d", "--name", "g", "--mode", "global", "busybox")[0] == 0
    code, out, err = orch_cmd(capsys, "service", "scale", "-d", "g=2", "web=x", "nope=1")
    assert code == 1 and out == ""
    assert lines(err) == ["orch: g: scale can only be used with replicated or replicated-job mode",
                          "orch: web: invalid replicas value x: write a whole number", "orch: nope: service nope not found"]
    code, _, err = orch_cmd(capsys, "service", "scale", "web")
    assert code == 1 and "invalid scale specifier 'web'" in err
    assert orch_cmd(capsys, "service", "rollback", "-d", "web") == (0, "web\n", "")
    assert client.call("GET", "/services/web")["Spec"]["Mode"] == {"Replicated": {"Replicas": 1}}
    assert orch_cmd(capsys, "service", "update", "-d", "--rollback", "web") == (0, "web\n", "")
    assert client.call("GET", "/services/web")["Spec"]["Mode"] == {"Replicated": {"Replicas": 5}}
    code, out, err = orch_cmd(capsys, "service", "rm", "web", "nope", "g")
    assert (code, out, err) == (1, "web\ng\n", "orch: service nope not found\n")
    # --with-registry-auth with no credentials stored for the image's registry sends none (docker).
    code, out, err = orch_cmd(capsys, "service", "create", "-d", "--with-registry-auth", "--name", "p", "busybox")
    assert code == 0 and err == ""
    assert orch_cmd(capsys, "service", "rm", "p")[0] == 0
    code, out, err = orch_cmd(capsys, "service", "create", "-d", "--name", "p", "--limit-memory", "lots", "busybox")
    assert (code, out) == (1, "") and err.startswith('orch: invalid argument "lots" for "--limit-memory" flag')


def test_create_waits_for_convergence_and_prints_progress(cluster, capsys, monkeypatch):
    """Without -d the CLI follows the service; the fake sleep plays the leader: a task per poll."""
    member, client = cluster
    init(capsys, client)
    w1 = client.run(member.add_node, "worker-1")
    clock = [0.0]
    script = []

    def sleep(seconds):
        clock[0] += seconds
        if script:
            script.pop(0)()

    monkeypatch.setattr(converge, "time", types.SimpleNamespace(monotonic=lambda: clock[0], sleep=sleep))
    at = iter(range(100))
    script += [lambda: client.run(member.add_task, "web", slot=1, node_id=w1, state="preparing", at=NOW + next(at)),
               lambda: client.run(member.add_task, "web", slot=1, node_id=w1, state="running", at=NOW + next(at)),
               lambda: client.run(member.add_task, "web", slot=2, node_id=w1, state="running", at=NOW + next(at))]
    code, out, err = orch_cmd(capsys, "service", "create", "--name", "web", "--replicas", "2", "--update-monitor", "1s", "busybox")
    assert code == 0, err
    service_id = client.call("GET", "/services/web")["ID"]
    assert lines(out) == [
        service_id,
        "overall progress: 0 out of 2 tasks",
        "1/2: preparing",
        "1/2: running",
        "overall progress: 1 out of 2 tasks",
        "2/2: running",
        "overall progress: 2 out of 2 tasks",
        "verify: Waiting 2 seconds to verify that tasks are stable...",
        "verify: Waiting 1 seconds to verify that tasks are stable...",
        f"verify: Service {service_id} converged",
    ]
    # -q follows silently; an update that pauses ends with docker's error.
    script[:] = []
    svc = client.call("GET", "/services/web")

    async def pause():
        from orch.cluster import records as r
        from orch.cluster.state import SERVICES

        stored = await member.control.service("web")
        paused = stored.record.model_copy(update={"update_status": r.UpdateStatus(state="paused", message="update paused due to failure")})
        await member.store.put(SERVICES, paused, expect=stored.mod_revision)

    script.append(lambda: client.run(pause))
    code, out, err = orch_cmd(capsys, "service", "update", "-q", "--image", "busybox:2", "web")
    assert (code, out) == (1, "web\n") and err == f"orch: {svc['ID']}: service update paused: update paused due to failure\n"


# -- stacks --------------------------------------------------------------------------------------


def test_stack_deploy_ls_services_ps_rm(cluster, capsys, monkeypatch, tmp_path):
    member, client = cluster
    init(capsys, client)
    w1 = client.run(member.add_node, "worker-1")
    compose = EXAMPLES / "replicated" / "compose.yaml"
    code, out, err = orch_cmd(capsys, "stack", "deploy", "-c", str(compose), "rep")
    assert (code, out) == (0, "Creating network rep_default\nCreating service rep_app\nCreating service rep_proxy\n"), err
    assert orch_cmd(capsys, "stack", "deploy", "-c", str(compose), "rep") == (0, "", "")
    assert lines(orch_cmd(capsys, "stack", "ls")[1]) == ["NAME      SERVICES", "rep       2"]
    assert orch_cmd(capsys, "stack", "ls", "--format", "{{.Name}}:{{.Services}}")[1] == "rep:2\n"
    header, app, proxy = lines(orch_cmd(capsys, "stack", "services", "rep")[1])
    assert app.split()[1:4] == ["rep_app", "replicated", "0/3"] and proxy.split()[-1] == "*:8081->8080/tcp"
    assert orch_cmd(capsys, "stack", "ps", "rep") == (0, "", "nothing found in stack: rep\n")
    task = client.run(member.add_task, "rep_app", slot=1, node_id=w1, at=NOW)
    assert orch_cmd(capsys, "stack", "ps", "-q", "rep")[1] == f"{task}\n"
    assert "rep_app.1" in orch_cmd(capsys, "stack", "ps", "rep")[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  web:\n    build: .\n")
    code, out, err = orch_cmd(capsys, "stack", "deploy", "-c", str(bad), "bad")
    assert code == 1 and "has only build: and a stack cannot build" in err and out == ""
    code, out, err = orch_cmd(capsys, "stack", "deploy", "-d", "--with-registry-auth", "-c", str(compose), "rep")
    assert code == 0, err
    code, out, err = orch_cmd(capsys, "stack", "deploy", "-c", str(compose), "-bad")
    assert code == 1
    code, out, err = orch_cmd(capsys, "stack", "rm", "rep", "gone")
    assert (code, out, err) == (0, "Removing service rep_app\nRemoving service rep_proxy\nRemoving network rep_default\n",
                                "Nothing found in stack: gone\n")
    assert orch_cmd(capsys, "stack", "services", "rep") == (0, "", "Nothing found in stack: rep\n")


def test_stack_deploy_detach_false_follows_each_service(cluster, capsys, monkeypatch):
    member, client = cluster
    init(capsys, client)
    w1 = client.run(member.add_node, "worker-1")
    clock = [0.0]
    script = [lambda: client.run(member.add_task, "hi_web", slot=1, node_id=w1, state="running", at=NOW)]

    def sleep(seconds):
        clock[0] += seconds
        if script:
            script.pop(0)()

    monkeypatch.setattr(converge, "time", types.SimpleNamespace(monotonic=lambda: clock[0], sleep=sleep))
    code, out, err = orch_cmd(capsys, "stack", "deploy", "--detach=false", "-c", str(EXAMPLES / "hello" / "compose.yaml"), "hi")
    assert code == 0, err
    assert lines(out)[:5] == ["Creating network hi_default", "Creating service hi_web", "overall progress: 0 out of 1 tasks",
                              "1/1: running", "overall progress: 1 out of 1 tasks"]
    assert lines(out)[-1] == "verify: Service hi_web converged" and clock[0] >= 5.0  # the update's 5 s monitor
