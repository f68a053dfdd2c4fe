"""The records a cluster keeps in etcd: JSON round trips, versions and migrations, docker's
vocabulary, and a task spec that carries everything the node's create request takes."""

import json
from typing import ClassVar

import pytest
from pydantic import ValidationError

from orch.cluster import records as r
from orch.api.models import CreateRequest
from orch.scheduler.fakecluster import node, service, task


def full_spec() -> r.ServiceSpec:
    container = r.ContainerSpec(
        image="registry.example/app:2", labels={"a": "b"}, command=["/entry"], args=["serve", "--port", "80"],
        hostname="web", env=["A=1"], dir="/srv", user="1000:1000", tty=True, open_stdin=True, read_only=True, init=True,
        mounts=[r.Mount(type="volume", source="data", target="/data", volume_options=r.VolumeOptions(no_copy=True)),
                r.Mount(type="tmpfs", target="/tmp", tmpfs_options=r.TmpfsOptions(size_bytes=1 << 20))],
        stop_signal="SIGINT", stop_grace_period=3.5,
        healthcheck=r.HealthConfig(test=["CMD", "true"], interval=1.0, retries=3),
        hosts=["10.0.0.1 db"], dns_config=r.DNSConfig(nameservers=["1.1.1.1"], search=["x"]),
        secrets=[r.SecretReference(secret_name="s_pw", file=r.FileTarget(name="pw"))],
        configs=[r.ConfigReference(config_name="s_conf", file=r.FileTarget(name="/etc/app.conf", mode=0o440))],
        cap_add=["NET_ADMIN"], cap_drop=["MKNOD"], sysctls={"net.core.somaxconn": "1024"},
        ulimits=[r.Ulimit(name="nofile", soft=1024, hard=2048)],
    )
    template = r.TaskSpec(
        container_spec=container,
        resources=r.ResourceRequirements(limits=r.Limits(nano_cpus=500_000_000, memory_bytes=64 << 20, pids=100),
                                         reservations=r.Resources(nano_cpus=100_000_000, memory_bytes=32 << 20)),
        restart_policy=r.RestartPolicy(condition="on-failure", delay=2.0, max_attempts=3, window=60.0),
        placement=r.Placement(constraints=["node.role==worker"], preferences=[r.PlacementPreference(spread="node.labels.zone")],
                              max_replicas=2, platforms=[r.Platform(os="linux", architecture="amd64")]),
        networks=[r.NetworkAttachmentConfig(target="s_default", aliases=["web"])],
        log_driver=r.Driver(name="json-file", options={"max-size": "10m", "max-file": "3"}),
    )
    return r.ServiceSpec(
        name="s_web", labels={"com.docker.stack.namespace": "s"}, task_template=template, replicas=3,
        update_config=r.UpdateConfig(parallelism=2, delay=1.0, order="start-first", failure_action="rollback", max_failure_ratio=0.2),
        endpoint_spec=r.EndpointSpec(mode="vip", ports=[r.PortConfig(target_port=80, published_port=8080)]),
        depends_on={"s_db": r.ServiceDependency(condition="service_healthy")},
    )


def examples() -> list[r.Record]:
    svc = r.Service(id=r.new_id(), spec=full_spec(), spec_version=3, previous_spec=full_spec(), previous_spec_version=2,
                    update_status=r.UpdateStatus(state="updating", started_at=10.0, message="update in progress"))
    return [
        r.Cluster(id="c1", ca_certificate="-----BEGIN CERTIFICATE-----\n...", join_tokens=r.JoinTokens(worker_hash="ab", manager_hash="cd"),
                  settings=r.ClusterSettings(task_history_limit=3)),
        node("n1", labels={"zone": "a"}, role="manager").model_copy(update={"manager_status": r.ManagerStatus(addr="10.0.0.1:2377", leader=True)}),
        svc,
        task(service("web"), 2, "n1", "failed", exit_code=3, finished=12.0, restarts=1, streak=1),
        r.Network(id="net1", spec=r.NetworkSpec(name="s_default", attachable=True, ipam=[r.IPAMConfig(subnet="10.0.1.0/24")]), vni=4097),
        r.Secret(id="sec1", spec=r.SecretSpec(name="s_pw", data=b"\x00sealed\xff")),
        r.Config(id="cfg1", spec=r.ConfigSpec(name="s_conf", data=b"key=value\n")),
    ]


