"""`stack deploy`'s translation, from real compose files (examples/stacks and small files
written here) through orch.spec to the cluster's specs; and the example stacks deployed on a
FakeCluster, where depends_on holds across nodes."""

from pathlib import Path

import pytest

from orch.cluster.records import Network, NetworkSpec, Service, TaskState, new_id
from orch.cluster.stackspec import IMAGE, NAMESPACE, translate_stack
from orch.errors import InvalidArgument
from orch.scheduler.fakecluster import FakeCluster, node, run_cluster
from orch.spec import load_project

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "stacks"


def deploy(path: Path, name: str, **kw):
    return translate_stack(load_project([path], project_name=name, environ={}), **kw)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    return path


def test_hello():
    stack = deploy(EXAMPLES / "hello" / "compose.yaml", "hi")
    (web,) = stack.services
    assert web.name == "hi_web" and web.mode == "replicated" and web.replicas == 1
    assert web.labels == {NAMESPACE: "hi", IMAGE: "busybox:latest"}
    c = web.task_template.container_spec
    assert c.image == "busybox:latest" and c.args[:2] == ["sh", "-c"] and c.command is None
    assert c.labels == {NAMESPACE: "hi"}
    assert [(m.type, m.target) for m in c.mounts] == [("tmpfs", "/www")]
    assert c.healthcheck.test == ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
    assert (c.healthcheck.interval, c.healthcheck.timeout, c.healthcheck.retries) == (5.0, 2.0, 3)
    assert web.task_template.restart_policy.condition == "any"  # restart: unless-stopped
    (port,) = web.endpoint_spec.ports
    assert (port.target_port, port.published_port, port.publish_mode, port.protocol) == (8080, 8080, "ingress", "tcp")
    assert [(n.target, n.aliases) for n in web.task_template.networks] == [("hi_default", ["web"])]
    (net,) = stack.networks
    assert (net.name, net.driver, net.labels) == ("hi_default", "overlay", {NAMESPACE: "hi"})
    assert stack.warnings == ()


def test_replicated():
    stack = deploy(EXAMPLES / "replicated" / "compose.yaml", "rep")
    app, proxy = stack.services
    assert (app.name, app.replicas) == ("rep_app", 3)
    u = app.update_config
    assert (u.parallelism, u.delay, u.order, u.failure_action, u.monitor) == (1, 1.0, "start-first", "rollback", 5.0)
    c = app.task_template.container_spec
    assert c.init is True and c.env == ["VERSION=1"]
    assert proxy.depends_on["rep_app"].condition == "service_healthy"  # honoured across the cluster
    assert [p.published_port for p in proxy.endpoint_spec.ports] == [8081]


def test_webapp_ignores_build_beside_an_image_and_keeps_volumes_and_dependencies():
    stack = deploy(EXAMPLES / "webapp" / "compose.yaml", "webapp")
    by = {s.name: s for s in stack.services}
    assert set(by) == {"webapp_web", "webapp_worker", "webapp_redis"}
    assert by["webapp_web"].task_template.container_spec.image == "webapp-web:latest"
    redis = by["webapp_redis"].task_template.container_spec
    assert [(m.type, m.source, m.target) for m in redis.mounts] == [("volume", "webapp_redis-data", "/data")]
    assert by["webapp_redis"].task_template.restart_policy.condition == "any"  # restart: always
    assert by["webapp_worker"].task_template.restart_policy.condition == "on-failure"
    assert {k: d.condition for k, d in by["webapp_worker"].depends_on.items()} == {
        "webapp_redis": "service_healthy", "webapp_web": "service_started"}
    assert stack.warnings == (
        "service redis: ignoring what a stack does not support: build",
        "service web: ignoring what a stack does not support: build",
    )


def test_a_service_with_only_build_is_refused_in_one_line(tmp_path):
    path = write(tmp_path, "services:\n  web:\n    build: .\n")
    with pytest.raises(InvalidArgument) as err:
        deploy(path, "s")
    assert str(err.value) == (
        "stack s: service web: has only build: and a stack cannot build; build the image, push it to a registry "
        "(orch build -t REGISTRY/IMAGE . && orch push REGISTRY/IMAGE) and name it in image:"
    )


