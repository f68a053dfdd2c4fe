"""The agent's supervision deciders: healthcheck merge and results, label filters (pure)."""

import pytest

from orch.errors import InvalidArgument
from orch.node.agent import health
from orch.node.agent.filters import container_matches, parse_filters
from orch.api.models import HealthcheckBody

NS = health.NS


@pytest.mark.parametrize("request_check, image_check, expected", [
    (None, None, None),
    (None, {"Test": ["CMD", "true"], "Interval": 2 * NS}, {"Test": ["CMD", "true"], "Interval": 2 * NS}),
    ({"test": ["NONE"]}, {"Test": ["CMD", "true"]}, None),
    ({"test": ["CMD-SHELL", "curl x"], "retries": 5}, {"Test": ["CMD", "true"], "Interval": 2 * NS},
     {"Test": ["CMD-SHELL", "curl x"], "Interval": 2 * NS, "Retries": 5}),
    ({"test": ["CMD", "a"], "interval": 0.5, "timeout": 0}, None, {"Test": ["CMD", "a"], "Interval": NS // 2}),
])
def test_compute_healthcheck(request_check, image_check, expected):
    req = HealthcheckBody(**request_check) if request_check else None
    assert health.compute_healthcheck(req, image_check) == expected


def test_a_test_without_a_known_form_is_refused():
    with pytest.raises(InvalidArgument, match="must start with CMD, CMD-SHELL or NONE"):
        health.compute_healthcheck(HealthcheckBody(test=["curl", "x"]), None)


@pytest.mark.parametrize("test, args", [
    (["CMD", "wget", "-q", "x"], ["wget", "-q", "x"]),
    (["CMD-SHELL", "test -f /ok || exit 1"], ["/bin/sh", "-c", "test -f /ok || exit 1"]),
])
def test_probe_args(test, args):
    assert health.probe_args({"Test": test}) == args


def result(start, code):
    return {"Start": start, "End": start + 0.01, "ExitCode": code, "Output": ""}


# (name, check, probes as (start, exit code), expected statuses after each probe); started at 0.
HEALTH_TABLE = [
    ("success makes healthy", {}, [(1, 0)], ["healthy"]),
    ("three failures make unhealthy", {}, [(1, 1), (2, 1), (3, 1)], ["starting", "starting", "unhealthy"]),
    ("retries counts failures", {"Retries": 1}, [(1, 1)], ["unhealthy"]),
    ("failures in the start period do not count", {"StartPeriod": 10 * NS, "Retries": 1},
     [(1, 1), (2, 1), (11, 1)], ["starting", "starting", "unhealthy"]),
    ("a success in the start period counts", {"StartPeriod": 10 * NS}, [(1, 1), (2, 0)], ["starting", "healthy"]),
    ("healthy then failing", {"Retries": 2}, [(1, 0), (2, 1), (3, 1), (4, 0)], ["healthy", "healthy", "unhealthy", "healthy"]),
]


@pytest.mark.parametrize("name, check, probes, statuses", HEALTH_TABLE, ids=[row[0] for row in HEALTH_TABLE])
def test_apply_probe_result(name, check, probes, statuses):
    state = health.initial_health()
    seen = []
    for start, code in probes:
        state = health.apply_probe_result(dict(check, Test=["CMD", "x"]), state, result(start, code), started_at=0.0)
        seen.append(state["Status"])
    assert seen == statuses
    assert len(state["Log"]) == min(len(probes), health.LOG_KEEP)


def test_log_keeps_five_and_probe_delay_uses_start_interval():
    state = health.initial_health()
    for i in range(8):
        state = health.apply_probe_result({"Test": ["CMD", "x"]}, state, result(i, 1), started_at=0.0)
    assert len(state["Log"]) == 5
    check = {"Interval": 30 * NS, "StartPeriod": 60 * NS, "StartInterval": 1 * NS}
    assert health.compute_probe_delay(check, {"Status": "starting"}, started_at=0, now=5) == 1.0
    assert health.compute_probe_delay(check, {"Status": "healthy"}, started_at=0, now=5) == 30.0
    assert health.compute_probe_delay(check, {"Status": "starting"}, started_at=0, now=61) == 30.0
    assert health.compute_probe_delay({}, {"Status": "starting"}, started_at=0, now=0) == 30.0


def record(labels, status="running", name="/web", cid="abc123"):
    return {"Id": cid, "Name": name, "Config": {"Labels": labels}, "State": {"Status": status}}


@pytest.mark.parametrize("filters, matches", [
    ({}, True),
    ({"label": ["com.docker.compose.project=p"]}, True),
    ({"label": ["com.docker.compose.project=q"]}, False),
    ({"label": ["com.docker.compose.project"]}, True),
    ({"label": ["com.docker.compose.project=p", "tier=front"]}, False),
    ({"name": ["we"]}, True),
    ({"status": ["exited"]}, False),
    ({"id": ["abc"]}, True),
])
def test_container_filters(filters, matches):
    assert container_matches(record({"com.docker.compose.project": "p"}), filters) is matches


def test_bad_filters_are_one_line_errors():
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        parse_filters('{"colour": ["red"]}')
    with pytest.raises(InvalidArgument, match="is not JSON"):
        parse_filters("label=x")
    assert parse_filters('{"label": {"a=b": true}}') == {"label": ["a=b"]}
