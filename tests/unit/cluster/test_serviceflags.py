"""`orch service create|update` flags -> ServiceSpec JSON, checked against the bodies the docker
CLI 28 sent for the same flags (data/dockercli, see its README)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from orch.cli import serviceflags as sf
from orch.cli import serviceopts as so
from orch.api.args import Parser
from orch.errors import InvalidArgument

DATA = Path(__file__).parent / "data" / "dockercli"


def body(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def create_spec(argv: str, *, environ=None, files=None) -> dict:
    p = Parser(prog="orch service create")
    sf.add_common_flags(p, update=False)
    p.add_argument("image")
    p.add_argument("args", nargs="...")
    words, explicit = sf.split_bools(shlex.split(argv))
    args = p.parse_args(words)
    return sf.spec_from_flags(args, explicit, environ=environ or {}, read_file=lambda path: (files or {})[path])


def update_spec(spec: dict, argv: str, *, environ=None) -> dict:
    p = Parser(prog="orch service update")
    sf.add_common_flags(p, update=True)
    p.add_argument("--image")
    p.add_argument("--args")
    p.add_argument("--force", action="store_true")
    p.add_argument("--rollback", action="store_true")
    p.add_argument("service")
    words, explicit = sf.split_bools(shlex.split(argv) + ["web"])
    return sf.apply_update(spec, p.parse_args(words), explicit, environ=environ or {})


FULL = """-d --no-resolve-image --name web --replicas 3 --constraint node.role==worker --placement-pref spread=node.labels.dc
  --replicas-max-per-node 2 -p 8080:80 -p published=53,target=53,protocol=udp,mode=host --network front -e A=1 --env B=2
  -l svc=x --container-label c=y --mount type=volume,source=data,target=/data,readonly --mount type=tmpfs,target=/tmp,tmpfs-size=1m
  --mount type=bind,src=/srv,dst=/srv --update-parallelism 2 --update-delay 10s --update-failure-action rollback
  --update-monitor 3s --update-max-failure-ratio 0.2 --update-order start-first --rollback-parallelism 0 --rollback-delay 1s
  --limit-cpu 0.5 --limit-memory 64m --limit-pids 100 --reserve-cpu 0.25 --reserve-memory 32m
  --health-cmd 'wget -q -O- localhost' --health-interval 5s --health-retries 2 --health-timeout 1s --health-start-period 3s
  --restart-condition on-failure --restart-delay 2s --restart-max-attempts 4 --restart-window 30s --entrypoint '/bin/sh -c'
  --user 1000:1000 --workdir /app --hostname h1 --init --stop-grace-period 20s --stop-signal SIGINT --cap-add NET_ADMIN
  --cap-drop CHOWN --sysctl net.core.somaxconn=1024 --ulimit nofile=1024:2048 --read-only --log-driver json-file
  --log-opt max-size=10m --dns 1.1.1.1 --host foo:10.0.0.1 -t nginx:1.25 echo hi"""


def test_full_create_is_what_docker_sends():
    expected = body("service-create-full.json")
    expected["TaskTemplate"]["Networks"] = [{"Target": "front"}]  # docker's CLI looked the network's id up; orch sends the name
    assert create_spec(FULL) == expected


@pytest.mark.parametrize("argv, name", [
    ("-d --no-resolve-image busybox top", "service-create-minimal.json"),
    ("-d --no-resolve-image --mode global --name g busybox", "service-create-global.json"),
    ("-d --no-resolve-image --name s2 --no-healthcheck --restart-condition none --update-delay 1m busybox",
     "service-create-restart-nohealth.json"),
])
def test_other_creates_are_what_docker_sends(argv, name):
    assert create_spec(argv) == body(name)


def test_update_is_what_docker_sends():
    """`docker service update --image nginx:1.26 --env-add C=3 --env-rm A --replicas 5 --force web` on the full service."""
    before = body("service-create-full.json")
    after = update_spec(before, "-d --no-resolve-image --image nginx:1.26 --env-add C=3 --env-rm A --replicas 5 --force")
    c = after["TaskTemplate"]["ContainerSpec"]
    assert (c["Image"], c["Env"]) == ("nginx:1.26", ["B=2", "C=3"])
    assert after["Mode"] == {"Replicated": {"Replicas": 5}} and after["TaskTemplate"]["ForceUpdate"] == 1
    # Everything else is as it was (docker's CLI reorders mounts through a map; orch keeps them).
    for key in ("Image", "Env"):
        c.pop(key)
        before["TaskTemplate"]["ContainerSpec"].pop(key)
    for spec in (after, before):
        spec.pop("Mode")
        spec["TaskTemplate"].pop("ForceUpdate")
    assert after == before


def test_update_list_flags():
    spec = create_spec("--name web --constraint node.role==worker --mount type=volume,target=/a --mount type=tmpfs,target=/b "
                       "-p 80:80 -p 443:443 --secret s1 --label a=1 --container-label c=1 --cap-add NET_ADMIN busybox")
    out = update_spec(spec, "--constraint-add node.labels.zone==a --constraint-rm node.role==worker --mount-rm /a "
                            "--mount-add type=bind,src=/srv,dst=/b --publish-rm 443 --publish-add 8080:8080 "
                            "--secret-rm s1 --secret-add source=s2,target=/run/x,mode=0400 --label-rm a --label-add b=2 "
                            "--container-label-add d=2 --cap-drop NET_ADMIN --cap-add SYS_TIME --host-add db:10.0.0.3 "
                            "--dns-add 9.9.9.9 --sysctl-add net.core.somaxconn=512 --ulimit-add nproc=10")
    t, c = out["TaskTemplate"], out["TaskTemplate"]["ContainerSpec"]
    assert t["Placement"]["Constraints"] == ["node.labels.zone==a"]
    assert c["Mounts"] == [{"Type": "bind", "Source": "/srv", "Target": "/b"}]
    assert [(p["PublishedPort"], p["TargetPort"]) for p in out["EndpointSpec"]["Ports"]] == [(80, 80), (8080, 8080)]
    assert c["Secrets"] == [{"File": {"Name": "/run/x", "UID": "0", "GID": "0", "Mode": 0o400}, "SecretName": "s2"}]
    assert out["Labels"] == {"b": "2"} and c["Labels"] == {"c": "1", "d": "2"}
    assert c["CapabilityAdd"] == ["CAP_SYS_TIME"] and "CapabilityDrop" not in c  # docker's tri-state
    assert c["Hosts"] == ["10.0.0.3 db"] and c["DNSConfig"] == {"Nameservers": ["9.9.9.9"]}
    assert c["Sysctls"] == {"net.core.somaxconn": "512"} and c["Ulimits"] == [{"Name": "nproc", "Hard": 10, "Soft": 10}]


def test_update_configs_keep_what_is_not_given():
    spec = create_spec("--name web --update-parallelism 3 --update-order start-first busybox")
    out = update_spec(spec, "--update-delay 2s --rollback-monitor 9s --restart-max-attempts 3 --init=false --read-only")
    assert out["UpdateConfig"] == {"Parallelism": 3, "Delay": 2_000_000_000, "FailureAction": "pause", "Monitor": 5_000_000_000,
                                   "MaxFailureRatio": 0, "Order": "start-first"}
    assert out["RollbackConfig"]["Monitor"] == 9_000_000_000
    assert out["TaskTemplate"]["RestartPolicy"] == {"Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 3}
    c = out["TaskTemplate"]["ContainerSpec"]
    assert c["Init"] is False and c["ReadOnly"] is True
    assert update_spec(spec, "") == spec  # no flag, no change


@pytest.mark.parametrize("text, ns", [("10s", 10_000_000_000), ("1m30s", 90_000_000_000), ("500ms", 500_000_000), ("0", 0),
                                      ("1.5h", 5_400_000_000_000), ("2us", 2_000), ("1h2m3s", 3_723_000_000_000)])
def test_go_durations(text, ns):
    assert so.parse_duration(text, "--update-delay") == ns


@pytest.mark.parametrize("text, size", [("64m", 64 << 20), ("1g", 1 << 30), ("512", 512), ("1.5k", 1536), ("2GiB", 2 << 30),
                                        ("10MB", 10 << 20)])
def test_sizes_are_rams_in_bytes(text, size):
    assert so.parse_bytes(text, "--limit-memory") == size


@pytest.mark.parametrize("text, ports", [
    ("8080:80", [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}]),
    ("80", [{"Protocol": "tcp", "TargetPort": 80, "PublishMode": "ingress"}]),
    ("53:53/udp", [{"Protocol": "udp", "TargetPort": 53, "PublishedPort": 53, "PublishMode": "ingress"}]),
    ("8080-8081:80-81", [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
                         {"Protocol": "tcp", "TargetPort": 81, "PublishedPort": 8081, "PublishMode": "ingress"}]),
    ("target=80,published=8080,mode=host", [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "host"}]),
])
def test_publish(text, ports):
    assert so.parse_publish(text) == ports


def test_mounts_secrets_env_and_images():
    assert so.parse_mount("type=volume,src=v,dst=/v,volume-label=a=b,volume-nocopy,volume-driver=local,volume-opt=o=1") == {
        "Type": "volume", "Source": "v", "Target": "/v",
        "VolumeOptions": {"Labels": {"a": "b"}, "NoCopy": True, "DriverConfig": {"Name": "local", "Options": {"o": "1"}}}}
    assert so.parse_mount("type=tmpfs,dst=/t,tmpfs-mode=1770") == {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": 0o1770}}
    assert so.parse_file_ref("db_pass", "secret") == {"File": {"Name": "db_pass", "UID": "0", "GID": "0", "Mode": 0o444},
                                                      "SecretName": "db_pass"}
    spec = create_spec("--name e --env-file vars.env -e FROM_HERE -e MISSING -e X=1 busybox",
                       environ={"FROM_HERE": "yes"}, files={"vars.env": "# comment\nA=1\n\nB=two words\n"})
    assert spec["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=1", "B=two words", "FROM_HERE=yes", "MISSING", "X=1"]
    assert so.normalize_image("localhost:5000/app") == "localhost:5000/app:latest"
    assert so.normalize_image("app@sha256:abc") == "app@sha256:abc" and so.normalize_image("app:1") == "app:1"


@pytest.mark.parametrize("argv, message", [
    ("--mode global --replicas 2 busybox", "replicas can only be used with replicated mode"),
    ("--no-healthcheck --health-cmd true busybox", "--no-healthcheck conflicts with --health-* options"),
    ("--update-delay 10 busybox", 'invalid argument "10" for "--update-delay" flag: time: invalid duration'),
    ("--limit-memory lots busybox", 'invalid argument "lots" for "--limit-memory" flag: invalid size'),
    ("--limit-cpu half busybox", 'invalid argument "half" for "--limit-cpu" flag'),
    ("-p 1.2.3.4:80:80 busybox", "hostip is not supported"),
    ("-p published=80 busybox", 'missing mandatory field "target"'),
    ("--mount type=bind,dst=/x busybox", "source is required when specifying a bind mount"),
    ("--mount type=npipe,dst=/x busybox", "mounts of type npipe are not supported"),
    ("--mount src=v busybox", "target is required"),
    ("--placement-pref pack=x busybox", "only spread is supported"),
    ("--ulimit nofile busybox", "write NAME=SOFT[:HARD]"),
    ("--update-max-failure-ratio 2 busybox", "give a ratio between 0 and 1"),
    ("--init=maybe busybox", 'invalid argument "maybe" for "--init" flag'),
    ("--health-interval 10us busybox", "--health-interval cannot be less than 1ms"),
    ("--log-opt a=b busybox", "--log-opt needs --log-driver"),
])
def test_flag_mistakes_are_one_line(argv, message):
    with pytest.raises(InvalidArgument) as err:
        create_spec(argv)
    assert message in str(err.value) and "\n" not in str(err.value)
