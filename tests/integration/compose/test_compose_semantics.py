"""`orch compose` semantics on busybox stacks, end to end: deploy.restart_policy timing,
`network_mode: service:`, a remembered rollback, `up --no-build` and `--quiet-pull`."""

import json
import time

import pytest

from orch.node.agent.views import parse_time

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