FULL = """
services:
  api:
    image: registry.example/api:2
    entrypoint: ["/entry"]
    command: ["serve"]
    environment: {A: "1", B: null}
    labels: {team: core}
    user: "1000"
    working_dir: /srv
    hostname: api
    stop_signal: SIGINT
    stop_grace_period: 3s
    read_only: true
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    sysctls: {net.core.somaxconn: 1024}
    ulimits: {nofile: {soft: 1024, hard: 2048}}
    extra_hosts: ["db.local:10.0.0.5"]
    dns: [1.1.1.1]
    tmpfs: [/tmp]
    ports:
      - target: 80
        published: 8080
        mode: host
    networks:
      front: {aliases: [web]}
      back:
    secrets:
      - pw
      - source: tls
        target: /etc/tls.pem
        mode: 0400
    configs: [conf]
    depends_on:
      db: {condition: service_healthy}
    deploy:
      replicas: 4
      labels: {tier: api}
      endpoint_mode: dnsrr
      resources:
        limits: {cpus: "0.5", memory: 64M, pids: 100}
        reservations: {cpus: "0.25", memory: 32M}
      restart_policy: {condition: on-failure, delay: 2s, max_attempts: 3, window: 1m}
      update_config: {parallelism: 2, order: start-first, failure_action: rollback, monitor: 10s, max_failure_ratio: 0.25}
      rollback_config: {parallelism: 0}
      placement:
        constraints: ["node.role==worker", "node.labels.zone!=dmz"]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
  db:
    image: postgres:16
    healthcheck: {test: ["CMD", "pg_isready"]}
    deploy: {mode: global}
    networks: [back]
networks:
  front:
    attachable: true
    ipam: {config: [{subnet: 10.9.0.0/24}]}
  back:
    internal: true
  shared:
    external: true
secrets:
  pw: {environment: PW}
  tls: {file: ./tls.pem}
configs:
  conf: {content: "key=value"}
"""


def test_every_key_a_stack_service_takes(tmp_path):
    (tmp_path / "tls.pem").write_bytes(b"-----BEGIN-----")
    stack = deploy(write(tmp_path, FULL), "s", environ={"PW": "hunter2"})
    api, db = stack.services
    assert (api.name, db.name, db.mode, db.replicas) == ("s_api", "s_db", "global", 0)
    c = api.task_template.container_spec
    assert (c.command, c.args, c.env, c.user, c.dir, c.hostname) == (["/entry"], ["serve"], ["A=1"], "1000", "/srv", "api")
    assert c.labels == {"team": "core", NAMESPACE: "s"} and api.labels == {"tier": "api", NAMESPACE: "s", IMAGE: "registry.example/api:2"}
    assert (c.stop_signal, c.stop_grace_period, c.read_only) == ("SIGINT", 3.0, True)
    assert (c.cap_add, c.cap_drop, c.sysctls) == (["NET_ADMIN"], ["MKNOD"], {"net.core.somaxconn": "1024"})
    assert [(u.name, u.soft, u.hard) for u in c.ulimits] == [("nofile", 1024, 2048)]
    assert c.hosts == ["10.0.0.5 db.local"] and c.dns_config.nameservers == ["1.1.1.1"]
    assert [(m.type, m.target) for m in c.mounts] == [("tmpfs", "/tmp")]
    assert [(s.secret_name, s.file.name, s.file.mode) for s in c.secrets] == [("s_pw", "pw", 0o444), ("s_tls", "/etc/tls.pem", 0o400)]
    assert [(x.config_name, x.file.name) for x in c.configs] == [("s_conf", "conf")]
    t = api.task_template
    assert (t.resources.limits.nano_cpus, t.resources.limits.memory_bytes, t.resources.limits.pids) == (500_000_000, 64 << 20, 100)
    assert (t.resources.reservations.nano_cpus, t.resources.reservations.memory_bytes) == (250_000_000, 32 << 20)
    r = t.restart_policy
    assert (r.condition, r.delay, r.max_attempts, r.window) == ("on-failure", 2.0, 3, 60.0)
    assert t.placement.constraints == ["node.role==worker", "node.labels.zone!=dmz"]
    assert [p.spread for p in t.placement.preferences] == ["node.labels.zone"] and t.placement.max_replicas == 2
    assert [(n.target, n.aliases) for n in t.networks] == [("s_front", ["api", "web"]), ("s_back", ["api"])]
    u = api.update_config
    assert (u.parallelism, u.order, u.failure_action, u.monitor, u.max_failure_ratio) == (2, "start-first", "rollback", 10.0, 0.25)
    assert api.rollback_config.parallelism == 0
    assert api.endpoint_spec.mode == "dnsrr"
    assert [(p.target_port, p.published_port, p.publish_mode) for p in api.endpoint_spec.ports] == [(80, 8080, "host")]
    assert api.depends_on["s_db"].condition == "service_healthy"
    nets = {n.name: n for n in stack.networks}
    assert set(nets) == {"s_front", "s_back"} and stack.external_networks == ()  # `shared` is used by no service
    assert nets["s_front"].attachable and nets["s_front"].ipam[0].subnet == "10.9.0.0/24" and nets["s_back"].internal
    assert {s.name: s.data for s in stack.secrets} == {"s_pw": b"hunter2", "s_tls": b"-----BEGIN-----"}
    assert [(x.name, x.data) for x in stack.configs] == [("s_conf", b"key=value")]
    assert all(x.labels[NAMESPACE] == "s" for x in (*stack.networks, *stack.secrets, *stack.configs))


