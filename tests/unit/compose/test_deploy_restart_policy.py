"""deploy.restart_policy from the stack file to the agent's decision, without a node: the
create body (translate), the record the agent keeps (supervision.supervised_config), the
policy read back from it (supervision.restart_policy), a rollback's copy (clone), and what the
pure decider does with it, on plain numbers for the clock."""

import pytest

from orch.compose import translate as t
from orch.compose.clone import clone_body
from orch.api.models import CreateRequest
from orch.node.agent.supervision import restart_policy, supervised_config
from orch.scheduler.model import ObservedContainer, RestartPolicy
from orch.scheduler.restart import classify_exit
from orch.spec import load_project


def record_for(tmp_path, policy_yaml: str) -> dict:
    (tmp_path / "compose.yaml").write_text(
        f"name: p\nservices:\n  s:\n    image: busybox\n    deploy: {{restart_policy: {policy_yaml}}}\n")
    project = load_project([tmp_path / "compose.yaml"])
    body = t.compute_create_body(project, "s", project.services["s"], number=1, config_hash="h", image="busybox",
                                 os_environ={})
    return {"HostConfig": supervised_config(CreateRequest(image="busybox", restart_policy=body["restart_policy"]), {})["HostConfig"]}


@pytest.mark.parametrize("policy_yaml, inspect, expected", [
    ("{condition: any}", {"Name": "always", "MaximumRetryCount": 0}, RestartPolicy("always")),
    ("{delay: 1s, max_attempts: 2}", {"Name": "always", "MaximumRetryCount": 0, "MaxAttempts": 2, "Delay": 1_000_000_000},
     RestartPolicy("always", max_attempts=2, delay=1.0)),
    ("{condition: on-failure, max_attempts: 3, window: 30s}",
     {"Name": "on-failure", "MaximumRetryCount": 3, "Window": 30_000_000_000}, RestartPolicy("on-failure", max_attempts=3, window=30.0)),
    ("{condition: on-failure, delay: 0s}", {"Name": "on-failure", "MaximumRetryCount": 0, "Delay": 0},
     RestartPolicy("on-failure", delay=0.0)),
    ("{condition: none, delay: 5s}", {"Name": "no", "MaximumRetryCount": 0}, RestartPolicy("no")),
])
def test_policy_reaches_the_record_and_comes_back(tmp_path, policy_yaml, inspect, expected):
    rec = record_for(tmp_path, policy_yaml)
    assert rec["HostConfig"]["RestartPolicy"] == inspect
    assert restart_policy(rec) == expected
    # A rollback copies the container: the copy's body makes the same record again.
    copy = clone_body({"Image": "sha256:x", "Config": {}, "HostConfig": rec["HostConfig"]}, name="p-s-1", number=1)
    again = supervised_config(CreateRequest(image="busybox", restart_policy=copy["restart_policy"]), {})["HostConfig"]
    assert again == rec["HostConfig"]


def test_a_docker_policy_inspects_as_docker_shows_it():
    host = supervised_config(CreateRequest(image="busybox", restart_policy={"name": "on-failure", "maximum_retry_count": 3}), {})
    assert host["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_a_negative_delay_is_refused_by_the_api():
    with pytest.raises(Exception, match="delay"):
        CreateRequest(image="busybox", restart_policy={"name": "always", "delay": -1})


def crashed(*, started, finished, restarts, streak):
    return ObservedContainer(id="c", name="s-1", service="", number=0, config_hash="", state="exited", exit_code=1,
                             started_at=started, finished_at=finished, restart_count=restarts, backoff_streak=streak)


def run_crash_loop(policy: RestartPolicy, run_seconds: float, limit: int = 10) -> list[float]:
    """Start times of a container that crashes after `run_seconds`, each restart performed at
    the moment the decider allows it; stops when the decider gives up (or after `limit`)."""
    starts, restarts, streak = [0.0], 0, 0
    for _ in range(limit):
        finished = starts[-1] + run_seconds
        d = classify_exit(policy, crashed(started=starts[-1], finished=finished, restarts=restarts, streak=streak), now=finished)
        if not d.restart:
            break
        starts.append(d.due_at)
        restarts, streak = d.attempt, d.streak
    return starts


@pytest.mark.parametrize("name, policy, run_seconds, starts", [
    ("delay 1s, max_attempts 2: exactly two restarts, a second apart", RestartPolicy("always", max_attempts=2, delay=1.0), 0.0,
     [0.0, 1.0, 2.0]),
    ("a fixed delay replaces the doubling back-off", RestartPolicy("always", max_attempts=4, delay=0.5), 0.0, [0.0, 0.5, 1.0, 1.5, 2.0]),
    ("no delay: docker's back-off, 0.1 s doubling", RestartPolicy("always", max_attempts=3), 0.0, [0.0, 0.1, 0.3, 0.7]),
    ("max_attempts 0 never gives up", RestartPolicy("always", delay=2.0), 0.0, [2.0 * i for i in range(11)]),
    ("runs that last the window are successes: never gives up", RestartPolicy("always", max_attempts=1, delay=1.0, window=5.0), 5.0,
     [6.0 * i for i in range(11)]),
    ("runs shorter than the window count", RestartPolicy("always", max_attempts=2, delay=1.0, window=5.0), 4.0, [0.0, 5.0, 10.0]),
])
def test_crash_loops_on_a_mock_clock(name, policy, run_seconds, starts):
    assert run_crash_loop(policy, run_seconds) == pytest.approx(starts), name
