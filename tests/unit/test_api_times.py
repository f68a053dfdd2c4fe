"""docker's --since/--until texts (api/types/time.GetTimestamp) and its event time format."""

import os
import time

import pytest

from orch.api.times import docker_timestamp, go_duration, rfc3339_nano_fixed

NOW = 1_700_000_000.75


@pytest.fixture(autouse=True)
def utc():
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.parametrize("text,seconds", [
    ("10m", 600), ("1h30m", 5400), ("1.5h", 5400), ("45s", 45), ("300ms", 0.3), ("-5s", -5), ("2h45m10s", 9910),
    ("1us", 1e-6), ("0", 0.0),
])
def test_go_durations(text, seconds):
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "m", "1x", "1h 2m", "h1"])
def test_not_go_durations(text):
    assert go_duration(text) is None


@pytest.mark.parametrize("value,expected", [
    ("10m", "1699999400"),  # a duration counts back from now, in whole seconds
    ("-10m", "1700000600"),
    ("1700000000", "1700000000"),  # a number goes as typed
    ("1700000000.5", "1700000000.5"),
    ("0", "0"),
    ("2023-11-14T22:13:20Z", "1700000000.000000000"),
    ("2023-11-14T22:13:20.25Z", "1700000000.250000000"),
    ("2023-11-14T23:13:20+01:00", "1700000000.000000000"),
    ("2023-11-14T22:13:20", "1700000000.000000000"),  # local time (UTC here)
    ("2023-11-14T22:13", "1699999980.000000000"),
    ("2023-11-14", "1699920000.000000000"),
])
def test_docker_timestamps(value, expected):
    assert docker_timestamp(value, NOW) == expected


@pytest.mark.parametrize("value", ["yesterday", "2023-13-45", "1.2.3"])
def test_bad_timestamps(value):
    with pytest.raises(ValueError):
        docker_timestamp(value, NOW)


def test_event_times_have_nine_digits_always():
    assert rfc3339_nano_fixed(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.120000000Z"
    assert rfc3339_nano_fixed(1_700_000_000_000_000_000) == "2023-11-14T22:13:20.000000000Z"
