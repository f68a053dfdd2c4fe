"""The agent's reconciliation with the supervisor (adoption after a restart, events), with the
supervisor replaced by a fake that answers `list` and records kills."""

import json

import pytest
import trio
import trio.testing

from orch.errors import NotFound
from orch.node.agent.node import Node
from orch.node.agent.records import ContainerRecord, LogOptions, Private
from orch.node.agent.state import ContainerStore

ZERO = "0001-01-01T00:00:00Z"


def record(cid, status, pid=0, auto_remove=False):
    return ContainerRecord({"Id": cid, "Name": f"/{cid}", "Created": "2026-01-01T00:00:00.000000000Z", "Path": "sleep", "Args": ["9"], "Image": "sha256:x",
            "Config": {"Image": "busybox", "Labels": {}, "StopSignal": "SIGTERM"}, "HostConfig": {"AutoRemove": auto_remove},
            "State": {"Status": status, "Running": status == "running", "Paused": False, "Pid": pid, "ExitCode": 0, "Error": "",
                      "StartedAt": ZERO, "FinishedAt": ZERO, "OOMKilled": False}},
                           Private(cgroup=f"orch/{cid}", log=LogOptions(max_size=1024, max_file=1)))


class FakeSupervisor:
    """Answers `list` with `running`; `adopt` succeeds for the ids in `orphans` (containers a
    dead supervisor left running) and is NotFound for the rest."""

    def __init__(self, running, orphans=None):
        self.running = running
        self.orphans = dict(orphans or {})
        self.calls = []

    async def __call__(self, msg, fds=()):
        self.calls.append(msg)
        if msg["op"] == "list":
            return {"ok": True, "containers": self.running}
        if msg["op"] == "adopt":
            if msg["id"] not in self.orphans:
                raise NotFound(f"container {msg['id']} has no process left in its cgroup")
            return {"ok": True, "pid": self.orphans[msg["id"]]}
        return {"ok": True}


def make_node(tmp_path, records, running, exits=(), orphans=None):
    store = ContainerStore(tmp_path)
    for rec in records:
        store.save(rec)
    for cid, data in exits:
        (store.path(cid) / "exit.json").write_text(json.dumps(data))
    node = Node(tmp_path, tmp_path / "run")
    node.load()
    node.call = FakeSupervisor(running, orphans)
    return node


async def test_adoption_applies_exit_records_and_adopts_the_running(tmp_path):
    node = make_node(
        tmp_path,
        [record("alive", "running", 11), record("died", "running", 12), record("lost", "paused", 13), record("late", "created"),
         record("unseen", "created")],
        running=[{"id": "alive", "pid": 11, "started_at": "2026-01-01T00:00:01.000000000Z"},
                 {"id": "late", "pid": 14, "started_at": "2026-01-01T00:00:02.000000000Z"}],
        exits=[("died", {"exit_code": 5, "finished_at": "2026-01-01T00:00:03.000000000Z", "oom_killed": True, "pid": 12}),
               # started by an attached CLI and exited, all while the agent was away
               ("unseen", {"exit_code": 7, "started_at": "2026-01-01T00:00:04.000000000Z", "finished_at": "2026-01-01T00:00:05.000000000Z", "pid": 15})],
    )
    await node.adopt()
    states = {cid: (r["State"]["Status"], r["State"]["ExitCode"], r["State"]["Pid"]) for cid, r in node.records.items()}
    assert states == {"alive": ("running", 0, 11), "died": ("exited", 5, 0), "lost": ("exited", 255, 0), "late": ("running", 0, 14),
                      "unseen": ("exited", 7, 0)}
    assert node.records["unseen"]["State"]["StartedAt"] == "2026-01-01T00:00:04.000000000Z"
    assert node.records["died"]["State"]["OOMKilled"] is True
    assert "exited while no supervisor watched it" in node.records["lost"]["State"]["Error"]
    # What adoption decided is on disk for the next restart.
    again = {r["Id"]: r["State"]["Status"] for r in ContainerStore(tmp_path).load_all()[0]}
    assert again == {"alive": "running", "died": "exited", "lost": "exited", "late": "running", "unseen": "exited"}
    # A second adoption (the next restart) changes nothing.
    await node.adopt()
    assert {cid: r["State"]["Status"] for cid, r in node.records.items()} == again