@pytest.mark.parametrize("text, message", [
    ("services:\n  a:\n    image: x\n    privileged: true\n", "stack s: service a: privileged: true is not supported"),
    ("services:\n  a:\n    image: x\n    network_mode: host\n", "stack s: service a: network_mode: host is not supported in a stack"),
    ("services:\n  a:\n    image: x\n  b:\n    image: x\n    volumes_from: [a]\n", "stack s: service b: volumes_from is not supported"),
    ("services:\n  a:\n    image: x\n    deploy: {mode: replicated-job}\n", "stack s: service a: deploy.mode replicated-job is not supported yet"),
    ("services:\n  a:\n    image: x\n    ports: [{target: 80, published: '8000-8001'}]\n", "stack s: service a: published port range 8000-8001"),
    ("services:\n  a:\n    image: x\n    networks: [n]\nnetworks:\n  n: {driver: bridge}\n", "stack s: networks.n: driver bridge is one node's"),
    ("services:\n  a:\n    image: x\n    secrets: [pw]\nsecrets:\n  pw: {environment: NOPE}\n",
     "stack s: secrets.pw: the environment variable NOPE is not set"),
    ("services:\n  a:\n    image: x\n    secrets: [pw]\nsecrets:\n  pw: {file: ./missing}\n", "stack s: secrets.pw: cannot read"),
    ("services:\n  a:\n    image: x\n    deploy: {placement: {constraints: [node.lables.zone==a]}}\n",
     "stack s: service a: placement constraint 'node.lables.zone==a': unknown attribute 'node.lables.zone'; use node.id"),
    ("services:\n  a:\n    image: x\n    deploy: {placement: {constraints: ['node.role=worker']}}\n",
     "stack s: service a: placement constraint 'node.role=worker': expected one operator from ==, !="),
    ("services:\n  a:\n    image: x\n    deploy: {placement: {preferences: [{spread: node.id}]}}\n",
     "stack s: service a: placement preference spread=node.id: spread over node.labels.KEY or engine.labels.KEY"),
    ("services:\n  a:\n    image: x\n    deploy: {placement: {preferences: [{pack: node.labels.x}]}}\n",
     "stack s: service a: deploy.placement.preferences: only spread is supported"),
])
def test_what_a_stack_refuses_is_one_line(tmp_path, text, message):
    with pytest.raises(InvalidArgument) as err:
        deploy(write(tmp_path, text), "s")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_external_resources_are_named_not_created(tmp_path):
    text = ("services:\n  a:\n    image: x\n    networks: [shared]\n    secrets: [key]\n"
            "networks:\n  shared: {external: true, name: corp}\nsecrets:\n  key: {external: true}\n")
    stack = deploy(write(tmp_path, text), "s")
    assert stack.networks == () and stack.external_networks == ("corp",)
    assert stack.secrets == () and stack.external_secrets == ("key",)
    assert [s.secret_name for s in stack.services[0].task_template.container_spec.secrets] == ["key"]


def test_ignored_keys_are_warned_about(tmp_path):
    text = ("services:\n  a:\n    image: x\n    container_name: box\n    links: [b]\n    ports: ['127.0.0.1:80:80']\n"
            "  b:\n    image: x\n")
    stack = deploy(write(tmp_path, text), "s")
    assert stack.warnings == (
        "service a: ignoring what a stack does not support: container_name, links",
        "service a: ports: host_ip 127.0.0.1 is ignored in a stack (ports answer on every address)",
    )


def test_the_replicated_example_deploys_on_a_fake_cluster_in_dependency_order():
    stack = deploy(EXAMPLES / "replicated" / "compose.yaml", "rep")
    fake = FakeCluster(health_delay=3.0)
    for i in range(1, 4):
        fake.put(node(f"n{i}"))
    for spec in stack.networks:  # as `stack deploy` writes them
        fake.put(Network(id=new_id(spec.name), spec=spec))
    fake.put(Network(id="ingress", spec=NetworkSpec(name="ingress", ingress=True)))  # as `swarm init` does
    for spec in stack.services:
        fake.put(Service(id=new_id(spec.name), spec=spec))
    plan, now = run_cluster(fake)
    assert plan.converged, plan.explain()
    running = [t for t in fake.tasks.values() if t.status.state == TaskState.RUNNING]
    assert sorted(t.name for t in running) == ["rep_app.1", "rep_app.2", "rep_app.3", "rep_proxy.1"]
    assert {t.node_id for t in running if t.service_name == "rep_app"} == {"n1", "n2", "n3"}
    created = {line.split(":")[0].split()[-1]: t for t, line in fake.log if line.startswith("create")}
    healthy_at = max(t.status.health_changed_at for t in running if t.service_name == "rep_app")
    assert created["rep_proxy.1"] >= healthy_at  # after every app task was healthy, wherever it ran
    assert created["rep_proxy.1"] > created["rep_app.1"]
