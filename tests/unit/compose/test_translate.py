"""compose's names, labels and create bodies, from stacks loaded by orch.spec (pure: no node)."""

from pathlib import Path

import pytest

from orch.compose import translate as t
from orch.compose.observe import observed_from_records
from orch.errors import InvalidArgument
from orch.spec import load_project


def load(tmp_path: Path, text: str, files: dict | None = None):
    for name, content in (files or {}).items():
        (tmp_path / name).write_text(content)
    (tmp_path / "compose.yaml").write_text("name: p\n" + text)
    return load_project([tmp_path / "compose.yaml"])


def body(project, name, number=1, **kw):
    svc = project.services[name]
    return t.compute_create_body(project, name, svc, number=number, config_hash="h", image=svc.image,
                                 os_environ={"FROM_OS": "yes"}, **kw)


def test_names_labels_environment_and_supervision(tmp_path):
    p = load(tmp_path, """
services:
  web:
    image: busybox
    command: ["httpd", "-f"]
    environment: {A: "1", FROM_OS: null, MISSING: null}
    labels: {tier: front}
    restart: on-failure:4
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    init: true
    healthcheck: {test: ["CMD", "true"], interval: 500ms, retries: 2}
    depends_on: {db: {condition: service_healthy}}
  db: {image: busybox}
""")
    b = body(p, "web", number=2)
    assert b["name"] == "p-web-2" and b["cmd"] == ["httpd", "-f"] and b["init"] is True
    assert b["env"] == ["A=1", "FROM_OS=yes"]
    assert b["labels"]["tier"] == "front"
    assert {k: b["labels"][k] for k in (t.PROJECT, t.SERVICE, t.NUMBER, t.ONEOFF, t.CONFIG_HASH, t.DEPENDS_ON)} == {
        t.PROJECT: "p", t.SERVICE: "web", t.NUMBER: "2", t.ONEOFF: "False", t.CONFIG_HASH: "h",
        t.DEPENDS_ON: "db:service_healthy:false"}
    assert b["restart_policy"] == {"name": "on-failure", "maximum_retry_count": 4}
    assert (b["stop_signal"], b["stop_timeout"]) == ("SIGINT", 90.0)
    assert b["healthcheck"] == {"test": ["CMD", "true"], "interval": 0.5, "retries": 2}


@pytest.mark.parametrize("restart, deploy, expected", [
    (None, None, {"name": "no", "maximum_retry_count": 0}),
    ("always", None, {"name": "always", "maximum_retry_count": 0}),
    ("unless-stopped", None, {"name": "unless-stopped", "maximum_retry_count": 0}),
    ("always", "{condition: on-failure, max_attempts: 2}", {"name": "on-failure", "maximum_retry_count": 2}),
    (None, "{condition: any}", {"name": "always", "maximum_retry_count": 0}),
    (None, "{condition: none}", {"name": "no", "maximum_retry_count": 0}),
    (None, "{condition: none, delay: 2s, max_attempts: 3}", {"name": "no", "maximum_retry_count": 0}),
    (None, "{delay: 1s, max_attempts: 2}", {"name": "always", "maximum_retry_count": 0, "max_attempts": 2, "delay": 1.0}),
    (None, "{condition: on-failure, delay: 500ms, max_attempts: 4, window: 1m}",
     {"name": "on-failure", "maximum_retry_count": 4, "delay": 0.5, "window": 60.0}),
    (None, "{condition: any, window: 10s}", {"name": "always", "maximum_retry_count": 0, "window": 10.0}),
])
def test_restart_policy_table(tmp_path, restart, deploy, expected):
    text = "services:\n  s:\n    image: busybox\n"
    if restart:
        text += f"    restart: {restart}\n"
    if deploy:
        text += f"    deploy: {{restart_policy: {deploy}}}\n"
    assert body(load(tmp_path, text), "s")["restart_policy"] == expected


