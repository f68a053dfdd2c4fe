"""docker's container create body as orch's create request (orch/dockerapi/createbody.py):
the docker CLI 28's own body (captured from `docker create` with many flags), then one table
of fields, warnings and refusals."""

import json
from pathlib import Path

import pytest

from orch.api.models import CreateRequest
from orch.dockerapi.createbody import compute_create_request
from orch.errors import InvalidArgument

DATA = Path(__file__).resolve().parents[2] / "data" / "dockerapi"


def test_the_docker_clis_body_for_many_flags():
    body = json.loads((DATA / "cli28-create.json").read_text())
    fields, warnings = compute_create_request(body, "capt")
    assert warnings == []
    req = CreateRequest.model_validate(fields)  # orch's own checks of the fields pass
    assert req.name == "capt" and req.image == "busybox" and req.cmd == ["sh"]
    assert req.tty and req.open_stdin and req.env == ["A=1"]
    assert [p.model_dump() for p in req.ports] == [{"host_ip": "127.0.0.1", "host_port": "8080", "container_port": "80", "protocol": "tcp"}]
    mounts = {m.target: m.model_dump() for m in req.mounts}
    assert mounts["/data"]["type"] == "bind" and mounts["/data"]["source"] == "/tmp" and mounts["/data"]["read_only"]
    assert mounts["/run"]["type"] == "tmpfs" and mounts["/run"]["tmpfs_size"] == 64 << 20
    assert req.restart_policy.name == "on-failure" and req.restart_policy.maximum_retry_count == 3
    assert req.cap_add == ["CAP_NET_ADMIN"] and req.init and req.labels == {"k": "v"}
    assert req.memory == 64 << 20 and req.nano_cpus == 500_000_000
    assert req.healthcheck.test == ["CMD-SHELL", "true"] and req.healthcheck.interval == 5.0
    assert req.network is None and req.networks == []  # the CLI's "default" endpoint is the default network


def check(body: dict, expected: dict, warns: tuple[str, ...] = ()):
    fields, warnings = compute_create_request(dict({"Image": "busybox"}, **body))
    for key, value in expected.items():
        assert fields.get(key) == value, (key, fields.get(key))
    assert len(warnings) == len(warns) and all(w in text for w, text in zip(warns, warnings)), warnings


