"""The node's records (orch/node/agent/records.py): typed, versioned, and version 1 files (those
written before records had a version) read and migrated; docker's view and orch's part apart."""

import json

import pytest

from orch.errors import SystemFailure
from orch.node.agent.records import VERSION, ProjectFile, dump_networks, load_container, load_networks
from orch.node.runtime.volumerecord import load_volume

V1_CONTAINER = {
    "Id": "c" * 64, "Created": "2026-01-01T00:00:00.000000000Z", "Path": "sleep", "Args": ["300"], "Image": "sha256:" + "b" * 64,
    "Name": "/web", "RestartCount": 2, "Driver": "overlay", "Platform": "linux", "LogPath": "/x/container.log",
    "State": {"Status": "running", "Running": True, "Paused": False, "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 42,
              "ExitCode": 0, "Error": "", "StartedAt": "2026-01-01T00:00:01.000000000Z", "FinishedAt": "0001-01-01T00:00:00Z",
              "Health": {"Status": "healthy", "FailingStreak": 0, "Log": []}},
    "Config": {"Hostname": "cccccccccccc", "Labels": {"a": "b"}, "Tty": False, "Cmd": ["sleep", "300"], "Entrypoint": None},
    "HostConfig": {"AutoRemove": False, "NetworkMode": "bridge", "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}},
    "_cgroup": "orch/" + "c" * 64, "_log": {"max_size": 1024, "max_file": 2},
    "_net": {"mode": "bridge", "networks": [{"name": "bridge", "aliases": []}], "ports": []},
    "_mounts": [{"type": "volume", "source": "data", "target": "/data"}], "_exited_pid": 41, "_backoff_streak": 3,
    "_stopped_by_user": True,
}


def test_a_version_1_container_record_is_migrated_and_keeps_everything():
    rec, version = load_container(json.dumps(V1_CONTAINER))
    assert version == 1
    assert dict(rec) == {k: v for k, v in V1_CONTAINER.items() if not k.startswith("_")}  # docker's view, key for key
    o = rec.orch
    assert (o.cgroup, o.log.max_size, o.log.max_file, o.exited_pid, o.backoff_streak, o.stopped_by_user) == (
        "orch/" + "c" * 64, 1024, 2, 41, 3, True)
    assert o.net["mode"] == "bridge" and o.mounts == V1_CONTAINER["_mounts"]
    # Written back in the current format, read again: the same record.
    stored = json.loads(rec.to_json())
    assert stored["version"] == VERSION and set(stored) == {"version", "docker", "orch"}
    again, version = load_container(rec.to_json())
    assert version == VERSION and again == rec and again.orch == rec.orch


def test_a_record_keeps_no_key_it_was_not_given():
    """Typed fields with defaults must not add keys that docker's view did not have."""
    minimal = {"Id": "x", "Created": "2026-01-01T00:00:00Z", "Name": "/x", "State": {"Status": "created"}}
    rec, _ = load_container(json.dumps(minimal))
    assert dict(rec) == minimal


@pytest.mark.parametrize("text, message", [
    ('{"Id": "x"', "not a container record orch can read"),
    ('[1, 2]', "not a JSON object"),
    ('{"version": 2, "docker": {"Id": "x"}, "orch": {}}', "docker.Created: field required"),
    ('{"version": 2, "docker": {"Id": "x", "Created": "t", "Name": "/x", "State": {"Status": "created"}}, "orch": {"cgroup": 3}}',
     "orch.cgroup: input should be a valid string"),
    ('{"version": 99, "docker": {}, "orch": {}}', "a container record of version 99, newer than this orch"),
])
def test_a_record_orch_cannot_read_is_one_line(text, message):
    with pytest.raises(SystemFailure, match=message) as err:
        load_container(text, "ORCH_ROOT/containers/x/state.json")
    assert str(err.value).startswith("ORCH_ROOT/containers/x/state.json: ") and "\n" not in str(err.value)


def test_network_state_of_version_1_is_read_typed_and_written_with_a_version():
    v1 = {"networks": {"bridge": {"name": "bridge", "id": "n" * 64, "bridge": "orch0", "subnet": "10.89.0.0/24", "gateway": "10.89.0.1",
                                  "mtu": 1500, "internal": False, "labels": {}}},
          "endpoints": [{"network": "bridge", "container_id": "c1", "netns_path": "/run/orch/netns/c1", "host_ifname": "veth1",
                         "ifname": "eth0", "address": "10.89.0.2", "names": ["web"]}],
          "publications": [], "ipam": {"networks": {"bridge": {"subnet": "10.89.0.0/24", "gateway": "10.89.0.1",
                                                               "allocated": {"10.89.0.2": "c1"}, "last": "10.89.0.2"}}},
          "retiring": [], "hidden": ["c1"]}
    state = load_networks(json.dumps(v1))
    assert state.networks["bridge"].gateway == "10.89.0.1" and state.endpoints[0].names == ("web",)
    assert state.ipam.networks["bridge"].allocated == {"10.89.0.2": "c1"} and state.hidden == frozenset({"c1"})
    assert dump_networks(state) == dict(v1, version=VERSION)
    with pytest.raises(SystemFailure, match="networks.bridge.gateway: field required"):
        load_networks(json.dumps({"networks": {"bridge": {"name": "bridge", "id": "n", "bridge": "b", "subnet": "s"}}}))


def test_volume_and_project_records():
    v1 = {"Name": "data", "Driver": "local", "Mountpoint": "/r/volumes/data/_data", "Labels": {}, "Options": {}, "Scope": "local",
          "CreatedAt": "2026-01-01T00:00:00Z"}
    record = load_volume(json.dumps(v1), "meta.json")
    assert record.version == 1 and record.view() == v1 and list(record.view()) == list(v1)
    assert ProjectFile.model_validate({"rolled_back": {"web": {"hash": "h2", "reason": "r", "at": "t"}}}).version == VERSION