def test_networks_ports_volumes_secrets_and_configs(tmp_path):
    p = load(tmp_path, """
services:
  web:
    image: busybox
    container_name: front
    ports: ["127.0.0.1:8080:80/udp"]
    networks: {default: null, back: {aliases: [www]}}
    volumes: ["data:/data", "./site:/site:ro", {type: tmpfs, target: /cache}]
    tmpfs: [/run/x]
    secrets: [token]
    configs: [{source: conf, target: /etc/app.conf}]
networks: {back: {}}
volumes: {data: {}}
secrets: {token: {file: ./token.txt}}
configs: {conf: {file: ./app.conf}}
""", files={"token.txt": "s3cret", "app.conf": "x=1"})
    b = body(p, "web")
    assert b["name"] == "front" and body(p, "web", number=2)["name"] == "p-web-2"
    assert b["network_mode"] == "p_default"
    assert b["networks"] == [
        {"name": "p_default", "aliases": ["web", "front"], "ipv4_address": None},
        {"name": "p_back", "aliases": ["web", "front", "www"], "ipv4_address": None},
    ]
    assert b["ports"] == [{"host_ip": "127.0.0.1", "host_port": "8080", "container_port": "80", "protocol": "udp"}]
    kinds = [(m["type"], m["source"].replace(str(tmp_path), "."), m["target"], m["read_only"]) for m in b["mounts"]]
    assert kinds == [
        ("volume", "p_data", "/data", False), ("bind", "./site", "/site", True), ("tmpfs", "", "/cache", False),
        ("tmpfs", "", "/run/x", False), ("bind", "./token.txt", "/run/secrets/token", True),
        ("bind", "./app.conf", "/etc/app.conf", True),
    ]


def test_observed_state_from_records():
    labels = {t.PROJECT: "p", t.SERVICE: "web", t.NUMBER: "3", t.CONFIG_HASH: "abc", t.ONEOFF: "False"}
    rec = {
        "Id": "x1", "Name": "/p-web-3", "Created": "2026-01-01T00:00:00Z", "RestartCount": 2, "StoppedByUser": False,
        "Config": {"Labels": labels}, "HostConfig": {},
        "State": {"Status": "running", "StartedAt": "2026-01-01T00:00:01Z", "FinishedAt": "0001-01-01T00:00:00Z",
                  "Health": {"Status": "healthy", "Log": [
                      {"End": "2026-01-01T00:00:02Z", "ExitCode": 1}, {"End": "2026-01-01T00:00:03Z", "ExitCode": 0},
                      {"End": "2026-01-01T00:00:04Z", "ExitCode": 0}]}},
    }
    c = observed_from_records("p", [rec]).containers[0]
    assert (c.id, c.name, c.service, c.number, c.config_hash, c.state, c.health, c.restart_count) == (
        "x1", "p-web-3", "web", 3, "abc", "running", "healthy", 2)
    assert c.started_at - c.created_at == 1.0 and c.health_changed_at - c.created_at == 3.0
    stopped = dict(rec, StoppedByUser=True, State={"Status": "exited", "ExitCode": 137, "StartedAt": "", "FinishedAt": ""})
    c = observed_from_records("p", [stopped]).containers[0]
    assert (c.state, c.exit_code, c.stopped_by_user, c.health) == ("exited", 137, True, "none")


# -- privileges and limits: cap_add, cap_drop, read_only, privileged, sysctls, ulimits ----------

SECURITY = """
services:
  web:
    image: busybox
    cap_add: [net_admin, CAP_SYS_TIME]
    cap_drop: [NET_RAW]
    read_only: true
    privileged: false
    sysctls: {sysctls}
    ulimits: {{nofile: {{soft: 1024, hard: 2048}}, nproc: 100}}
"""


@pytest.mark.parametrize("sysctls", ["[net.core.somaxconn=1024, kernel.shmmax=65536]", "{net.core.somaxconn: 1024, kernel.shmmax: 65536}"])
def test_security_keys_become_create_fields(tmp_path, sysctls):
    b = body(load(tmp_path, SECURITY.format(sysctls=sysctls)), "web")
    assert (b["cap_add"], b["cap_drop"], b["read_only"]) == (["CAP_NET_ADMIN", "CAP_SYS_TIME"], ["CAP_NET_RAW"], True)
    assert b["sysctls"] == {"net.core.somaxconn": "1024", "kernel.shmmax": "65536"}
    assert b["ulimits"] == [{"name": "nofile", "soft": 1024, "hard": 2048}, {"name": "nproc", "soft": 100, "hard": 100}]
    assert "privileged" not in b


def test_no_security_keys_add_no_fields(tmp_path):
    b = body(load(tmp_path, "services: {web: {image: busybox}}"), "web")
    assert not {"cap_add", "cap_drop", "read_only", "privileged", "sysctls", "ulimits"} & set(b)


