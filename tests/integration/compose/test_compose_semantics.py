"""`orch compose` semantics on busybox stacks, end to end: deploy.restart_policy timing,
`network_mode: service:`, a remembered rollback, `up --no-build` and `--quiet-pull`."""

import time

import pytest

from orch.node.agent.views import parse_time
from tests.integration.registry.conftest import registry_server  # noqa: F401 (a fixture)

pytestmark = pytest.mark.privileged


def test_deploy_restart_policy_delay_and_max_attempts(node, stack):
    stack.write("""
services:
  crash:
    image: busybox:latest
    command: ["sh", "-c", "echo started; exit 3"]
    deploy:
      restart_policy: {condition: any, delay: 1s, max_attempts: 2}
""")
    stack.compose("up", "-d", check=False)  # 0 or 1, depending on whether it saw the policy give up
    name = f"{stack.name}-crash-1"
    seen = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rec = node.inspect(name)
        seen.add(rec["State"]["StartedAt"])
        if rec["RestartCount"] == 2 and rec["State"]["Status"] == "exited" and not rec["State"]["Restarting"]:
            break
        time.sleep(0.05)
    time.sleep(1.5)  # a third restart would come 1 s after the last exit
    rec = node.inspect(name)
    assert rec["RestartCount"] == 2 and rec["State"]["Status"] == "exited" and not rec["State"]["Restarting"]
    assert rec["HostConfig"]["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0, "MaxAttempts": 2, "Delay": 1_000_000_000}
    starts = sorted(parse_time(s) for s in seen | {rec["State"]["StartedAt"]})
    assert len(starts) == 3, starts  # the first run and exactly two restarts
    assert all(b - a >= 1.0 for a, b in zip(starts, starts[1:])), starts
    logged = [line.split()[0] for line in node.orch("logs", "-t", name).stdout.splitlines() if line.endswith("started")]
    assert len(logged) == 3


def test_up_no_build_never_builds(node, stack):
    (stack.dir / "ctx").mkdir()
    (stack.dir / "ctx" / "Dockerfile").write_text("FROM busybox:latest\nRUN false\n")  # a build would fail
    image = f"{stack.name}-app:latest"
    stack.write(f"""
services:
  app:
    image: {image}
    build: ./ctx
    command: ["sleep", "1000"]
    init: true
""")
    missing = stack.compose("up", "-d", "--no-build", check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == (
        f"orch: service app: image {image} is missing and --no-build forbids building it; "
        "run 'orch compose build app' first, or up without --no-build")
    assert stack.ids() == {}
    both = stack.compose("up", "-d", "--build", "--no-build", check=False)
    assert both.returncode == 1 and "--build and --no-build are incompatible" in both.stderr
    node.orch("tag", "busybox:latest", image)
    try:
        up = stack.compose("up", "-d", "--no-build")
        assert "Building" not in up.stderr and "Built" not in up.stderr
        assert node.inspect(f"{stack.name}-app-1")["State"]["Status"] == "running"
    finally:
        stack.compose("down")
        node.orch("rmi", image, check=False)


def test_up_quiet_pull_prints_no_pull_progress(node, stack, registry_server):
    registry = registry_server()
    image = f"{registry.host}/{stack.name}/app:v1"
    # An image of its own (busybox plus a layer), so that the pull has layers to report.
    maker = f"{stack.name}-maker"
    node.orch("run", "--name", maker, "busybox:latest", "sh", "-c", f"echo {stack.name} > /stamp")
    node.orch("commit", maker, image)
    node.orch("rm", maker)
    node.orch("push", image)
    image_id = node.inspect(image)["Id"]
    node.orch("rmi", "-f", image_id)  # by id: the tag and the digest the push recorded go
    stack.write(f"""
services:
  app: {{image: "{image}", command: ["sleep", "1000"], init: true}}
""")
    try:
        loud = stack.compose("up", "-d").stderr
        assert f"Image {image}" in loud and "Pulling" in loud and "Pulled" in loud
        assert "Pull complete" in loud or "Already exists" in loud
        stack.compose("down")
        node.orch("rmi", "-f", node.inspect(image)["Id"])
        quiet = stack.compose("up", "-d", "--quiet-pull").stderr
        assert "Pulling" not in quiet and "Pull complete" not in quiet and "Already exists" not in quiet
        assert f" ✔ Image {image}" in quiet and "Pulled" in quiet  # the result is not progress
        assert node.inspect(f"{stack.name}-app-1")["State"]["Status"] == "running"
    finally:
        stack.compose("down")
        node.orch("rmi", image, check=False)


ROLLING = """
services:
  app:
    image: busybox:latest
    init: true
    command: ["sh", "-c", "{command}"]
    environment: {{V: "{version}"}}
    deploy:
      replicas: 2
      update_config: {{parallelism: 1, order: start-first, failure_action: rollback}}
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 0.2s
      retries: 3
"""
HEALTHY, BROKEN = "touch /tmp/ok; exec sleep 1000", "exec sleep 1000"


def test_a_rolled_back_update_is_remembered_until_the_file_changes_or_force_recreate(node, stack):
    stack.write(ROLLING.format(command=HEALTHY, version=1))
    stack.compose("up", "-d", "--wait")
    before = stack.ids()
    stack.write(ROLLING.format(command=BROKEN, version=2))
    first = stack.compose("up", "-d", check=False)
    assert first.returncode == 1 and "Rolled back" in first.stderr
    assert stack.ids() == before

    # The same file again: nothing is tried, and up says why and what to do.
    again = stack.compose("up", "-d", check=False)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    said = [line for line in again.stderr.splitlines() if "Rolled back:" in line]
    assert len(said) == 1 and "failed at " in said[0] and "is unhealthy" in said[0]
    assert said[0].endswith("fix the stack file, or run up --force-recreate app to try it again")
    assert "Started" not in again.stderr and "Recreated" not in again.stderr and stack.ids() == before
    assert "was rolled back" in stack.compose("plan").stdout

    # --force-recreate tries the update again (and it fails again).
    forced = stack.compose("up", "-d", "--force-recreate", check=False)
    assert forced.returncode == 1 and "Started" in forced.stderr and "Rolled back" in forced.stderr
    for name in stack.ids():
        assert "V=1" in node.inspect(name)["Config"]["Env"]

    # A fixed file rolls out; the memory is gone with it.
    stack.write(ROLLING.format(command=HEALTHY, version=3))
    fixed = stack.compose("up", "-d", "--wait")
    assert "Rolled back" not in fixed.stderr
    for name in stack.ids():
        assert "V=3" in node.inspect(name)["Config"]["Env"]
    assert not (node.root / "projects" / f"{stack.name}.json").exists()


def _ip(node, ref: str) -> str:
    return node.orch("exec", ref, "sh", "-c", "ip -4 -o addr show eth0").stdout.split()[3].split("/")[0]


def test_run_network_container_shares_the_namespace(node, stack):
    owner = f"{stack.name}-owner"
    node.orch("run", "-d", "--name", owner, "--hostname", "owner-host", "busybox:latest", "sh", "-c",
              "echo served > /tmp/index.html; httpd -p 8080 -h /tmp; exec sleep 1000")
    try:
        out = node.orch("run", "--rm", "--network", f"container:{owner}", "busybox:latest", "sh", "-c",
                        "hostname; ip -4 -o addr show eth0; wget -qO- http://localhost:8080/index.html").stdout.split("\n")
        assert out[0] == "owner-host"  # docker gives the joiner the other's hostname
        assert out[1].split()[3].split("/")[0] == _ip(node, owner)
        assert out[2] == "served"
        joiner = f"{stack.name}-joiner"
        node.orch("run", "-d", "--name", joiner, "--network", f"container:{owner}", "busybox:latest", "sleep", "1000")
        rec = node.inspect(joiner)
        assert rec["HostConfig"]["NetworkMode"] == f"container:{node.inspect(owner)['Id']}"
        assert rec["NetworkSettings"]["Networks"] == {} and rec["NetworkSettings"]["IPAddress"] == ""
        node.orch("rm", "-f", joiner)
        bad = node.orch("run", "--rm", "--network", f"container:{owner}", "--hostname", "x", "busybox:latest", "true", check=False)
        assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "drop --hostname" in bad.stderr
        node.orch("stop", "-t", "0", owner)
        stopped = node.orch("run", "--rm", "--network", f"container:{owner}", "busybox:latest", "true", check=False)
        assert stopped.returncode != 0 and stopped.stderr.strip() == (
            f"orch: cannot join the network of container {owner}: it is not running; start it first")
        missing = node.orch("run", "--rm", "--network", "container:nosuch-owner", "busybox:latest", "true", check=False)
        assert missing.returncode != 0 and missing.stderr.strip() == "orch: no such container: nosuch-owner"
        assert joiner not in node.orch("ps", "-a", "--format", "{{.Names}}").stdout
    finally:
        node.orch("rm", "-f", owner, check=False)


SHARED = """
services:
  vpn:
    image: busybox:latest
    init: true
    hostname: vpn-host
    environment: {{V: "{version}"}}
    command: ["sh", "-c", "echo served > /tmp/index.html; httpd -p 8080 -h /tmp; exec sleep 1000"]
  app:
    image: busybox:latest
    init: true
    network_mode: "service:vpn"
    command: ["sleep", "1000"]
  client:
    image: busybox:latest
    init: true
    command: ["sleep", "1000"]
"""


def test_network_mode_service_joins_orders_and_follows_a_recreate(node, stack):
    stack.write(SHARED.format(version=1))
    stack.compose("up", "-d")
    vpn, app, client = (f"{stack.name}-{s}-1" for s in ("vpn", "app", "client"))
    first = node.inspect(app)
    assert parse_time(first["State"]["StartedAt"]) >= parse_time(node.inspect(vpn)["State"]["StartedAt"])
    assert _ip(node, app) == _ip(node, vpn)
    assert node.orch("exec", app, "wget", "-qO-", "http://localhost:8080/index.html").stdout.strip() == "served"
    assert node.orch("exec", app, "hostname").stdout.strip() == "vpn-host"
    # app has no endpoint and no name of its own on the stack's network; vpn has both.
    assert node.orch("exec", client, "nslookup", "vpn", check=False).returncode == 0
    assert node.orch("exec", client, "nslookup", "app", check=False).returncode != 0
    assert stack.compose("up", "-d").stderr.count("Running") == 3  # converged: nothing to do

    stack.write(SHARED.format(version=2))  # only vpn changes: app is recreated to follow it
    out = stack.compose("up", "-d").stderr
    assert f"Container {vpn}" in out and f"Container {app}" in out and f"Container {client}" not in out
    second = node.inspect(app)
    assert second["Id"] != first["Id"]
    assert second["HostConfig"]["NetworkMode"] == f"container:{node.inspect(vpn)['Id']}"
    assert _ip(node, app) == _ip(node, vpn)
    assert node.orch("exec", app, "wget", "-qO-", "http://localhost:8080/index.html").stdout.strip() == "served"

    # compose restart vpn restarts app after it (vpn's namespace is new), unless --no-deps.
    started = node.inspect(app)["State"]["StartedAt"]
    out = stack.compose("restart", "-t", "0", "vpn").stderr.splitlines()
    assert [line.split()[2] for line in out if line.endswith("Restarted")] == [vpn, app]
    assert node.inspect(app)["State"]["StartedAt"] != started
    assert node.orch("exec", app, "wget", "-qO-", "http://localhost:8080/index.html").stdout.strip() == "served"
    assert app not in stack.compose("restart", "-t", "0", "--no-deps", "vpn").stderr

    node.orch("restart", "-t", "0", vpn)  # behind compose's back: the next up restarts app into vpn's namespace
    out = stack.compose("up", "-d").stderr
    assert f"Container {app}" in out and "Restarted" in out and node.inspect(app)["Id"] == second["Id"]
    assert node.orch("exec", app, "wget", "-qO-", "http://localhost:8080/index.html").stdout.strip() == "served"
