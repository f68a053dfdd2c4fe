"""The compose executor (orch.compose.engine.Stack) against a FakeNode on a mock clock: its own
code (the converge loop, reporting, performing actions, draining) with FakeAgent standing in
for the agent's HTTP API. Minutes of simulated time in milliseconds; nothing sleeps."""

import io

from orch.compose.engine import Reporter, Stack
from orch.compose.testing import FakeAgent, MockClockNode
from orch.scheduler.model import ReconcileOptions
from orch.scheduler.testing import FakeNode
from orch.spec import load_project


def executor(tmp_path, text: str, **fake_options):
    (tmp_path / "compose.yaml").write_text("name: s\n" + text)
    project = load_project([tmp_path / "compose.yaml"], environ={})
    out = io.StringIO()
    stack = Stack(None, project, reporter=Reporter(out=out), environ={})
    fake = FakeNode(stack.desired(), **fake_options)
    stack.client = agent = FakeAgent(fake)
    return stack, fake, agent, out


def up(stack, fake, **kw):
    return stack.converge(ReconcileOptions(up_since=fake.time), node=MockClockNode(stack, fake), **kw)


CHAIN = """
services:
  db: {image: busybox, healthcheck: {test: [CMD, "true"]}}
  web: {image: busybox, depends_on: {db: {condition: service_healthy}}}
"""


def test_up_creates_in_dependency_order_and_reports_in_composes_words(tmp_path):
    stack, fake, agent, out = executor(tmp_path, CHAIN, health_delay=5.0)
    assert up(stack, fake) == 0
    created = {name: t for t, kind, name in fake.log if kind == "create"}
    assert created["s-web-1"] >= created["s-db-1"] + 5.0  # web waited for db to be healthy
    lines = out.getvalue().splitlines()
    assert " ✔ Container s-db-1                       Started" in lines
    assert any(line.startswith(" ⠿ Service web") and "Waiting: dependency db" in line for line in lines)
    assert lines[-1] == " ✔ Container s-web-1                      Started"
    # A second up finds nothing to do and says what runs.
    out.truncate(0), out.seek(0)
    assert up(stack, fake) == 0
    assert sorted(out.getvalue().splitlines()) == [" ✔ Container s-db-1                       Running",
                                                  " ✔ Container s-web-1                      Running"]


def test_wait_returns_once_healthy_on_the_mock_clock(tmp_path):
    stack, fake, _, out = executor(tmp_path, "services:\n  db: {image: busybox, healthcheck: {test: [CMD, 'true']}}\n", health_delay=7.0)
    start = fake.time
    assert up(stack, fake, wait=True) == 0
    assert fake.time >= start + 7.0 and " ✔ Container s-db-1                       Healthy" in out.getvalue()


def test_a_crash_loop_under_a_restart_policy_is_the_agents_job(tmp_path):
    """up returns once the policy owns the container: it never performs the policy's restarts
    itself (those would race the agent's), and never waits for them to end."""
    stack, fake, agent, _ = executor(tmp_path, "services:\n  web: {image: busybox, restart: always}\n")
    fake.crashes[stack.desired().services["web"].config_hash] = (0.5, 1)
    assert up(stack, fake) == 0
    end = fake.time + 30
    while fake.time < end and fake.wait(end):
        fake.observe()
    assert [kind for _, kind, _ in fake.log].count("restart") >= 3  # the node's own supervision
    assert not [path for method, path in agent.calls if path.endswith("/restart")]


def test_a_service_that_exits_for_good_fails_the_up(tmp_path):
    stack, fake, _, out = executor(tmp_path, "services:\n  job: {image: busybox}\n")
    fake.crashes[stack.desired().services["job"].config_hash] = (0.0, 3)
    assert up(stack, fake, wait=True) == 1
    assert " ✘ Service job                          Error: s-job-1 exited 3; restart policy is no" in out.getvalue()


def test_a_timeout_on_the_mock_clock(tmp_path):
    stack, fake, _, out = executor(tmp_path, CHAIN, health_delay=100.0)
    assert up(stack, fake, timeout=10.0) == 1
    assert "not converged after 10s" in out.getvalue()


def test_a_rolling_update_drains_each_replaced_replica_before_removing_it(tmp_path):
    text = """
services:
  web:
    image: busybox
    command: [v1]
    healthcheck: {test: [CMD, "true"]}
    deploy: {replicas: 3, update_config: {parallelism: 1, order: start-first}}
"""
    stack, fake, agent, _ = executor(tmp_path, text, health_delay=2.0)
    assert up(stack, fake, wait=True) == 0
    old = set(fake.containers)
    lowest = []
    stack2, _, _, _ = executor(tmp_path, text.replace("[v1]", "[v2]"))
    stack2.client = agent
    fake.desired = stack2.desired()
    node = MockClockNode(stack2, fake)
    observe = node.observe
    node.observe = lambda: (lambda o: (lowest.append(sum(c.running and c.health == "healthy" for c in o.containers)), o)[1])(observe())
    assert stack2.converge(ReconcileOptions(up_since=fake.time), node=node) == 0
    assert not old & set(fake.containers) and len(fake.containers) == 3
    assert min(lowest) >= 3  # start-first: never fewer healthy replicas than asked for
    for cid in old:  # each old replica was drained, then removed
        drain, remove = agent.calls.index(("POST", f"/containers/{cid}/drain?wait=1")), next(
            i for i, (m, p) in enumerate(agent.calls) if m == "DELETE" and p.startswith(f"/containers/{cid}?"))
        assert drain < remove
    assert not agent.drained - old  # the new replicas were named again once healthy


def test_container_name_names_the_first_replica(tmp_path):
    stack, fake, agent, _ = executor(tmp_path, "services:\n  web: {image: busybox, container_name: front}\n")
    assert up(stack, fake) == 0
    assert [c.name for c in fake.containers.values()] == ["front"]
    assert up(stack, fake) == 0 and len(fake.containers) == 1  # found again by its labels: nothing to do


def test_down_removes_a_stage_in_one_request(tmp_path):
    stack, fake, agent, _ = executor(tmp_path, "services:\n  web: {image: busybox, deploy: {replicas: 3}}\n")
    assert up(stack, fake) == 0
    stack.down()
    assert fake.containers == {}
    assert [c for c in agent.calls if c[1] == "/containers/remove"] == [("POST", "/containers/remove")]