@pytest.mark.parametrize("body, expected, warns", [
    ({"Cmd": "true"}, {"cmd": ["true"]}, ()),  # docker's StrSlice: one string
    ({"Entrypoint": [""]}, {"entrypoint": []}, ()),  # --entrypoint "": none at all
    ({"Env": None}, {"env": []}, ()),
    ({"NetworkDisabled": True}, {"network": "none"}, ()),
    ({"HostConfig": {"NetworkMode": "host"}}, {"network": "host"}, ()),
    ({"HostConfig": {"NetworkMode": "default"}}, {"network": None}, ()),
    ({"HostConfig": {"NetworkMode": "mynet"}, "NetworkingConfig": {"EndpointsConfig": {"mynet": {"Aliases": ["web"]}}}},
     {"network": "mynet", "networks": [{"name": "mynet", "aliases": ["web"], "ipv4_address": None}]}, ()),
    ({"HostConfig": {"PortBindings": {"53/udp": [{"HostIp": "", "HostPort": "5353"}], "80/tcp": None}}},
     {"ports": [{"host_ip": "", "host_port": "5353", "container_port": "53", "protocol": "udp"},
                {"host_ip": "", "host_port": "", "container_port": "80", "protocol": "tcp"}]}, ()),
    ({"Volumes": {"/data": {}}}, {"mounts": [{"type": "volume", "source": "", "target": "/data"}]}, ()),
    ({"Volumes": {"/data": {}}, "HostConfig": {"Binds": ["v1:/data"]}},
     {"mounts": [{"type": "volume", "source": "v1", "target": "/data", "read_only": False, "nocopy": False}]}, ()),
    ({"HostConfig": {"Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1024}}]}},
     {"mounts": [{"type": "tmpfs", "source": "", "target": "/t", "read_only": False, "tmpfs_size": 1024}]}, ()),
    ({"HostConfig": {"PidsLimit": -1, "Memory": 0, "MemorySwap": 0}}, {"pids_limit": None, "memory": None}, ()),
    ({"HostConfig": {"CpuQuota": 50000, "CpuPeriod": 100000}}, {"nano_cpus": 500_000_000}, ()),
    ({"Healthcheck": {"Test": ["NONE"]}}, {"healthcheck": {"test": ["NONE"]}}, ()),
    ({"Healthcheck": {"Test": []}}, {"healthcheck": None}, ()),  # empty: the image's
    ({"HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}}},
     {"log_max_size": 1 << 20, "log_max_file": 2}, ()),
    ({"HostConfig": {"CpuShares": 512}}, {}, ("HostConfig.CpuShares",)),
    ({"HostConfig": {"ShmSize": 128 << 20}}, {}, ("ShmSize",)),
    ({"HostConfig": {"ShmSize": 64 << 20, "MemorySwappiness": -1, "OomKillDisable": False}}, {}, ()),
    ({"HostConfig": {"LogConfig": {"Type": "none"}}}, {}, ("log driver 'none'",)),
    ({"Domainname": "example.org"}, {}, ("Domainname",)),
])
def test_fields_and_warnings(body, expected, warns):
    check(body, expected, warns)


@pytest.mark.parametrize("body, words", [
    ({"Image": ""}, "Config.Image is empty"),
    ({"HostConfig": {"Devices": [{"PathOnHost": "/dev/fuse"}]}}, "HostConfig.Devices"),
    ({"HostConfig": {"GroupAdd": ["10"]}}, "HostConfig.GroupAdd"),
    ({"HostConfig": {"Links": ["a:b"]}}, "legacy links"),
    ({"HostConfig": {"MaskedPaths": []}}, "MaskedPaths"),
    ({"HostConfig": {"Runtime": "kata"}}, "Runtime 'kata'"),
    ({"HostConfig": {"LogConfig": {"Type": "syslog"}}}, "no log driver named 'syslog'"),
    ({"HostConfig": {"LogConfig": {"Config": {"labels": "x"}}}}, "unknown log option"),
    ({"HostConfig": {"Mounts": [{"Type": "volume", "Source": "v", "Target": "/t", "VolumeOptions": {"Subpath": "a"}}]}}, "subpath"),
    ({"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/x", "Target": "/t", "BindOptions": {"Propagation": "rshared"}}]}},
     "propagation"),
    ({"HostConfig": {"Mounts": [{"Type": "npipe", "Target": "/t"}]}}, "type 'npipe'"),
    ({"MacAddress": "02:42:ac:11:00:02"}, "MAC"),
    ({"HostConfig": {"NetworkMode": "none"}, "NetworkingConfig": {"EndpointsConfig": {"none": {"Aliases": ["x"]}}}},
     "aliases and addresses need a network"),
    ({"Cmd": [1]}, "Config.Cmd must be a list of strings"),
    # an endpoint's settings orch does not apply (docker-py's tests send them)
    ({"NetworkingConfig": {"EndpointsConfig": {"n": {"IPAMConfig": {"LinkLocalIPs": ["169.254.8.8"]}}}}},
     "NetworkingConfig.EndpointsConfig.n.IPAMConfig.LinkLocalIPs"),
    ({"NetworkingConfig": {"EndpointsConfig": {"n": {"IPAMConfig": {"IPv6Address": "2001:db8::33"}}}}},
     "NetworkingConfig.EndpointsConfig.n.IPAMConfig.IPv6Address"),
    ({"NetworkingConfig": {"EndpointsConfig": {"n": {"Links": ["a:b"]}}}}, "NetworkingConfig.EndpointsConfig.n.Links"),
])
def test_refusals_name_the_field(body, words):
    with pytest.raises(InvalidArgument) as err:
        compute_create_request(dict({"Image": "busybox"}, **body))
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_keys_match_whatever_their_case_as_gos_json_does():
    fields, _ = compute_create_request({"image": "busybox", "cmd": ["true"], "hostConfig": {"autoRemove": True}})
    assert fields["image"] == "busybox" and fields["cmd"] == ["true"] and fields["auto_remove"] is True


def test_a_body_that_is_no_object_is_one_line():
    with pytest.raises(InvalidArgument, match="JSON object"):
        compute_create_request(["busybox"])
