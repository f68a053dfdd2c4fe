"""Pure pieces of the agent and the container CLI, as tables."""

import json
import os
import random

import pytest

from orch.api import times
from orch.api.runflags import parse_bytes, parse_env
from orch.errors import InvalidArgument
from orch.node.agent import names, views
from orch.node.agent.records import ContainerRecord, Private
from orch.node.agent.state import ContainerStore
from orch.node.runtime import containerlog


@pytest.mark.parametrize("seconds,text", [
    (0.2, "Less than a second"), (1, "1 second"), (3, "3 seconds"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"), (3600, "About an hour"), (7200, "2 hours"),
    (47 * 3600, "47 hours"), (48 * 3600, "2 days"), (15 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years"),
])
def test_human_duration(seconds, text):
    assert times.human_duration(seconds) == text


def record(status, started="2026-01-01T00:00:00.000000000Z", finished="2026-01-01T00:00:10.000000000Z", code=0):
    return {"Id": "a" * 64, "Name": "/web", "Created": "2026-01-01T00:00:00.000000000Z", "Path": "sleep", "Args": ["100"],
            "Image": "sha256:" + "b" * 64, "Config": {"Image": "busybox", "Labels": {}},
            "State": {"Status": status, "StartedAt": started, "FinishedAt": finished, "ExitCode": code}}


T0 = containerlog.parse_rfc3339("2026-01-01T00:00:00Z")


@pytest.mark.parametrize("status,code,now,text", [
    ("created", 0, T0 + 5, "Created"),
    ("running", 0, T0 + 3, "Up 3 seconds"),
    ("paused", 0, T0 + 120, "Up 2 minutes (Paused)"),
    ("exited", 0, T0 + 15, "Exited (0) 5 seconds ago"),
    ("exited", 137, T0 + 3610, "Exited (137) About an hour ago"),
    ("removing", 0, T0, "Removal In Progress"),
    ("dead", 0, T0, "Dead"),
])
def test_status_text(status, code, now, text):
    assert views.status_text(record(status, code=code), now) == text


def test_summary_and_inspect_hide_private_keys():
    row = views.summary(record("running"), T0 + 3)
    assert (row["Command"], row["Status"], row["Names"], row["CreatedSince"]) == ("sleep 100", "Up 3 seconds", ["/web"], "3 seconds ago")
    rec = ContainerRecord(record("running"), Private(cgroup="orch/x", stopped_by_user=True))
    view = views.inspect_view(rec)
    assert type(view) is dict and view == record("running") and not [k for k in view if k.startswith("_")]
    assert views.full_view(rec, T0 + 3)["StoppedByUser"] is True


@pytest.mark.parametrize("text,value", [("512m", 512 << 20), ("1g", 1 << 30), ("1.5G", 3 << 29), ("100kb", 102400), ("4096", 4096), ("10b", 10)])
def test_parse_bytes(text, value):
    assert parse_bytes(text, "--memory") == value


@pytest.mark.parametrize("text", ["lots", "1x", "-5m", ""])
def test_parse_bytes_refuses(text):
    with pytest.raises(InvalidArgument, match="--memory"):
        parse_bytes(text, "--memory")


def test_parse_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_HOST", "yes")
    monkeypatch.delenv("UNSET_THING", raising=False)
    f = tmp_path / "env"
    f.write_text("# comment\nA=1\n\nFROM_HOST\n")
    assert parse_env(["B=2", "FROM_HOST", "UNSET_THING"], [str(f)]) == ["A=1", "FROM_HOST=yes", "B=2", "FROM_HOST=yes"]
    f.write_text("BAD KEY=1\n")
    with pytest.raises(InvalidArgument, match=f"{f}:1"):
        parse_env([], [str(f)])


def test_names():
    rng = random.Random(1)
    name = names.random_name(set(), rng)
    adjective, surname = name.split("_")
    assert adjective in names.ADJECTIVES and surname in names.SURNAMES
    assert names.check_name("/web") == "web"
    for bad in ("-x", "a", "a b", "we/b"):
        with pytest.raises(InvalidArgument, match="invalid container name"):
            names.check_name(bad)


def test_store_is_crash_safe(tmp_path):
    store = ContainerStore(tmp_path)
    rec = ContainerRecord(dict(record("running"), Id="c1"), Private(cgroup="orch/c1"))
    store.save(rec)
    rec["RestartCount"] = 2
    store.save(rec)
    (store.path("c1") / "state.json.tmp.999").write_text('{"Id": "c1", "v": ')  # a crash mid-write
    store.path("c2").mkdir()  # a crash inside create, before the record
    records, incomplete = store.load_all()
    assert (records, incomplete) == ([rec], ["c2"]) and records[0].orch == rec.orch
    assert not (store.path("c1") / "state.json.tmp.999").exists()
    assert oct(os.stat(store.path("c1") / "state.json").st_mode & 0o777) == "0o600"
    (store.path("c1") / "exit.json").write_text(json.dumps({"exit_code": 3}))
    assert store.read_exit("c1") == {"exit_code": 3} and store.read_exit("c2") is None
    store.delete("c1")
    assert not store.path("c1").exists()


def test_log_rotation_keeps_max_file_files(tmp_path):
    path = str(tmp_path / "container.log")
    log = containerlog.LogWriter(path, max_size=1024, max_file=3)
    for i in range(100):
        log.write("stdout", f"line {i:03d}\n".encode())
    log.write("stderr", b"no newline at the end")
    log.close()
    files = containerlog.log_files(path)
    assert [os.path.basename(f) for f in files] == ["container.log.2", "container.log.1", "container.log"]
    assert all(os.path.getsize(f) <= 1024 for f in files)
    entries = containerlog.read_entries(path)
    assert entries[-1] == dict(entries[-1], log="no newline at the end", stream="stderr")
    assert entries[-2]["log"] == "line 099\n"
    numbers = [int(e["log"][5:8]) for e in entries[:-1]]
    assert numbers == list(range(numbers[0], 100))  # the newest lines, in order, none lost inside the window


def test_log_splits_long_lines_and_selects(tmp_path):
    path = str(tmp_path / "container.log")
    log = containerlog.LogWriter(path)
    log.write("stdout", b"x" * (containerlog.CHUNK + 10) + b"\nshort\n")
    log.close()
    entries = containerlog.read_entries(path)
    assert [len(e["log"]) for e in entries] == [containerlog.CHUNK, 11, 6]
    assert containerlog.select_entries(entries, tail=1) == entries[-1:]
    assert containerlog.select_entries(entries, tail=0) == []
    assert containerlog.select_entries(entries, since=2**40) == []
    stamp = entries[0]["time"]
    assert len(stamp) == len("2026-01-01T00:00:00.000000000Z") and stamp.endswith("Z")