@pytest.mark.parametrize("record", examples(), ids=lambda rec: rec.KIND)
def test_records_round_trip_through_json(record):
    raw = record.to_json()
    data = json.loads(raw)
    assert data["version"] == type(record).CURRENT and data["id"] == record.id
    again = type(record).from_json(raw)
    assert again == record
    assert again.to_json() == raw


def test_defaults_are_left_out_of_the_stored_json_but_the_version_is_not():
    raw = r.Service(id="x", spec=r.ServiceSpec(name="web", task_template=r.TaskSpec(container_spec=r.ContainerSpec(image="busybox")))).to_json()
    assert json.loads(raw) == {"version": 1, "id": "x", "spec": {"name": "web", "task_template": {"container_spec": {"image": "busybox"}}}}


def test_keys_follow_the_versioned_layout():
    assert r.Task(id="t1", service_id="s", spec=full_spec().task_template).key == "v1/tasks/t1"
    assert r.Cluster(id="c").key == "v1/cluster"
    assert r.record_key("nodes", "n1") == "v1/nodes/n1"
    assert set(r.RECORD_TYPES) == {"cluster", "nodes", "services", "tasks", "networks", "secrets", "configs"}


class Widget(r.Record):
    """A record type at schema version 3, to show the migration hook."""

    KIND: ClassVar[str] = "widgets"
    CURRENT: ClassVar[int] = 3
    size_bytes: int = 0
    colour: str = "grey"


@r.migration(Widget, 1)
def _size_in_bytes(data: dict) -> dict:
    data["size_bytes"] = data.pop("size_kb", 0) * 1024
    return data


@r.migration(Widget, 2)
def _color_is_colour(data: dict) -> dict:
    if "color" in data:
        data["colour"] = data.pop("color")
    return data


def test_an_older_record_is_migrated_step_by_step():
    w = Widget.from_json(b'{"version": 1, "id": "w", "size_kb": 2, "color": "red"}')
    assert (w.version, w.size_bytes, w.colour) == (3, 2048, "red")
    assert Widget.from_json(w.to_json()) == w
    # Migrations belong to their record type.
    assert r.Service.MIGRATIONS == {} and set(Widget.MIGRATIONS) == {1, 2}


def test_a_record_from_a_newer_orch_is_refused_in_one_line():
    with pytest.raises(r.RecordError) as err:
        r.Task.from_json(b'{"version": 9, "id": "t1", "service_id": "s"}')
    assert str(err.value) == "tasks record t1 has schema version 9, newer than this orch reads (1); upgrade orch on this manager"


def test_a_missing_migration_is_an_error():
    class Gadget(r.Record):
        KIND: ClassVar[str] = "gadgets"
        CURRENT: ClassVar[int] = 2

    with pytest.raises(r.RecordError, match="no migration of gadgets records from version 1"):
        Gadget.from_json(b'{"version": 1, "id": "g"}')


@pytest.mark.parametrize("raw, message", [
    (b"not json", "stored tasks record is invalid: value: Invalid JSON"),
    (b'{"version": 1, "id": "t", "service_id": "s", "spec": {"container_spec": {"image": "x"}}, "colour": 1}',
     "stored tasks record is invalid: colour: Extra inputs are not permitted"),
    (b'{"version": 1, "id": "t", "service_id": "s", "spec": {"container_spec": {"image": "x"}}, "desired_state": "dancing"}',
     "stored tasks record is invalid: desired_state: Input should be"),
])
def test_a_bad_stored_record_is_one_line(raw, message):
    with pytest.raises(r.RecordError) as err:
        r.Task.from_json(raw)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_records_are_frozen():
    t = task(service("web"), 1, "n1")
    with pytest.raises(ValidationError):
        t.desired_state = r.TaskState.SHUTDOWN
    changed = t.model_copy(update={"desired_state": r.TaskState.SHUTDOWN})
    assert t.desired_state == "running" and changed.desired_state == "shutdown"