@pytest.mark.parametrize("service, message", [
    ("{image: busybox, privileged: true}", "service web: privileged: true is not supported by orch"),
    ("{image: busybox, cap_add: [FLY]}", "invalid service web: cap_add 'FLY': unknown capability CAP_FLY"),
    ("{image: busybox, cap_drop: [nope]}", "invalid service web: cap_drop 'nope'"),
    ("{image: busybox, sysctls: {vm.swappiness: 1}}", "invalid service web: sysctls: sysctl 'vm.swappiness' is not whitelisted"),
    ("{image: busybox, sysctls: [net.core.somaxconn]}", "service web: sysctls.net.core.somaxconn has no value"),
    ("{image: busybox, network_mode: host, sysctls: [net.core.somaxconn=1]}",
     "invalid service web: sysctls: sysctl 'net.core.somaxconn' is not allowed in the host network namespace"),
    ("{image: busybox, ulimits: {nofile: {soft: 3, hard: 2}}}", "invalid service web: ulimits: nofile soft limit must be"),
    ("{image: busybox, ulimits: {files: 3}}", "invalid service web: ulimits: unknown ulimit 'files'"),
])
def test_bad_security_keys_name_the_service(tmp_path, service, message):
    project = load(tmp_path, f"services: {{web: {service}}}")
    with pytest.raises(InvalidArgument) as info:
        body(project, "web")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("change", [
    "cap_add: [NET_ADMIN]", "cap_drop: [NET_RAW]", "read_only: true", "sysctls: {net.core.somaxconn: 1024}",
    "ulimits: {nofile: 1024}",
])
def test_a_changed_security_key_changes_the_config_hash(tmp_path, change):
    from orch.scheduler.desired import compute_config_hash

    base = load(tmp_path, "services: {web: {image: busybox}}").services["web"]
    changed = load(tmp_path, f"services: {{web: {{image: busybox, {change}}}}}").services["web"]
    assert compute_config_hash(base, "sha256:1") != compute_config_hash(changed, "sha256:1")


def test_security_keys_are_not_listed_as_unsupported(tmp_path):
    project = load(tmp_path, SECURITY.format(sysctls="[net.core.somaxconn=1]"))
    assert project.unsupported() == []


def test_network_mode_service_joins_the_given_container(tmp_path):
    p = load(tmp_path, """
services:
  vpn: {image: busybox}
  app: {image: busybox, network_mode: "service:vpn"}
""")
    b = body(p, "app", network_container="c0ffee")
    assert b["network_mode"] == "container:c0ffee" and "networks" not in b
    with pytest.raises(InvalidArgument, match=r"^service app: network_mode service:vpn needs a container of service vpn; "
                                              r"start vpn first \(orch compose up vpn\)$"):
        body(p, "app")


def test_observed_network_container_comes_from_network_mode():
    def rec(mode):
        return {"Id": "x", "Name": "/p-app-1", "Config": {"Labels": {t.SERVICE: "app", t.NUMBER: "1"}},
                "HostConfig": {"NetworkMode": mode}, "State": {"Status": "running"}}

    seen = observed_from_records("p", [rec("container:abc"), rec("p_default"), rec("host")]).containers
    assert [c.network_container for c in seen] == ["abc", None, None]


class _Svc:
    def __init__(self, network_mode=None):
        self.network_mode = network_mode


@pytest.mark.parametrize("name, selected, joiners, waves", [
    ("all: owners first, then who joins them, then who joins those", [], True, [["db", "vpn"], ["app"], ["sidecar"]]),
    ("restart vpn brings app and sidecar after it", ["vpn"], True, [["vpn"], ["app"], ["sidecar"]]),
    ("--no-deps: only what was named", ["vpn"], False, [["vpn"]]),
    ("a joiner alone restarts alone", ["app"], True, [["app"], ["sidecar"]]),
    ("unrelated services", ["db"], True, [["db"]]),
])
def test_compute_network_waves(name, selected, joiners, waves):
    services = {"vpn": _Svc(), "app": _Svc("service:vpn"), "sidecar": _Svc("service:app"), "db": _Svc("host")}
    assert t.compute_network_waves(services, selected, joiners=joiners) == waves, name