async def test_a_container_a_dead_supervisor_left_running_is_adopted_not_marked_exited(tmp_path):
    node = make_node(tmp_path, [record("orphan", "running", 21), record("gone", "running", 22)], running=[], orphans={"orphan": 21})
    node.records["orphan"].orch.pid_start = 12345
    await node.adopt()
    adopt = {c["id"]: c for c in node.call.calls if c["op"] == "adopt"}
    assert adopt["orphan"]["pid"] == 21 and adopt["orphan"]["pid_start"] == 12345 and adopt["orphan"]["config"].endswith("orphan/config.json")
    states = {cid: (r["State"]["Status"], r["State"]["ExitCode"], r["State"]["Pid"]) for cid, r in node.records.items()}
    assert states == {"orphan": ("running", 0, 21), "gone": ("exited", 255, 0)}


async def test_the_agent_holds_copies_of_a_containers_pipes_until_it_exits(tmp_path):
    import os

    node = make_node(tmp_path, [record("c", "created")], running=[])
    r, w = os.pipe()
    node.apply_event({"event": "started", "id": "c", "pid": 30, "started_at": ZERO, "pid_start": 7, "pipes": ["stdout"]}, [r])
    assert node.pipes.get("c") == (["stdout"], [r]) and node.records["c"].orch.pid_start == 7
    node.apply_event({"event": "exited", "id": "c", "pid": 30, "exit_code": 0, "finished_at": ZERO})
    assert node.pipes.get("c") == ([], [])
    with pytest.raises(OSError):
        os.fstat(r)  # closed
    os.close(w)


async def test_events_are_idempotent_and_ordered_by_pid(tmp_path):
    node = make_node(tmp_path, [record("c", "created")], running=[])
    node.apply_event({"event": "started", "id": "c", "pid": 20, "started_at": "2026-01-01T00:00:01.000000000Z"})
    node.apply_event({"event": "exited", "id": "c", "pid": 20, "exit_code": 3, "finished_at": "2026-01-01T00:00:02.000000000Z"})
    # A late "started" for the pid that already exited (two connections, any order) changes nothing.
    node.apply_event({"event": "started", "id": "c", "pid": 20, "started_at": "2026-01-01T00:00:01.000000000Z"})
    node.apply_event({"event": "exited", "id": "c", "pid": 20, "exit_code": 99, "finished_at": "2026-01-01T00:00:09.000000000Z"})
    state = node.records["c"]["State"]
    assert (state["Status"], state["ExitCode"], state["FinishedAt"]) == ("exited", 3, "2026-01-01T00:00:02.000000000Z")
    node.apply_event({"event": "exited", "id": "unknown", "pid": 1, "exit_code": 0, "finished_at": ZERO})  # ignored


async def test_start_failure_is_recorded(tmp_path):
    node = make_node(tmp_path, [record("c", "created")], running=[])
    node.apply_event({"event": "start_failed", "id": "c", "exit_code": 127, "message": 'exec: "nope": executable file not found in $PATH'})
    state = node.records["c"]["State"]
    assert (state["Status"], state["ExitCode"]) == ("created", 127) and "nope" in state["Error"]


async def test_auto_remove_on_exit(tmp_path):
    node = make_node(tmp_path, [record("c", "running", 30, auto_remove=True)], running=[])
    async with trio.open_nursery() as nursery:
        node.nursery = nursery
        node.apply_event({"event": "exited", "id": "c", "pid": 30, "exit_code": 0, "finished_at": "2026-01-01T00:00:02.000000000Z"})
        assert await node.wait_until(lambda: "c" not in node.records, 5)
    assert not (tmp_path / "containers" / "c").exists()


async def test_stop_sends_the_stop_signal_then_sigkill(tmp_path):
    node = make_node(tmp_path, [record("c", "running", 40)], running=[{"id": "c", "pid": 40, "started_at": ZERO}])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node.stop, node.records["c"], 0)  # -t 0: the grace period is over at once
        await trio.testing.wait_all_tasks_blocked()
        node.apply_event({"event": "exited", "id": "c", "pid": 40, "exit_code": 137, "finished_at": "2026-01-01T00:00:02.000000000Z"})
    kills = [m["signal"] for m in node.call.calls if m["op"] == "kill"]
    assert kills == [15, 9]


async def test_conflicts_come_from_the_lifecycle_table(tmp_path):
    from orch.errors import Conflict

    node = make_node(tmp_path, [record("c", "exited")], running=[])
    with pytest.raises(Conflict, match="container c is not running; start it first"):
        await node.kill(node.records["c"], 9)
    with pytest.raises(Conflict, match="container c is not paused"):
        await node.unpause(node.records["c"])
    assert node.call.calls == []