def test_task_states_are_dockers_in_order():
    names = [s.value for s in r.TaskState]
    assert names == ["new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running",
                     "complete", "shutdown", "failed", "rejected", "remove", "orphaned"]
    assert r.TaskState.NEW < r.TaskState.RUNNING < r.TaskState.SHUTDOWN  # by order, not as strings
    assert r.TaskState.RUNNING >= "running" and not r.TaskState.RUNNING.terminal
    assert r.TERMINAL_STATES == {r.TaskState(s) for s in names[9:]}


def test_task_names_are_dockers():
    web = service("web")
    assert task(web, 3, "n1", task_id="abc").name == "web.3"
    assert task(web, 3, "n1", task_id="abc").container_name == "web.3.abc"
    assert task(service("agent", mode="global"), 0, "n7", task_id="x").name == "agent.n7"


def test_ids_look_like_dockers_and_a_seed_makes_them_repeatable():
    one, two = r.new_id(), r.new_id()
    assert one != two and len(one) == 25 and set(one) <= set("0123456789abcdefghijklmnopqrstuvwxyz")
    assert r.new_id("a/1") == r.new_id("a/1") != r.new_id("a/2")


def test_the_spec_digest_changes_with_what_a_container_is_made_from_only():
    spec = full_spec()
    digest = r.compute_spec_digest(spec)
    same = [
        spec.model_copy(update={"replicas": 9, "mode": "global", "labels": {"x": "y"}, "depends_on": {}}),
        spec.model_copy(update={"update_config": r.UpdateConfig(), "rollback_config": r.UpdateConfig(parallelism=5)}),
        spec.model_copy(update={"task_template": spec.task_template.model_copy(update={"placement": r.Placement()})}),
    ]
    assert all(r.compute_spec_digest(s) == digest for s in same)
    template = spec.task_template
    different = [
        spec.model_copy(update={"task_template": template.model_copy(update={"force_update": 1})}),
        spec.model_copy(update={"task_template": template.model_copy(update={
            "container_spec": template.container_spec.model_copy(update={"env": ["A=2"]})})}),
        spec.model_copy(update={"endpoint_spec": r.EndpointSpec(ports=[r.PortConfig(target_port=80, published_port=81)])}),
    ]
    assert len({r.compute_spec_digest(s) for s in different} | {digest}) == 4


