"""Container views in dockerd's shapes (orch/dockerapi/inspectview.py), beside dockerd 20.10's
own inspect of a container run with `-p 18080:80 -v /tmp/dkx:/data:ro -e A=1` on this machine
(tests/data/dockerapi/dockerd-20.10-inspect.json)."""

import json
from pathlib import Path

from orch.dockerapi.inspectview import compute_inspect, compute_list_row, compute_ports

DATA = Path(__file__).resolve().parents[2] / "data" / "dockerapi"
DOCKERD = json.loads((DATA / "dockerd-20.10-inspect.json").read_text())

# The agent's inspect of the same container (record, NetworkSettings and Mounts), as it answers.
AGENT = {
    "Id": "50c0" * 16, "Created": "2026-12-06T02:12:02.352040087Z", "Path": "sh", "Args": ["-c", "sleep 1000"],
    "State": {"Status": "running", "Running": True, "Paused": False, "Restarting": False, "OOMKilled": False, "Dead": False,
              "Pid": 28562, "ExitCode": 0, "Error": "", "StartedAt": "2026-12-06T02:12:02.402005174Z",
              "FinishedAt": "0001-01-01T00:00:00Z"},
    "Image": "sha256:" + "d" * 64, "Name": "/w1", "RestartCount": 0, "Driver": "overlay", "Platform": "linux",
    "LogPath": "/var/lib/orch/containers/" + "50c0" * 16 + "/container.log",
    "Config": {"Hostname": "50c0e3c6ca2c", "User": "", "Env": ["A=1", "PATH=/bin"], "Cmd": ["sh", "-c", "sleep 1000"],
               "Entrypoint": None, "Image": "busybox", "WorkingDir": "", "Tty": False, "OpenStdin": False, "AttachStdin": False,
               "StdinOnce": False, "Labels": {}, "StopSignal": "SIGTERM"},
    "HostConfig": {"Memory": 0, "MemorySwap": 0, "NanoCpus": 0, "PidsLimit": None, "AutoRemove": False, "Init": False,
                   "PidMode": "", "IpcMode": "private", "UsernsMode": "",
                   "LogConfig": {"Type": "json-file", "Config": {"max-size": "10485760", "max-file": "3"}},
                   "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "CapAdd": None, "CapDrop": None, "Privileged": False,
                   "ReadonlyRootfs": False, "Ulimits": None, "SecurityOpt": None, "NetworkMode": "bridge",
                   "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "18080"}]}, "PublishAllPorts": False, "Dns": [],
                   "DnsSearch": [], "ExtraHosts": [], "VolumesFrom": []},
    "NetworkSettings": {"SandboxKey": "/run/orch/netns/" + "50c0" * 16,
                        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}]}, "IPAddress": "10.89.2.4",
                        "Gateway": "10.89.2.1", "IPPrefixLen": 24, "MacAddress": "",
                        "Networks": {"bridge": {"IPAMConfig": None, "Aliases": ["50c0e3c6ca2c"], "NetworkID": "b" * 64,
                                                "EndpointID": "vec96810d1fdeb", "Gateway": "10.89.2.1", "IPAddress": "10.89.2.4",
                                                "IPPrefixLen": 24, "MacAddress": ""}}},
    "Mounts": [{"Type": "bind", "Source": "/tmp/dkx", "Destination": "/data", "Mode": "ro", "RW": False, "Propagation": "rprivate"}],
}


def keys_missing(theirs: dict, ours: dict, where: str = "") -> list[str]:
    out = []
    for key, value in theirs.items():
        if key not in ours:
            out.append(where + key)
        elif isinstance(value, dict) and isinstance(ours[key], dict) and key not in ("Labels", "Ports", "Networks", "ExposedPorts"):
            out += keys_missing(value, ours[key], where + key + ".")
    return out


def test_every_key_dockerd_shows_is_there():
    ours = compute_inspect(AGENT, {"Volumes": None})
    assert keys_missing(DOCKERD, ours) == []
    ours_endpoint = ours["NetworkSettings"]["Networks"]["bridge"]
    assert keys_missing(DOCKERD["NetworkSettings"]["Networks"]["bridge"], ours_endpoint) == []


def test_values_in_dockerds_words():
    ours = compute_inspect(AGENT, {"ExposedPorts": {"8000/tcp": {}}})
    host = ours["HostConfig"]
    assert host["NetworkMode"] == DOCKERD["HostConfig"]["NetworkMode"] == "default"
    assert host["Binds"] == ["/tmp/dkx:/data:ro"] == DOCKERD["HostConfig"]["Binds"]
    assert host["LogConfig"] == DOCKERD["HostConfig"]["LogConfig"]  # orch's defaults are docker's: not shown
    assert host["ExtraHosts"] is None and host["VolumesFrom"] is None
    assert ours["Config"]["ExposedPorts"] == {"8000/tcp": {}, "80/tcp": {}}  # the image's and the published one
    assert ours["Config"]["Volumes"] is None
    assert ours["NetworkSettings"]["EndpointID"] == "vec96810d1fdeb"
    assert ours["ResolvConfPath"].endswith("/resolv.conf") and ours["ExecIDs"] is None


def test_tmpfs_mounts_show_in_host_config():
    plan = [{"type": "tmpfs", "target": "/run", "tmpfs_size": 3 << 20, "read_only": False},
            {"type": "tmpfs", "target": "/t", "tmpfs_size": None, "read_only": True},
            {"type": "volume", "target": "/data", "source": "v"}]
    assert compute_inspect(AGENT, {}, mount_plan=plan)["HostConfig"]["Tmpfs"] == {"/run": "size=3M", "/t": "ro"}
    assert "Tmpfs" not in compute_inspect(AGENT, {})["HostConfig"]


def test_list_rows():
    assert compute_ports(AGENT["NetworkSettings"]) == [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 18080, "Type": "tcp"}]
    assert compute_ports({"Ports": {"53/udp": None}}) == [{"PrivatePort": 53, "Type": "udp"}]
    summary = {"Id": AGENT["Id"], "Names": ["/w1"], "Image": "busybox", "ImageID": AGENT["Image"], "Command": "sh -c 'sleep 1000'",
               "Created": 1, "State": "running", "Status": "Up 1 second", "Labels": {}, "Ports": "", "CreatedSince": "x"}
    row = compute_list_row(summary, AGENT["NetworkSettings"], AGENT["Mounts"], AGENT)
    assert set(row) == {"Id", "Names", "Image", "ImageID", "Command", "Created", "Ports", "Labels", "State", "Status", "HostConfig",
                        "NetworkSettings", "Mounts"}
    assert row["HostConfig"] == {"NetworkMode": "default"}
    assert set(row["NetworkSettings"]["Networks"]["bridge"]) >= set(DOCKERD["NetworkSettings"]["Networks"]["bridge"])
