"""The cluster's routes in the agent's real app (build_app, so the route is found the way the
agent finds it), over FakeMember: a real Control on a MemoryStore. Docker's JSON in and out,
docker's filters, orch's errors."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from orch.cluster.fakemember import FakeAgentNode, FakeMember
from orch.cluster.memstore import MemoryStore
from orch.node.agent.app import build_app

DATA = Path(__file__).parent / "data" / "dockercli"


def body(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def service_body(name="web", image="nginx:1.25", **mode) -> dict:
    b = body("service-create-minimal.json")
    b["Name"] = name
    b["TaskTemplate"]["ContainerSpec"]["Image"] = image
    if mode:
        b["Mode"] = mode
    return b


@pytest.fixture
async def cluster():
    member = FakeMember(MemoryStore(), clock=lambda: 1_700_000_000.0)
    app = build_app(FakeAgentNode(member))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orch") as client:
        yield member, client


def filters(**kw) -> str:
    return "?filters=" + quote(json.dumps({k.replace("_", "-") if k[0] != "_" else "_" + k[1:].replace("_", "-"): v
                                           for k, v in kw.items()}))


async def expect_error(response, status: int, kind: str, message: str):
    assert response.status_code == status, response.text
    data = response.json()
    assert data["kind"] == kind and message in data["message"], data
    assert "\n" not in data["message"]


async def init(client) -> str:
    resp = await client.post("/swarm/init", json=body("swarm-init.json"))
    assert resp.status_code == 200, resp.text
    return resp.json()


# -- membership ------------------------------------------------------------------------------------


async def test_outside_a_swarm_every_manager_route_answers_dockers_text(cluster):
    member, client = cluster
    for method, path in [("GET", "/nodes"), ("GET", "/services"), ("GET", "/tasks"), ("GET", "/swarm"), ("GET", "/stacks"),
                         ("POST", "/services/create"), ("DELETE", "/nodes/x")]:
        resp = await client.request(method, path, json=service_body() if method == "POST" else None)
        await expect_error(resp, 503, "unavailable", "This node is not a swarm manager. Use \"orch swarm init\"")
    await expect_error(await client.post("/swarm/leave"), 503, "unavailable", "This node is not part of a swarm")
    local = (await client.get("/swarm/local")).json()
    assert local == {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False, "Error": "",
                     "RemoteManagers": None}


async def test_init_takes_dockers_request_and_answers_the_node_id(cluster):
    member, client = cluster
    node_id = await init(client)
    (call,) = member.calls
    assert call[:4] == ("init", "10.0.0.5", "0.0.0.0:2377", [])
    assert (call[4].heartbeat_period, call[4].task_history_limit, call[4].default_addr_pool) == (7.0, 3, ["10.20.0.0/16"])
    local = (await client.get("/swarm/local")).json()
    assert (local["NodeID"], local["LocalNodeState"], local["ControlAvailable"], local["Nodes"], local["Managers"]) == (
        node_id, "active", True, 1, 1)
    assert local["RemoteManagers"] == [{"NodeID": node_id, "Addr": "10.0.0.5:2377"}]
    assert "IsLeader" not in local and local["Cluster"]["Spec"]["Orchestration"] == {"TaskHistoryRetentionLimit": 3}
    again = await client.post("/swarm/init", json={})
    await expect_error(again, 409, "conflict", "This node is already part of a swarm")


async def test_init_refuses_what_orch_cannot_do_before_doing_anything(cluster):
    member, client = cluster
    await expect_error(await client.post("/swarm/init", json={**body("swarm-init.json"), "AutoLockManagers": True}), 400,
                       "invalid-argument", "SwarmInitRequest.AutoLockManagers: orch does not support")
    await expect_error(await client.post("/swarm/init", content=b"{nope"), 400, "invalid-argument", "the body is not JSON")
    assert member.calls == [] and member.state is None


async def test_swarm_inspect_update_and_rotate(cluster):
    member, client = cluster
    await init(client)
    swarm = (await client.get("/swarm")).json()
    assert swarm["JoinTokens"] == {"Worker": "SWMTKN-1-fake-worker0", "Manager": "SWMTKN-1-fake-manager0"}
    spec = swarm["Spec"]
    spec["Orchestration"]["TaskHistoryRetentionLimit"] = 9
    version = swarm["Version"]["Index"]
    resp = await client.post(f"/swarm/update?version={version}&rotateWorkerToken=true&rotateManagerToken=false"
                             f"&rotateManagerUnlockKey=false", json=spec)
    assert resp.status_code == 200, resp.text
    after = (await client.get("/swarm")).json()
    assert after["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"] == 9
    assert after["JoinTokens"] == {"Worker": "SWMTKN-1-fake-worker1", "Manager": "SWMTKN-1-fake-manager0"}
    stale = await client.post(f"/swarm/update?version={version}", json=spec)
    await expect_error(stale, 409, "conflict", "update out of sequence")
    await expect_error(await client.post("/swarm/update?rotateManagerUnlockKey=true", json={}), 400, "invalid-argument",
                       "no autolock")


async def test_join_and_a_worker_cannot_steer(cluster):
    member, client = cluster
    resp = await client.post("/swarm/join", json=body("swarm-join.json"))
    assert resp.status_code == 200, resp.text
    assert member.calls == [("join", "10.0.0.5:2377", "SWMTKN-1-aaa-bbb", "", "0.0.0.0:2377")]
    await expect_error(await client.get("/nodes"), 503, "unavailable", "Worker nodes can't be used to view or modify cluster state")
    local = (await client.get("/swarm/local")).json()
    assert local["ControlAvailable"] is False and "Cluster" not in local
    resp = await client.post("/swarm/leave")
    assert resp.status_code == 200 and member.state is None


async def test_join_with_a_bad_token_is_refused(cluster):
    member, client = cluster
    resp = await client.post("/swarm/join", json={**body("swarm-join.json"), "JoinToken": "garbage"})
    await expect_error(resp, 403, "permission-denied", "invalid join token")
    assert member.state is None


async def test_leave_as_manager_needs_force(cluster):
    member, client = cluster
    await init(client)
    await expect_error(await client.post("/swarm/leave"), 409, "conflict", "Use `--force`")
    assert (await client.post("/swarm/leave?force=true")).status_code == 200
    assert member.state is None


# -- nodes ---------------------------------------------------------------------------------------


async def test_nodes_list_inspect_filters_update_and_remove(cluster):
    member, client = cluster
    me = await init(client)
    w1 = await member.add_node("worker-1", labels={"zone": "a"})
    w2 = await member.add_node("worker-2", state="down", labels={"zone": "b"})
    nodes = (await client.get("/nodes")).json()
    assert {n["Description"]["Hostname"] for n in nodes} == {"node-1", "worker-1", "worker-2"}
    leader = next(n for n in nodes if n["ID"] == me)
    assert leader["ManagerStatus"] == {"Leader": True, "Reachability": "reachable", "Addr": "10.0.0.5:2377"}
    assert leader["Status"] == {"State": "ready", "Addr": "10.0.0.5"} and leader["Version"]["Index"] > 0
    for query, expected in [
        (filters(role=["manager"]), {me}),
        (filters(role={"worker": True}), {w1, w2}),  # docker's client form
        (filters(name=["worker"]), {w1, w2}),
        (filters(node_label=["zone=a"]), {w1}),
        (filters(node_label=["zone"]), {w1, w2}),
        (filters(id=[w2[:6]]), {w2}),
        (filters(membership=["accepted"]), {me, w1, w2}),
        (filters(label=["zone"]), set()),  # engine labels: none
    ]:
        found = {n["ID"] for n in (await client.get("/nodes" + query.replace("node-label", "node.label"))).json()}
        assert found == expected, query
    await expect_error(await client.get("/nodes" + filters(role=["boss"])), 400, "invalid-argument", "Invalid role filter: 'boss'")
    await expect_error(await client.get("/nodes" + filters(color=["red"])), 400, "invalid-argument", "invalid filter 'color'")
    one = (await client.get("/nodes/worker-1")).json()
    assert one["ID"] == w1
    spec = {**one["Spec"], "Availability": "drain", "Labels": {"zone": "a", "ssd": "yes"}}
    resp = await client.post(f"/nodes/{w1}/update?version={one['Version']['Index']}", json=spec)
    assert resp.status_code == 200, resp.text
    after = (await client.get(f"/nodes/{w1}")).json()
    assert after["Spec"] == {"Labels": {"zone": "a", "ssd": "yes"}, "Role": "worker", "Availability": "drain"}
    stale = await client.post(f"/nodes/{w1}/update?version={one['Version']['Index']}", json=spec)
    await expect_error(stale, 409, "conflict", "update out of sequence")
    await expect_error(await client.post(f"/nodes/{w1}/update", json={"Role": "worker"}), 400, "invalid-argument",
                       "NodeSpec.Availability: required")
    await expect_error(await client.post(f"/nodes/{w1}/update?version=x", json=spec), 400, "invalid-argument",
                       "version='x' is not an integer")
    await expect_error(await client.delete(f"/nodes/{w1}"), 409, "conflict", "is not down and can't be removed")
    assert (await client.delete(f"/nodes/{w2}")).status_code == 200
    assert (await client.delete(f"/nodes/{w1}?force=1")).status_code == 200
    await expect_error(await client.get(f"/nodes/{w1}"), 404, "not-found", f"node {w1} not found")
    await expect_error(await client.delete(f"/nodes/{me}?force=true"), 409, "conflict", "demote it")


# -- services and tasks --------------------------------------------------------------------------


async def test_service_create_inspect_list_update_rollback_remove(cluster):
    member, client = cluster
    await init(client)
    resp = await client.post("/services/create", json=body("service-create-full.json"))
    assert resp.status_code == 201, resp.text
    service_id = resp.json()["ID"]
    assert resp.json() == {"ID": service_id, "Warnings": None}
    svc = (await client.get("/services/web")).json()
    assert svc["ID"] == service_id and svc["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
    assert svc["Spec"]["TaskTemplate"]["ContainerSpec"] == body("service-create-full.json")["TaskTemplate"]["ContainerSpec"]
    assert svc["Endpoint"]["Ports"][0] == {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}
    assert (await client.get(f"/services/{service_id[:5]}")).json()["ID"] == service_id
    await expect_error(await client.post("/services/create", json=service_body("web")), 409, "already-exists",
                       "service web already exists")
    # `docker service update --image` sends the whole spec back with the version it read.
    spec = svc["Spec"]
    spec["TaskTemplate"]["ContainerSpec"]["Image"] = "nginx:1.26"
    version = svc["Version"]["Index"]
    resp = await client.post(f"/services/{service_id}/update?version={version}&registryAuthFrom=spec", json=spec)
    assert resp.status_code == 200 and resp.json() == {"Warnings": None}, resp.text
    updated = (await client.get("/services/web")).json()
    assert updated["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "nginx:1.26"
    assert updated["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "nginx:1.25"
    stale = await client.post(f"/services/{service_id}/update?version={version}", json=spec)
    await expect_error(stale, 409, "conflict", "update out of sequence")
    # `docker service rollback` sends the current spec with rollback=previous.
    resp = await client.post(f"/services/web/update?version={updated['Version']['Index']}&rollback=previous", json=updated["Spec"])
    assert resp.status_code == 200, resp.text
    rolled = (await client.get("/services/web")).json()
    assert rolled["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "nginx:1.25"
    assert rolled["UpdateStatus"]["State"] == "rollback_started"
    await expect_error(await client.post("/services/web/update?rollback=yes", json={}), 400, "invalid-argument",
                       "the only value is previous")
    assert (await client.delete("/services/web")).status_code == 200
    await expect_error(await client.get("/services/web"), 404, "not-found", "service web not found")


async def test_service_create_refusals_are_one_line(cluster):
    member, client = cluster
    await init(client)
    bad = service_body()
    bad["TaskTemplate"]["ContainerSpec"]["Groups"] = ["wheel"]
    await expect_error(await client.post("/services/create", json=bad), 400, "invalid-argument",
                       "ServiceSpec.TaskTemplate.ContainerSpec.Groups: orch does not support")
    bad = service_body()
    bad["TaskTemplate"]["Placement"] = {"Constraints": ["node.colour==red"]}
    resp = await client.post("/services/create", json=bad)
    assert resp.status_code == 400 and "node.colour" in resp.json()["message"]
    resp = await client.post("/services/create", json=service_body(), headers={"X-Registry-Auth": "eyJ1c2VybmFtZSI6ImEifQ"})
    await expect_error(resp, 400, "invalid-argument", "X-Registry-Auth: username and password must be strings")
    resp = await client.post("/services/create", json=service_body(), headers={"X-Registry-Auth": "e30="})  # {}: none
    assert resp.status_code == 201
    assert (await client.get("/services")).json()[0]["Spec"]["Name"] == "web"


async def test_services_filters_and_status(cluster):
    member, client = cluster
    await init(client)
    w1 = await member.add_node("worker-1")
    down = await member.add_node("worker-2", state="down")
    for b in (service_body("web", Replicated={"Replicas": 2}), service_body("webapp_db"), service_body("agent", Global={})):
        assert (await client.post("/services/create", json=b)).status_code == 201
    await member.add_task("web", slot=1, node_id=w1)
    await member.add_task("web", slot=2, node_id=w1, state="starting")
    await member.add_task("web", slot=2, node_id=w1, state="shutdown", desired="shutdown")
    await member.add_task("agent", node_id=w1)
    await member.add_task("agent", node_id=down)
    listed = (await client.get("/services?status=true")).json()
    status = {s["Spec"]["Name"]: s["ServiceStatus"] for s in listed}
    assert status["web"] == {"RunningTasks": 1, "DesiredTasks": 2, "CompletedTasks": 0}
    assert status["agent"] == {"RunningTasks": 1, "DesiredTasks": 1, "CompletedTasks": 0}  # the down node's task counts not
    assert status["webapp_db"]["RunningTasks"] == 0
    assert all("ServiceStatus" not in s for s in (await client.get("/services")).json())

    async def names(query):
        return sorted(s["Spec"]["Name"] for s in (await client.get("/services" + query)).json())

    assert await names(filters(name=["web"])) == ["web", "webapp_db"]
    assert await names(filters(mode=["global"])) == ["agent"]
    await expect_error(await client.get("/services" + filters(mode=["job"])), 400, "invalid-argument", "Invalid mode filter")


async def test_tasks_filters(cluster):
    member, client = cluster
    await init(client)
    w1 = await member.add_node("worker-1")
    w2 = await member.add_node("worker-2")
    for b in (service_body("web", Replicated={"Replicas": 2}), service_body("db")):
        assert (await client.post("/services/create", json=b)).status_code == 201
    t1 = await member.add_task("web", slot=1, node_id=w1)
    t2 = await member.add_task("web", slot=2, node_id=w2, at=1_699_999_000.0, state="failed", desired="shutdown", err="boom")
    t3 = await member.add_task("db", slot=1, node_id=w2)

    async def ids(**kw):
        resp = await client.get("/tasks" + filters(**kw))
        assert resp.status_code == 200, resp.text
        return {t["ID"] for t in resp.json()}

    assert await ids(service=["web"]) == {t1, t2}
    assert await ids(node=["worker-2"]) == {t2, t3}
    assert await ids(node=[w1]) == {t1}
    assert await ids(desired_state=["running"]) == {t1, t3}
    assert await ids(desired_state=["shutdown"]) == {t2}
    assert await ids(name=["web.2"]) == {t2}
    assert await ids(id=[t3[:8]]) == {t3}
    assert await ids(label=["x"]) == set()
    assert await ids(label=["com.docker.stack.namespace"]) == set()
    assert await ids(service=["web"], node=["worker-2"]) == {t2}
    assert await ids(**{"_up_to_date": ["true"]}) == {t1, t2, t3}
    web = (await client.get("/services/web")).json()
    web["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = "busybox:2"
    assert (await client.post(f"/services/web/update?version={web['Version']['Index']}", json=web["Spec"])).status_code == 200
    t4 = await member.add_task("web", slot=1, node_id=w1)  # a task of the new spec
    assert await ids(**{"_up_to_date": ["true"]}, service=["web"]) == {t4}
    task = (await client.get(f"/tasks/{t2[:10]}")).json()
    assert task["Status"]["State"] == "failed" and task["Status"]["Err"] == "boom" and task["DesiredState"] == "shutdown"
    assert task["Slot"] == 2 and task["NodeID"] == w2
    await expect_error(await client.get("/tasks" + filters(service=["nope"])), 404, "not-found", "service nope not found")
    await expect_error(await client.get("/tasks" + filters(desired_state=["sleeping"])), 400, "invalid-argument",
                       "Invalid desired-state filter: 'sleeping'")
    await expect_error(await client.get("/tasks/zzzz"), 404, "not-found", "task zzzz not found")


# -- stacks --------------------------------------------------------------------------------------


async def test_stack_deploy_list_and_remove(cluster):
    from orch.cluster import dockerswarm as ds
    from orch.cluster.stackspec import translate_stack
    from orch.spec import load_project

    member, client = cluster
    await init(client)
    examples = Path(__file__).resolve().parents[3] / "examples" / "stacks"
    stack = translate_stack(load_project([examples / "replicated" / "compose.yaml"], project_name="rep", environ={}), environ={})
    resp = await client.post("/stacks/deploy", json=ds.stack_deploy_to_json(stack))
    assert resp.status_code == 200, resp.text
    assert resp.json()["Lines"] == ["Creating network rep_default", "Creating service rep_app", "Creating service rep_proxy"]
    assert (await client.get("/stacks")).json() == [{"Name": "rep", "Services": 2}]
    proxy = (await client.get("/services/rep_proxy")).json()
    assert proxy["Spec"]["DependsOn"] == {"rep_app": {"Condition": "service_healthy", "Required": True}}
    again = await client.post("/stacks/deploy", json=ds.stack_deploy_to_json(stack))
    assert again.json()["Lines"] == []
    # `stack ps` finds the stack's tasks by their service's namespace label, as swarmkit does.
    await client.post("/services/create", json=service_body("loner"))
    mine = await member.add_task("rep_app", slot=1)
    await member.add_task("loner", slot=1)
    resp = await client.get("/tasks" + filters(label=["com.docker.stack.namespace=rep"]))
    assert [t["ID"] for t in resp.json()] == [mine]
    resp = await client.delete("/stacks/rep")
    assert resp.json()["Lines"] == ["Removing service rep_app", "Removing service rep_proxy", "Removing network rep_default"]
    assert (await client.get("/stacks")).json() == []
    await expect_error(await client.delete("/stacks/rep"), 404, "not-found", "nothing found in stack: rep")


async def test_a_body_past_the_bound_is_refused(cluster, monkeypatch):
    from orch.cluster import routes

    member, client = cluster
    await init(client)
    monkeypatch.setattr(routes, "MAX_BODY", 1024)
    resp = await client.post("/services/create", json={**service_body(), "Labels": {"x": "y" * 2000}})
    await expect_error(resp, 400, "invalid-argument", "the request body is larger than")


# -- the filters query, pure ---------------------------------------------------------------------


def test_filters_parse_both_of_dockers_forms_and_refuse_the_rest():
    from orch.cluster import apifilters as af
    from orch.errors import InvalidArgument

    assert af.parse_filters('{"name": ["web"], "label": {"a=b": true, "c": false}}', af.SERVICE_KEYS) == {
        "name": ["web"], "label": ["a=b"]}
    assert af.parse_filters("", af.SERVICE_KEYS) == {}
    for text, message in [("nope", "not JSON"), ("[1]", "expected a JSON object"), ('{"name": [1]}', "must be strings"),
                          ('{"_up-to-date": ["1"]}', "invalid filter '_up-to-date'; filters here are id, name, label, mode")]:
        with pytest.raises(InvalidArgument, match=message):
            af.parse_filters(text, af.SERVICE_KEYS)
    assert af.labels_match(["a", "b=2"], {"a": "", "b": "2"}) and not af.labels_match(["b=3"], {"b": "2"})
    assert af.labels_match(None, {}) and not af.labels_match(["x"], {})
