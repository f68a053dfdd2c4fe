"""Normalization of a service: short and long syntax become one canonical model."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from orch.spec.models import Service
from orch.spec.yamltree import parse_yaml, to_plain

PROJECT = Path("/srv/proj")
SCHEMA = Path(__file__).parents[2] / "data" / "compose" / "compose-spec.json"


def service(text: str) -> Service:
    return Service.model_validate(to_plain(parse_yaml(text, "t.yml")[0]), context={"project_dir": PROJECT})


def dumped(text: str, key: str):
    return service(text).model_dump(mode="json", exclude_unset=True).get(key)


PORTS = [
    ("ports: ['80']", [{"target": 80, "protocol": "tcp", "mode": "ingress"}]),
    ("ports: [80]", [{"target": 80, "protocol": "tcp", "mode": "ingress"}]),
    ("ports: ['8080:80']", [{"target": 80, "published": "8080", "protocol": "tcp", "mode": "ingress"}]),
    ("ports: [8080:80]", [{"target": 80, "published": "8080", "protocol": "tcp", "mode": "ingress"}]),
    ("ports: ['127.0.0.1:8080:80/udp']", [{"target": 80, "published": "8080", "host_ip": "127.0.0.1", "protocol": "udp", "mode": "ingress"}]),
    ("ports: ['127.0.0.1::80']", [{"target": 80, "host_ip": "127.0.0.1", "protocol": "tcp", "mode": "ingress"}]),
    ("ports: ['[::1]:8080:80']", [{"target": 80, "published": "8080", "host_ip": "::1", "protocol": "tcp", "mode": "ingress"}]),
    ("ports: ['::1:8080:80']", [{"target": 80, "published": "8080", "host_ip": "::1", "protocol": "tcp", "mode": "ingress"}]),
    ("ports: ['8000-8005:80']", [{"target": 80, "published": "8000-8005", "protocol": "tcp", "mode": "ingress"}]),
    (
        "ports: ['3000-3001:4000-4001/sctp']",
        [
            {"target": 4000, "published": "3000", "protocol": "sctp", "mode": "ingress"},
            {"target": 4001, "published": "3001", "protocol": "sctp", "mode": "ingress"},
        ],
    ),
    ("ports: ['9000-9001']", [{"target": 9000, "protocol": "tcp", "mode": "ingress"}, {"target": 9001, "protocol": "tcp", "mode": "ingress"}]),
    (
        "ports: [{target: 80, published: 8080, host_ip: 0.0.0.0, mode: host, name: web, app_protocol: http}]",
        [{"target": 80, "published": "8080", "host_ip": "0.0.0.0", "protocol": "tcp", "mode": "host", "name": "web", "app_protocol": "http"}],
    ),
    ("ports: [{target: '80', published: '8000-8001', protocol: udp}]", [{"target": 80, "published": "8000-8001", "protocol": "udp", "mode": "ingress"}]),
]


@pytest.mark.parametrize("text, expected", PORTS)
def test_ports(text, expected):
    assert dumped("image: x\n" + text, "ports") == expected


VOLUMES = [
    ("volumes: ['data:/var/lib/data']", {"type": "volume", "source": "data", "target": "/var/lib/data", "volume": {}}),
    ("volumes: ['data:/d:ro']", {"type": "volume", "source": "data", "target": "/d", "read_only": True, "volume": {}}),
    ("volumes: ['data:/d:rw,nocopy']", {"type": "volume", "source": "data", "target": "/d", "volume": {"nocopy": True}}),
    ("volumes: ['/cache']", {"type": "volume", "target": "/cache", "volume": {}}),
    ("volumes: ['./src:/app']", {"type": "bind", "source": "/srv/proj/src", "target": "/app", "bind": {"create_host_path": True}}),
    ("volumes: ['../up:/app:ro,z']", {"type": "bind", "source": "/srv/up", "target": "/app", "read_only": True, "bind": {"create_host_path": True, "selinux": "z"}}),
    ("volumes: ['/etc/hosts:/h:ro,rslave']", {"type": "bind", "source": "/etc/hosts", "target": "/h", "read_only": True, "bind": {"create_host_path": True, "propagation": "rslave"}}),
    ("volumes: [{type: bind, source: ./conf, target: /conf, read_only: true}]", {"type": "bind", "source": "/srv/proj/conf", "target": "/conf", "read_only": True}),
    ("volumes: [{type: volume, source: v, target: /v, volume: {nocopy: true, subpath: sub}}]", {"type": "volume", "source": "v", "target": "/v", "volume": {"nocopy": True, "subpath": "sub"}}),
    ("volumes: [{type: tmpfs, target: /tmp, tmpfs: {size: 64m, mode: 1777}}]", {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": str(64 << 20), "mode": 1777}}),
]


@pytest.mark.parametrize("text, expected", VOLUMES)
def test_volumes(text, expected):
    assert dumped("image: x\n" + text, "volumes") == [expected]


def test_tmpfs_size_is_bytes_in_the_model():
    mount = service("image: x\nvolumes: [{type: tmpfs, target: /t, tmpfs: {size: 1g}}]").volumes[0]
    assert mount.tmpfs.size == 1 << 30


NORMALIZED = [
    ("command: echo 'hello world' $HOME", "command", ["echo", "hello world", "$HOME"]),
    ("command: [sh, -c, 'exit 0']", "command", ["sh", "-c", "exit 0"]),
    ("command: [sleep, 10]", "command", ["sleep", "10"]),
    ("entrypoint: /bin/sh -c", "entrypoint", ["/bin/sh", "-c"]),
    ("environment: [A=1, B=, C, D=x=y]", "environment", {"A": "1", "B": "", "C": None, "D": "x=y"}),
    ("environment: {A: 1, B: true, C: null, D: 1.5, E: ''}", "environment", {"A": "1", "B": "true", "C": None, "D": "1.5", "E": ""}),
    ("labels: [a=1, b]", "labels", {"a": "1", "b": ""}),
    ("labels: {com.example.x: yes}", "labels", {"com.example.x": "yes"}),
    ("depends_on: [db, cache]", "depends_on", {"db": {"condition": "service_started", "required": True}, "cache": {"condition": "service_started", "required": True}}),
    (
        "depends_on: {db: {condition: service_healthy, restart: true}, job: {condition: service_completed_successfully, required: false}}",
        "depends_on",
        {"db": {"condition": "service_healthy", "restart": True, "required": True}, "job": {"condition": "service_completed_successfully", "required": False}},
    ),
    ("networks: [front, back]", "networks", {"front": None, "back": None}),
    ("networks: {front: {aliases: [www], ipv4_address: 10.0.0.5}, back: null}", "networks", {"front": {"aliases": ["www"], "ipv4_address": "10.0.0.5"}, "back": None}),
    ("healthcheck: {test: curl -f http://x/}", "healthcheck", {"test": ["CMD-SHELL", "curl -f http://x/"]}),
    ("healthcheck: {test: [CMD, curl, x], interval: 1m30s, timeout: 10s, retries: 3, start_period: 40s, start_interval: 500ms}", "healthcheck", {"test": ["CMD", "curl", "x"], "interval": "1m30s", "timeout": "10s", "retries": 3, "start_period": "40s", "start_interval": "500ms"}),
    ("healthcheck: {test: [NONE]}", "healthcheck", {"test": ["NONE"]}),
    ("healthcheck: {disable: true}", "healthcheck", {"disable": True}),
    ("build: ./app", "build", {"context": "/srv/proj/app"}),
    ("build: {context: ., dockerfile: Dockerfile.dev, args: [A=1, B], target: dev}", "build", {"context": "/srv/proj", "dockerfile": "Dockerfile.dev", "args": {"A": "1", "B": None}, "target": "dev"}),
    ("build: {context: 'https://github.com/x/y.git#main'}", "build", {"context": "https://github.com/x/y.git#main"}),
    ("build: {args: {V: 1.2}}", "build", {"context": "/srv/proj", "args": {"V": "1.2"}}),
    ("env_file: .env.web", "env_file", [{"path": "/srv/proj/.env.web"}]),
    ("env_file: [a.env, {path: b.env, required: false}]", "env_file", [{"path": "/srv/proj/a.env"}, {"path": "/srv/proj/b.env", "required": False}]),
    ("expose: [80, '443/tcp', 3000-3005]", "expose", ["80", "443/tcp", "3000-3005"]),
    ("tmpfs: /run", "tmpfs", ["/run"]),
    ("dns: 8.8.8.8", "dns", ["8.8.8.8"]),
    ("cap_add: [NET_ADMIN]", "cap_add", ["NET_ADMIN"]),
    ("ulimits: {nproc: 65535, nofile: {soft: 20000, hard: 40000}}", "ulimits", {"nproc": {"soft": 65535, "hard": 65535}, "nofile": {"soft": 20000, "hard": 40000}}),
    ("sysctls: [net.core.somaxconn=1024]", "sysctls", {"net.core.somaxconn": "1024"}),
    ("sysctls: {net.ipv4.ip_forward: 1}", "sysctls", {"net.ipv4.ip_forward": "1"}),
    ("extra_hosts: ['db:10.0.0.2', 'v6=::1', 'gw:host-gateway']", "extra_hosts", {"db": ["10.0.0.2"], "v6": ["::1"], "gw": ["host-gateway"]}),
    ("extra_hosts: {db: 10.0.0.2, multi: [10.0.0.3, '::1']}", "extra_hosts", {"db": ["10.0.0.2"], "multi": ["10.0.0.3", "::1"]}),
    ("restart: on-failure:3", "restart", "on-failure:3"),
    ("restart: 'no'", "restart", "no"),
    ("stop_grace_period: 1m30s", "stop_grace_period", "1m30s"),
    ("user: 1000", "user", "1000"),
    ("secrets: [db_pass, {source: api, target: /run/key, uid: '103', gid: 103, mode: 0440}]", "secrets", [{"source": "db_pass"}, {"source": "api", "target": "/run/key", "uid": "103", "gid": "103", "mode": 0o440}]),
    ("profiles: [debug]", "profiles", ["debug"]),
    (
        "deploy: {mode: replicated, replicas: 3, resources: {limits: {cpus: '0.5', memory: 512m, pids: 100}, reservations: {memory: 1g}},"
        " restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m},"
        " update_config: {parallelism: 2, delay: 10s, order: start-first, failure_action: rollback, monitor: 1m, max_failure_ratio: 0.1},"
        " rollback_config: {parallelism: 0}, placement: {constraints: [node.role == manager], preferences: [{spread: node.labels.zone}]}}",
        "deploy",
        {
            "mode": "replicated",
            "replicas": 3,
            "resources": {"limits": {"cpus": 0.5, "memory": str(512 << 20), "pids": 100}, "reservations": {"memory": str(1 << 30)}},
            "restart_policy": {"condition": "on-failure", "delay": "5s", "max_attempts": 3, "window": "2m0s"},
            "update_config": {"parallelism": 2, "delay": "10s", "order": "start-first", "failure_action": "rollback", "monitor": "1m0s", "max_failure_ratio": 0.1},
            "rollback_config": {"parallelism": 0},
            "placement": {"constraints": ["node.role == manager"], "preferences": [{"spread": "node.labels.zone"}]},
        },
    ),
]


@pytest.mark.parametrize("text, key, expected", NORMALIZED)
def test_normalization(text, key, expected):
    assert dumped("image: x\n" + text, key) == expected


def test_model_values_are_typed_for_the_runtime():
    svc = service(
        "image: x\nhealthcheck: {test: [CMD, x], interval: 1m30s, start_interval: 500ms}\n"
        "deploy: {resources: {limits: {memory: 512m, cpus: 1.5}}}\nstop_grace_period: 10s\n"
        "depends_on: [db]\nlinks: ['db:database']\nvolumes_from: ['db:ro']\nnetwork_mode: service:db\n"
    )
    assert svc.healthcheck.interval == 90.0 and svc.healthcheck.start_interval == 0.5
    assert svc.deploy.resources.limits.memory == 512 << 20 and svc.deploy.resources.limits.cpus == 1.5
    assert svc.stop_grace_period == 10.0
    assert svc.depends_on["db"].condition == "service_started" and svc.depends_on["db"].required is True
    assert svc.depends_on["db"].restart is False
    assert svc.links == ["db:database"] and svc.volumes_from == ["db:ro"] and svc.network_mode == "service:db"


def test_extensions_are_kept_where_the_spec_allows_them():
    svc = service("image: x\nx-owner: team-a\nports: [{target: 80, x-note: n}]\nhealthcheck: {test: [NONE], x-h: 1}")
    assert svc.extensions == {"x-owner": "team-a"}
    out = svc.model_dump(mode="json", exclude_unset=True)
    assert out["x-owner"] == "team-a" and out["ports"][0]["x-note"] == "n" and out["healthcheck"]["x-h"] == 1


def schema_service_properties() -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    return sorted(schema["definitions"]["service"]["properties"])


@pytest.mark.parametrize("key", schema_service_properties())
def test_every_service_key_of_the_schema_is_a_field(key):
    assert key in Service.model_fields


def test_the_schema_and_the_model_agree_in_both_directions():
    fields = set(Service.model_fields) - {"extensions"}
    assert fields == set(schema_service_properties())


@pytest.mark.parametrize(
    "text, location",
    [
        ("ports: ['80:abc']", ("ports", 0)),
        ("ports: ['1.2.3:80:80']", ("ports", 0)),
        ("ports: ['80/icmp']", ("ports", 0)),
        ("ports: ['3000-3002:80-81']", ("ports", 0)),
        ("ports: [{target: 0}]", ("ports", 0, "target")),
        ("volumes: ['v:relative']", ("volumes", 0)),
        ("volumes: ['v:/d:bogus']", ("volumes", 0)),
        ("volumes: [{type: nfs, target: /x}]", ("volumes", 0, "type")),
        ("healthcheck: {test: [curl]}", ("healthcheck", "test")),
        ("depends_on: {db: {condition: service_ready}}", ("depends_on", "db", "condition")),
        ("restart: sometimes", ("restart",)),
        ("environment: {A: [1]}", ("environment",)),
        ("command: \"echo 'unclosed\"", ("command",)),
        ("extra_hosts: ['nohost']", ("extra_hosts",)),
        ("extra_hosts: ['h:999.1.1.1']", ("extra_hosts",)),
        ("deploy: {replicas: -1}", ("deploy", "replicas")),
        ("deploy: {mode: everywhere}", ("deploy", "mode")),
        ("scale: many", ("scale",)),
        ("privileged: perhaps", ("privileged",)),
    ],
)
def test_invalid_values_fail_at_their_location(text, location):
    with pytest.raises(ValidationError) as info:
        service("image: x\n" + text)
    assert [e["loc"] for e in info.value.errors()] == [location]