# Every field of the node's create request, and where a task carries it (a path in Task), or
# why the worker decides it itself. A new create field fails here until it is mapped.
CREATE_FIELDS = {
    "image": "spec.container_spec.image",
    "cmd": "spec.container_spec.args",
    "entrypoint": "spec.container_spec.command",
    "env": "spec.container_spec.env",
    "hostname": "spec.container_spec.hostname",
    "workdir": "spec.container_spec.dir",
    "user": "spec.container_spec.user",
    "tty": "spec.container_spec.tty",
    "open_stdin": "spec.container_spec.open_stdin",
    "init": "spec.container_spec.init",
    "labels": "spec.container_spec.labels",
    "healthcheck": "spec.container_spec.healthcheck",
    "stop_signal": "spec.container_spec.stop_signal",
    "stop_timeout": "spec.container_spec.stop_grace_period",
    "mounts": "spec.container_spec.mounts",
    "dns": "spec.container_spec.dns_config",
    "dns_search": "spec.container_spec.dns_config",
    "extra_hosts": "spec.container_spec.hosts",
    "cap_add": "spec.container_spec.cap_add",
    "cap_drop": "spec.container_spec.cap_drop",
    "read_only": "spec.container_spec.read_only",
    "sysctls": "spec.container_spec.sysctls",
    "ulimits": "spec.container_spec.ulimits",
    "memory": "spec.resources.limits",
    "nano_cpus": "spec.resources.limits",
    "pids_limit": "spec.resources.limits",
    "log_max_size": "spec.log_driver",
    "log_max_file": "spec.log_driver",
    "networks": "spec.networks",
    "ports": "endpoint.ports",
    "name": "worker: the task's container_name, SERVICE.SLOT.TASKID",
    "network": "worker: from the task's networks",
    "network_mode": "worker: from the task's networks",
    "restart_policy": "worker: always no; the cluster restarts tasks by their restart_policy",
    "auto_remove": "worker: never; the task history keeps dead tasks",
    "memory_swap": "none: docker services have no swap limit",
    "publish_all": "none: a service publishes the ports it names",
    "volumes_from": "none: swarm has no volumes_from (stack deploy refuses it)",
    "privileged": "none: refused by orch",
    "pid_mode": "none: swarm services have no --pid (stack deploy ignores pid:)",
    "ipc_mode": "none: swarm services have no --ipc",
    "userns_mode": "none: swarm services have no --userns",
    "security_opt": "none: not carried by a task yet (swarm's ContainerSpec.Privileges: Seccomp, NoNewPrivileges); "
                    "a task's container gets docker's default seccomp profile and no_new_privs",
}


def _resolve(model, path: str) -> bool:
    for part in path.split("."):
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        annotation = fields[part].annotation
        model = next((a for a in getattr(annotation, "__args__", ()) if hasattr(a, "model_fields")), annotation)
    return True


def test_a_task_carries_every_field_of_the_nodes_create_request():
    assert set(CREATE_FIELDS) == set(CreateRequest.model_fields), "map the new create request fields in CREATE_FIELDS"
    for name, path in CREATE_FIELDS.items():
        if ":" not in path:
            assert _resolve(r.Task, path), f"{name}: {path} is not a field of Task"


def test_the_interner_shares_one_spec_among_equal_ones():
    interner = r.SpecInterner()
    web, other = service("web"), service("web", "busybox:2")
    raw = [task(web, i, "n1").to_json() for i in range(1, 4)] + [task(other, 4, "n1").to_json()]
    tasks = [interner.task(r.Task.from_json(x)) for x in raw]
    assert tasks[0].spec is tasks[1].spec is tasks[2].spec and tasks[3].spec is not tasks[0].spec
    assert len(interner) == 2 and [t.to_json() for t in tasks] == raw
    assert interner.task(tasks[1]) is tasks[1]  # already carries the shared spec
    shared = interner.as_json(tasks[0].spec)
    assert shared == tasks[0].spec.model_dump(mode="json", exclude_defaults=True) and interner.as_json(tasks[2].spec) is shared
    unshared = r.Task.from_json(raw[0]).spec
    assert interner.as_json(unshared) == shared and interner.as_json(unshared) is not shared


def test_a_version_1_network_record_reads_as_version_2_without_ingress():
    stored = json.dumps({"version": 1, "id": "n1", "spec": {"name": "s_default"}, "vni": 4097,
                         "subnets": [{"subnet": "10.0.1.0/24", "gateway": "10.0.1.1"}]})
    net = r.Network.from_json(stored)
    assert net.version == 2 and net.spec.ingress is False and net.allocated
    assert json.loads(net.to_json())["version"] == 2


def test_tasks_sharing_a_spec_encode_it_once_and_as_a_whole_record_would():
    web, other = service("web"), service("other", image="busybox:2")
    a, b, c = task(web, 1, "n1"), task(web, 2, "n2", "failed", exit_code=1), task(other, 1, "n1")
    b.__dict__["spec"] = a.spec  # shared, as SpecInterner does
    for t in (a, b, c, a, c):
        assert json.loads(t.to_json()) == json.loads(r.Record.to_json(t))
    assert json.loads(c.to_json())["spec"]["container_spec"]["image"] == "busybox:2"
