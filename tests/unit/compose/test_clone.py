"""A rollback's create body from an old container's inspect record (pure)."""

from orch.compose import translate as t
from orch.compose.clone import clone_body


def test_clone_body_copies_what_the_record_keeps():
    record = {
        "Image": "sha256:abc",
        "Config": {"Env": ["V=1", "PATH=/bin"], "Cmd": ["httpd", "-f"], "Entrypoint": None, "Tty": False,
                   "Labels": {t.SERVICE: "web", t.NUMBER: "2", t.CONFIG_HASH: "old"}, "StopSignal": "SIGINT", "StopTimeout": 3,
                   "Healthcheck": {"Test": ["CMD", "true"], "Interval": 500_000_000, "Retries": 4}},
        "HostConfig": {"NetworkMode": "p_default", "Init": True, "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
                       "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}},
        "NetworkSettings": {"Networks": {"p_back": {}, "p_default": {}}},
        "Mounts": [{"Type": "volume", "Name": "p_data", "Source": "/var/lib/x", "Destination": "/data", "RW": True},
                   {"Type": "bind", "Source": "/etc/x", "Destination": "/x", "RW": False}],
    }
    b = clone_body(record, name="p-web-5", number=5)
    assert (b["image"], b["name"], b["cmd"], b["env"], b["init"]) == ("sha256:abc", "p-web-5", ["httpd", "-f"], ["V=1", "PATH=/bin"], True)
    assert b["labels"][t.NUMBER] == "5" and b["labels"][t.CONFIG_HASH] == "old"
    assert b["healthcheck"] == {"test": ["CMD", "true"], "interval": 0.5, "retries": 4}
    assert (b["stop_signal"], b["stop_timeout"], b["restart_policy"]["name"]) == ("SIGINT", 3, "always")
    assert [n["name"] for n in b["networks"]] == ["p_default", "p_back"] and b["networks"][0]["aliases"] == ["web", "p-web-5"]
    assert b["ports"] == [{"host_ip": "127.0.0.1", "host_port": "8080", "container_port": "80", "protocol": "tcp"}]
    assert b["mounts"] == [{"type": "volume", "source": "p_data", "target": "/data", "read_only": False},
                           {"type": "bind", "source": "/etc/x", "target": "/x", "read_only": True}]


def test_clone_body_copies_privileges_and_limits():
    record = {"Image": "sha256:abc", "Config": {"Labels": {}},
              "HostConfig": {"NetworkMode": "none", "CapAdd": ["CAP_NET_ADMIN"], "CapDrop": ["CAP_NET_RAW"], "Privileged": False,
                             "ReadonlyRootfs": True, "Sysctls": {"net.core.somaxconn": "9"},
                             "Ulimits": [{"Name": "nofile", "Hard": 20, "Soft": 10}]}}
    b = clone_body(record, name="p-web-1", number=1)
    assert {k: b[k] for k in ("cap_add", "cap_drop", "read_only", "sysctls", "ulimits")} == {
        "cap_add": ["CAP_NET_ADMIN"], "cap_drop": ["CAP_NET_RAW"], "read_only": True, "sysctls": {"net.core.somaxconn": "9"},
        "ulimits": [{"name": "nofile", "soft": 10, "hard": 20}]}
    plain = clone_body({"Image": "x", "Config": {}, "HostConfig": {"CapAdd": None, "Ulimits": None, "ReadonlyRootfs": False}}, name="n", number=1)
    assert not {"cap_add", "cap_drop", "read_only", "sysctls", "ulimits"} & set(plain)
